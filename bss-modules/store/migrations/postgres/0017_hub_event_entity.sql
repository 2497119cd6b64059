-- Hub events found by their entity, PostgreSQL. migrations/sqlite/0017_hub_event_entity.sql
-- is the same in SQLite's dialect and says why.
CREATE INDEX hub_events_entity ON hub_events (entity_type, entity_id);
