"""The one vocabulary: the schema's CHECK constraints, the error classes and the modules of
chalicelib all take their words from chalicelib.vocabulary (no network, no services)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from chalicelib import vocabulary
from chalicelib.errors import ApiError, PermanentError, TransientError

CHALICELIB = Path(vocabulary.__file__).resolve().parent
MIGRATIONS = CHALICELIB / "db" / "migrations"


def _check_values(table: str, column: str) -> set[str]:
    """The values of `column IN (...)` in the CHECK of `table`: the CREATE TABLE migration's, or
    the last migration's that replaced it (ALTER TABLE … ADD CONSTRAINT … CHECK)."""
    sql = "\n".join(p.read_text(encoding="utf-8") for p in sorted(MIGRATIONS.glob("*.sql")))
    create = re.search(rf"CREATE TABLE {table} \((.*?)\n\);", sql, re.S).group(1)
    found = re.findall(rf"^\s*{column}\s.*CHECK \({column} IN \(([^)]*)\)\)", create, re.M)
    found += re.findall(rf"ALTER TABLE {table} ADD CONSTRAINT \w+\s+CHECK \({column} IN \(([^)]*)\)\)", sql)
    return set(re.findall(r"'([^']+)'", found[-1]))


def test_migrations_check_exactly_the_vocabulary():
    assert _check_values("verification_jobs", "status") == set(vocabulary.JOB_STATUSES)
    assert _check_values("verification_jobs", "type") == set(vocabulary.JOB_TYPES)
    assert _check_values("verifications", "status") == set(vocabulary.VERDICTS)


def test_sql_lists_take_only_vocabulary_words():
    assert vocabulary.sql_list(vocabulary.QUEUED, vocabulary.PROCESSING) == "('queued', 'processing')"
    with pytest.raises(ValueError):
        vocabulary.sql_list("queued'); DROP TABLE verification_jobs; --")


def test_error_classes_refuse_codes_outside_the_vocabulary_or_of_the_other_kind():
    assert TransientError("x", vocabulary.RPC_UNAVAILABLE).permanent is False
    assert PermanentError("x", vocabulary.MANIFEST_INVALID).permanent is True
    with pytest.raises(ValueError):
        PermanentError("x", vocabulary.RPC_UNAVAILABLE)  # a transient code
    with pytest.raises(ValueError):
        TransientError("x", "NOT_A_CODE")


def test_api_errors_take_their_status_from_the_code():
    assert ApiError(vocabulary.UNAUTHORIZED, "no").status == 401
    assert ApiError(vocabulary.PAYLOAD_TOO_LARGE, "big", "file").body() == \
        {"error": "big", "code": "PAYLOAD_TOO_LARGE", "field": "file"}


def test_codes_are_named_as_they_are_spelled_and_answer_as_their_kind():
    for name, code in vocabulary.ERROR_CODES.items():
        assert code.name == name == getattr(vocabulary, name)
        if code.verification:
            assert code.status == vocabulary.FAILED_VERIFICATION_STATUS[code.permanent]
        if code.status == 503:
            assert not code.permanent  # "try again shortly"


_WRITTEN_ONCE = [vocabulary.ADDRESS_PATTERN, vocabulary.HASH_PATTERN, vocabulary.SIGNATURE_PATTERN,
                 *[f"'{word}'" for word in (*vocabulary.JOB_STATUSES, *vocabulary.JOB_TYPES)],
                 *[f'"{code}"' for code in vocabulary.ERROR_CODES]]


@pytest.mark.parametrize("path", sorted(p for p in CHALICELIB.rglob("*.py") if p.name != "vocabulary.py"),
                         ids=lambda p: str(p.relative_to(CHALICELIB)))
def test_no_module_spells_the_vocabulary_again(path):
    source = path.read_text(encoding="utf-8")
    assert [word for word in _WRITTEN_ONCE if word in source] == []
