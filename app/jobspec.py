"""The job specification: what a person asks the studio to train, as stored in Job.config (JSON).

Validated in the web process before anything is queued (torch-free: the method's config class comes
from peft_core's registry, which imports no torch), and again by the worker. Every problem is reported
at once, named by its path as the user sees it ("training.learning_rate", "method.r").

    {
      "name": "my run",                          optional
      "base_model": "demo" | "<hub id>" | "<local folder>",
      "task_type": "CAUSAL_LM",
      "dataset": {"source": "demo"} | {"source": "stored", "dataset_id": 3, "format": "auto", "mapping": {...}}
                 | {"source": "file", "path": "...", "format": "auto"}      ("jsonl" is the older name of "file")
      "method": {"peft_type": "LORA", "r": 8, ...any field of that method's config},
      "training": {...TrainingSettings fields}
    }
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from peft_core.config import Schema, option
from peft_core.errors import ConfigError, PeftCoreError
from peft_core.quantization import QUANTIZATION_CHOICES
from peft_core.registry import registered_methods

DEMO_MODEL = "demo"
CHAT_TEMPLATE_CHOICES = ("auto", "chatml", "llama-3", "mistral", "gemma", "phi-3", "alpaca", "plain")
DEMO_DATASET = "demo"


class JobSpecError(ValueError):
    """The job spec is invalid; `problems` lists each as 'path: message'."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid job:\n" + "\n".join(f"  - {p}" for p in problems))


@dataclass
class TrainingSettings(Schema):
    """How to train: the knobs of the training loop, with defaults that work for the demo."""

    epochs: float = option(3.0, help="Passes over the training data (ignored when max_steps is set).", gt=0)
    max_steps: int | None = option(None, help="Stop after this many optimizer steps (overrides epochs).", gt=0)
    learning_rate: float = option(2e-4, help="Peak learning rate of the adapter.", gt=0, le=1.0)
    batch_size: int = option(4, help="Examples per forward pass.", gt=0, le=1024)
    gradient_accumulation_steps: int = option(1, help="Forward passes per optimizer step.", gt=0, le=1024, advanced=True)
    max_seq_length: int = option(512, help="Longer examples are truncated to this many tokens.", gt=8, le=131072)
    warmup_ratio: float = option(0.05, help="Fraction of steps spent warming the learning rate up.", ge=0, le=0.5, advanced=True)
    lr_scheduler: str = option("cosine", help="Learning-rate schedule after warm-up.", choices=("cosine", "linear", "constant"), advanced=True)
    weight_decay: float = option(0.0, help="AdamW weight decay.", ge=0, le=1, advanced=True)
    max_grad_norm: float = option(1.0, help="Gradient clipping norm (0 = off).", ge=0, advanced=True)
    seed: int = option(42, help="Random seed: the same seed and data give the same run.", ge=0)
    eval_fraction: float = option(0.1, help="Share of the data held out for eval loss (0 = no eval).", ge=0, le=0.5, advanced=True)
    eval_every: int = option(20, help="Evaluate every N optimizer steps.", gt=0, advanced=True)
    checkpoint_every: int = option(20, help="Save a resumable checkpoint every N optimizer steps.", gt=0, advanced=True)
    log_every: int = option(1, help="Write metrics every N optimizer steps.", gt=0, advanced=True)
    precision: str = option("auto", help="auto = bf16 on a GPU that supports it, else fp32.", choices=("auto", "fp32", "bf16", "fp16"), advanced=True)
    gradient_checkpointing: bool = option(False, help="Trade compute for memory on long sequences.", advanced=True)
    quantization: str = option(
        "none",
        help="Load the base model in 8-bit or 4-bit (QLoRA) to fit a bigger model in less memory; needs bitsandbytes.",
        choices=QUANTIZATION_CHOICES,
        advanced=True,
    )
    train_on_completions_only: bool = option(True, help="Mask prompt tokens out of the loss for chat and prompt/completion data.", advanced=True)
    packing: bool = option(
        False,
        help="Pack several short examples into each sequence (no padding; rows never attend to each other).",
        advanced=True,
    )


