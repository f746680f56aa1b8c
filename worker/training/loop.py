"""The training loop: one function, `train`, read top to bottom in named phases, with pure helpers.

    setup    seed; wrap the base model with the job's method (peft_core, any registered method);
             AdamW over the trainable parameters; the step plan (schedule.py for the learning rate)
             with training.packing, the training examples packed into max_seq_length sequences (data.pack)
    resume   from a checkpoint: adapter weights, optimizer, RNG. The data position needs no restoring:
             the n-th micro-batch is a pure function of (n, seed) (data.micro_batch)
    loop     per optimizer step: poll should_stop; set the lr; forward/backward over the accumulated
             micro-batches; clip; step; then evaluate, record metrics and checkpoint at their intervals
    finish   save the adapter in PEFT format (atomically) and report

The loss of a step is the mean over its labelled tokens across *all* its micro-batches (each micro-batch
contributes its token sum divided by the step's token count), so gradient accumulation gives the same
gradient as one big batch, whatever the padding.
"""

from __future__ import annotations

import math
import os
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from app.jobspec import JobSpec, TrainingSettings

from .adapter import after_optimizer_step, extra_loss, wrap_model
from .checkpoint import list_checkpoints, load_checkpoint, prune, remove_partial, save_checkpoint
from .data import IGNORE_INDEX, Example, batches_per_epoch, collate, micro_batch, pack
from .errors import TrainingError
from .hooks import TrainHooks, TrainingCancelled
from .model import BaseModel
from .precision import Precision, out_of_memory_as_training_error
from .schedule import lr_at, warmup_steps

KEEP_CHECKPOINTS = 3  # older checkpoints are deleted: resuming only ever needs the newest
FLUSH_ROWS = 20  # metric rows are handed to on_metrics in batches of at most this many...
FLUSH_SECONDS = 2.0  # ...or at least this often (and before every checkpoint, at the end, on error)
PROGRESS_LINES = 10  # log lines about progress per run (besides evals and checkpoints)
PACKED_TOLERANCE = 0.05  # largest next-token probability change packing may cause (see check_packed_attention)


@dataclass
class TrainData:
    train: list[Example]
    eval: list[Example]
    pad_id: int


# ------------------------------------------------------------------------------------ pure helpers


@dataclass(frozen=True)
class Plan:
    """How many optimizer steps the run has and how they map onto the data."""

    batches_per_epoch: int
    total_steps: int
    warmup_steps: int
    accumulation: int

    def epoch_at(self, step: int) -> float:
        return step * self.accumulation / self.batches_per_epoch


def plan_steps(n_train: int, settings: TrainingSettings) -> Plan:
    per_epoch = batches_per_epoch(n_train, settings.batch_size)
    accumulation = settings.gradient_accumulation_steps
    total = settings.max_steps or max(1, math.ceil(settings.epochs * per_epoch / accumulation))
    return Plan(per_epoch, total, warmup_steps(total, settings.warmup_ratio), accumulation)


def token_loss(model: Any, batch: dict[str, torch.Tensor], precision: Precision) -> tuple[torch.Tensor, int]:
    """(summed next-token cross-entropy over the labelled tokens, how many there were).

    A packed batch (it has position_ids) goes in without the 2D attention mask: transformers then reads
    the row boundaries from the restarting position_ids and masks attention block-diagonally per row
    (use_cache=False, since a cache turns that detection off).
    """
    if "position_ids" in batch:
        inputs = {"input_ids": batch["input_ids"], "position_ids": batch["position_ids"], "use_cache": False}
    else:
        inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    with precision.autocast():
        logits = model(**inputs).logits
    logits = logits[:, -batch["input_ids"].shape[1] :]  # prompt-learning methods prepend virtual-token positions
    targets = batch["labels"][:, 1:]
    loss = F.cross_entropy(logits[:, :-1].float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX, reduction="sum")
    return loss, int((targets != IGNORE_INDEX).sum())


@torch.no_grad()
def evaluate(model: Any, examples: list[Example], *, batch_size: int, pad_id: int, precision: Precision) -> float | None:
    """Mean token loss over the held-out examples (None without any)."""
    if not examples:
        return None
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(examples), batch_size):
        batch = _to(collate(examples[start : start + batch_size], pad_id), precision.device)
        loss, n = token_loss(model, batch, precision)
        total, count = total + loss.item(), count + n
    model.train(was_training)
    return total / max(count, 1)


