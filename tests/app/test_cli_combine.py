"""`peft-studio combine`: refuses in words, then queues a combination job and prints its id."""

from __future__ import annotations

from app.cli import main
from app.services import jobs
from tests.app.services.test_combining import finished


def test_combine_command_refuses_then_queues(session, studio, capsys):
    a, b = finished(session, studio), finished(session, studio)
    assert main(["combine", str(a), str(b), "--type", "ties"]) == 1
    assert "density: ties keeps this share" in capsys.readouterr().err
    assert main(["combine", str(a), str(b), "--type", "cat", "--weights", "0.3", "0.7", "--name", "mix"]) == 0
    job = jobs.get_job(session, job_id=int(capsys.readouterr().out.strip()))
    assert (job.name, job.status) == ("mix", "queued")
    assert [s["weight"] for s in job.config["combine"]["sources"]] == [0.3, 0.7]
