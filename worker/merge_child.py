"""The merge child: `python -m worker.merge_child JOB_ID OWNER --parent-pid PID`.

Like the training child it is the only place torch is imported, so running out of memory kills this
process and not the worker. It merges the run's adapter into its base model shard by shard
(peft_core.merge_to_disk) into a temporary folder beside jobs/<id>/merged, reports shards done on the
run's row (fenced by the merge owner), writes each file's size and sha256 beside the folder, and only
then swaps it into place, so a half-written merge is never what people download. It reports how it
ended through its exit code and an outcome file; the supervisor (worker.merging) records the ending.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path

from app.db.session import session_scope
from app.services import merges
from app.services.artifact_files import manifest_path, write_manifest
from app.services.artifacts import latest_artifact
from app.services.jobs import ArtifactKind, get_job
from app.settings import Settings
from worker.child_process import OUTCOME_FILE, child_main, run_to_outcome

log = logging.getLogger("worker.merge_child")

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja", "tokenizer.model")


class MergeFailed(Exception):
    """A merge that cannot succeed as asked; the message is shown to people as is."""


class LeaseLost(Exception):
    """Another worker owns this merge now."""


def merge_dir(settings: Settings, job_id: int) -> Path:
    """The child's own files (lock, log, outcome), apart from the training attempts."""
    return settings.jobs_dir / str(job_id) / "merging"


def resolve_base_dir(base_model: str, settings: Settings) -> Path:
    """A local folder of safetensors for the run's base model: the demo model, a folder, or a Hub snapshot."""
    if base_model == "demo":
        from worker.training.demo import ensure_demo_model

        return ensure_demo_model(settings.data_dir, log=log.info)
    folder = Path(base_model).expanduser()
    if folder.is_dir():
        return folder
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(base_model, allow_patterns=["*.safetensors", "*.json", "*.model", "*.txt", "*.jinja", "*.tiktoken"]))
    except LocalEntryNotFoundError as exc:
        raise MergeFailed(f"The base model {base_model} is not downloaded on this worker and the Hugging Face Hub cannot be reached "
                          "(offline). Download it once with network access, or train on a local folder.") from exc
    except Exception as exc:
        raise MergeFailed(f"Could not download the base model {base_model}: {type(exc).__name__}: {exc}") from exc


def merge(settings: Settings, job_id: int, owner: str) -> dict[str, int]:
    """Merge into a temporary folder, then swap it in as jobs/<id>/merged; returns merge_adapter_to_disk's numbers."""
    with session_scope(settings) as session:
        base_model = get_job(session, job_id=job_id).base_model
        adapter = latest_artifact(session, job_id=job_id, kind=ArtifactKind.ADAPTER)
    if adapter is None or not Path(adapter.path).is_dir():
        raise MergeFailed(f"The run's adapter is missing on disk ({adapter.path if adapter else 'never saved'}).")
    adapter_dir = Path(adapter.path)
    base_dir = resolve_base_dir(base_model, settings)
    final = merges.merged_dir(settings, job_id)
    tmp = final.with_name(final.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)

    def progress(done: int, total: int, _shard: str) -> None:
        with session_scope(settings) as session:
            if not merges.record_merge_progress(session, job_id=job_id, owner=owner, done=done, total=total):
                raise LeaseLost()

    from peft_core.errors import PeftCoreError
    from peft_core.merge_to_disk import merge_adapter_to_disk

    try:
        result = merge_adapter_to_disk(base_dir, adapter_dir, tmp, progress=progress)
    except PeftCoreError as exc:
        raise MergeFailed(f"The adapter could not be merged into {base_model}: {exc}") from exc
    for name in TOKENIZER_FILES:  # the run's own tokenizer files (a chat template it added) win over the base's
        if (adapter_dir / name).is_file():
            shutil.copy2(adapter_dir / name, tmp / name)
    shutil.rmtree(final, ignore_errors=True)
    manifest_path(final).unlink(missing_ok=True)
    os.rename(tmp, final)
    write_manifest(final)
    return {"shards": int(result["shards"]), "bytes": int(result["bytes"])}


def run(settings: Settings, job_id: int, owner: str) -> int:
    return run_to_outcome(merge_dir(settings, job_id) / OUTCOME_FILE, lambda: merge(settings, job_id, owner), failed=MergeFailed,
                          lease_lost=(LeaseLost,), what="The merge", log_name="merge log",
                          out_of_memory="The merge ran out of memory; give the worker more memory than one shard of the model.")


def main(argv: list[str] | None = None) -> int:
    return child_main(argv, prog="python -m worker.merge_child", description=__doc__, folder=merge_dir, run=run)


if __name__ == "__main__":
    sys.exit(main())
