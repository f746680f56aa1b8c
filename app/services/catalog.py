"""What the studio offers: base models (with their shapes, for estimates) and training methods.

Torch-free on purpose: the web process lists models and renders method forms from this module.
A model's shape comes from a known table (the popular small open models and the built-in demo),
from a local folder's config.json, or from a config.json already in the Hugging Face cache; the web
process never downloads anything to describe a model.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.jobspec import DEMO_MODEL, TrainingSettings
from peft_core.config import PeftConfig
from peft_core.registry import registered_methods

# Linear layers of one decoder block, by model family: (module name suffix, in_features, out_features)
# computed from the shape. Families that fuse projections (phi3) list the fused ones.
_FUSED_QKV = {"phi3"}


@dataclass(frozen=True)
class Architecture:
    """The shape of a decoder-only transformer, enough to count parameters and estimate memory."""

    model_type: str
    hidden_size: int
    num_layers: int
    intermediate_size: int
    vocab_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    tie_embeddings: bool = True

    def block_linears(self) -> list[tuple[str, int, int]]:
        """(name, in, out) of each linear layer inside one decoder block."""
        h, q, kv, ff = self.hidden_size, self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim, self.intermediate_size
        if self.model_type in _FUSED_QKV:
            return [("self_attn.qkv_proj", h, q + 2 * kv), ("self_attn.o_proj", q, h), ("mlp.gate_up_proj", h, 2 * ff), ("mlp.down_proj", ff, h)]
        return [
            ("self_attn.q_proj", h, q),
            ("self_attn.k_proj", h, kv),
            ("self_attn.v_proj", h, kv),
            ("self_attn.o_proj", q, h),
            ("mlp.gate_proj", h, ff),
            ("mlp.up_proj", h, ff),
            ("mlp.down_proj", ff, h),
        ]

    def linear_modules(self) -> list[tuple[str, int, int]]:
        """Every adaptable linear layer by full module name (the output head excluded, as all-linear does)."""
        return [(f"model.layers.{i}.{name}", fan_in, fan_out) for i in range(self.num_layers) for name, fan_in, fan_out in self.block_linears()]

    def total_params(self) -> int:
        per_block = sum(fan_in * fan_out for _, fan_in, fan_out in self.block_linears()) + 2 * self.hidden_size
        embeddings = self.vocab_size * self.hidden_size * (1 if self.tie_embeddings else 2)
        return embeddings + self.num_layers * per_block + self.hidden_size

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Architecture | None:
        """Read a transformers config.json (multimodal configs: their text part); None if it is not a decoder we know how to size."""
        cfg = config.get("text_config") if isinstance(config.get("text_config"), dict) else config
        try:
            hidden = int(cfg.get("hidden_size") or cfg["n_embd"])
            heads = int(cfg.get("num_attention_heads") or cfg["n_head"])
            return cls(
                model_type=str(cfg.get("model_type") or config.get("model_type") or "unknown"),
                hidden_size=hidden,
                num_layers=int(cfg.get("num_hidden_layers") or cfg["n_layer"]),
                intermediate_size=int(cfg.get("intermediate_size") or cfg.get("n_inner") or 4 * hidden),
                vocab_size=int(cfg["vocab_size"]),
                num_heads=heads,
                num_kv_heads=int(cfg.get("num_key_value_heads") or heads),
                head_dim=int(cfg.get("head_dim") or hidden // heads),
                tie_embeddings=bool(config.get("tie_word_embeddings", cfg.get("tie_word_embeddings", True))),
            )
        except (KeyError, TypeError, ValueError):
            return None


@dataclass(frozen=True)
class ModelInfo:
    """One entry of the base-model picker."""

    id: str
    label: str
    arch: Architecture


def _arch(model_type: str, h: int, layers: int, ff: int, vocab: int, heads: int, kv: int, head_dim: int, tie: bool = True) -> Architecture:
    return Architecture(model_type, h, layers, ff, vocab, heads, kv, head_dim, tie)


# The built-in demo model: a tiny Llama-shaped decoder the worker builds in code (no download).
DEMO_ARCH = _arch("llama", 128, 4, 344, 512, 4, 4, 32)  # worker.training.demo.RECIPE

MODELS: tuple[ModelInfo, ...] = (
    ModelInfo(DEMO_MODEL, "Built-in demo model (offline)", DEMO_ARCH),
    ModelInfo("HuggingFaceTB/SmolLM2-135M-Instruct", "SmolLM2 135M Instruct", _arch("llama", 576, 30, 1536, 49152, 9, 3, 64)),
    ModelInfo("HuggingFaceTB/SmolLM2-360M-Instruct", "SmolLM2 360M Instruct", _arch("llama", 960, 32, 2560, 49152, 15, 5, 64)),
    ModelInfo("HuggingFaceTB/SmolLM2-1.7B-Instruct", "SmolLM2 1.7B Instruct", _arch("llama", 2048, 24, 8192, 49152, 32, 32, 64)),
    ModelInfo("Qwen/Qwen2.5-0.5B-Instruct", "Qwen2.5 0.5B Instruct", _arch("qwen2", 896, 24, 4864, 151936, 14, 2, 64)),
    ModelInfo("Qwen/Qwen2.5-1.5B-Instruct", "Qwen2.5 1.5B Instruct", _arch("qwen2", 1536, 28, 8960, 151936, 12, 2, 128)),
    ModelInfo("Qwen/Qwen2.5-3B-Instruct", "Qwen2.5 3B Instruct", _arch("qwen2", 2048, 36, 11008, 151936, 16, 2, 128)),
    ModelInfo("Qwen/Qwen2.5-7B-Instruct", "Qwen2.5 7B Instruct", _arch("qwen2", 3584, 28, 18944, 152064, 28, 4, 128, tie=False)),
    ModelInfo("Qwen/Qwen3-0.6B", "Qwen3 0.6B", _arch("qwen3", 1024, 28, 3072, 151936, 16, 8, 128)),
    ModelInfo("Qwen/Qwen3-1.7B", "Qwen3 1.7B", _arch("qwen3", 2048, 28, 6144, 151936, 16, 8, 128)),
    ModelInfo("Qwen/Qwen3-4B", "Qwen3 4B", _arch("qwen3", 2560, 36, 9728, 151936, 32, 8, 128)),
    ModelInfo("meta-llama/Llama-3.2-1B-Instruct", "Llama 3.2 1B Instruct (gated)", _arch("llama", 2048, 16, 8192, 128256, 32, 8, 64)),
    ModelInfo("meta-llama/Llama-3.2-3B-Instruct", "Llama 3.2 3B Instruct (gated)", _arch("llama", 3072, 28, 8192, 128256, 24, 8, 128)),
    ModelInfo("google/gemma-3-270m-it", "Gemma 3 270M Instruct (gated)", _arch("gemma3_text", 640, 18, 2048, 262144, 4, 1, 256)),
    ModelInfo("google/gemma-3-1b-it", "Gemma 3 1B Instruct (gated)", _arch("gemma3_text", 1152, 26, 6912, 262144, 4, 1, 256)),
    ModelInfo("microsoft/Phi-3.5-mini-instruct", "Phi-3.5 mini Instruct", _arch("phi3", 3072, 32, 8192, 32064, 32, 32, 96, tie=False)),
    ModelInfo("microsoft/Phi-4-mini-instruct", "Phi-4 mini Instruct", _arch("phi3", 3072, 32, 8192, 200064, 24, 8, 128)),
    ModelInfo("mistralai/Mistral-7B-Instruct-v0.3", "Mistral 7B Instruct v0.3", _arch("mistral", 4096, 32, 14336, 32768, 32, 8, 128, tie=False)),
)
_BY_ID = {m.id.lower(): m for m in MODELS}


def model_choices() -> list[tuple[str, str]]:
    """(label, value) pairs for the base-model picker, the offline demo first."""
    return [(m.label if m.id == DEMO_MODEL else f"{m.label} · {m.id}", m.id) for m in MODELS]


def _hub_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    return Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub"


def _read_config(path: Path) -> Architecture | None:
    try:
        return Architecture.from_config(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None


def resolve_architecture(base_model: str) -> tuple[Architecture | None, str]:
    """The model's shape and where it came from, or (None, why not) when the web process cannot know it offline."""
    name = (base_model or "").strip()
    known = _BY_ID.get(name.lower())
    if known is not None:
        return known.arch, "built-in table" if name != DEMO_MODEL else "the demo model"
    folder = Path(name).expanduser()
    if name and folder.is_dir():
        arch = _read_config(folder / "config.json")
        return (arch, "the folder's config.json") if arch else (None, "the folder has no readable config.json")
    if "/" in name:
        snapshots = _hub_cache_dir() / f"models--{name.replace('/', '--')}" / "snapshots"
        for config in sorted(snapshots.glob("*/config.json"), key=lambda p: p.stat().st_mtime, reverse=True):
            arch = _read_config(config)
            if arch:
                return arch, "the local Hugging Face cache"
    return None, "its size is unknown until the worker downloads it"


