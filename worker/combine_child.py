"""The combine child: `python -m worker.combine_child JOB_ID OWNER --parent-pid PID`.

The only place a combination imports torch, so running out of memory kills this process and not the
worker. It loads the base model, each source run's adapter under its own name with peft_core, calls
add_weighted_adapter and saves the new adapter in the PEFT format into a temporary folder, then swaps
it into place as jobs/<id>/combine/adapter, so a half-written adapter is never what people download.
It reports how it ended through its exit code and an outcome file; the supervisor (worker.combining)
records the ending on the job row.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from app.db.session import session_scope
from app.services import combining
from app.services.jobs import get_job
from app.settings import Settings
from worker.child_process import OUTCOME_FILE, child_main, run_to_outcome
from worker.merge_child import TOKENIZER_FILES, MergeFailed, resolve_base_dir

log = logging.getLogger("worker.combine_child")


class CombineFailed(Exception):
    """A combination that cannot succeed as asked; the message is shown to people as is."""


def work_dir(settings: Settings, job_id: int) -> Path:
    """The child's own files (lock, log, outcome)."""
    return settings.jobs_dir / str(job_id) / "combine"


def adapter_name(run_id: int) -> str:
    return f"run{run_id}"


def combine_kwargs(spec: dict[str, Any]) -> dict[str, Any]:
    """add_weighted_adapter's knobs from the job's `combine` section (only those its type uses)."""
    kwargs: dict[str, Any] = {"combination_type": spec["combination_type"], "majority_sign_method": spec.get("majority_sign_method") or "total"}
    if spec.get("density") is not None:
        kwargs["density"] = float(spec["density"])
    if spec.get("svd_rank") is not None:
        kwargs["svd_rank"] = int(spec["svd_rank"])
    return kwargs


def combine(settings: Settings, job_id: int) -> dict[str, Any]:
    """Make the combination of job `job_id` and swap it in as its adapter folder; returns its rank and size."""
    with session_scope(settings) as session:
        job = get_job(session, job_id=job_id)
        config, base_model = dict(job.config), job.base_model
    spec = config["combine"]
    sources = spec["sources"]
    missing = [f"#{s['run_id']} ({s['adapter']})" for s in sources if not Path(s["adapter"]).is_dir()]
    if missing:
        raise CombineFailed(f"The adapter of run {', '.join(missing)} is missing on disk; it was deleted after the combination was asked for.")
    try:
        base_dir = resolve_base_dir(base_model, settings)
    except MergeFailed as exc:
        raise CombineFailed(str(exc).replace("train on a local folder", "combine runs on a local folder")) from exc

    import torch
    from transformers import AutoModelForCausalLM

    import peft_core
    from peft_core.errors import PeftCoreError

    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    names = [adapter_name(s["run_id"]) for s in sources]
    try:
        peft_model = peft_core.PeftModel.from_pretrained(model, sources[0]["adapter"], adapter_name=names[0])
        for name, source in zip(names[1:], sources[1:], strict=True):
            peft_model.load_adapter(source["adapter"], adapter_name=name)
        torch.manual_seed(int(spec.get("seed", 0)))  # dare_* drop entries at random: the same request gives the same adapter
        peft_model.add_weighted_adapter(names, [float(s["weight"]) for s in sources], "default", **combine_kwargs(spec))
    except PeftCoreError as exc:
        raise CombineFailed(f"The adapters could not be combined: {exc}") from exc
    final = combining.combined_dir(settings, job_id)
    tmp = final.with_name(final.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    peft_model.save_pretrained(tmp, selected_adapters=["default"])
    first = Path(sources[0]["adapter"])
    for name in TOKENIZER_FILES:  # a merge of the combination uses the runs' tokenizer (a chat template they added)
        if (first / name).is_file():
            shutil.copy2(first / name, tmp / name)
    shutil.rmtree(final, ignore_errors=True)
    os.rename(tmp, final)
    return {"rank": int(peft_model.peft_config["default"].r), "bytes": sum(p.stat().st_size for p in final.rglob("*") if p.is_file())}


def run(settings: Settings, job_id: int, _owner: str = "") -> int:
    return run_to_outcome(work_dir(settings, job_id) / OUTCOME_FILE, lambda: combine(settings, job_id), failed=CombineFailed,
                          what="Combining", log_name="combine log",
                          out_of_memory="Combining ran out of memory: it loads the base model once; give the worker more memory.")


def main(argv: list[str] | None = None) -> int:
    return child_main(argv, prog="python -m worker.combine_child", description=__doc__, folder=work_dir, run=run)


if __name__ == "__main__":
    sys.exit(main())
