"""The combine service over the real database: refusals in words, a queued combination job that the
training path never takes, its claim, and the reaper's handling of a dead worker and a lost message."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from sqlalchemy import update

from app.db.base import utcnow
from app.db.models import Job
from app.services import combining, jobs
from app.services.combining import CombineError
from app.services.jobs import ArtifactKind, JobStatus
from tests.support.broker_messages import queued_messages


def finished(session, studio, *, base: str = "demo", method: dict | None = None, adapter: bool = True, name: str = "run") -> int:
    """A run that succeeded through the real claim/finish path, with a saved adapter folder."""
    spec = {"name": name, "base_model": base, "method": method or {"peft_type": "LORA", "r": 4}}
    job = jobs.create_job(session, spec=spec, settings=studio)
    claim = jobs.claim_job(session, job_id=job.id, owner="w", lease_seconds=30)
    if adapter:
        folder = studio.jobs_dir / str(job.id) / "train" / "adapter"
        folder.mkdir(parents=True)
        (folder / "adapter_config.json").write_text("{}")
        jobs.record_artifact(session, job_id=job.id, kind=ArtifactKind.ADAPTER, path=folder)
    jobs.finish_job(session, job_id=claim.job_id, owner="w", status=JobStatus.SUCCEEDED, message="done")
    return job.id


def _problems(session, **kwargs) -> list[str]:
    with pytest.raises(CombineError) as caught:
        combining.request_combine(session, **kwargs)
    assert str(caught.value).startswith("cannot combine these runs: ")
    return caught.value.problems


def test_refuses_runs_that_do_not_fit_together_naming_each_reason(session, studio):
    a = finished(session, studio, name="a")
    other_base = finished(session, studio, base="no-such-org/other-model", name="other base")
    loha = finished(session, studio, method={"peft_type": "LOHA", "r": 4}, name="loha")
    dora = finished(session, studio, method={"peft_type": "LORA", "r": 4, "use_dora": True}, name="dora")
    bare = finished(session, studio, adapter=False, name="no adapter")
    queued = jobs.create_job(session, spec={"name": "still queued", "base_model": "demo", "method": {"peft_type": "LORA"}}).id
    problems = _problems(session, run_ids=[a, other_base, loha, dora, bare, queued, 999], weights=[1] * 7, combination_type="cat")
    text = "\n".join(problems)
    assert f"run #{other_base} (other base) cannot be combined: its base model no-such-org/other-model differs from demo (run #{a})" in text
    assert f"run #{loha} (loha) cannot be combined: it trained a LOHA adapter; only LoRA adapters can be combined" in text
    assert f"run #{dora} (dora) cannot be combined: it is a DoRA adapter" in text
    assert f"run #{bare} (no adapter) cannot be combined: it has no saved adapter" in text
    assert f"run #{queued} (still queued) cannot be combined: it is queued; only runs that succeeded can be combined" in text
    assert "runs: there is no run 999" in text
    assert session.query(Job).filter(Job.config["kind"].as_string() == "combine").count() == 0, "nothing is stored when refused"


def test_refuses_bad_knobs_all_at_once(session, studio):
    a, b = finished(session, studio), finished(session, studio, method={"peft_type": "LORA", "r": 8})
    problems = _problems(session, run_ids=[a, b], weights=[1.0], combination_type="ties", density=1.5, majority_sign_method="most")
    assert any(p.startswith("weights: give one weight per run (2), got 1") for p in problems)
    assert any(p.startswith("density: ties keeps this share") for p in problems)
    assert any(p.startswith("majority_sign_method: use total or frequency") for p in problems)
    assert any("needs runs of equal rank, these have ranks [4, 8]; use 'cat' or 'svd'" in p for p in problems)
    assert _problems(session, run_ids=[a], weights=[1.0])[0] == "runs: pick at least two runs to combine, got 1"
    assert _problems(session, run_ids=[a, a], weights=[1.0, 1.0])[0].startswith("runs: each run may be picked once")
    assert "weights: all weights are 0" in _problems(session, run_ids=[a, b], weights=[0, 0], combination_type="cat")[0]
    assert "not one of linear, cat, svd" in _problems(session, run_ids=[a, b], weights=[1, 1], combination_type="average")[0]
    assert "svd_rank: a whole number" in _problems(session, run_ids=[a, b], weights=[1, 1], svd_rank=0)[0]


def test_a_combination_is_a_queued_job_the_train_task_never_takes(session, studio):
    a, b = finished(session, studio, name="a"), finished(session, studio, name="b")
    job = combining.request_combine(session, run_ids=[a, b], weights=[0.6, 0.4], combination_type="ties", density=0.5, settings=studio)
    assert (job.status, job.method, job.base_model, job.name) == ("queued", "LORA", "demo", f"Combination of #{a}, #{b} (ties)")
    spec = job.config["combine"]
    assert [(s["run_id"], s["weight"]) for s in spec["sources"]] == [(a, 0.6), (b, 0.4)]
    assert (spec["combination_type"], spec["density"], spec["svd_rank"]) == ("ties", 0.5, None)
    assert ("studio.combine", [job.id]) in queued_messages(studio)
    assert jobs.claim_job(session, job_id=job.id, owner="trainer", lease_seconds=30) is None, "the training path must not take it"
    config = combining.claim_combine(session, job_id=job.id, owner="w1", lease_seconds=30)
    assert config is not None and config["kind"] == "combine"
    assert combining.claim_combine(session, job_id=job.id, owner="w2", lease_seconds=30) is None, "a duplicate delivery gets nothing"
    assert combining.claim_combine(session, job_id=a, owner="w2", lease_seconds=30) is None, "a training run is never claimed as a combination"
    assert jobs.get_job(session, job_id=job.id).status == "running"


def test_the_reaper_fails_a_combination_whose_worker_died_and_rings_a_forgotten_one(session, studio):
    a, b = finished(session, studio), finished(session, studio)
    dead = combining.request_combine(session, run_ids=[a, b], weights=[1, 1], combination_type="cat", settings=studio).id
    combining.claim_combine(session, job_id=dead, owner="gone", lease_seconds=30)
    session.execute(update(Job).where(Job.id == dead).values(lease_expires_at=utcnow() - timedelta(seconds=1)))
    forgotten = combining.request_combine(session, run_ids=[a, b], weights=[1, 1], combination_type="cat", settings=studio).id
    session.execute(update(Job).where(Job.id == forgotten).values(created_at=utcnow() - timedelta(seconds=studio.redeliver_after_seconds + 1)))
    session.commit()
    before = queued_messages(studio).count(("studio.combine", [forgotten]))
    rung: dict[int, float] = {}
    failed, sent = combining.reap_combines(session, settings=studio, rung=rung, now_s=time.monotonic())
    assert (failed, sent) == ([dead], [forgotten])
    job = jobs.get_job(session, job_id=dead)
    assert (job.status, job.message) == ("failed", combining.WORKER_GONE) and job.lease_owner is None
    assert queued_messages(studio).count(("studio.combine", [forgotten])) == before + 1
    assert combining.reap_combines(session, settings=studio, rung=rung, now_s=time.monotonic()) == ([], []), "rings are spaced out"
    assert jobs.get_job(session, job_id=a).status == "succeeded", "runs are left alone"


def test_the_training_reaper_leaves_combinations_to_their_own_reaper(session, studio):
    """A dead combination is worded by reap_combines, not requeued as a training run; cancels still apply."""
    a, b = finished(session, studio), finished(session, studio)
    dead = combining.request_combine(session, run_ids=[a, b], weights=[1, 1], combination_type="cat", settings=studio).id
    combining.claim_combine(session, job_id=dead, owner="gone", lease_seconds=30)
    session.execute(update(Job).where(Job.id == dead).values(lease_expires_at=utcnow() - timedelta(seconds=1)))
    waiting = combining.request_combine(session, run_ids=[a, b], weights=[1, 1], combination_type="cat", settings=studio).id
    cancelled = combining.request_combine(session, run_ids=[a, b], weights=[1, 1], combination_type="cat", settings=studio).id
    session.execute(update(Job).where(Job.id == cancelled).values(cancel_requested=True))
    session.commit()
    report = jobs.reap(session, settings=studio, redeliver_all=True)
    assert dead not in report.requeued + report.failed and waiting not in report.redelivered
    assert report.cancelled == [cancelled]
    assert jobs.get_job(session, job_id=dead).status == "running", "left for reap_combines"
    assert ("studio.train", [waiting]) not in queued_messages(studio)
    assert combining.reap_combines(session, settings=studio, rung={}, now_s=time.monotonic())[0] == [dead]


def test_candidates_say_why_a_run_cannot_be_combined(session, studio):
    a = finished(session, studio, name="a")
    loha = finished(session, studio, method={"peft_type": "LOHA"}, name="loha")
    other = finished(session, studio, base="no-such-org/other-model", name="other")
    found = {c.id: c for c in combining.candidates(session)}
    assert found[a].reason is None and found[a].rank == 4
    assert "only LoRA adapters can be combined" in found[loha].reason
    assert combining.pairing_reason(found[a], found[other]).startswith("its base model no-such-org/other-model differs from demo")
    assert combining.pairing_reason(found[a], found[a]) is None
