"""worker.child_process: the outcome ladder every one-shot child reports through, its main, and the parent's watch loop
(real subprocesses; no database needed)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from worker.child_process import Check, child_main, lease_check, run_to_outcome, watch
from worker.outcome import EXIT_FAILED, EXIT_LEASE_LOST, EXIT_OK, read_outcome


class Refused(Exception):
    pass


class Lost(Exception):
    pass


def ladder(tmp_path, work):
    outcome = tmp_path / "outcome.json"
    code = run_to_outcome(outcome, work, failed=Refused, lease_lost=(Lost,), what="The thing", log_name="thing log",
                          out_of_memory="Out of memory: give it more.")
    return code, read_outcome(outcome)


def raising(exc: BaseException):
    def work():
        raise exc
    return work


def test_each_ending_becomes_its_exit_code_and_words(tmp_path):
    assert ladder(tmp_path, lambda: {"shards": 2}) == (EXIT_OK, {"result": {"shards": 2}})
    assert ladder(tmp_path / "a", raising(Refused("The adapter is missing."))) == (EXIT_FAILED, {"message": "The adapter is missing."})
    assert ladder(tmp_path / "b", raising(MemoryError())) == (EXIT_FAILED, {"message": "Out of memory: give it more."})
    code, outcome = ladder(tmp_path / "c", raising(KeyError("x")))
    assert code == EXIT_FAILED
    assert outcome["message"] == "The thing stopped with an internal error: KeyError: 'x'. The thing log has the traceback."
    assert ladder(tmp_path / "d", raising(Lost())) == (EXIT_LEASE_LOST, {})  # another worker owns it: nothing written


def test_without_a_lease_lost_class_that_exception_is_an_internal_error(tmp_path):
    outcome = tmp_path / "outcome.json"
    assert run_to_outcome(outcome, raising(Lost("gone")), failed=Refused, what="Combining", log_name="combine log",
                          out_of_memory="-") == EXIT_FAILED
    assert read_outcome(outcome)["message"].startswith("Combining stopped with an internal error: Lost: gone.")


def test_child_main_parses_its_arguments_and_runs_holding_the_folder_lock(tmp_path):
    seen = []

    def run(settings, job_id, owner):
        seen.append((job_id, owner, (tmp_path / str(job_id) / ".lock").is_file()))
        return 42

    argv = ["7", "owner-1", "--parent-pid", str(os.getppid())]
    assert child_main(argv, prog="test", description=None, folder=lambda s, j: tmp_path / str(j), run=run) == 42
    assert seen == [(7, "owner-1", True)]
    with pytest.raises(SystemExit):
        child_main(["not-a-number", "owner"], prog="test", description=None, folder=lambda s, j: tmp_path, run=run)


def sleeper(seconds: float) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", f"import time; time.sleep({seconds})"], start_new_session=True)


def test_watch_reports_an_exit_a_shutdown_and_a_check_that_stops_the_child():
    quick = sleeper(0)
    assert watch(quick, threading.Event(), [Check(60, lambda: "never")], label="t") == "exited"
    stopping = threading.Event()
    stopping.set()
    slow = sleeper(60)
    assert watch(slow, stopping, [], label="t") == "shutdown"
    assert slow.poll() is not None  # stopped, not left running
    answers = iter([None, "lease lost"])
    slow = sleeper(60)
    assert watch(slow, threading.Event(), [Check(0, lambda: next(answers))], label="t") == "lease lost"
    assert slow.poll() is not None


def test_watch_retries_a_check_after_a_database_error(caplog):
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("UPDATE jobs", {}, Exception("connection refused"))
        return "cancelled"

    slow = sleeper(60)
    assert watch(slow, threading.Event(), [Check(0, flaky)], label="combination 3") == "cancelled"
    assert len(calls) == 2 and slow.poll() is not None
    assert "combination 3: database unavailable" in caplog.text


def test_lease_check_renews_in_a_session_and_ends_when_the_lease_is_someone_elses(studio, caplog):
    answers = []

    def renew(session) -> bool:
        answers.append(session.execute(text("SELECT 1")).scalar())  # a real session on the studio's database
        return len(answers) == 1

    check = lease_check(studio, renew, lost="merge of run 5: lease lost; stopping this merge")
    assert check.every == studio.lease_seconds / 3
    assert check.probe() is None
    assert check.probe() == "lease lost"
    assert answers == [1, 1] and "merge of run 5: lease lost; stopping this merge" in caplog.text
