-- A product order may carry the idempotency key its caller placed it under (the dunning
-- run, fraud suspensions): unique per billing hierarchy (the owner), so placing it again
-- after a crash finds the first order instead of making a second.
ALTER TABLE product_orders ADD COLUMN idempotency_key TEXT;
CREATE UNIQUE INDEX product_orders_idempotency ON product_orders (root_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
