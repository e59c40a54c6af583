-- Keep results exactly as the worker wrote them: `json` preserves key order (status, fileHash,
-- recovered, onchain, checks, as in the API contract), where `jsonb` re-sorts keys.
ALTER TABLE verification_jobs ALTER COLUMN result TYPE json USING result::json;
