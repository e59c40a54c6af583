"""Every setting of the service, read from the environment in this one place.

Lambda gets these from the Chalice stage (`.chalice/config.json`), the local stack from the
process environment it builds. Nothing else in the project reads `os.environ` for settings.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Mapping

MIB = 1024 * 1024
GIB = 1024 * MIB


# Outputs of the infra stack (infra/template.yaml) -> the settings they feed. Used to write the
# Chalice stage's environment on AWS and the local stack's environment alike.
STACK_OUTPUT_ENVIRONMENT = {
    "UploadBucketName": "UPLOAD_BUCKET",
    "QueueUrl": "QUEUE_URL",
    "QueueName": "QUEUE_NAME",
    "DeadLetterQueueUrl": "DEAD_LETTER_QUEUE_URL",
    "DeadLetterQueueName": "DEAD_LETTER_QUEUE_NAME",
    "ProofQueueUrl": "PROOF_QUEUE_URL",
    "ProofQueueName": "PROOF_QUEUE_NAME",
    "ProofDeadLetterQueueUrl": "PROOF_DEAD_LETTER_QUEUE_URL",
    "LargeQueueUrl": "LARGE_QUEUE_URL",
    "LargeQueueName": "LARGE_QUEUE_NAME",
    "LargeDeadLetterQueueUrl": "LARGE_DEAD_LETTER_QUEUE_URL",
    "UploadEventsQueueUrl": "UPLOAD_EVENTS_QUEUE_URL",
    "UploadEventsQueueName": "UPLOAD_EVENTS_QUEUE_NAME",
}


LOCAL_STAGE = "local"


class ConfigurationError(RuntimeError):
    """The settings cannot run safely; the message says what to set."""


def _stage(env: Mapping[str, str]) -> str:
    """STAGE when set (the Chalice stages set it); else a Lambda function (AWS sets
    AWS_LAMBDA_FUNCTION_NAME) is a deployed stage, and anything else is a local run."""
    return env.get("STAGE") or ("deployed" if env.get("AWS_LAMBDA_FUNCTION_NAME") else LOCAL_STAGE)


def _bool(value: str | None, default: bool = False) -> bool:
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _int(value: str | None, default: int | None) -> int | None:
    if value is None or value.strip() == "":
        return default
    return int(value)


def _float(value: str | None, default: float) -> float:
    if value is None or value.strip() == "":
        return default
    return float(value)


def _str(value: str | None) -> str | None:
    return value if value else None


@dataclass(frozen=True)
class Settings:
    """Typed view of the environment. See the configuration table in the README."""

    # Storage and queues. No QUEUE_URL means "no queue configured": the job endpoints verify
    # in the request (sync mode), as the original did without Redis. QUEUE_URL is the verify
    # jobs' queue; proofs have their own (PROOF_QUEUE_URL), read at a capped concurrency, so a
    # backlog of proofs never holds verify jobs back. Without PROOF_QUEUE_URL proofs share QUEUE_URL.
    database_url: str | None = None
    upload_bucket: str | None = None
    uploads_prefix: str = "uploads/"  # presigned uploads: the bucket notifies their arrival
    inline_prefix: str = "inline/"  # files sent through the API: their jobs are queued at once
    queue_url: str | None = None
    dead_letter_queue_url: str | None = None
    queue_name: str = "internetid-verification"
    dead_letter_queue_name: str = "internetid-verification-dlq"
    proof_queue_url: str | None = None
    proof_dead_letter_queue_url: str | None = None
    proof_queue_name: str = "internetid-verification-proof"
    proof_max_concurrency: int = 2  # the proof worker's MaximumConcurrency (Lambda's minimum is 2)
    # Jobs whose file is over LARGE_FILE_BYTES (verify or proof) go to the large-file lane, read by a
    # worker with a 15-minute limit; without LARGE_QUEUE_URL they stay on their type's queue.
    large_queue_url: str | None = None
    large_dead_letter_queue_url: str | None = None
    large_queue_name: str = "internetid-verification-large"
    # The large-file worker's MaximumConcurrency: each of its jobs holds a database connection and
    # 1,769 MB for up to 15 minutes, so a burst of big uploads must not take the account's capacity.
    large_max_concurrency: int = 4
    large_file_bytes: int = 512 * MIB
    upload_events_queue_url: str | None = None
    upload_events_queue_name: str = "internetid-verification-upload-events"
    database_pool_max: int = 4

    # Chain and manifests.
    rpc_url: str | None = None
    ipfs_gateway: str = "https://ipfs.io"  # one gateway, or several separated by commas
    allow_private_networks: bool = False
    registry_start_block: int | None = None
    log_scan_lookback_blocks: int = 1_000_000
    log_scan_block_range: int = 10_000
    http_timeout_seconds: float = 10.0  # wall-clock limit of each outbound call, headers and body included
    manifest_max_bytes: int = MIB
    rpc_call_budget: int = 150  # JSON-RPC calls one verification may make, whatever the node answers
    rpc_max_response_bytes: int = 4 * MIB  # per JSON-RPC answer, counted after decompression
    result_cache_seconds: float = 60.0  # reuse a completed result this long; 0 turns the cache off

    # API. Any stage but `local` refuses to start without API_KEY (see `check_deployable`).
    stage: str = LOCAL_STAGE
    api_key: str | None = None
    max_inline_upload_bytes: int = 4 * MIB
    max_upload_bytes: int = GIB
    upload_url_expiry_seconds: int = 900
    # Multipart uploads (S3 multipart, a presigned PUT per part) for files over the threshold, up
    # to MAX_MULTIPART_UPLOAD_BYTES; their part URLs live longer, since a 20 GiB upload takes a while.
    multipart_threshold_bytes: int = GIB
    max_multipart_upload_bytes: int = 20 * GIB
    multipart_part_size_bytes: int = 64 * MIB
    multipart_url_expiry_seconds: int = 6 * 3600
    # The worker reads an upload with this many ranged GETs of this size in flight (memory: their
    # product); 1 is one streamed GET, the fastest on moto, which copies the whole object per range.
    read_range_bytes: int = 8 * MIB
    read_parallel_ranges: int = 1
    rate_limit_per_minute: int = 100  # requests per client IP and minute; 0 turns the limit off

    # Retries and retention.
    max_retry_attempts: int = 3
    retry_base_seconds: float = 5.0
    # A running job holds a lease this long, renewed (with its message's visibility) every third
    # of it, so a second delivery does not run it twice; a dead worker's lease runs out.
    lease_seconds: float = 60.0
    # The work queues' functions take up to WORKER_BATCH_SIZE messages per invocation (1 to 10,
    # SQS's most per receive), waiting at most WORKER_BATCHING_WINDOW_SECONDS to fill a batch; the
    # jobs of a batch run side by side, on as many threads as the batch has jobs.
    worker_batch_size: int = 10
    worker_batching_window_seconds: int = 1
    # The proof worker's MaximumConcurrency caps invocations, not jobs: with batches of ten, a cap
    # of 2 would let 20 proofs run at once. So proofs come one per invocation unless asked.
    proof_batch_size: int = 1
    redrive_batch_messages: int = 100  # dead-letter messages one redrive request moves at most
    stuck_queued_seconds: int = 300
    completed_retention_days: float = 7.0
    failed_retention_days: float = 30.0

    @property
    def queue_configured(self) -> bool:
        return bool(self.queue_url)

    @property
    def ipfs_gateways(self) -> tuple[str, ...]:
        """IPFS_GATEWAY as a list, in the order they are tried, without trailing slashes."""
        listed = tuple(g.strip().rstrip("/") for g in self.ipfs_gateway.split(",") if g.strip())
        return listed or (Settings.ipfs_gateway,)


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from a mapping (the process environment by default)."""
    env = os.environ if environ is None else environ
    d = Settings()
    return Settings(
        database_url=_str(env.get("DATABASE_URL")),
        upload_bucket=_str(env.get("UPLOAD_BUCKET")),
        uploads_prefix=env.get("UPLOADS_PREFIX") or d.uploads_prefix,
        inline_prefix=env.get("INLINE_PREFIX") or d.inline_prefix,
        queue_url=_str(env.get("QUEUE_URL")),
        dead_letter_queue_url=_str(env.get("DEAD_LETTER_QUEUE_URL")),
        queue_name=env.get("QUEUE_NAME") or d.queue_name,
        dead_letter_queue_name=env.get("DEAD_LETTER_QUEUE_NAME") or d.dead_letter_queue_name,
        proof_queue_url=_str(env.get("PROOF_QUEUE_URL")),
        proof_dead_letter_queue_url=_str(env.get("PROOF_DEAD_LETTER_QUEUE_URL")),
        proof_queue_name=env.get("PROOF_QUEUE_NAME") or d.proof_queue_name,
        proof_max_concurrency=_int(env.get("PROOF_MAX_CONCURRENCY"), d.proof_max_concurrency),
        large_queue_url=_str(env.get("LARGE_QUEUE_URL")),
        large_dead_letter_queue_url=_str(env.get("LARGE_DEAD_LETTER_QUEUE_URL")),
        large_queue_name=env.get("LARGE_QUEUE_NAME") or d.large_queue_name,
        large_max_concurrency=_int(env.get("LARGE_MAX_CONCURRENCY"), d.large_max_concurrency),
        large_file_bytes=_int(env.get("LARGE_FILE_BYTES"), d.large_file_bytes),
        upload_events_queue_url=_str(env.get("UPLOAD_EVENTS_QUEUE_URL")),
        upload_events_queue_name=env.get("UPLOAD_EVENTS_QUEUE_NAME") or d.upload_events_queue_name,
        database_pool_max=_int(env.get("DATABASE_POOL_MAX"), d.database_pool_max),
        rpc_url=_str(env.get("RPC_URL")),
        ipfs_gateway=env.get("IPFS_GATEWAY") or d.ipfs_gateway,
        allow_private_networks=_bool(env.get("ALLOW_PRIVATE_NETWORKS")),
        registry_start_block=_int(env.get("REGISTRY_START_BLOCK"), None),
        log_scan_lookback_blocks=_int(env.get("LOG_SCAN_LOOKBACK_BLOCKS"), d.log_scan_lookback_blocks),
        log_scan_block_range=_int(env.get("LOG_SCAN_BLOCK_RANGE"), d.log_scan_block_range),
        http_timeout_seconds=_float(env.get("HTTP_TIMEOUT_SECONDS"), d.http_timeout_seconds),
        rpc_call_budget=_int(env.get("RPC_CALL_BUDGET"), d.rpc_call_budget),
        rpc_max_response_bytes=_int(env.get("RPC_MAX_RESPONSE_BYTES"), d.rpc_max_response_bytes),
        result_cache_seconds=_float(env.get("RESULT_CACHE_SECONDS"), d.result_cache_seconds),
        stage=_stage(env),
        api_key=_str(env.get("API_KEY")),
        max_inline_upload_bytes=_int(env.get("MAX_INLINE_UPLOAD_BYTES"), d.max_inline_upload_bytes),
        max_upload_bytes=_int(env.get("MAX_UPLOAD_BYTES"), d.max_upload_bytes),
        upload_url_expiry_seconds=_int(env.get("UPLOAD_URL_EXPIRY_SECONDS"), d.upload_url_expiry_seconds),
        multipart_threshold_bytes=_int(env.get("MULTIPART_THRESHOLD_BYTES"), d.multipart_threshold_bytes),
        max_multipart_upload_bytes=_int(env.get("MAX_MULTIPART_UPLOAD_BYTES"), d.max_multipart_upload_bytes),
        multipart_part_size_bytes=_int(env.get("MULTIPART_PART_SIZE_BYTES"), d.multipart_part_size_bytes),
        multipart_url_expiry_seconds=_int(env.get("MULTIPART_URL_EXPIRY_SECONDS"), d.multipart_url_expiry_seconds),
        read_range_bytes=_int(env.get("READ_RANGE_BYTES"), d.read_range_bytes),
        read_parallel_ranges=_int(env.get("READ_PARALLEL_RANGES"), d.read_parallel_ranges),
        rate_limit_per_minute=_int(env.get("RATE_LIMIT_PER_MINUTE"), d.rate_limit_per_minute),
        max_retry_attempts=_int(env.get("MAX_RETRY_ATTEMPTS"), d.max_retry_attempts),
        retry_base_seconds=_float(env.get("RETRY_BASE_SECONDS"), d.retry_base_seconds),
        lease_seconds=_float(env.get("LEASE_SECONDS"), d.lease_seconds),
        worker_batch_size=min(max(_int(env.get("WORKER_BATCH_SIZE"), d.worker_batch_size), 1), 10),
        proof_batch_size=min(max(_int(env.get("PROOF_BATCH_SIZE"), d.proof_batch_size), 1), 10),
        worker_batching_window_seconds=max(_int(env.get("WORKER_BATCHING_WINDOW_SECONDS"),
                                                d.worker_batching_window_seconds), 0),
        redrive_batch_messages=_int(env.get("REDRIVE_BATCH_MESSAGES"), d.redrive_batch_messages),
        stuck_queued_seconds=_int(env.get("STUCK_QUEUED_SECONDS"), d.stuck_queued_seconds),
        completed_retention_days=_float(env.get("COMPLETED_RETENTION_DAYS"), d.completed_retention_days),
        failed_retention_days=_float(env.get("FAILED_RETENTION_DAYS"), d.failed_retention_days),
    )


def check_deployable(config: Settings) -> Settings:
    """Fail closed: a deployed stage without API_KEY would leave the job listing, retry and
    redrive open to anyone, so it does not start."""
    if config.stage != LOCAL_STAGE and not config.api_key:
        raise ConfigurationError(
            f"API_KEY is not set, and stage {config.stage!r} is not 'local': a deployed stage does not "
            "start without it. Set API_KEY in the stage's environment_variables (.chalice/config.json) "
            "or the function's environment; set STAGE=local only for a local run."
        )
    return config


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The process-wide settings, read once (a Lambda container keeps them for its life) and
    checked before the first request or event is served (app.py reads them at import)."""
    return check_deployable(load_settings())
