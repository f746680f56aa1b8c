"""Combining the adapters of finished runs into a new adapter (peft_core's add_weighted_adapter), as a studio job.

Decision: a combination is a Job row of its own, not a step on its sources (as a merge is). Its result
is a new adapter that people open, download, merge and publish exactly like a trained run's, so it
reuses the run page, the artifacts, the downloads and the merge. The row says what it is in its
config: `kind: "combine"`, the base model, `method.peft_type` LORA and a `combine` section recording
the sources (run id, name, weight, adapter folder), the combination type and its knobs. No schema
change is needed.

Its lifecycle is the jobs' own (queued -> running -> succeeded / failed / cancelled through
jobs.transition, a lease renewed by its worker), with two differences that keep the training path
from touching it: it is created with its single attempt already counted (attempt == max_attempts), so
the train task's claim_job never takes it, and it is claimed by its own task (COMBINE_TASK) with
claim_combine. A combination is quick and is not resumed: when its worker dies the reaper (see
reap_combines) fails it in words and people ask again.

The web process imports this module: no torch, no peft_core, no worker package.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import broker
from app.db.base import utcnow
from app.db.models import Job
from app.services.artifacts import latest_artifact
from app.services.jobs import ArtifactKind, JobStatus, get_job, transition
from app.settings import Settings, get_settings

log = logging.getLogger(__name__)

COMBINE_TASK = "studio.combine"
KIND = "combine"
# The names peft_core.tuners.lora.combine.COMBINATIONS accepts (checked equal by the worker's tests).
COMBINATION_TYPES = ("linear", "cat", "svd", "ties", "dare_linear", "dare_ties", "magnitude_prune")
NEEDS_DENSITY = ("ties", "dare_linear", "dare_ties", "magnitude_prune")
NEEDS_SIGN = ("ties", "dare_ties")
NEEDS_EQUAL_RANKS = ("linear", "ties", "dare_linear", "dare_ties", "magnitude_prune")
SIGN_METHODS = ("total", "frequency")
COMBINABLE_METHODS = ("LORA",)
MAX_SOURCES = 8
WORKER_GONE = "Its worker stopped responding while combining; combine again."


class CombineError(ValueError):
    """The combination cannot be made as asked; `problems` lists every reason, each naming the field."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        super().__init__("cannot combine these runs: " + "; ".join(self.problems))


@dataclass(frozen=True)
class Candidate:
    """A succeeded run as the combine page lists it; `reason` says why it can never be combined (None: it can)."""

    id: int
    name: str
    base_model: str
    method: str
    rank: int | None
    reason: str | None


def is_combine(job: Job) -> bool:
    return isinstance(job.config, dict) and job.config.get("kind") == KIND


def _method(job: Job) -> dict[str, Any]:
    return dict((job.config or {}).get("method") or {}) if isinstance(job.config, dict) else {}


def _never_reason(job: Job, has_adapter: bool) -> str | None:
    """Why this run can never be combined, in words; None when it can."""
    if job.status != JobStatus.SUCCEEDED.value:
        return f"it is {job.status}; only runs that succeeded can be combined"
    if not has_adapter:
        return "it has no saved adapter"
    if job.method.upper() not in COMBINABLE_METHODS:
        return f"it trained a {job.method} adapter; only LoRA adapters can be combined (add_weighted_adapter works on LoRA weights)"
    method = _method(job)
    if method.get("use_dora"):
        return "it is a DoRA adapter; its magnitude vectors cannot be combined"
    if method.get("trainable_token_indices") or method.get("target_parameters"):
        return "it trains token rows or parameters directly (trainable_token_indices / target_parameters), which cannot be combined"
    return None


def candidates(session: Session, *, limit: int = 200) -> list[Candidate]:
    """Succeeded runs, newest first, each with the reason it can never be combined (or None)."""
    rows = list(session.scalars(select(Job).where(Job.status == JobStatus.SUCCEEDED.value).order_by(Job.id.desc()).limit(limit)))
    out = []
    for job in rows:
        has_adapter = latest_artifact(session, job_id=job.id, kind=ArtifactKind.ADAPTER) is not None
        rank = _method(job).get("r")
        out.append(Candidate(job.id, job.name, job.base_model, job.method, int(rank) if isinstance(rank, int) else None,
                             _never_reason(job, has_adapter)))
    return out


