-- The partner hierarchy a customer was created in, PostgreSQL. migrations/sqlite/0024_customer_partner_root.sql
-- is the same schema in SQLite's dialect.
--
-- A partner reaches a customer through the billing accounts the customer owns in its
-- hierarchy. A customer a partner has just created owns none yet: it is the partner's
-- (to read, change and open an account for) while it owns none, by this column; NULL
-- when a role reaching everything created it, so no partner can claim it.

ALTER TABLE customers ADD COLUMN partner_root_id TEXT;
