"""The model card (README.md) and loss chart (PNG) published with a run: written from facts, not from templates on disk.

Deterministic on purpose: the same run gives byte-identical files, so publishing it again finds nothing
changed on the Hub and makes no second commit. No dates, no timestamps, no absolute paths.
Pillow (brought by gradio) draws the chart; no plotting library is needed for two lines.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, field
from typing import Any

import yaml

CHART_FILE = "loss_chart.png"


@dataclass(frozen=True)
class CardFacts:
    """What the card says about a run; built from the run's row and metrics by the publisher."""

    repo_id: str
    run_name: str
    base_model: str
    method: dict[str, Any]
    dataset: str
    steps: int
    target: str  # "adapter" or "merged"
    train_losses: list[tuple[int, float]] = field(default_factory=list)
    eval_losses: list[tuple[int, float]] = field(default_factory=list)
    license: str | None = None
    combination: dict[str, Any] | None = None  # a combined adapter's "combine" section: sources, weights, type

    @property
    def final_train_loss(self) -> float | None:
        return self.train_losses[-1][1] if self.train_losses else None

    @property
    def final_eval_loss(self) -> float | None:
        return self.eval_losses[-1][1] if self.eval_losses else None


def _hub_base(base_model: str) -> str | None:
    """The base model as the Hub knows it (org/name), or None for the demo model or a local folder."""
    parts = base_model.split("/")
    return base_model if len(parts) == 2 and all(parts) and not base_model.startswith((".", "~")) else None


def front_matter(facts: CardFacts) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    base = _hub_base(facts.base_model)
    if base:
        meta["base_model"] = base
    if facts.target == "adapter":
        meta["library_name"] = "peft"
    else:
        meta["library_name"] = "transformers"
    meta["tags"] = ["peft-studio", str(facts.method.get("peft_type", "")).lower(), "merged" if facts.target == "merged" else "adapter"]
    if facts.license:
        meta["license"] = facts.license
    meta["pipeline_tag"] = "text-generation"
    return meta


def _loss(value: float | None) -> str:
    return "not recorded" if value is None else f"{value:.4f}"


def _usage(facts: CardFacts) -> str:
    base = facts.base_model if _hub_base(facts.base_model) else "<the base model folder>"
    if facts.target == "merged":
        return ("The adapter is merged into the weights, so no PEFT library is needed:\n\n```python\n"
                "from transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
                f'model = AutoModelForCausalLM.from_pretrained("{facts.repo_id}")\n'
                f'tokenizer = AutoTokenizer.from_pretrained("{facts.repo_id}")\n```\n')
    lines = [
        "With `peft`:\n\n```python",
        "from peft import PeftModel",
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n",
        f'base = AutoModelForCausalLM.from_pretrained("{base}")',
        f'model = PeftModel.from_pretrained(base, "{facts.repo_id}")',
        f'tokenizer = AutoTokenizer.from_pretrained("{facts.repo_id}")\n```\n',
        "With `peft_core` (PEFT Studio's engine; same checkpoint format):\n\n```python",
        "import peft_core",
        "from transformers import AutoModelForCausalLM\n",
        f'base = AutoModelForCausalLM.from_pretrained("{base}")',
        f'model = peft_core.PeftModel.from_pretrained(base, "{facts.repo_id}")\n```\n',
    ]
    return "\n".join(lines)


def _combination(facts: CardFacts) -> list[str]:
    """The section of a combined adapter's card: which runs, with which weights, how (no training, no losses)."""
    spec = facts.combination or {}
    knobs = {k: spec[k] for k in ("density", "majority_sign_method", "svd_rank") if spec.get(k) is not None}
    if spec.get("combination_type") not in ("ties", "dare_ties", "magnitude_prune"):
        knobs.pop("majority_sign_method", None)
    lines = ["## How it was made\n", f"- Base model: `{facts.base_model}`", f"- Method: {facts.method.get('peft_type', 'unknown')}",
             f"- Combination: `{spec.get('combination_type', 'unknown')}`" + (f" ({json.dumps(knobs, sort_keys=True)})" if knobs else ""),
             "- Combined from these studio runs (weight, run):\n"]
    lines += [f"  - {src.get('weight', 0):g} × run #{src.get('run_id')} \"{src.get('name') or ''}\"" for src in spec.get("sources", [])]
    return [*lines, ""]


