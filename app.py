"""HTTP routes and event handlers of the verification queue, as in the Chalice samples: each
one hands its request or event to one function of `chalicelib`, with the process's services."""
from __future__ import annotations

from typing import Any, Callable

from chalice import Chalice, Response
from chalice.app import Request, SQSEvent

from chalicelib import batches, console, housekeeping
from chalicelib.api import endpoints, multipart, ratelimit
from chalicelib.config import settings
from chalicelib.vocabulary import PROOF, VERIFY
from chalicelib.wiring import services

app = Chalice(app_name="internetid-verification")
app.api.binary_types.append("multipart/form-data")

# Content types are checked in chalicelib.api.forms, so that a wrong one gets the contract's
# JSON 415 rather than Chalice's own error shape.
ANY_CONTENT_TYPE = ["*/*"]


@app.middleware("http")
def rate_limit(request: Request, get_response: Callable[[Request], Response]) -> Response:
    """Every route passes the rate limiter, which decides which ones count."""
    return ratelimit.limited(services(), request, get_response)


# --- verification jobs -------------------------------------------------------------------

@app.route("/api/verification-jobs/verify", methods=["POST"], content_types=ANY_CONTENT_TYPE)
def submit_verify_job() -> Response:
    return endpoints.submit_job(services(), app.current_request, VERIFY)


@app.route("/api/verification-jobs/proof", methods=["POST"], content_types=ANY_CONTENT_TYPE)
def submit_proof_job() -> Response:
    return endpoints.submit_job(services(), app.current_request, PROOF)


@app.route("/api/verification-jobs/uploads", methods=["POST"], content_types=ANY_CONTENT_TYPE)
def create_upload() -> Response:
    return endpoints.create_upload(services(), app.current_request)


@app.route("/api/verification-jobs/stats", methods=["GET"])
def job_stats() -> Response:
    return endpoints.stats(services())


@app.route("/api/verification-jobs/activity", methods=["GET"])
def job_activity() -> Response:
    return endpoints.activity(services(), app.current_request)


@app.route("/api/verification-jobs", methods=["GET"])
def list_jobs() -> Response:
    return endpoints.list_jobs(services(), app.current_request)


@app.route("/api/verification-jobs/{job_id}", methods=["GET"])
def get_job(job_id: str) -> Response:
    return endpoints.get_job(services(), job_id)


@app.route("/api/verification-jobs/{job_id}/upload", methods=["GET"])
def upload_status(job_id: str) -> Response:
    return multipart.upload_status(services(), job_id)


@app.route("/api/verification-jobs/{job_id}/upload/complete", methods=["POST"], content_types=ANY_CONTENT_TYPE)
def complete_upload(job_id: str) -> Response:
    return multipart.complete_upload(services(), app.current_request, job_id)


@app.route("/api/verification-jobs/{job_id}/retry", methods=["POST"])
def retry_job(job_id: str) -> Response:
    return endpoints.retry_job(services(), app.current_request, job_id)


@app.route("/api/verification-jobs/{job_id}/cancel", methods=["POST"])
def cancel_job(job_id: str) -> Response:
    return endpoints.cancel_job(services(), job_id)


@app.route("/api/verification-jobs/dead-letter/redrive", methods=["POST"])
def redrive_dead_letters() -> Response:
    return endpoints.redrive(services(), app.current_request)


# --- synchronous endpoints, kept for existing clients -----------------------------------

@app.route("/api/verify", methods=["POST"], content_types=ANY_CONTENT_TYPE)
def verify_sync() -> Response:
    return endpoints.verify_sync(services(), app.current_request, VERIFY)


@app.route("/api/proof", methods=["POST"], content_types=ANY_CONTENT_TYPE)
def proof_sync() -> Response:
    return endpoints.verify_sync(services(), app.current_request, PROOF)


@app.route("/api/health", methods=["GET"])
def health_check() -> Response:
    return endpoints.health(services())


@app.route("/api/openapi.json", methods=["GET"])
def openapi_document() -> Response:
    return endpoints.openapi_document()


# --- the operator console: static files; the page itself uses the JSON API above ---------

@app.route("/console", methods=["GET"])
def console_page() -> Response:
    return console.page()


@app.route("/console/{asset}", methods=["GET"])
def console_asset(asset: str) -> Response:
    return console.asset(asset)


# --- event handlers ----------------------------------------------------------------------

@app.on_sqs_message(queue=settings().queue_name, batch_size=settings().worker_batch_size,
                    maximum_batching_window_in_seconds=settings().worker_batching_window_seconds)
def process_verification_job(event: SQSEvent) -> None:
    """The verify worker: a batch of jobs, one per message. It deletes the messages whose jobs are
    done itself and raises for the rest, which SQS redelivers (Chalice cannot report batch items)."""
    batches.process_event(services(), event.to_dict())


@app.on_sqs_message(queue=settings().proof_queue_name, batch_size=settings().proof_batch_size,
                    maximum_batching_window_in_seconds=settings().worker_batching_window_seconds,
                    maximum_concurrency=settings().proof_max_concurrency)
def process_proof_job(event: SQSEvent) -> None:
    """The proof worker, on a queue of its own with a capped concurrency, so that a backlog of
    proofs cannot take the capacity verify jobs need (one proof per invocation by default, so that
    the cap counts proofs; batches are handled as the verify worker's)."""
    batches.process_event(services(), event.to_dict())


@app.on_sqs_message(queue=settings().large_queue_name, batch_size=1,
                    maximum_concurrency=settings().large_max_concurrency)
def process_large_job(event: SQSEvent) -> None:
    """The worker for files over LARGE_FILE_BYTES (either job type): the same code as the others,
    with Lambda's 15-minute limit and more memory (so more CPU and network) in .chalice/config.json,
    so that a 20 GiB upload can be hashed before the function times out; capped, so that a burst of
    large files waits on its queue rather than taking the account's concurrency."""
    batches.process_event(services(), event.to_dict())


@app.on_sqs_message(queue=settings().upload_events_queue_name, batch_size=10)
def upload_arrived(event: SQSEvent) -> None:
    """A presigned upload landed: queue its job. The bucket notifies this queue (see
    infra/template.yaml) rather than the function, so events survive a handler outage."""
    housekeeping.uploads_arrived(services(), event.to_dict())


@app.schedule("rate(1 minute)")
def sweep(event: Any) -> None:
    """Re-send stuck jobs, expire uploads that never came, delete old objects and jobs."""
    housekeeping.sweep(services())


@app.schedule("rate(1 minute)")
def reconcile_dead_letters(event: Any) -> None:
    """Fail the jobs whose messages reached the dead-letter queue without a recorded failure."""
    housekeeping.reconcile_dead_letters(services())