def configure_optimizer(model: Any, settings: TrainingSettings) -> torch.optim.AdamW:
    """AdamW over trainable parameters; matrices decay, vectors (biases, norms, DoRA magnitudes) do not."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": settings.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=settings.learning_rate)


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


# ---------------------------------------------------------------------------------- step mechanics


@dataclass(frozen=True)
class StepResult:
    loss: float  # mean over the step's labelled tokens
    tokens: int  # real (non-padding) tokens the step processed
    slots: int  # token slots of its batches, padding included


def accumulate_gradients(model: Any, data: TrainData, settings: TrainingSettings, step: int, precision: Precision, scaler: Any) -> StepResult:
    """Forward/backward over step `step`'s micro-batches."""
    first = (step - 1) * settings.gradient_accumulation_steps
    batches = [
        collate(micro_batch(data.train, settings.batch_size, settings.seed, first + k), data.pad_id)
        for k in range(settings.gradient_accumulation_steps)
    ]
    labelled = sum(int((b["labels"][:, 1:] != IGNORE_INDEX).sum()) for b in batches)
    loss_total, tokens, slots = 0.0, 0, 0
    for batch in batches:
        loss_sum, _ = token_loss(model, _to(batch, precision.device), precision)
        loss = loss_sum / labelled
        if (extra := extra_loss(model)) is not None:  # a method's own loss term (AdaLoRA's regulariser), per micro-batch
            loss = loss + extra / len(batches)
        (scaler.scale(loss) if scaler is not None else loss).backward()
        loss_total += loss_sum.item()
        tokens += int(batch["attention_mask"].sum())
        slots += batch["attention_mask"].numel()
    return StepResult(loss_total / labelled, tokens, slots)


def pack_training_data(data: TrainData, job: JobSpec, model: Any, precision: Precision, log: Any) -> TrainData:
    """training.packing: the training examples packed into max_seq_length sequences (eval stays one row per sequence)."""
    # (prompt-learning methods with packing are refused with the job spec: app.jobspec.parse_job_spec)
    settings = job.training
    packed = pack(data.train, settings.max_seq_length, settings.seed)
    tokens = sum(len(e.input_ids) for e in data.train)
    drift = check_packed_attention(model, packed, precision, job.base_model)
    log(
        f"packing: {len(data.train)} examples ({tokens} tokens) into {len(packed)} sequences of up to {settings.max_seq_length} tokens "
        f"({tokens / (len(packed) * settings.max_seq_length):.0%} full); rows do not attend to each other "
        f"(checked: a packed row's next-token probabilities differ from the row alone by at most {drift:.1e})"
    )
    return TrainData(packed, data.eval, data.pad_id)


@torch.no_grad()
def check_packed_attention(model: Any, packs: list[Example], precision: Precision, name: str = "this model") -> float:
    """Refuse packing on a model whose attention ignores the row boundaries (it would train on rows that see each other).

    The second row of one packed pair must get the next-token probabilities it gets alone; returns the largest
    difference: numerical noise (measured on an H200 with the demo model: 2e-3 in bf16, 0 in fp16, 5e-7 in fp32), while a
    leak moves probabilities by far more than PACKED_TOLERANCE.
    """
    pair = next((p for p in packs if p.segments is not None and len(p.segments) >= 2), None)
    if pair is None:
        return 0.0
    n0, n1 = pair.segments[:2]
    ids = pair.input_ids[: n0 + n1]
    batch = _to(collate([Example(ids, ids, (n0, n1))], pad_id=0), precision.device)
    was_training = model.training
    model.eval()
    try:
        with precision.autocast():
            packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits[0, -n1:]
            alone = model(input_ids=batch["input_ids"][:, n0:]).logits[0, -n1:]
    finally:
        model.train(was_training)
    drift = float((packed.float().softmax(-1) - alone.float().softmax(-1)).abs().max())
    if not drift <= PACKED_TOLERANCE:
        raise TrainingError(
            f"training.packing cannot be used with {name}: its attention does not keep packed rows apart "
            f"(a row's next-token probabilities changed by {drift:.2f} when packed after another).",
            hint="Turn training.packing off for this model.",
        )
    return drift


def check_finite(loss: float, step: int) -> None:
    if not math.isfinite(loss):
        raise TrainingError(
            f"The loss became {loss} at step {step}: training diverged.",
            hint="Lower training.learning_rate, keep max_grad_norm on, or use precision bf16/fp32 instead of fp16.",
        )


