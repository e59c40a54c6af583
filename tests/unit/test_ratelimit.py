"""The rate limit's rules through Chalice's test client (every client is 127.0.0.1 there): who
is counted, the 429 and its headers, the exemptions, and a database that cannot count."""
from __future__ import annotations

import dataclasses
import json

import pytest
from chalice.test import Client

import app
from chalicelib.api.ratelimit import counted

from tests.unit.conftest import API_KEY, make_settings

STATS = "/api/verification-jobs/stats"


@pytest.fixture()
def limited_to(monkeypatch, services):
    """Serve app.py with RATE_LIMIT_PER_MINUTE set to `limit` (None: the default); returns the
    test client."""
    def serve(limit: int | None):
        settings = services.settings if limit is None else \
            dataclasses.replace(services.settings, rate_limit_per_minute=limit)
        chosen = dataclasses.replace(services, settings=settings)
        monkeypatch.setattr(app, "services", lambda: chosen)
        return Client(app.app).http
    return serve


def test_the_request_after_the_budget_is_429_with_retry_after(limited_to, store):
    http = limited_to(5)
    answers = [http.get(STATS) for _ in range(6)]
    assert [a.status_code for a in answers] == [200] * 5 + [429]
    assert [a.headers["RateLimit-Remaining"] for a in answers] == ["4", "3", "2", "1", "0", "0"]
    refused = answers[-1]
    body = json.loads(refused.body)
    assert set(body) == {"error", "code"} and body["code"] == "RATE_LIMITED"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["Retry-After"] == refused.headers["RateLimit-Reset"]
    assert list(store.windows.values()) == [6]  # one client, one window: 127.0.0.1


def test_key_holders_health_and_the_document_are_not_counted(limited_to, store):
    http = limited_to(1)
    assert http.get(STATS).status_code == 200
    assert http.get(STATS).status_code == 429
    assert http.get(STATS, headers={"x-api-key": API_KEY}).status_code == 200
    assert http.get(STATS, headers={"x-api-key": "wrong"}).status_code == 429
    assert http.get("/api/health").status_code == 200
    assert http.get("/api/openapi.json").status_code == 200
    assert list(store.windows.values()) == [3]  # the two anonymous stats requests and the wrong key's


def test_default_is_100_and_0_turns_it_off(limited_to, store, aws):
    assert make_settings(aws).rate_limit_per_minute == 100
    http = limited_to(None)
    assert http.get(STATS).headers["RateLimit-Limit"] == "100"
    http = limited_to(0)
    assert "RateLimit-Limit" not in http.get(STATS).headers
    assert list(store.windows.values()) == [1]


def test_a_database_that_cannot_count_lets_the_request_through(limited_to, store, monkeypatch):
    http = limited_to(1)
    store.down = True  # the route itself then answers its own 503
    response = http.get("/api/verification-jobs/3f1c4a52-0000-4000-8000-000000000000")
    assert (response.status_code, json.loads(response.body)["code"]) == (503, "DATABASE_UNAVAILABLE")
    store.down = False
    assert http.get("/api/health").status_code == 200


def test_a_limiter_that_fails_otherwise_lets_the_request_through(limited_to, store, monkeypatch):
    def missing_table(client):
        raise RuntimeError('relation "rate_limit_windows" does not exist')
    monkeypatch.setattr(store, "count_request", missing_table)
    http = limited_to(1)
    assert [http.get(STATS).status_code for _ in range(3)] == [200, 200, 200]


def test_sweep_deletes_ended_windows(store, services):
    from datetime import timedelta

    from chalicelib import housekeeping
    store.count_request("192.0.2.1")
    [(client, start)] = store.windows
    store.windows[(client, start - timedelta(minutes=1))] = 7
    housekeeping.sweep(services)
    assert store.windows == {(client, start): 1}


@pytest.mark.parametrize("path, expected", [
    ("/api/verification-jobs", True), ("/api/verification-jobs/{job_id}/cancel", True), ("/api/verify", True),
    ("/api/proof", True), ("/api/health", False), ("/api/openapi.json", False), ("/console", False),
    ("/api/verifyx", False),
])
def test_which_routes_count(path, expected):
    assert counted(path) is expected
