-- Retention purges finished events by age. Events are appended in time order, so a BRIN index on
-- received_at finds the old ones for almost no cost on each insert.
CREATE INDEX webhook_events_received_at_brin ON webhook_events USING brin (received_at);