def clip_and_step(params: list[torch.nn.Parameter], optimizer: torch.optim.Optimizer, scaler: Any, max_norm: float) -> float:
    """Clip the gradient norm (0 = no clipping), step, clear; returns the norm before clipping."""
    if scaler is not None:
        scaler.unscale_(optimizer)
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm > 0 else float("inf"))
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(norm)


# ----------------------------------------------------------------------------------------- metrics


class MetricsBuffer:
    """Collects metric rows and hands them to on_metrics in small batches."""

    def __init__(self, sink: Any):
        self.sink, self.rows, self.last_flush = sink, [], time.monotonic()

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        if len(self.rows) >= FLUSH_ROWS or time.monotonic() - self.last_flush >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            rows, self.rows = self.rows, []
            self.sink(rows)
        self.last_flush = time.monotonic()


@dataclass
class Interval:
    """What happened since the last metrics row: its losses, non-padding tokens, token slots and training seconds."""

    losses: list[float] = field(default_factory=list)
    tokens: int = 0
    slots: int = 0  # token slots of the batches, padding included (padding_share = 1 - tokens / slots)
    seconds: float = 0.0

    def row(self, step: int, epoch: float, lr: float, grad_norm: float, eval_loss: float | None) -> dict[str, Any]:
        return {
            "step": step,
            "epoch": round(epoch, 4),
            "loss": sum(self.losses) / len(self.losses),
            "lr": lr,
            "grad_norm": grad_norm,
            "tokens_per_s": self.tokens / self.seconds if self.seconds > 0 else None,
            "eval_loss": eval_loss,
            "padding_share": 1 - self.tokens / self.slots if self.slots else None,
        }


# ------------------------------------------------------------------------------------------ phases


def check_resumable(state: dict[str, Any], job: JobSpec, n_train: int, folder: Path) -> None:
    """Refuse a checkpoint written for other settings or data: its curve could not continue."""
    ignore = {"log_every", "checkpoint_every", "eval_every"}  # these do not change what is trained
    then, now = state["spec"], job.to_dict()
    diffs = [k for k in ("base_model", "task_type", "dataset", "method") if then.get(k) != now.get(k)]
    diffs += [f"training.{k}" for k in now["training"] if k not in ignore and then["training"].get(k) != now["training"][k]]
    if diffs:
        raise TrainingError(
            f"Cannot resume from {folder}: it was written with different settings ({', '.join(diffs)}).",
            hint="Resume with the settings the checkpoint was written for, or start a new run.",
        )
    if state["train_examples"] != n_train:
        raise TrainingError(
            f"Cannot resume from {folder}: the dataset changed ({state['train_examples']} training examples then, {n_train} now).",
            hint="Restore the original dataset file, or start a new run.",
        )


def write_checkpoint(
    checkpoints: Path, step: int, model: Any, optimizer: Any, scaler: Any, job: JobSpec, plan: Plan, n_train: int, hooks: TrainHooks
) -> None:
    """Save step-N, drop the oldest beyond KEEP_CHECKPOINTS, tell the hooks."""
    settings = job.training
    state = {
        "step": step,
        "micro_batches": step * plan.accumulation,
        "epoch": plan.epoch_at(step),
        "data_seed": settings.seed,
        "train_examples": n_train,
        "schedule": {"kind": settings.lr_scheduler, "peak": settings.learning_rate, "warmup_steps": plan.warmup_steps, "total_steps": plan.total_steps},
        "spec": job.to_dict(),
    }
    folder = save_checkpoint(checkpoints / f"step-{step}", peft_model=model, optimizer=optimizer, scaler=scaler, state=state)
    pruned = prune(checkpoints, KEEP_CHECKPOINTS)
    hooks.on_checkpoint(str(folder), step)
    hooks.on_log(f"checkpoint {folder.name} saved" + (f" (removed {', '.join(p.name for p in pruned)})" if pruned else ""))


