"""Base model resolution: 'demo', a local folder, or a Hugging Face Hub id -> (model, tokenizer).

Loading goes through transformers' Auto classes with `trust_remote_code` never set: the studio does not
run code that comes with a model. Every way loading can fail that a person can fix (no network, a gated
or missing repository, a folder that is not a model, an architecture transformers does not know) becomes
a TrainingError naming the model and the fix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .errors import TrainingError


@dataclass
class BaseModel:
    model: Any  # a transformers PreTrainedModel (causal LM)
    tokenizer: Any  # its tokenizer, with a pad token
    source: str  # where it came from, for the log ("the built-in demo model (...)", "local folder ...", "the Hub")


def looks_like_path(name: str) -> bool:
    """Hub ids are 'name' or 'owner/name'; anything that starts like a path or has more slashes is a folder."""
    return name.startswith(("/", "./", "../", "~")) or name.count("/") > 1 or Path(name).expanduser().exists()


def load_base_model(
    name: str, *, dtype: torch.dtype, data_dir: Path, log: Callable[[str], None] = print, quantization: str = "none", device: str = "cpu"
) -> BaseModel:
    """Load the base model and tokenizer named in the job (raises TrainingError); `log` hears of a demo build.

    With quantization "8bit"/"4bit-*" the linear layers are loaded through bitsandbytes, placed on `device`
    at load time (quantized models cannot be moved afterwards) and prepared for k-bit training."""
    base = _load_base(name, dtype=dtype, data_dir=data_dir, log=log, extra=_quantized_loading(quantization, dtype, device))
    if quantization != "none":
        keep_training_kernels(base.model, log)
    return base


def keep_training_kernels(model: Any, log: Callable[[str], None] = print) -> int:
    """Make bitsandbytes' 4-bit layers evaluate with the kernels they train with; returns how many layers.

    Why: on a CPU with AVX512-BF16, a Linear4bit in eval mode without gradients repacks its weight in place
    for a faster inference kernel. That repacking needs an output width divisible by 32 (the demo model's
    MLP is 344 wide, so the eval pass of a 4-bit demo run failed inside bitsandbytes with "N must be
    divisible by block_n"), and the packed weight stays packed: the training steps after an eval then run
    a bf16 kernel that has no backward, so gradients stop at every base layer. A trainer evaluates between
    steps, so it keeps the training layout (eval costs a little more on such CPUs; GPUs are unaffected)."""
    layers = [m for m in model.modules() if getattr(m, "support_avx512bf16_for_cpu", False)]
    for module in layers:
        module.support_avx512bf16_for_cpu = False
    if layers:
        log(f"bitsandbytes: {len(layers)} 4-bit layers keep their training layout for evaluation (CPU inference repacking off)")
    return len(layers)


def _load_base(name: str, *, dtype: torch.dtype, data_dir: Path, log: Callable[[str], None], extra: dict[str, Any]) -> BaseModel:
    if name == "demo":
        from .demo import ensure_demo_model

        folder = ensure_demo_model(data_dir, log=log)
        loaded = _load(str(folder), dtype, local=True, shown="the built-in demo model", **extra)
        return _finish(loaded, f"the built-in demo model ({folder})")
    folder = Path(name).expanduser()
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise TrainingError(
                f"The folder {folder} is not a transformers model: it has no config.json.",
                hint="Point base_model at a folder saved with save_pretrained (config.json, weights, tokenizer files).",
            )
        return _finish(_load(str(folder), dtype, local=True, shown=f"the folder {folder}", **extra), f"local folder {folder}")
    if looks_like_path(name):
        raise TrainingError(f"The model folder {name} does not exist on the worker.", hint="Check the path, or give a Hub model id.")
    return _finish(_load(name, dtype, local=False, shown=name, **extra), f"{name} (Hugging Face Hub)")


def _quantized_loading(quantization: str, dtype: torch.dtype, device: str) -> dict[str, Any]:
    """from_pretrained arguments for a quantized load (none for 'none'); a clear error without bitsandbytes."""
    if quantization == "none":
        return {}
    from peft_core.errors import PeftCoreError
    from peft_core.quantization import bitsandbytes_config

    try:
        config = bitsandbytes_config(quantization, compute_dtype=dtype)
    except PeftCoreError as exc:
        raise TrainingError(str(exc), hint="Install bitsandbytes on the worker, or set training.quantization to 'none'.") from exc
    return {"quantization_config": config, "device_map": {"": device}}


def _load(name_or_path: str, dtype: torch.dtype, *, local: bool, shown: str, **extra: Any) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {"local_files_only": True} if local else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=dtype, **kwargs, **extra)
    except TrainingError:
        raise
    except Exception as exc:
        raise _explain(exc, name_or_path, shown) from exc
    return model, tokenizer


def _finish(loaded: tuple[Any, Any], source: str) -> BaseModel:
    model, tokenizer = loaded
    if tokenizer.pad_token_id is None:  # batching needs one; padded positions carry no loss anyway
        tokenizer.pad_token = tokenizer.eos_token if tokenizer.eos_token is not None else tokenizer.convert_ids_to_tokens(0)
    if getattr(model.config, "use_cache", None):
        model.config.use_cache = False  # a KV cache only costs memory while training
    return BaseModel(model=model, tokenizer=tokenizer, source=source)


def _causes(exc: BaseException) -> list[BaseException]:
    """The exception and everything it was raised from (transformers wraps hub errors in OSError)."""
    seen: list[BaseException] = []
    while exc is not None and all(exc is not s for s in seen):
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


def _explain(exc: BaseException, name: str, shown: str) -> TrainingError:
    """A TrainingError for a failed from_pretrained, by the kind of hub/transformers error behind it."""
    kinds = {type(e).__name__ for e in _causes(exc)}
    text = " ".join(str(e) for e in _causes(exc))
    if "GatedRepoError" in kinds:
        return TrainingError(
            f"The model {name} is gated: its authors require you to accept their terms before downloading it.",
            hint=f"Accept the licence on https://huggingface.co/{name} with your account, then add a Hugging Face "
            "access token (HF_TOKEN) to the worker's settings and run the job again.",
        )
    if "RepositoryNotFoundError" in kinds:
        return TrainingError(
            f"There is no model {name} on the Hugging Face Hub (or it is private).",
            hint="Check the spelling of the model id (owner/name); for a private model, add an access token (HF_TOKEN).",
        )
    if "RevisionNotFoundError" in kinds:
        return TrainingError(f"The requested revision of {name} does not exist.", hint="Use an existing branch, tag or commit.")
    if {"LocalEntryNotFoundError", "OfflineModeIsEnabled"} & kinds or "couldn't connect" in text.lower():
        return TrainingError(
            f"The model {name} is not in the worker's local cache, and the worker cannot download it (offline).",
            hint=f"Download it once while online (`hf download {name}`), or copy the model folder to the worker and give "
            "its path, or pick the built-in 'demo' model.",
        )
    if "trust_remote_code" in text:
        return TrainingError(
            f"The model {name} needs custom code from its repository, which the studio does not run.",
            hint="Pick a model whose architecture transformers supports natively.",
        )
    if "does not recognize this architecture" in text:
        return TrainingError(f"This version of transformers does not know the architecture of {name}.", hint="Upgrade transformers on the worker.")
    if "Unrecognized configuration class" in text:
        return TrainingError(
            f"{shown} is not a text-generation (causal language) model, which is what the trainer fine-tunes.",
            hint="Pick a decoder model such as an instruct chat model.",
        )
    return TrainingError(f"Could not load the model {shown}: {type(exc).__name__}: {exc}", hint="Check the model id or folder.")
