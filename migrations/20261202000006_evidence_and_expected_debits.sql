-- Evidence: every delivery kept byte for byte, with the signature it came with and which key
-- verified it, so a stored event can be proved authentic later (`fluid-webhooks verify-stored`).
-- And expected debits: the merchant says what it initiated before any webhook arrives.

-- The request body exactly as received. The acknowledgement path stores these bytes as they are:
-- PostgreSQL parses no JSON to store an event. `payload` (jsonb) is kept only for the rows stored
-- before this migration; the admin API and the worker read `raw_body`.
ALTER TABLE webhook_events
    ADD COLUMN raw_body bytea,
    -- The signature header exactly as received (X-FLUID-Signature, X-Webhook-Signature or
    -- webhook-signature); NULL for answers of FLUID's API (source 'poll'), which are not signed.
    ADD COLUMN signature text,
    -- Which key verified it: the first 16 hex digits of SHA-256 of the key bytes, never the key.
    ADD COLUMN key_id text,
    -- Whether raw_body holds the bytes as received (true) or a re-serialisation of the stored
    -- jsonb (false: rows stored before this migration; whitespace, key order and duplicate keys
    -- are lost, so their signature cannot be checked again).
    ADD COLUMN raw_exact boolean;

UPDATE webhook_events SET raw_body = convert_to(payload::text, 'UTF8'), raw_exact = false;

ALTER TABLE webhook_events
    ALTER COLUMN raw_body SET NOT NULL,
    ALTER COLUMN raw_exact SET DEFAULT true,
    ALTER COLUMN raw_exact SET NOT NULL,
    ALTER COLUMN payload DROP NOT NULL;

-- What the merchant expected when it initiated the debit (POST /admin/transactions or
-- `fluid-webhooks expect`), and whether FLUID's amount or currency differs from it. FLUID stays
-- the source of truth for `amount` and `currency`; the mismatch is recorded, not corrected.
ALTER TABLE transactions
    ADD COLUMN expected_amount numeric,
    ADD COLUMN expected_currency text,
    ADD COLUMN amount_mismatch boolean NOT NULL DEFAULT false,
    -- An expected transaction has had no event yet.
    ALTER COLUMN last_event_id DROP NOT NULL,
    ALTER COLUMN last_event_type DROP NOT NULL,
    ALTER COLUMN last_event_at DROP NOT NULL;

-- A change made by an expectation was made by no event.
ALTER TABLE transaction_changes
    ALTER COLUMN event_id DROP NOT NULL,
    ALTER COLUMN event_at DROP NOT NULL;
