-- Verification jobs: one row per job, with every field of the API's job object plus the
-- operational columns the pipeline and the sweeper need. Every state change is a single
-- UPDATE guarded by the current status (see chalicelib/jobs.py).

CREATE TABLE verification_jobs (
    id                uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    type              text        NOT NULL CHECK (type IN ('verify', 'proof')),
    status            text        NOT NULL CHECK (status IN ('awaiting_upload', 'queued', 'processing', 'completed', 'failed')),
    progress          integer     NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    content_hash      text,
    manifest_uri      text        NOT NULL,
    registry_address  text        NOT NULL,
    rpc_url           text,
    result            jsonb,
    error             text,
    error_code        text,
    retry_count       integer     NOT NULL DEFAULT 0 CHECK (retry_count >= 0),
    -- operational columns (not part of the API's job object)
    object_key        text,                 -- S3 key of the uploaded file, NULL once deleted
    file_name         text,                 -- the client's file name, kept only as data
    content_type      text,
    file_size         bigint      CHECK (file_size >= 0),
    upload_expires_at timestamptz,          -- awaiting_upload jobs fail after this
    last_enqueued_at  timestamptz,          -- last successful send to SQS; NULL = never sent
    attempts          integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),  -- deliveries started
    created_at        timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    completed_at      timestamptz,
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- updated_at follows every UPDATE unless the statement sets it itself.
CREATE FUNCTION verification_jobs_touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at THEN
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER verification_jobs_updated_at
    BEFORE UPDATE ON verification_jobs
    FOR EACH ROW EXECUTE FUNCTION verification_jobs_touch_updated_at();

-- Listing: newest first, optionally by status or type.
CREATE INDEX verification_jobs_created_idx ON verification_jobs (created_at DESC, id DESC);
CREATE INDEX verification_jobs_status_created_idx ON verification_jobs (status, created_at DESC, id DESC);
CREATE INDEX verification_jobs_type_created_idx ON verification_jobs (type, created_at DESC, id DESC);
CREATE INDEX verification_jobs_content_hash_idx ON verification_jobs (content_hash) WHERE content_hash IS NOT NULL;

-- Sweeper: queued jobs whose message may be lost, uploads that never arrived,
-- finished jobs whose upload can go, finished jobs past retention.
CREATE INDEX verification_jobs_queued_enqueued_idx ON verification_jobs (last_enqueued_at) WHERE status = 'queued';
CREATE INDEX verification_jobs_upload_expiry_idx ON verification_jobs (upload_expires_at) WHERE status = 'awaiting_upload';
CREATE INDEX verification_jobs_finished_idx ON verification_jobs (status, completed_at) WHERE status IN ('completed', 'failed');
