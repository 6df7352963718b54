-- Reconciliation by polling FLUID's API (src/reconciliation.rs) and downstream actions: every
-- status change of a transaction is recorded, announced and forwarded (src/forward.rs).

-- Where an event came from: 'webhook' (a provider delivered it) or 'poll' (FLUID's API answered a
-- reconciliation poll and the poller stored the answer as an event, applied by the same rules).
ALTER TABLE webhook_events ADD COLUMN source text NOT NULL DEFAULT 'webhook';
ALTER TABLE webhook_events ADD CONSTRAINT webhook_events_source_check
    CHECK (source IN ('webhook', 'poll'));

-- The FLUID transactions that are not final yet, watched by the poller. Once polling is on (a
-- row in reconciliation_budget), the trigger below keeps the table exact: a transaction enters
-- when it is created (or retried after a failure) in a non-final state and leaves when it
-- becomes final. The poller fills it with the non-final transactions when it starts.
CREATE TABLE reconciliation (
    provider       text        NOT NULL,
    reference      text        NOT NULL,
    -- Since when it has been non-final; the first poll is due reconciliation.after_secs later.
    since          timestamptz NOT NULL DEFAULT now(),
    -- Polls FLUID answered (a 429 does not count).
    polls          integer     NOT NULL DEFAULT 0,
    -- NULL before the first poll; then when the next one is due. A claim moves it past the
    -- request timeout (a lease: a replica that dies mid-poll leaves the row to the others);
    -- 'infinity' once reconciliation.max_attempts polls found the transaction still not final.
    next_poll_at   timestamptz,
    last_polled_at timestamptz,
    -- changed | unchanged | not_found | rate_limited | unauthorized | error | timeout | invalid
    last_outcome   text,
    last_error     text,
    CONSTRAINT reconciliation_pkey PRIMARY KEY (provider, reference)
);
-- Two partial indexes, so that both kinds of due rows are found by a range scan: never polled
-- (due by age) and polled before (due by next_poll_at).
CREATE INDEX reconciliation_first_poll_idx ON reconciliation (since) WHERE next_poll_at IS NULL;
CREATE INDEX reconciliation_next_poll_idx ON reconciliation (next_poll_at)
    WHERE next_poll_at IS NOT NULL;

-- FLUID allows 1,000 API requests a minute per key. Every replica's poller draws from this one
-- token bucket, in a transaction that locks its single row; a 429 pauses them all. The first
-- poller to start inserts the row; until then nothing is polled and nothing is watched (a
-- receiver without FLUID_API_KEY pays nothing for reconciliation).
CREATE TABLE reconciliation_budget (
    singleton    boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    tokens       float8      NOT NULL DEFAULT 0,
    refilled_at  timestamptz NOT NULL DEFAULT now(),
    paused_until timestamptz NOT NULL DEFAULT '-infinity'
);

-- Every status change of a transaction, its creation included, in the order they were made, once
-- forwarding is on (a row in `forwarding`): the outbox the forwarder delivers from, and the
-- record of changes. Several events applied to one transaction in one worker batch make one
-- change (the row never held the states in between).
CREATE TABLE transaction_changes (
    -- Order of the changes; also the id of a forwarded delivery (webhook-id).
    id                bigint      GENERATED ALWAYS AS IDENTITY,
    provider          text        NOT NULL,
    reference         text        NOT NULL,
    partner_reference text,
    status            text        NOT NULL,
    -- NULL when the change created the transaction.
    previous_status   text,
    amount            numeric,
    currency          text,
    -- The event that made the change, and its time.
    event_id          text        NOT NULL,
    event_at          timestamptz NOT NULL,
    recorded_at       timestamptz NOT NULL DEFAULT now(),
    -- When the downstream URL acknowledged it (NULL: not yet).
    forwarded_at      timestamptz,
    attempts          integer     NOT NULL DEFAULT 0,
    -- A claim moves it past the request timeout (a lease); a failure, by the backoff.
    next_attempt_at   timestamptz NOT NULL DEFAULT now(),
    last_error        text
);
-- The forwarder's queue, in order; and one transaction's changes, in order (the forwarder sends a
-- change only when the ones before it are acknowledged; the admin API lists them).
CREATE INDEX transaction_changes_unforwarded_idx ON transaction_changes (id) WHERE forwarded_at IS NULL;
CREATE INDEX transaction_changes_transaction_idx ON transaction_changes (provider, reference, id);
-- Retention deletes old changes by age.
CREATE INDEX transaction_changes_recorded_at_brin ON transaction_changes USING brin (recorded_at);

