"""The CLI's memory of interrupted multipart uploads: which job an unchanged file resumes."""
from __future__ import annotations

import os

from internetid_cli.multipart import Fingerprint, ResumeState, part_length

API = "http://127.0.0.1:8000"


def test_an_unchanged_file_resumes_its_job_and_a_changed_one_does_not(tmp_path):
    file = tmp_path / "master.mov"
    file.write_bytes(b"a" * 3000)
    state = ResumeState(tmp_path / "state" / "uploads.json")
    remembered = Fingerprint.of(file)
    state.remember(API, file, remembered, "job-1")
    assert state.job_for(API, file, Fingerprint.of(file)) == "job-1"
    assert state.job_for("http://elsewhere", file, Fingerprint.of(file)) is None  # another API

    file.write_bytes(b"b" + b"a" * 2999)  # same size: the head hash tells
    os.utime(file, ns=(remembered.mtime_ns, remembered.mtime_ns))
    assert state.job_for(API, file, Fingerprint.of(file)) is None
    file.write_bytes(b"a" * 3000)  # the same bytes again, touched later: the time tells
    os.utime(file, ns=(remembered.mtime_ns, remembered.mtime_ns + 1))
    assert state.job_for(API, file, Fingerprint.of(file)) is None
    os.utime(file, ns=(remembered.mtime_ns, remembered.mtime_ns))
    assert state.job_for(API, file, Fingerprint.of(file)) == "job-1"

    state.forget(API, file)
    assert state.job_for(API, file, Fingerprint.of(file)) is None


def test_an_unreadable_state_file_is_an_empty_state(tmp_path):
    path = tmp_path / "uploads.json"
    path.write_text("not json")
    file = tmp_path / "f"
    file.write_bytes(b"x")
    assert ResumeState(path).job_for(API, file, Fingerprint.of(file)) is None
    assert ResumeState(None).job_for(API, file, Fingerprint.of(file)) is None


def test_every_part_but_the_last_is_whole():
    assert [part_length(n, 25, 10) for n in (1, 2, 3)] == [10, 10, 5]
