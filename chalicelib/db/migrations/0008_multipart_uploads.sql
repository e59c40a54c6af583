-- Resumable multipart uploads for very large files. A job created for one keeps the S3 UploadId
-- until the upload completes or is aborted (expiry, cancel), and the part size its part URLs
-- were signed for, so that the received parts can be checked and the missing ones signed again.

ALTER TABLE verification_jobs
    ADD COLUMN multipart_upload_id text,
    ADD COLUMN upload_part_size    bigint CHECK (upload_part_size > 0);
