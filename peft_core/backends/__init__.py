"""Base-layer views for quantization backends, imported only when a model contains their layers.

`peft_core.base_layers.view_for` looks a layer's class module up here: a bitsandbytes layer triggers
`peft_core.backends.bitsandbytes`, which registers its views. A new backend (HQQ, torchao, GPTQ/AWQ) is
one module here plus one line in LAZY_BACKENDS; see docs/quantization.md.
"""

LAZY_BACKENDS: dict[str, str] = {
    "bitsandbytes": "peft_core.backends.bitsandbytes",
}
