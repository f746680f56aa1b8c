"""Loading base models quantized with bitsandbytes, with errors that say what to install or change."""

from __future__ import annotations

import importlib.util
from typing import Any

from .errors import PeftCoreError

QUANTIZATION_CHOICES = ("none", "8bit", "4bit-nf4", "4bit-fp4")


def require_bitsandbytes() -> None:
    if importlib.util.find_spec("bitsandbytes") is None:
        raise PeftCoreError(
            "4-bit/8-bit loading needs the bitsandbytes package, which is not installed here: "
            "pip install 'peft-studio[quant]' (or choose quantization 'none')"
        )


def bitsandbytes_config(quantization: str, compute_dtype: Any = None, double_quant: bool = True) -> Any:
    """A transformers BitsAndBytesConfig for one of QUANTIZATION_CHOICES (None for 'none')."""
    if quantization not in QUANTIZATION_CHOICES:
        raise PeftCoreError(f"quantization {quantization!r} is not one of {', '.join(QUANTIZATION_CHOICES)}")
    if quantization == "none":
        return None
    require_bitsandbytes()
    import torch
    from transformers import BitsAndBytesConfig

    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=quantization.split("-")[1],
        bnb_4bit_use_double_quant=double_quant,
        bnb_4bit_compute_dtype=compute_dtype or torch.float32,
    )
