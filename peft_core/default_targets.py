"""Default target modules per transformers model_type (torch-free, so the studio can show them)."""

from __future__ import annotations

# Default LoRA-style targets per transformers model_type (attention query/value projections).
DEFAULT_TARGETS: dict[str, list[str]] = {
    **{m: ["q_proj", "v_proj"] for m in (
        "llama", "llama4", "mistral", "mixtral", "gemma", "gemma2", "gemma3", "gemma3_text", "qwen2",
        "qwen2_moe", "qwen3", "qwen3_moe", "opt", "bart", "mbart", "gptj", "gpt_neo", "stablelm", "phi",
        "olmo", "olmo2", "granite", "cohere", "starcoder2", "mllama", "m2m_100", "blenderbot",
    )},
    **{m: ["q", "v"] for m in ("t5", "mt5", "umt5")},
    **{m: ["query", "value"] for m in ("bert", "roberta", "xlm-roberta", "electra", "layoutlm", "camembert", "albert")},
    "deberta": ["in_proj"],
    "deberta-v2": ["query_proj", "value_proj"],
    "gpt2": ["c_attn"],
    "gpt_bigcode": ["c_attn"],
    "bloom": ["query_key_value"],
    "gpt_neox": ["query_key_value"],
    "falcon": ["query_key_value"],
    "chatglm": ["query_key_value"],
    "mpt": ["Wqkv"],
    "codegen": ["qkv_proj"],
    "phi3": ["qkv_proj"],
    "distilbert": ["q_lin", "v_lin"],
}