def save_adapter(model: Any, tokenizer: Any, work_dir: Path) -> Path:
    """The final adapter (PEFT format, plus the tokenizer it was trained with), replaced atomically."""
    final = work_dir / "adapter"
    tmp = work_dir / f".adapter-tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, save_embedding_layers=False)
    tokenizer.save_pretrained(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.rename(tmp, final)
    return final


def train(
    base: BaseModel,
    data: TrainData,
    job: JobSpec,
    precision: Precision,
    work_dir: Path,
    hooks: TrainHooks,
    resume: tuple[Path, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Train the job's adapter on `data`; returns {adapter_dir, final_loss, final_eval_loss, steps}."""
    settings = job.training
    checkpoints = work_dir / "checkpoints"
    metrics = MetricsBuffer(hooks.on_metrics)
    started = time.perf_counter()

    # --- setup
    random.seed(settings.seed)
    torch.manual_seed(settings.seed)
    with out_of_memory_as_training_error(settings, "while moving the model to the GPU"):
        model = wrap_model(base, job, precision, hooks.on_log)
    params = [p for p in model.parameters() if p.requires_grad]
    if settings.packing:
        data = pack_training_data(data, job, model, precision, hooks.on_log)
    optimizer = configure_optimizer(model, settings)
    scaler = torch.amp.GradScaler(precision.device.type) if precision.grad_scaler else None
    plan = plan_steps(len(data.train), settings)
    remove_partial(checkpoints)
    hooks.on_log(
        f"plan: {plan.total_steps} steps ({plan.epoch_at(plan.total_steps):.2f} epochs of {plan.batches_per_epoch} batches of "
        f"{settings.batch_size} x {plan.accumulation} accumulated), {len(data.eval)} eval examples, "
        f"{settings.lr_scheduler} lr {settings.learning_rate:g} after {plan.warmup_steps} warm-up steps, "
        f"{precision.name} on {precision.device.type}"
    )

    # --- resume
    start = 0
    if resume is not None:
        folder, state = resume
        check_resumable(state, job, len(data.train), folder)
        load_checkpoint(folder, peft_model=model, optimizer=optimizer, scaler=scaler, device=precision.device)
        start = state["step"]
        hooks.on_log(f"resumed from {folder.name}: continuing at step {start + 1} (epoch {plan.epoch_at(start):.2f})")

    # --- loop
    model.train()
    interval, loss, eval_loss = Interval(), None, None
    log_every_progress = max(1, plan.total_steps // PROGRESS_LINES)
    try:
        with out_of_memory_as_training_error(settings, "while training"):
            for step in range(start + 1, plan.total_steps + 1):
                if hooks.should_stop():
                    raise TrainingCancelled(f"stopped on request before step {step}")
                lr = lr_at(step - 1, peak=settings.learning_rate, total_steps=plan.total_steps, warmup=plan.warmup_steps, kind=settings.lr_scheduler)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                tick = time.perf_counter()
                result = accumulate_gradients(model, data, settings, step, precision, scaler)
                loss = result.loss
                check_finite(loss, step)
                grad_norm = clip_and_step(params, optimizer, scaler, settings.max_grad_norm)
                after_optimizer_step(model, step, plan.total_steps)
                interval.losses.append(loss)
                interval.tokens += result.tokens
                interval.slots += result.slots
                interval.seconds += time.perf_counter() - tick

                last = step == plan.total_steps
                evaluated = step % settings.eval_every == 0 or last
                step_eval = evaluate(model, data.eval, batch_size=settings.batch_size, pad_id=data.pad_id, precision=precision) if evaluated else None
                eval_loss = step_eval if step_eval is not None else eval_loss
                if step % settings.log_every == 0 or evaluated:
                    metrics.add(interval.row(step, plan.epoch_at(step), lr, grad_norm, step_eval))
                    interval = Interval()
                if step_eval is not None or step % log_every_progress == 0:
                    shown = f", eval loss {step_eval:.4f}" if step_eval is not None else ""
                    hooks.on_log(f"step {step}/{plan.total_steps}: loss {loss:.4f}{shown}, lr {lr:.2e}")
                if step % settings.checkpoint_every == 0 and not last:
                    metrics.flush()
                    write_checkpoint(checkpoints, step, model, optimizer, scaler, job, plan, len(data.train), hooks)
                hooks.on_progress(step, plan.total_steps)
    finally:
        metrics.flush()

    # --- finish
    adapter = save_adapter(model, base.tokenizer, work_dir)
    minutes = (time.perf_counter() - started) / 60
    hooks.on_log(f"done: {plan.total_steps} steps in {minutes:.1f} min; adapter saved to {adapter}")
    return {"adapter_dir": str(adapter), "final_loss": loss, "final_eval_loss": eval_loss, "steps": plan.total_steps}


def latest_checkpoint(work_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run, if any (for a runner that resumes on its own)."""
    found = list_checkpoints(work_dir / "checkpoints")
    return found[-1] if found else None
