"""`peft-studio` job commands against a real database (both), in-process; one real subprocess for the exit code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from app.cli import main
from app.db.session import session_scope
from app.services import jobs

GOOD = """\
name: cli run
base_model: demo
method:
  peft_type: LORA
  r: 4
training:
  max_steps: 5
"""


def test_submit_status_cancel_logs(studio, tmp_path: Path, capsys):
    spec = tmp_path / "job.yaml"
    spec.write_text(GOOD)
    assert main(["submit", str(spec)]) == 0
    job_id = int(capsys.readouterr().out.strip())
    assert main(["status"]) == 0
    listing = capsys.readouterr().out
    assert f"{job_id:>5}  queued" in listing and "cli run" in listing
    with session_scope(studio) as session:
        jobs.append_log(session, job_id=job_id, lines=["hello", "world"])
    assert main(["logs", str(job_id)]) == 0
    assert capsys.readouterr().out == "hello\nworld\n"
    assert main(["cancel", str(job_id)]) == 0
    assert "cancelled: Cancelled before it started." in capsys.readouterr().out
    assert main(["logs", str(job_id), "--follow"]) == 0  # returns at once: the job has ended
    assert capsys.readouterr().out.endswith(f"--- job {job_id} cancelled: Cancelled before it started.\n")
    assert main(["status", str(job_id)]) == 0
    assert "status:   cancelled (attempt 0 of 3)" in capsys.readouterr().out
    assert main(["cancel", str(job_id)]) == 1
    assert "already cancelled" in capsys.readouterr().err


def test_bad_job_file_lists_every_problem(studio, tmp_path: Path, capsys):
    spec = tmp_path / "bad.yaml"
    spec.write_text("base_model: ''\nmethod: {peft_type: LORA, r: -1}\ntraining: {learning_rate: 5, batch: 2}\n")
    assert main(["submit", str(spec)]) == 2
    err = capsys.readouterr().err
    assert "the job was not submitted" in err
    for needle in ("base_model:", "method.r:", "training.learning_rate:", "training.batch: unknown setting"):
        assert needle in err
    broken = tmp_path / "broken.yaml"
    broken.write_text("method: [unclosed\n")
    assert main(["submit", str(broken)]) == 2
    assert "not valid YAML" in capsys.readouterr().err
    assert main(["submit", str(tmp_path / "missing.yaml")]) == 2
    assert "cannot read the file" in capsys.readouterr().err
    assert main(["status", "77"]) == 1
    assert "there is no job 77" in capsys.readouterr().err


def test_entry_point_exit_code_for_a_bad_file(studio, tmp_path: Path):
    spec = tmp_path / "bad.yaml"
    spec.write_text("method: {peft_type: LORA, r: 0}\n")
    done = subprocess.run([sys.executable, "-m", "app.cli", "submit", str(spec)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "method.r:" in done.stderr
