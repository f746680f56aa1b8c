"""Default target modules per transformers model_type (torch-free, so the studio can show them).

Where peft has a default for a model type, ours is the same (tests/peft_core/test_targeting.py checks the
adapted module names against peft on tiny models). The other entries are text-only models whose
attention projections are unambiguous. Multimodal models get a regex limited to the language model, so
a default never adapts the vision tower (its attention layers use the same q_proj/v_proj names).
"""

from __future__ import annotations

_LANGUAGE_MODEL_QV = r".*language_model\..*\.(q_proj|v_proj)"

# Default LoRA-style targets per transformers model_type (attention query/value projections).
DEFAULT_TARGETS: dict[str, list[str] | str] = {
    **{m: ["q_proj", "v_proj"] for m in (
        "llama", "llama4", "mistral", "mixtral", "gemma", "gemma2", "gemma3_text", "qwen2",
        "qwen2_moe", "qwen3", "qwen3_moe", "opt", "bart", "mbart", "gptj", "gpt_neo", "stablelm",
        "olmo", "olmo2", "granite", "cohere", "starcoder2", "m2m_100", "blenderbot",
    )},
    **{m: _LANGUAGE_MODEL_QV for m in ("gemma3", "gemma4", "mllama")},
    "phi": ["q_proj", "v_proj", "fc1", "fc2"],
    **{m: ["q", "v"] for m in ("t5", "mt5", "umt5")},
    **{m: ["query", "value"] for m in ("bert", "roberta", "xlm-roberta", "electra", "layoutlm", "camembert", "albert")},
    "deberta": ["in_proj"],
    "deberta-v2": ["query_proj", "value_proj"],
    "gpt2": ["c_attn"],
    "gpt_bigcode": ["c_attn"],
    "btlm": ["c_proj", "c_attn"],
    **{m: ["query_key_value"] for m in ("bloom", "gpt_neox", "falcon", "RefinedWeb", "RefinedWebModel", "chatglm")},
    "mpt": ["Wqkv"],
    "codegen": ["qkv_proj"],
    "phi3": ["qkv_proj"],
    "distilbert": ["q_lin", "v_lin"],
    "blip-2": ["q", "v", "q_proj", "v_proj"],
    "nemotron_h": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "rwkv": ["key", "value", "receptance", "output"],
    "rwkv7": ["r_proj", "k_proj", "v_proj", "o_proj", "key", "value"],
}
