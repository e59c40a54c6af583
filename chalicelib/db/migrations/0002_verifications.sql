-- Verification history (the original service's Verification model): one row per completed job,
-- written in the same statement that completes the job. No foreign key to verification_jobs,
-- so the history outlives job retention; UNIQUE (job_id) makes duplicate deliveries harmless.

CREATE TABLE verifications (
    id               bigserial   PRIMARY KEY,
    job_id           uuid        NOT NULL UNIQUE,
    file_hash        text        NOT NULL,
    manifest_uri     text        NOT NULL,
    registry_address text        NOT NULL,
    creator          text,
    recovered        text,
    status           text        NOT NULL CHECK (status IN ('OK', 'WARN', 'FAIL')),
    chain_id         bigint,
    created_at       timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX verifications_file_hash_idx ON verifications (file_hash);
CREATE INDEX verifications_created_idx ON verifications (created_at DESC);
