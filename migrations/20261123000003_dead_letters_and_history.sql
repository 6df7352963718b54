-- Dead letters, processing history and the transaction each event touched, for the admin API.

-- An event that cannot be applied (invalid payload, or worker.max_attempts failed attempts) is
-- parked as 'dead' (it was called 'failed'); the admin API replays it.
ALTER TABLE webhook_events DROP CONSTRAINT webhook_events_status_check;
UPDATE webhook_events SET status = 'dead' WHERE status = 'failed';
ALTER TABLE webhook_events ADD CONSTRAINT webhook_events_status_check
    CHECK (status IN ('pending', 'processed', 'ignored', 'dead'));

-- One entry per attempt: {"at", "status", "outcome", "error"}, appended by the worker in the
-- same statement that records the outcome.
ALTER TABLE webhook_events ADD COLUMN history jsonb NOT NULL DEFAULT '[]';

-- The transaction the event was applied to (set by the worker), to list a transaction's events.
ALTER TABLE webhook_events ADD COLUMN reference text;
CREATE INDEX webhook_events_reference_idx ON webhook_events (provider, reference) WHERE reference IS NOT NULL;

-- The parked events, for the admin API's replay of all of them (normally few or none).
CREATE INDEX webhook_events_dead_idx ON webhook_events (id) WHERE status = 'dead';
