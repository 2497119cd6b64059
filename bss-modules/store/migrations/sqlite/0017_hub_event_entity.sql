-- Hub events found by their entity, SQLite. migrations/postgres/0017_hub_event_entity.sql
-- is the same in PostgreSQL's dialect.
--
-- An anonymisation rewrites the events of its customer still held here
-- (`Tx::rewrite_event_entities`), so a delivery not sent yet carries no personal data; the
-- index finds them without reading every event.
CREATE INDEX hub_events_entity ON hub_events (entity_type, entity_id);
