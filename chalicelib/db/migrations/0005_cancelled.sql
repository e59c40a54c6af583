-- Cancellation: `cancelled` is a finished status like `completed` and `failed` (no transition
-- leaves it). Its jobs' files go at once and the jobs follow the completed ones' retention, so
-- the sweeper's index of finished jobs covers it too.

ALTER TABLE verification_jobs DROP CONSTRAINT verification_jobs_status_check;
ALTER TABLE verification_jobs ADD CONSTRAINT verification_jobs_status_check
    CHECK (status IN ('awaiting_upload', 'queued', 'processing', 'completed', 'failed', 'cancelled'));

DROP INDEX verification_jobs_finished_idx;
CREATE INDEX verification_jobs_finished_idx ON verification_jobs (status, completed_at)
    WHERE status IN ('completed', 'failed', 'cancelled');