# --- methods -------------------------------------------------------------------------------------


class UnknownMethod(LookupError):
    def __init__(self, peft_type: str):
        known = ", ".join(registered_methods())
        super().__init__(f"there is no method {peft_type!r}; available: {known}")


@dataclass(frozen=True)
class MethodInfo:
    peft_type: str
    title: str
    description: str


def methods() -> list[MethodInfo]:
    """Every method peft_core registers (a new tuner shows up here with no studio code)."""
    out = []
    for name, spec in registered_methods().items():
        doc = (spec.config_cls.__doc__ or "").strip().splitlines()
        out.append(MethodInfo(name, spec.title or name, doc[0] if doc else ""))
    return out


def default_method() -> str:
    """The method a new run starts with: LoRA (what most people want first) when registered."""
    names = list(registered_methods())
    return "LORA" if "LORA" in names else names[0]


def method_schema(peft_type: str) -> dict[str, Any]:
    """The JSON schema of a method's config: types, defaults, choices, bounds, help and x-advanced per field."""
    spec = registered_methods().get(str(peft_type).upper())
    if spec is None:
        raise UnknownMethod(peft_type)
    return spec.config_cls.json_schema()


def studio_managed_fields() -> set[str]:
    """Fields every config has that the studio fills in itself (task type, base model, versions): not in forms."""
    return PeftConfig.field_names()


def training_schema() -> dict[str, Any]:
    return TrainingSettings.json_schema()
