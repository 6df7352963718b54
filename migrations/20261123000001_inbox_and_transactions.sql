-- The durable inbox and the transactions it feeds.

-- One row per distinct event a provider delivered. The primary key (provider, event_id) is what
-- makes a redelivery (also many concurrent ones) a no-op: INSERT ... ON CONFLICT DO NOTHING.
-- The table is also the worker's queue: pending rows are claimed with FOR UPDATE SKIP LOCKED.
CREATE TABLE webhook_events (
    -- Arrival order. Not the primary key: one index less to maintain on every insert and update.
    id                 bigint GENERATED ALWAYS AS IDENTITY,
    -- Who sent it: 'fluid', or a provider declared in the configuration.
    provider           text        NOT NULL DEFAULT 'fluid',
    -- The sender's event id (FLUID's event_id, a FundKit id, a Standard Webhooks webhook-id),
    -- or 'sha256:<hex of the body>' for a body without one.
    event_id           text        NOT NULL,
    -- The body's "event" (else the X-FLUID-Event header, else 'unknown').
    event_type         text        NOT NULL,
    -- Delivery headers of the attempt that stored the event. Not covered by the signature.
    delivery_id        text,
    delivery_event     text,
    delivery_timestamp text,
    -- The whole verified body, unknown fields included. jsonb keeps numbers digit for digit.
    payload            jsonb       NOT NULL,
    received_at        timestamptz NOT NULL DEFAULT now(),
    -- pending: waiting to be applied (possibly after a failed attempt, see next_attempt_at);
    -- processed: the state rules ran (outcome says what they decided);
    -- ignored: not a transaction event, touches no transaction;
    -- failed: cannot be applied (invalid payload, or max_attempts failed attempts; see last_error).
    status             text        NOT NULL DEFAULT 'pending',
    -- For processed events: applied | unchanged | stale | refused.
    outcome            text,
    attempts           integer     NOT NULL DEFAULT 0,
    next_attempt_at    timestamptz NOT NULL DEFAULT now(),
    last_error         text,
    processed_at       timestamptz,
    CONSTRAINT webhook_events_pkey PRIMARY KEY (provider, event_id),
    CONSTRAINT webhook_events_status_check
        CHECK (status IN ('pending', 'processed', 'ignored', 'failed')),
    CONSTRAINT webhook_events_outcome_check
        CHECK (outcome IS NULL OR outcome IN ('applied', 'unchanged', 'stale', 'refused'))
);

-- The worker's claim query reads only pending rows, in arrival order.
CREATE INDEX webhook_events_pending_idx ON webhook_events (id) WHERE status = 'pending';

-- Wake the workers of every replica when events arrive (one notification per statement).
CREATE FUNCTION webhook_events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('webhook_events', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER webhook_events_notify
    AFTER INSERT ON webhook_events
    FOR EACH STATEMENT EXECUTE FUNCTION webhook_events_notify();

-- One row per transaction, keyed by its provider and the provider's reference.
CREATE TABLE transactions (
    provider          text        NOT NULL DEFAULT 'fluid',
    -- FLUID's reference (the key of GET debit-requests/:reference); a FundKit transactionId.
    reference         text        NOT NULL,
    -- FLUID's id (dt_... debit, ct_... credit) and uuid.
    fluid_id          text,
    fluid_uuid        text,
    -- The merchant's own id (order id).
    partner_reference text,
    status            text        NOT NULL,
    -- Exactly as FLUID sent them, never through a float.
    amount            numeric,
    currency          text,
    fee               numeric,
    narration         text,
    approval_method   text,
    -- FLUID's error_details of a failure, as sent.
    error_details     jsonb,
    -- FLUID's own timestamps of the transaction.
    fluid_created_at  timestamptz,
    processed_at      timestamptz,
    completed_at      timestamptz,
    -- The last event applied and its timestamp: older events are stale.
    last_event_id     text        NOT NULL,
    last_event_type   text        NOT NULL,
    last_event_at     timestamptz NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT transactions_pkey PRIMARY KEY (provider, reference),
    CONSTRAINT transactions_status_check CHECK (
        status IN ('created', 'pending', 'processing', 'completed', 'failed', 'reversed'))
) WITH (fillfactor = 80); -- room on each page for HOT updates: a status change rewrites no index

CREATE INDEX transactions_partner_reference_idx ON transactions (partner_reference);

-- The rules the worker applies are in src/transactions/rules.rs; the two that must never break
-- are also kept here, so no code path or hand-written UPDATE can break them.
CREATE FUNCTION transactions_guard_status() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status = 'reversed' AND NEW.status <> 'reversed' THEN
        RAISE EXCEPTION 'transaction % is reversed; its status cannot change', OLD.reference
            USING ERRCODE = 'check_violation';
    END IF;
    IF OLD.status = 'completed' AND NEW.status NOT IN ('completed', 'reversed') THEN
        RAISE EXCEPTION 'transaction % is completed; it can only be reversed', OLD.reference
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER transactions_guard_status
    BEFORE UPDATE OF status ON transactions
    FOR EACH ROW EXECUTE FUNCTION transactions_guard_status();
