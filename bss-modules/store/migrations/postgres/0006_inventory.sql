-- The resource inventory (TMF639), PostgreSQL. migrations/sqlite/0006_inventory.sql is the
-- same schema in SQLite's dialect. MSISDNs come in ranges and SIM cards in batches
-- (one vendor output file each); both are rows with a lifecycle that tollgate-inventory
-- decides and this schema holds:
--
-- - `state`: available, reserved (by `owner`, an order), assigned (to `subscription_id`),
--   quarantine (MSISDN: cooling off after release) or retired (SIM: swapped out);
-- - `free_at_ms`: the instant from which the row may be reserved: the instant it became
--   available, the end of a reservation (an abandoned one returns by itself) or of a
--   quarantine; NULL while assigned or retired. Reserving takes a row with
--   `free_at_ms <= now`, in one statement (see tollgate-store's inventory.rs).
-- - `owner` is unique among rows that have one: an owner holds one MSISDN and one SIM.
--
-- A golden number carries its one-time price as NUMERIC with its currency; the next
-- free number is never a golden one (it is reserved by naming it). SIM keys are stored
-- sealed (AES-256-GCM, sealed and opened by tollgate-inventory, never by SQL).

CREATE TABLE number_ranges (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    first_msisdn BIGINT NOT NULL CHECK (first_msisdn > 0),
    last_msisdn BIGINT NOT NULL,
    golden_count BIGINT NOT NULL,
    rules_json TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    CHECK (last_msisdn >= first_msisdn)
);
CREATE INDEX number_ranges_bounds ON number_ranges (first_msisdn, last_msisdn);

CREATE TABLE msisdns (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    msisdn BIGINT NOT NULL UNIQUE,
    range_id TEXT REFERENCES number_ranges (id),
    state TEXT NOT NULL CHECK (state IN ('available', 'reserved', 'assigned', 'quarantine')),
    free_at_ms BIGINT,
    owner TEXT,
    subscription_id TEXT,
    price NUMERIC,
    currency TEXT,
    version BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    CHECK ((free_at_ms IS NULL) = (state = 'assigned')),
    CHECK (state <> 'assigned' OR subscription_id IS NOT NULL),
    CHECK (state <> 'reserved' OR owner IS NOT NULL),
    CHECK ((price IS NULL) = (currency IS NULL))
);
CREATE INDEX msisdns_free ON msisdns (free_at_ms, seq) WHERE price IS NULL;
CREATE INDEX msisdns_range_free ON msisdns (range_id, free_at_ms, seq) WHERE price IS NULL;
CREATE UNIQUE INDEX msisdns_owner ON msisdns (owner) WHERE owner IS NOT NULL;
CREATE INDEX msisdns_subscription ON msisdns (subscription_id) WHERE subscription_id IS NOT NULL;

CREATE TABLE sim_batches (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL UNIQUE,
    cards BIGINT NOT NULL,
    header_json TEXT NOT NULL,
    file_sha256 TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE sims (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    iccid TEXT NOT NULL UNIQUE,
    imsi TEXT NOT NULL UNIQUE,
    batch_id TEXT REFERENCES sim_batches (id),
    state TEXT NOT NULL CHECK (state IN ('available', 'reserved', 'assigned', 'retired')),
    free_at_ms BIGINT,
    owner TEXT,
    subscription_id TEXT,
    ki_sealed TEXT,
    opc_sealed TEXT,
    version BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    CHECK ((free_at_ms IS NULL) = (state IN ('assigned', 'retired'))),
    CHECK (state <> 'assigned' OR subscription_id IS NOT NULL),
    CHECK (state <> 'reserved' OR owner IS NOT NULL)
);
CREATE INDEX sims_free ON sims (free_at_ms, seq);
CREATE INDEX sims_batch ON sims (batch_id, seq);
CREATE UNIQUE INDEX sims_owner ON sims (owner) WHERE owner IS NOT NULL;
CREATE INDEX sims_subscription ON sims (subscription_id) WHERE subscription_id IS NOT NULL;

CREATE TABLE network_elements (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    element_type TEXT NOT NULL,
    address TEXT NOT NULL,
    status TEXT NOT NULL,
    doc_json TEXT NOT NULL,
    version BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
CREATE INDEX network_elements_type ON network_elements (element_type, seq);
