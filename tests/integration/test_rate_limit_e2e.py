"""The rate limit through real HTTP: `chalice local` processes with RATE_LIMIT_PER_MINUTE set
(the suite's own stack leaves it off, as `make up` does), counting in the stack's Postgres.
Every local client is 127.0.0.1, so each test starts from an empty count. A window may end
while a test sends its requests; the `RateLimit-Remaining` header says where each answer
stands, so the checks follow the windows instead of the clock."""
from __future__ import annotations

import os

import pytest

from tests.integration.conftest import API_KEY, assert_error, extra_api, form

pytestmark = pytest.mark.emulator_neutral  # the limiter counts in the database

STATS = "/api/verification-jobs/stats"


@pytest.fixture
def no_counts(db):
    db.execute("DELETE FROM rate_limit_windows")


def until_refused(api, limit: int, method: str = "GET", path: str = STATS, **kwargs):
    """Send requests until one is refused; returns (the answers accepted in the refused
    request's window, the refused answer)."""
    in_window = []
    for _ in range(3 * limit + 1):
        response = api.request(method, path, **kwargs)
        if response.status_code == 429:
            return in_window, response
        assert response.status_code in (200, 202), response.text
        if int(response.headers["RateLimit-Remaining"]) == limit - 1:
            in_window = []  # the first request of a window
        in_window.append(response)
    raise AssertionError(f"no request refused after {3 * limit + 1}")


def test_the_101st_request_in_a_minute_is_429_by_default_and_the_key_holder_is_not_counted(stack, tmp_path, no_counts):
    with extra_api(stack, {"RATE_LIMIT_PER_MINUTE": None}, tmp_path) as limited:  # the default applies
        accepted, refused = until_refused(limited, 100)
        assert len(accepted) == 100
        assert [r.headers["RateLimit-Remaining"] for r in accepted[-2:]] == ["1", "0"]
        assert accepted[0].headers["RateLimit-Limit"] == "100"
        assert_error(refused, 429, "RATE_LIMITED")
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        with_key = limited.get(STATS, headers={"x-api-key": API_KEY})
        assert with_key.status_code == 200 and "RateLimit-Limit" not in with_key.headers
        assert limited.get("/api/health").status_code == 200
        assert limited.get("/api/openapi.json").status_code == 200


def test_every_counted_route_shares_the_budget_and_a_refused_submission_records_nothing(
        stack, api, tmp_path, db, no_counts):
    fields = {"registryAddress": stack.endpoints["registry_address"],
              "manifestURI": "ipfs://bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi/m.json"}
    with extra_api(stack, {"RATE_LIMIT_PER_MINUTE": "5"}, tmp_path) as limited:
        accepted, refused = until_refused(limited, 5, "POST", "/api/verification-jobs/verify",
                                          **form(fields, os.urandom(64)))
        assert len(accepted) == 5 and refused.headers["Retry-After"]
        jobs_before = db.execute("SELECT count(*) FROM verification_jobs").fetchone()[0]
        assert_error(limited.post("/api/verification-jobs/verify", **form(fields, os.urandom(64))), 429, "RATE_LIMITED")
        assert_error(limited.get(STATS), 429, "RATE_LIMITED")
        assert db.execute("SELECT count(*) FROM verification_jobs").fetchone()[0] == jobs_before
    # The suite's own stack runs without RATE_LIMIT_PER_MINUTE, as `make up` does: nothing counted.
    assert "RateLimit-Limit" not in api.get(STATS).headers
