"""Resumable checkpoints: everything needed to continue the *same* loss curve, written atomically.

    checkpoints/step-N/
        adapter/              adapter_config.json + adapter_model.safetensors: PEFT format, loads anywhere
        optimizer.pt          AdamW state (and the fp16 GradScaler's); read back with weights_only=True
        rng.pt                torch CPU and CUDA generator states
        trainer_state.json    step, data position (micro-batches consumed, epoch, data order seed), the
                              schedule, python and numpy RNG states, and the job spec it was written for

The learning rate is a pure function of the step (schedule.py), and the n-th micro-batch a pure function
of (n, seed) (data.py), so the step number *is* the scheduler's and the data loader's state; they are
recorded anyway so that a checkpoint explains itself. A folder is built under a temporary name and
renamed when complete: a crash mid-write leaves no folder that looks resumable.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import torch

from .errors import TrainingError

STATE_VERSION = 1
STATE_FILE = "trainer_state.json"
TMP_PREFIX = ".tmp-"


# ------------------------------------------------------------------------------------------------ RNG


def capture_rng() -> tuple[dict[str, Any], dict[str, Any]]:
    """(JSON-able python/numpy states, torch states) of every generator the loop may draw from."""
    plain: dict[str, Any] = {"python": _jsonable(random.getstate()), "numpy": None}
    try:
        import numpy as np

        name, keys, pos, has_gauss, cached = np.random.get_state()
        plain["numpy"] = [name, keys.tolist(), pos, has_gauss, cached]
    except ImportError:
        pass
    tensors: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors["cuda"] = torch.cuda.get_rng_state_all()
    return plain, tensors


def restore_rng(plain: dict[str, Any], tensors: dict[str, Any]) -> None:
    random.setstate(_tupled(plain["python"]))
    if plain.get("numpy") is not None:
        import numpy as np

        name, keys, pos, has_gauss, cached = plain["numpy"]
        np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(tensors["torch"])
    if "cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(tensors["cuda"])


def _jsonable(value: Any) -> Any:
    return [_jsonable(v) for v in value] if isinstance(value, (tuple, list)) else value


def _tupled(value: Any) -> Any:
    return tuple(_tupled(v) for v in value) if isinstance(value, list) else value


# ------------------------------------------------------------------------------------- save and load


def save_checkpoint(folder: Path, *, peft_model: Any, optimizer: torch.optim.Optimizer, scaler: Any, state: dict[str, Any]) -> Path:
    """Write a complete checkpoint to `folder` (replacing one of that name) and return it."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f"{TMP_PREFIX}{folder.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    peft_model.save_pretrained(tmp / "adapter", save_embedding_layers=False)
    torch.save({"optimizer": optimizer.state_dict(), "scaler": scaler.state_dict() if scaler is not None else None}, tmp / "optimizer.pt")
    plain_rng, torch_rng = capture_rng()
    torch.save(torch_rng, tmp / "rng.pt")
    (tmp / STATE_FILE).write_text(json.dumps({"version": STATE_VERSION, **state, "rng": plain_rng}, indent=1))
    _fsync_tree(tmp)
    if folder.exists():
        shutil.rmtree(folder)
    os.rename(tmp, folder)
    return folder


def read_state(folder: Path) -> dict[str, Any]:
    """The trainer_state.json of a checkpoint, or a TrainingError saying why it cannot be resumed from."""
    missing = [name for name in (STATE_FILE, "optimizer.pt", "rng.pt", "adapter") if not (folder / name).exists()]
    if not folder.is_dir() or missing:
        raise TrainingError(
            f"Cannot resume from {folder}: it is not a complete checkpoint (missing {', '.join(missing) or 'the folder'}).",
            hint="Resume from another checkpoint of this run, or start the run again.",
        )
    try:
        state = json.loads((folder / STATE_FILE).read_text())
    except ValueError as exc:
        raise TrainingError(f"Cannot resume from {folder}: {STATE_FILE} is damaged ({exc}).", hint="Resume from another checkpoint.") from exc
    if state.get("version") != STATE_VERSION:
        raise TrainingError(
            f"Cannot resume from {folder}: it was written by another version of the trainer (format {state.get('version')}).",
            hint="Start the run again.",
        )
    return state


def load_checkpoint(folder: Path, *, peft_model: Any, optimizer: torch.optim.Optimizer, scaler: Any, device: torch.device) -> None:
    """Restore adapter weights, optimizer (and scaler) and RNG from a checkpoint read_state accepted."""
    from peft_core import CheckpointError, load_peft_weights, set_peft_model_state_dict

    try:
        missing, unexpected = set_peft_model_state_dict(peft_model, load_peft_weights(str(folder / "adapter"), device=str(device)))
    except CheckpointError as exc:
        missing, unexpected = [str(exc)], []
    if missing or unexpected:
        raise TrainingError(
            f"Cannot resume from {folder}: its adapter does not fit this model "
            f"({len(missing)} missing, {len(unexpected)} unexpected tensors, e.g. {(missing + unexpected)[0]}).",
            hint="The checkpoint belongs to a different base model or method settings; start the run again.",
        )
    saved = torch.load(folder / "optimizer.pt", map_location=device, weights_only=True)
    optimizer.load_state_dict(saved["optimizer"])
    if scaler is not None and saved.get("scaler"):
        scaler.load_state_dict(saved["scaler"])
    state = json.loads((folder / STATE_FILE).read_text())
    restore_rng(state["rng"], torch.load(folder / "rng.pt", weights_only=True))


# ------------------------------------------------------------------------------------ housekeeping


def step_of(folder: Path) -> int:
    return int(folder.name.removeprefix("step-"))


def list_checkpoints(checkpoints_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    if not checkpoints_dir.is_dir():
        return []
    found = [p for p in checkpoints_dir.glob("step-*") if p.name.removeprefix("step-").isdigit() and (p / STATE_FILE).is_file()]
    return sorted(found, key=step_of)


def remove_partial(checkpoints_dir: Path) -> None:
    """Delete temporary folders left by a run that died while writing a checkpoint."""
    if checkpoints_dir.is_dir():
        for tmp in checkpoints_dir.glob(f"{TMP_PREFIX}*"):
            shutil.rmtree(tmp, ignore_errors=True)


def prune(checkpoints_dir: Path, keep: int) -> list[Path]:
    """Delete all but the newest `keep` checkpoints; returns what was deleted."""
    old = list_checkpoints(checkpoints_dir)[:-keep] if keep > 0 else []
    for folder in old:
        shutil.rmtree(folder, ignore_errors=True)
    return old


def _fsync_tree(folder: Path) -> None:
    """Flush the files to disk before the rename publishes them (a power cut must not leave empty files)."""
    for path in folder.rglob("*"):
        if path.is_file():
            with path.open("rb") as fh:
                os.fsync(fh.fileno())
