-- What the console reads, kept so that each page is a few index lookups with a million events
-- stored (docs/console/query-plans.md shows the plans).

-- The events page lists newest first (ORDER BY id DESC) and pages by id. Without this index every
-- page sorted the whole time window. Narrow and always appended at its right end, so it costs the
-- intake little.
CREATE INDEX webhook_events_id_idx ON webhook_events (id);

-- Deliveries by minute, provider and outcome, with a histogram of the time to acknowledge the ones
-- answered 2xx: the overview's "last hour / last day" without counting a day of events. Every
-- replica adds its own counts every few seconds (an upsert that adds), so the numbers are the
-- sum over replicas; a replica killed with SIGKILL loses at most its last few seconds of counts,
-- never an event. `ack_buckets[i]` counts acknowledgements within the i-th bound of
-- store::deliveries::ACK_BOUNDS_MS (the last one: slower than every bound). Kept two days.
CREATE TABLE delivery_minutes (
    minute      timestamptz NOT NULL,
    provider    text        NOT NULL,
    outcome     text        NOT NULL,
    deliveries  bigint      NOT NULL,
    ack_buckets bigint[]    NOT NULL,
    CONSTRAINT delivery_minutes_pkey PRIMARY KEY (minute, provider, outcome)
);

-- Every poll of FLUID's API and what it answered, for a transaction's timeline (the reconciliation
-- row keeps only the last one, and is deleted when the transaction becomes final). Purged by age
-- with the events (retention.applied_events_days).
CREATE TABLE reconciliation_polls (
    provider  text        NOT NULL,
    reference text        NOT NULL,
    polled_at timestamptz NOT NULL DEFAULT now(),
    -- changed | unchanged | not_found | rate_limited | unauthorized | error | timeout | invalid
    outcome   text        NOT NULL,
    -- The status FLUID answered, when it answered one.
    status    text,
    error     text,
    took_ms   integer     NOT NULL
);
CREATE INDEX reconciliation_polls_transaction_idx ON reconciliation_polls (provider, reference, polled_at);
CREATE INDEX reconciliation_polls_polled_at_brin ON reconciliation_polls USING brin (polled_at);

-- Every POST of a status change to forward.url, for the timeline (the change keeps only its last
-- error). Deleted with its change.
CREATE TABLE forward_attempts (
    change_id    bigint      NOT NULL,
    attempt      integer     NOT NULL,
    attempted_at timestamptz NOT NULL DEFAULT now(),
    -- NULL: the URL answered 2xx.
    error        text,
    took_ms      integer     NOT NULL,
    CONSTRAINT forward_attempts_pkey PRIMARY KEY (change_id, attempt)
);
-- transaction_changes had no unique id: the foreign key needs one.
ALTER TABLE transaction_changes ADD CONSTRAINT transaction_changes_pkey PRIMARY KEY (id);
ALTER TABLE forward_attempts ADD CONSTRAINT forward_attempts_change_fkey
    FOREIGN KEY (change_id) REFERENCES transaction_changes (id) ON DELETE CASCADE;

-- The overview counts the amount mismatches: few rows, so a partial index finds them without
-- reading every transaction.
CREATE INDEX transactions_amount_mismatch_idx ON transactions (provider, reference)
    WHERE amount_mismatch;
