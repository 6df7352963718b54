-- What a dead letter names: an event that can never be applied (an amount that is not a number,
-- no reference) still records the merchant's partner reference its body gives, best effort, so
-- `GET /admin/transactions?partner_reference=...` shows it with the transaction it explains.
-- (`reference` has been recorded the same way since 0003.) NULL for every other event: an applied
-- event reaches the partner reference through its transaction.
ALTER TABLE webhook_events ADD COLUMN partner_reference text;
CREATE INDEX webhook_events_partner_reference_idx ON webhook_events (partner_reference)
    WHERE partner_reference IS NOT NULL;

-- The body's own `timestamp` as the sender wrote it (when the event happened, not when it
-- arrived), stored at intake so event lists show it without reading any body. NULL for events
-- stored before this migration and for bodies without one.
ALTER TABLE webhook_events ADD COLUMN event_timestamp text;
