"""The trainer: turn a job spec into a trained adapter. A pure library the job runner calls in a child process.

    run_training(spec, work_dir, hooks, resume_from=None) -> {"adapter_dir", "final_loss", "final_eval_loss", "steps"}

One module per job step, called in this order:

    app.datasets          read and check the dataset (fails on a bad line/row before any model is loaded)
    precision             pick device and precision for this machine
    model.load_base_model 'demo' (demo.py builds it offline), a local folder, or a Hub id
    data.tokenize/split   chat template / prompt+completion / text -> token ids with loss labels
    loop.train            the training loop; checkpoints in work_dir/checkpoints/step-N (checkpoint.py)
                          and the final adapter, PEFT format, in work_dir/adapter

Everything a person can fix surfaces as errors.TrainingError (message + hint); should_stop surfaces as
hooks.TrainingCancelled. The hooks and errors modules do not import torch; this one does, lazily, so
`import worker.training` stays cheap for the job runner.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import TrainingError
from .hooks import TrainHooks, TrainingCancelled

__all__ = ["TrainHooks", "TrainingCancelled", "TrainingError", "run_training"]


def run_training(spec: dict[str, Any], work_dir: Path, hooks: TrainHooks, resume_from: Path | None = None) -> dict[str, Any]:
    """Train the adapter a job spec describes; see the module docstring for the phases."""
    from app.datasets import DatasetError, read_rows
    from app.jobspec import JobSpecError, parse_job_spec

    from . import checkpoint, data, demo, loop, model, precision

    try:
        job = parse_job_spec(spec)
    except JobSpecError as exc:
        raise TrainingError(str(exc), hint="Fix the settings listed and submit the job again.") from exc
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    resume = (Path(resume_from), checkpoint.read_state(Path(resume_from))) if resume_from is not None else None
    settings = job.training

    try:  # the same reader the web process checked the data with, so what was shown is what is trained
        rows = read_rows(job.dataset.source, job.dataset.path, job.dataset.format, job.dataset.mapping)
    except DatasetError as exc:
        raise TrainingError(exc.message, hint=exc.hint) from exc
    notes = f" ({'; '.join(rows.notes)})" if rows.notes else ""
    hooks.on_log(f"dataset: {rows.source}, {len(rows.rows)} rows of {(rows.detected or rows.format).replace('_', '/')} data{notes}")

    chosen = precision.choose_precision(settings.precision)
    with precision.out_of_memory_as_training_error(settings, "while loading the base model"):
        base = model.load_base_model(
            job.base_model, dtype=chosen.weights_dtype, data_dir=demo.default_data_dir(), log=hooks.on_log,
            quantization=settings.quantization, device=str(chosen.device),
        )
    hooks.on_log(f"base model: {base.source}")
    examples, stats = data.tokenize_for_job(rows, base, job, hooks.on_log)  # the sample inspector's code path
    hooks.on_log(f"tokenized: {stats.summary(settings.max_seq_length)}")
    limit = getattr(base.model.config, "max_position_embeddings", None)
    if limit and settings.max_seq_length > limit and max(stats.lengths) > limit:
        hooks.on_log(f"warning: some examples are longer than the {limit} positions this model was trained for")
    train_set, eval_set = data.split(examples, settings.eval_fraction, settings.seed)
    pad_id = base.tokenizer.pad_token_id

    return loop.train(base, loop.TrainData(train_set, eval_set, pad_id), job, chosen, work_dir, hooks, resume)