-- Forwarding is on once a forwarder started (it inserts the row): from then on every change is
-- recorded, and delivered, also across restarts without forward.url (at least once). To stop
-- recording for good: DELETE FROM forwarding (and unset forward.url everywhere).
CREATE TABLE forwarding (
    singleton  boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    enabled_at timestamptz NOT NULL DEFAULT now()
);

-- One statement-level trigger (set-based, once per worker batch) replaces the row-level NOTIFY of
-- migration 0004. For the transactions whose status the statement set, in the same database
-- transaction (so nothing is recorded or heard of a change that rolled back), it
--   1. announces it on channel 'transaction_status', payload JSON: {"provider", "reference",
--      "partner_reference", "status", "previous_status" (null on creation), "event_id" (the
--      event that made the change), "at" (that event's time)},
--   2. records it in transaction_changes and wakes the forwarders (channel
--      'transaction_changes'), when forwarding is on,
--   3. keeps the reconciliation table to the FLUID transactions that are not final, when
--      polling is on.
-- Each part that is off costs one lookup of an empty table per statement.
DROP TRIGGER transactions_notify_status ON transactions;
DROP FUNCTION transactions_notify_status();

-- One change, as the trigger hands it on.
CREATE TYPE status_change AS (
    provider text, reference text, partner_reference text, status text, previous_status text,
    amount numeric, currency text, event_id text, event_at timestamptz
);

-- PL/pgSQL rather than SQL: it keeps each statement's plan for the session, where a SQL function
-- with these statements would be planned again on every call (measured: about 10 µs per event).
CREATE FUNCTION record_status_changes(changes status_change[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('transaction_status', json_build_object(
            'provider', provider,
            -- NOTIFY payloads are limited to 8000 bytes; real references are far shorter.
            'reference', left(reference, 1000),
            'partner_reference', left(partner_reference, 1000),
            'status', status,
            'previous_status', previous_status,
            'event_id', left(event_id, 1000),
            'at', event_at)::text)
    FROM unnest(changes) ORDER BY provider, reference;

    IF EXISTS (SELECT 1 FROM forwarding) THEN
        INSERT INTO transaction_changes (provider, reference, partner_reference, status,
            previous_status, amount, currency, event_id, event_at)
        SELECT provider, reference, partner_reference, status, previous_status, amount, currency,
               event_id, event_at
        FROM unnest(changes) ORDER BY provider, reference;
        -- Wakes the forwarders: one notification per transaction, however many changes (the
        -- per-change channel above is for your listeners; a busy forwarder would fall behind it).
        PERFORM pg_notify('transaction_changes', '');
    END IF;

    IF EXISTS (SELECT 1 FROM reconciliation_budget) THEN
        INSERT INTO reconciliation AS w (provider, reference)
        SELECT provider, reference FROM unnest(changes)
        WHERE provider = 'fluid' AND status IN ('created', 'pending', 'processing')
          AND (previous_status IS NULL OR previous_status IN ('completed', 'failed', 'reversed'))
        ON CONFLICT (provider, reference) DO UPDATE
            SET since = now(), polls = 0, next_poll_at = NULL, last_outcome = NULL, last_error = NULL;
        DELETE FROM reconciliation w USING unnest(changes) AS c
        WHERE w.provider = c.provider AND w.reference = c.reference
          AND c.status IN ('completed', 'failed', 'reversed');
    END IF;
END
$$;

CREATE FUNCTION transactions_status_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    changes status_change[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        changes := ARRAY(
            SELECT ROW(n.provider, n.reference, n.partner_reference, n.status, NULL, n.amount,
                       n.currency, n.last_event_id, n.last_event_at)::status_change
            FROM new_rows n);
    ELSE
        changes := ARRAY(
            SELECT ROW(n.provider, n.reference, n.partner_reference, n.status, o.status, n.amount,
                       n.currency, n.last_event_id, n.last_event_at)::status_change
            FROM new_rows n
            JOIN old_rows o ON o.provider = n.provider AND o.reference = n.reference
            WHERE n.status IS DISTINCT FROM o.status);
    END IF;
    IF cardinality(changes) > 0 THEN
        PERFORM record_status_changes(changes);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER transactions_created
    AFTER INSERT ON transactions
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION transactions_status_changed();

CREATE TRIGGER transactions_updated
    AFTER UPDATE ON transactions
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION transactions_status_changed();
