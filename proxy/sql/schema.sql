-- sipedge subscriber store (PostgreSQL). Applied by `migrate()`; idempotent.
-- Credentials are HA1 values (H(user ":" realm ":" password), lowercase hex,
-- realm = domain), never plaintext passwords.
CREATE TABLE IF NOT EXISTS subscriber (
    username   text        NOT NULL CHECK (username <> ''),
    domain     text        NOT NULL CHECK (domain <> '' AND domain = lower(domain)),
    ha1_md5    text        NOT NULL CHECK (ha1_md5 ~ '^[0-9a-f]{32}$'),
    ha1_sha256 text        NOT NULL CHECK (ha1_sha256 ~ '^[0-9a-f]{64}$'),
    enabled    boolean     NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (username, domain)
);