def pairing_reason(first: Candidate, other: Candidate) -> str | None:
    """Why `other` cannot be combined with `first` (the first pick sets the base model and method); None: it can."""
    if other.reason:
        return other.reason
    if other.base_model != first.base_model:
        return f"its base model {other.base_model} differs from {first.base_model} (run #{first.id}); adapters only combine on one base"
    if other.method != first.method:
        return f"its method {other.method} differs from {first.method} (run #{first.id})"
    return None


def _check_knobs(combination_type: str, weights: Sequence[float], density: float | None, majority_sign_method: str,
                 svd_rank: int | None, ranks: set[int]) -> list[str]:
    problems = []
    if combination_type not in COMBINATION_TYPES:
        problems.append(f"combination_type: {combination_type!r} is not one of {', '.join(COMBINATION_TYPES)}")
    bad = [w for w in weights if not isinstance(w, (int, float)) or isinstance(w, bool) or not math.isfinite(w)]
    if bad:
        problems.append(f"weights: each weight must be a finite number, got {bad}")
    elif weights and all(w == 0 for w in weights):
        problems.append("weights: all weights are 0, which gives an adapter that does nothing; give at least one run a weight")
    if combination_type in NEEDS_DENSITY and not (isinstance(density, (int, float)) and 0 < density <= 1):
        problems.append(f"density: {combination_type} keeps this share of each weight matrix; give a number in (0, 1], got {density!r}")
    if combination_type in NEEDS_SIGN and majority_sign_method not in SIGN_METHODS:
        problems.append(f"majority_sign_method: use {' or '.join(SIGN_METHODS)}, got {majority_sign_method!r}")
    if svd_rank is not None and (not isinstance(svd_rank, int) or isinstance(svd_rank, bool) or svd_rank < 1):
        problems.append(f"svd_rank: a whole number of at least 1 (or empty for the largest source rank), got {svd_rank!r}")
    if combination_type in NEEDS_EQUAL_RANKS and len(ranks) > 1:
        problems.append(f"combination_type: {combination_type} needs runs of equal rank, these have ranks {sorted(ranks)}; use 'cat' or 'svd'")
    return problems


def request_combine(
    session: Session,
    *,
    run_ids: Sequence[int],
    weights: Sequence[float],
    combination_type: str = "svd",
    name: str = "",
    density: float | None = None,
    majority_sign_method: str = "total",
    svd_rank: int | None = None,
    seed: int = 0,
    settings: Settings | None = None,
) -> Job:
    """Check everything at once (raises CombineError listing every problem), store the combination queued, ring a worker."""
    settings = settings or get_settings()
    problems: list[str] = []
    ids = list(run_ids)
    if len(ids) < 2:
        problems.append(f"runs: pick at least two runs to combine, got {len(ids)}")
    if len(ids) > MAX_SOURCES:
        problems.append(f"runs: at most {MAX_SOURCES} runs can be combined at once, got {len(ids)}")
    if len(set(ids)) != len(ids):
        problems.append(f"runs: each run may be picked once, got {ids}")
    if len(weights) != len(ids):
        problems.append(f"weights: give one weight per run ({len(ids)}), got {len(weights)}")
    picked: list[tuple[Job, Candidate, Path]] = []
    for run_id in dict.fromkeys(ids):
        job = session.get(Job, run_id, populate_existing=True)
        if job is None:
            problems.append(f"runs: there is no run {run_id}")
            continue
        adapter = latest_artifact(session, job_id=run_id, kind=ArtifactKind.ADAPTER)
        has_adapter = adapter is not None and Path(adapter.path).is_dir()
        rank = _method(job).get("r")
        cand = Candidate(job.id, job.name, job.base_model, job.method, int(rank) if isinstance(rank, int) else None,
                         _never_reason(job, has_adapter))
        reason = pairing_reason(picked[0][1], cand) if picked else cand.reason
        if reason:
            problems.append(f"runs: run #{run_id} ({job.name}) cannot be combined: {reason}")
            continue
        picked.append((job, cand, Path(adapter.path)))  # type: ignore[union-attr]
    ranks = {int(_method(j).get("r", 8)) for j, _, _ in picked}
    ranks |= {int(r) for j, _, _ in picked for r in (_method(j).get("rank_pattern") or {}).values()}
    problems += _check_knobs(combination_type, list(weights), density, majority_sign_method, svd_rank, ranks)
    clean_name = (name or "").strip() or (f"Combination of {', '.join(f'#{i}' for i in ids)} ({combination_type})")
    if len(clean_name) > 200:
        problems.append(f"name: at most 200 characters, got {len(clean_name)}")
    if problems:
        raise CombineError(problems)
    first = picked[0][0]
    config = {
        "kind": KIND,
        "name": clean_name,
        "base_model": first.base_model,
        "task_type": (first.config or {}).get("task_type"),
        "method": {"peft_type": first.method},
        "combine": {
            "sources": [{"run_id": j.id, "name": j.name, "weight": float(w), "adapter": str(path)}
                        for (j, _, path), w in zip(picked, weights, strict=True)],
            "combination_type": combination_type,
            "density": float(density) if combination_type in NEEDS_DENSITY and density is not None else None,
            "majority_sign_method": majority_sign_method,
            "svd_rank": svd_rank if combination_type == "svd" else None,
            "seed": int(seed),
        },
    }
    now = utcnow()
    job = Job(name=clean_name, status=JobStatus.QUEUED.value, config=config, base_model=first.base_model, method=first.method,
              attempt=1, max_attempts=1,  # counted now: the train task's claim never takes a combination
              message="Waiting for a worker to combine the adapters.", created_at=now, updated_at=now, enqueued_at=now)
    session.add(job)
    session.commit()
    ring_combine(job.id, settings)
    return job


