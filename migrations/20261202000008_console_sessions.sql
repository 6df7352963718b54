-- The web console's sign-ins, in the database so that a session works on every replica behind
-- the proxy. The cookie `fw_session` holds a random value; only its SHA-256 is stored, so a copy
-- of this table signs nobody in. `csrf` is the token every POST of the session must carry.
CREATE TABLE console_sessions (
    id_hash    text        NOT NULL,
    csrf       text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    CONSTRAINT console_sessions_pkey PRIMARY KEY (id_hash)
);
CREATE INDEX console_sessions_expires_idx ON console_sessions (expires_at);

-- Failed sign-ins by client address, for the rate limit on /console/login (shared by replicas).
CREATE TABLE console_login_failures (
    address text        NOT NULL,
    at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX console_login_failures_idx ON console_login_failures (address, at);
