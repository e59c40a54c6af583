-- Leases for running jobs, and the time a retried job's backoff ends.
-- A worker that starts a job takes its lease (a token and an expiry) in the same statement that
-- moves it to processing, and renews it while it runs; a second delivery finds the lease live and
-- does not start a second run. A worker that dies stops renewing: its lease runs out and the next
-- delivery takes the job. `retry_at` is set when a transient failure schedules a retry: the
-- `delayed` stat counts queued jobs whose retry_at is still ahead.

ALTER TABLE verification_jobs
    ADD COLUMN lease_token      uuid,
    ADD COLUMN lease_expires_at timestamptz,
    ADD COLUMN retry_at         timestamptz;