def ring_combine(job_id: int, settings: Settings | None = None, *, expires: float | None = None) -> bool:
    """Ask a worker to make combination `job_id`; False (logged) when the broker is down (it stays queued; the reaper rings again)."""
    settings = settings or get_settings()
    try:
        broker.client(settings).send_task(COMBINE_TASK, args=[job_id], queue=settings.queue, expires=expires, retry=True,
                                          retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 1})
    except Exception as exc:  # the request stays in the DB; the reaper sends it again
        log.warning("combination %s is queued but the broker could not be reached (%s)", job_id, exc)
        return False
    return True


# --- worker's side ---------------------------------------------------------------------------------


def _combines() -> Any:
    return Job.config["kind"].as_string() == KIND


def claim_combine(session: Session, *, job_id: int, owner: str, lease_seconds: float) -> dict[str, Any] | None:
    """Take queued combination `job_id` (one conditional UPDATE); its config, or None when not ours (duplicate, taken, cancelled)."""
    now = utcnow()
    won = transition(session, job_id=job_id, to=JobStatus.RUNNING, message="Combining: loading the base model and the adapters.",
                     where=[Job.status == JobStatus.QUEUED.value, Job.cancel_requested.is_(False), _combines()],
                     values={"lease_owner": owner, "lease_expires_at": now + timedelta(seconds=lease_seconds)})
    if not won:
        session.rollback()
        return None
    session.commit()
    return dict(get_job(session, job_id=job_id).config)


def combined_dir(settings: Settings, job_id: int) -> Path:
    """Where a combination's adapter is written (like a trained run's jobs/<id>/train/adapter)."""
    return settings.jobs_dir / str(job_id) / "combine" / "adapter"


def success_message(config: dict[str, Any], rank: int) -> str:
    spec = config["combine"]
    parts = ", ".join(f"#{s['run_id']} × {s['weight']:g}" for s in spec["sources"])
    return f"Combined {parts} with {spec['combination_type']} into a rank-{rank} LoRA adapter."


def reap_combines(session: Session, *, settings: Settings | None = None, rung: dict[int, float] | None = None,
                  now_s: float = 0.0) -> tuple[list[int], list[int]]:
    """The worker's reaper, for combinations: fail those whose worker died (lease expired) in words, and ring
    again for those left queued. `rung` (job id -> when this reaper last rang it, in now_s's clock) spaces the
    rings redeliver_after_seconds apart. Returns (failed, rung now); safe to run anywhere, any number of times."""
    settings = settings or get_settings()
    rung = {} if rung is None else rung
    now = utcnow()
    expired = [Job.status == JobStatus.RUNNING.value, Job.lease_expires_at < now, _combines()]
    failed = []
    for job_id in session.scalars(select(Job.id).where(*expired)).all():
        if transition(session, job_id=job_id, to=JobStatus.FAILED, message=WORKER_GONE, where=expired,
                      values={"error_hint": "Combining is quick and is not resumed; ask for the same combination again."}):
            failed.append(job_id)
    waiting = [Job.status == JobStatus.QUEUED.value, Job.created_at < now - timedelta(seconds=settings.redeliver_after_seconds), _combines()]
    due = [j for j in session.scalars(select(Job.id).where(*waiting)).all() if now_s - rung.get(j, -math.inf) >= settings.redeliver_after_seconds]
    session.commit()
    for job_id in due:
        rung[job_id] = now_s
        ring_combine(job_id, settings, expires=settings.redeliver_after_seconds)
    return failed, due
