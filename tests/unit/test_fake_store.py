"""The unit tests' fake job store keeps the real store's rules (tests/store_contract.py, which
tests/integration/test_jobs_db.py runs on PostgreSQL)."""
import pytest

from tests.store_contract import CHECKS
from tests.unit.fakes import FakeStore


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_fake_store_keeps_the_contract(check):
    check(FakeStore())
