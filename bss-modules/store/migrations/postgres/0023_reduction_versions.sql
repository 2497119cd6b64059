-- Versions of discounts and credits, PostgreSQL. migrations/sqlite/0023_reduction_versions.sql
-- is the same schema in SQLite's dialect.
--
-- A discount's end (`valid_until`) and a credit's amount can be changed after they were
-- given (a discount withdrawn, a credit's unused rest taken back); each change, and each
-- use of a credit by an invoice, moves the row to its next version, so a change made on
-- a version read before (`If-Match`) is refused, never lost.

ALTER TABLE discounts ADD COLUMN version BIGINT NOT NULL DEFAULT 1;
ALTER TABLE credits ADD COLUMN version BIGINT NOT NULL DEFAULT 1;
