-- An order placed through the API under an `Idempotency-Key` header keeps a digest of the
-- request it answered: the same key sent again with another request is refused instead
-- of answered with an order the caller did not ask for.
ALTER TABLE product_orders ADD COLUMN idempotency_digest TEXT;
