"""The merge as people see it, from real rows: on the run page the button only for a succeeded run with an
adapter, progress in shards while merging, then every merged file with its size, SHA-256 and download
link; and `peft-studio merge ID` on the command line."""

from __future__ import annotations

import hashlib

from app.services import jobs, merges
from app.ui import merge_panel
from app.ui import strings as S
from tests.app.services.test_merges import finished_run


def test_button_progress_then_files(session, studio):
    job_id = finished_run(session, studio)
    job = jobs.get_job(session, job_id=job_id)
    assert merge_panel.can_merge(job) and merge_panel.merge_html(job) == ""
    merges.request_merge(session, job_id=job_id)
    merges.claim_merge(session, job_id=job_id, owner="w", lease_seconds=30)
    merges.record_merge_progress(session, job_id=job_id, owner="w", done=1, total=4)
    job = jobs.get_job(session, job_id=job_id)
    html = merge_panel.merge_html(job)
    assert not merge_panel.can_merge(job) and merge_panel.merging(job)
    assert S.MERGE_HEADLINES["running"] in html and "1 of 4 shards written" in html and "width:25.0%" in html

    folder = merges.merged_dir(studio, job_id)
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"w" * 2048)
    merges.finish_merge(session, job_id=job_id, owner="w", ok=True, message="Merged.", folder=folder)
    job = jobs.get_job(session, job_id=job_id)
    html = merge_panel.merge_html(job)
    [artifact] = [a for a in job.artifacts if a.kind == "merged"]
    assert merge_panel.can_merge(job) and not merge_panel.merging(job)
    assert f"api/jobs/{job_id}/artifacts/{artifact.id}/files/model.safetensors" in html
    assert f"api/jobs/{job_id}/artifacts/{artifact.id}/download" in html and S.MERGE_ZIP in html
    assert hashlib.sha256(b"w" * 2048).hexdigest() in html and "2.0 KiB" in html


def test_a_merge_whose_worker_vanished_can_be_asked_again(session, studio):
    job_id = finished_run(session, studio)
    merges.request_merge(session, job_id=job_id)
    merges.claim_merge(session, job_id=job_id, owner="w", lease_seconds=-1)  # its lease has already expired
    job = jobs.get_job(session, job_id=job_id)
    assert merge_panel.can_merge(job) and not merge_panel.merging(job)
    assert S.MERGE_WORKER_GONE in merge_panel.merge_html(job)


def test_a_failed_merge_shows_its_message(session, studio):
    job_id = finished_run(session, studio)
    merges.request_merge(session, job_id=job_id)
    merges.claim_merge(session, job_id=job_id, owner="w", lease_seconds=30)
    merges.finish_merge(session, job_id=job_id, owner="w", ok=False, message="The merge ran out of memory.")
    html = merge_panel.merge_html(jobs.get_job(session, job_id=job_id))
    assert S.MERGE_HEADLINES["failed"] in html and "ran out of memory" in html and "ps-callout-error" in html


def test_cli_merge_refuses_in_words_then_queues(session, studio, capsys):
    from app.cli import main

    queued = jobs.create_job(session, spec={"base_model": "demo", "method": {"peft_type": "LORA", "r": 4}})
    assert main(["merge", str(queued.id)]) == 1
    assert "only a run that succeeded can be merged" in capsys.readouterr().err
    job_id = finished_run(session, studio)
    assert main(["merge", str(job_id)]) == 0
    assert capsys.readouterr().out == f"run {job_id}: merge queued: Waiting for a worker to merge.\n"
    assert main(["status", str(job_id)]) == 0
    assert "merge:    queued: Waiting for a worker to merge." in capsys.readouterr().out