@dataclass
class DatasetSpec(Schema):
    """Where the training data comes from."""

    source: str = option(
        DEMO_DATASET,
        help="'demo' (built in), 'stored' (a dataset from the Datasets page) or 'jsonl'/'file' (a file on the server).",
        choices=("demo", "stored", "jsonl", "file"),
    )
    dataset_id: int | None = option(None, help="The stored dataset's id when source is 'stored'.")
    path: str | None = option(None, help="Path of the CSV/JSON/JSONL/Parquet file (filled in from a stored dataset).")
    format: str = option(
        "auto",
        help="Row shape: auto-detect, chat, ShareGPT, instruction, prompt/completion, plain text or text/label classification.",
        choices=("auto", "chat", "sharegpt", "instruction", "prompt_completion", "text", "classification"),
    )
    mapping: dict[str, str] | None = option(None, help="Which column holds each field of the format, e.g. {\"prompt\": \"question\"}.", advanced=True)
    template: str = option(
        "auto",
        help="How conversations become text: the model's own chat template (auto) or a built-in one.",
        choices=CHAT_TEMPLATE_CHOICES,
    )
    system_prompt: str | None = option(None, help="A system message added to conversations that have none.", advanced=True)

    def extra_checks(self) -> list[str]:
        if self.source == "stored" and self.dataset_id is None:
            return ["dataset_id: pick a stored dataset (its id on the Datasets page)"]
        if self.source in ("jsonl", "file") and not self.path:
            return ["path: a dataset file needs its path"]
        if self.mapping and self.format != "auto":
            from app.datasets.formats import fields_of

            unknown = sorted(set(self.mapping) - set(fields_of(self.format)))
            if unknown:
                return [f"mapping: {unknown[0]!r} is not a field of {self.format} data (fields: {', '.join(fields_of(self.format))})"]
        return []


@dataclass
class JobSpec:
    base_model: str
    method: dict[str, Any]
    dataset: DatasetSpec = field(default_factory=DatasetSpec)
    training: TrainingSettings = field(default_factory=TrainingSettings)
    task_type: str = "CAUSAL_LM"
    name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "base_model": self.base_model,
            "task_type": self.task_type,
            "dataset": self.dataset.to_dict(),
            "method": dict(self.method),
            "training": self.training.to_dict(),
        }


def _section(cls: type[Schema], data: Any, prefix: str, problems: list[str]) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        problems.append(f"{prefix}: expected an object, got {type(data).__name__}")
        return None
    unknown = sorted(set(data) - cls.field_names())
    problems.extend(f"{prefix}.{k}: unknown setting (known: {', '.join(sorted(cls.field_names()))})" for k in unknown)
    try:
        return cls(**{k: v for k, v in data.items() if k not in unknown})
    except ConfigError as exc:
        problems.extend(f"{prefix}.{p}" for p in exc.problems)
        return None


def method_config(method: dict[str, Any], task_type: str | None = None):
    """The peft_core config object for a job's method section (raises ConfigError)."""
    data = dict(method)
    data.setdefault("task_type", task_type)
    from peft_core.config import PeftConfig

    return PeftConfig.from_dict(data)


def parse_job_spec(data: Any) -> JobSpec:
    """Validate a job spec dict; raise JobSpecError listing every problem."""
    problems: list[str] = []
    if not isinstance(data, dict):
        raise JobSpecError([f"job: expected an object, got {type(data).__name__}"])
    known = {"name", "base_model", "task_type", "dataset", "method", "training"}
    problems.extend(f"{k}: unknown section (known: {', '.join(sorted(known))})" for k in sorted(set(data) - known))
    base_model = data.get("base_model", DEMO_MODEL)
    if not isinstance(base_model, str) or not base_model.strip():
        problems.append("base_model: give 'demo', a Hub model id like 'Qwen/Qwen2.5-0.5B', or a local folder")
    task_type = data.get("task_type", "CAUSAL_LM")
    if task_type != "CAUSAL_LM":
        problems.append(f"task_type: {task_type!r} is not supported by the trainer yet; use 'CAUSAL_LM'")
    method = data.get("method", {"peft_type": "LORA"})
    if not isinstance(method, dict) or "peft_type" not in method:
        methods = ", ".join(registered_methods())
        problems.append(f"method.peft_type: say which method to train (one of {methods})")
    else:
        spec = registered_methods().get(str(method["peft_type"]).upper())
        if spec is not None:
            unknown = sorted(set(method) - spec.config_cls.field_names() - {"peft_type"})
            problems.extend(f"method.{k}: not a setting of {spec.title or spec.peft_type.value}" for k in unknown)
            method = {k: v for k, v in method.items() if k not in unknown}
        try:
            method_config(method, task_type if isinstance(task_type, str) else None)
        except ConfigError as exc:
            problems.extend(f"method.{p}" for p in exc.problems)
        except PeftCoreError as exc:
            problems.append(f"method: {exc}")
    dataset = _section(DatasetSpec, data.get("dataset"), "dataset", problems)
    training = _section(TrainingSettings, data.get("training"), "training", problems)
    spec = registered_methods().get(str(method.get("peft_type", "")).upper()) if isinstance(method, dict) else None
    if training is not None and training.packing and spec is not None and spec.config_cls.is_prompt_learning:
        problems.append(
            f"training.packing: {spec.title or spec.peft_type.value} prepends virtual tokens to each sequence, which every packed row "
            "would share; turn packing off or pick a method such as LoRA"
        )
    name = data.get("name")
    if name is not None and not isinstance(name, str):
        problems.append("name: must be text")
    if problems:
        raise JobSpecError(problems)
    return JobSpec(base_model=base_model.strip(), method=dict(method), dataset=dataset, training=training, task_type=task_type, name=name)
