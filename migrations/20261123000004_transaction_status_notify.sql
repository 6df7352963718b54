-- Downstream actions ("fulfil the order, send the receipt"): every status change of a transaction,
-- its creation included, is announced on channel 'transaction_status', from the same database
-- transaction that makes the change (so a listener never hears of a change that rolled back).
-- Payload, JSON: {"provider", "reference", "partner_reference", "status", "previous_status"
-- (null on creation), "event_id" (the event that made the change), "at" (that event's time)}.
CREATE FUNCTION transactions_notify_status() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.status IS DISTINCT FROM OLD.status THEN
        PERFORM pg_notify('transaction_status', json_build_object(
            'provider', NEW.provider,
            -- NOTIFY payloads are limited to 8000 bytes; real references are far shorter.
            'reference', left(NEW.reference, 1000),
            'partner_reference', left(NEW.partner_reference, 1000),
            'status', NEW.status,
            'previous_status', CASE WHEN TG_OP = 'UPDATE' THEN OLD.status END,
            'event_id', left(NEW.last_event_id, 1000),
            'at', NEW.last_event_at)::text);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER transactions_notify_status
    AFTER INSERT OR UPDATE OF status ON transactions
    FOR EACH ROW EXECUTE FUNCTION transactions_notify_status();
