"""HTTP routes and event handlers of the verification queue. Each one parses its input, calls
one function of `chalicelib`, and shapes the answer; the work lives in `chalicelib`."""
from __future__ import annotations

import json
from functools import wraps
from pathlib import Path
from typing import Any, Callable

from chalice import Chalice, Response
from chalice.app import SQSEvent

from chalicelib import auth, forms, health, pipeline, service, sweeper
from chalicelib.config import settings
from chalicelib.errors import ApiError, JobError
from chalicelib.telemetry import logger

app = Chalice(app_name="internetid-verification")
app.api.binary_types.append("multipart/form-data")

OPENAPI_PATH = Path(__file__).parent / "chalicelib" / "openapi.json"
JSON = {"Content-Type": "application/json"}
# Content types are checked in chalicelib.forms, so that a wrong one gets the contract's JSON 415
# rather than Chalice's own error shape.
ANY_CONTENT_TYPE = ["*/*"]


def api_errors(handler: Callable[..., Response]) -> Callable[..., Response]:
    """Answer errors in the contract's JSON: a client mistake is a 4xx, a dependency that is
    down (database, storage, queue) a 503 that says to try again, and a bug a logged 500."""
    @wraps(handler)
    def wrapped(*args: Any, **kwargs: Any) -> Response:
        try:
            return handler(*args, **kwargs)
        except ApiError as exc:
            return Response(exc.body(), status_code=exc.status, headers=JSON)
        except JobError as exc:
            logger.warning("dependency failure in a request", extra={"code": exc.code, "error": exc.message})
            body = {"error": f"{exc.message}; try again shortly", "code": exc.code}
            return Response(body, status_code=503, headers={**JSON, "Retry-After": "5"})
        except Exception:
            logger.exception("unhandled error in a request")
            body = {"error": "internal error; it has been logged", "code": "INTERNAL_ERROR"}
            return Response(body, status_code=500, headers=JSON)
    return wrapped


def _request() -> tuple[dict[str, str], bytes]:
    request = app.current_request
    return request.headers, request.raw_body


# --- verification jobs -------------------------------------------------------------------

@app.route("/api/verification-jobs/verify", methods=["POST"], content_types=ANY_CONTENT_TYPE)
@api_errors
def submit_verify_job() -> Response:
    return _submit("verify")


@app.route("/api/verification-jobs/proof", methods=["POST"], content_types=ANY_CONTENT_TYPE)
@api_errors
def submit_proof_job() -> Response:
    return _submit("proof")


def _submit(job_type: str) -> Response:
    submission = forms.parse_submission(settings(), *_request())
    status, body = service.submit_job(settings(), job_type, submission)
    headers = {**JSON, "Location": body["pollUrl"]} if status == 202 else JSON
    return Response(body, status_code=status, headers=headers)


@app.route("/api/verification-jobs/uploads", methods=["POST"], content_types=ANY_CONTENT_TYPE)
@api_errors
def create_upload() -> Response:
    request = forms.parse_upload_request(settings(), app.current_request.raw_body)
    body = service.create_upload(settings(), request)
    return Response(body, status_code=201, headers={**JSON, "Location": body["pollUrl"]})


@app.route("/api/verification-jobs/stats", methods=["GET"])
@api_errors
def job_stats() -> Response:
    return Response(service.stats(settings()), headers=JSON)


@app.route("/api/verification-jobs", methods=["GET"])
@api_errors
def list_jobs() -> Response:
    auth.require_api_key(settings(), app.current_request.headers)
    query = forms.parse_list_query(app.current_request.query_params)
    return Response(service.list_jobs(query), headers=JSON)


@app.route("/api/verification-jobs/{job_id}", methods=["GET"])
@api_errors
def get_job(job_id: str) -> Response:
    job = service.get_job(job_id)
    if job is None:
        return Response({"error": "Job not found", "code": "NOT_FOUND"}, status_code=404, headers=JSON)
    return Response(job, headers=JSON)


@app.route("/api/verification-jobs/{job_id}/retry", methods=["POST"])
@api_errors
def retry_job(job_id: str) -> Response:
    auth.require_api_key(settings(), app.current_request.headers)
    body = service.retry_job(settings(), job_id)
    return Response(body, status_code=202, headers={**JSON, "Location": body["pollUrl"]})


@app.route("/api/verification-jobs/dead-letter/redrive", methods=["POST"])
@api_errors
def redrive_dead_letters() -> Response:
    auth.require_api_key(settings(), app.current_request.headers)
    return Response(service.redrive(settings()), headers=JSON)


# --- synchronous endpoints, kept for existing clients -----------------------------------

@app.route("/api/verify", methods=["POST"], content_types=ANY_CONTENT_TYPE)
@api_errors
def verify_sync() -> Response:
    submission = forms.parse_submission(settings(), *_request(), allow_hash=False)
    return Response(service.verify_now(settings(), "verify", submission), headers=JSON)


@app.route("/api/proof", methods=["POST"], content_types=ANY_CONTENT_TYPE)
@api_errors
def proof_sync() -> Response:
    submission = forms.parse_submission(settings(), *_request(), allow_hash=False)
    return Response(service.verify_now(settings(), "proof", submission), headers=JSON)


@app.route("/api/health", methods=["GET"])
@api_errors
def health_check() -> Response:
    body = health.check(settings())
    return Response(body, status_code=200 if body["status"] == "ok" else 503, headers=JSON)


@app.route("/api/openapi.json", methods=["GET"])
@api_errors
def openapi_document() -> Response:
    return Response(json.loads(OPENAPI_PATH.read_text()), headers=JSON)


# --- event handlers ----------------------------------------------------------------------

@app.on_sqs_message(queue=settings().queue_name, batch_size=1)
def process_verification_job(event: SQSEvent) -> None:
    """The worker: one job per message; raising leaves the message for SQS to redeliver."""
    for record in event:
        delivery = pipeline.delivery_from_record(record.to_dict())
        if delivery is None:
            logger.warning("dropping a message that is not a job", extra={"body": record.body[:200]})
            continue
        pipeline.run_job(settings(), delivery)


@app.on_sqs_message(queue=settings().upload_events_queue_name, batch_size=10)
def upload_arrived(event: SQSEvent) -> None:
    """A presigned upload landed: queue its job. The bucket notifies this queue (see
    infra/template.yaml) rather than the function, so events survive a handler outage."""
    for record in event:
        for key, size in pipeline.objects_from_s3_notification(record.body):
            sweeper.upload_arrived(settings(), key, size)


@app.schedule("rate(1 minute)")
def sweep(event: Any) -> None:
    """Re-send stuck jobs, expire uploads that never came, delete old objects and jobs."""
    sweeper.sweep(settings())


@app.schedule("rate(1 minute)")
def reconcile_dead_letters(event: Any) -> None:
    """Fail the jobs whose messages reached the dead-letter queue without a recorded failure."""
    pipeline.reconcile_dead_letters(settings())