def model_card(facts: CardFacts) -> str:
    """README.md: YAML front matter, then what was trained, how, on what, how it went, and how to load it."""
    meta = yaml.safe_dump(front_matter(facts), sort_keys=False, allow_unicode=True).strip()
    settings = {k: v for k, v in facts.method.items() if k != "peft_type"}
    method = facts.method.get("peft_type", "PEFT")
    what = f"{method} adapter" if facts.target == "adapter" else f"model with its {method} adapter merged into the weights"
    title = facts.repo_id.split("/")[-1]
    if facts.combination is not None:
        return "\n".join([
            f"---\n{meta}\n---\n",
            f"# {title}\n",
            f"This is a {what}, made with PEFT Studio by combining fine-tuned adapters (\"{facts.run_name}\").\n",
            *_combination(facts),
            "## How to load it\n",
            _usage(facts),
        ])
    return "\n".join([
        f"---\n{meta}\n---\n",
        f"# {title}\n",
        f"This is a {what}, fine-tuned with PEFT Studio (run \"{facts.run_name}\").\n",
        "## Training\n",
        f"- Base model: `{facts.base_model}`",
        f"- Method: {facts.method.get('peft_type', 'unknown')}",
        f"- Dataset: {facts.dataset}",
        f"- Steps: {facts.steps}",
        f"- Final training loss: {_loss(facts.final_train_loss)}",
        f"- Final evaluation loss: {_loss(facts.final_eval_loss)}\n",
        "Method settings:\n",
        "```json",
        json.dumps(settings, indent=2, sort_keys=True, default=str),
        "```\n",
        f"![Training loss]({CHART_FILE})\n",
        "## How to load it\n",
        _usage(facts),
    ])


def loss_chart(train: list[tuple[int, float]], evals: list[tuple[int, float]], *, size: tuple[int, int] = (640, 360)) -> bytes:
    """A PNG of training loss (blue) and evaluation loss (orange) against step; 'no losses recorded' when empty."""
    from PIL import Image, ImageDraw

    width, height = size
    left, right, top, bottom = 60, 20, 30, 40
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    draw.text((left, 8), "loss by step (blue: training, orange: evaluation)", fill="black")
    points = [p for p in train + evals if math.isfinite(p[1])]
    draw.rectangle([left, top, width - right, height - bottom], outline="#888888")
    if not points:
        draw.text((left + 10, top + 10), "no losses recorded", fill="black")
        return _png(image)
    steps = [s for s, _ in points]
    losses = [v for _, v in points]
    s0, s1 = min(steps), max(steps) if max(steps) > min(steps) else min(steps) + 1
    v0, v1 = min(losses), max(losses) if max(losses) > min(losses) else min(losses) + 1

    def xy(step: int, value: float) -> tuple[float, float]:
        x = left + (step - s0) / (s1 - s0) * (width - left - right)
        y = height - bottom - (value - v0) / (v1 - v0) * (height - top - bottom)
        return x, y

    for series, colour in ((train, "#1f77b4"), (evals, "#ff7f0e")):
        line = [xy(s, v) for s, v in series if math.isfinite(v)]
        if len(line) > 1:
            draw.line(line, fill=colour, width=2)
        for x, y in line[-1:] if len(line) == 1 else []:
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
    draw.text((4, top), f"{v1:.3g}", fill="black")
    draw.text((4, height - bottom - 10), f"{v0:.3g}", fill="black")
    draw.text((left, height - bottom + 6), f"step {s0}", fill="black")
    draw.text((width - right - 70, height - bottom + 6), f"step {s1}", fill="black")
    return _png(image)


def _png(image: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=False)
    return out.getvalue()
