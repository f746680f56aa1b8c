"""Prompt encoders: per adapter, the module that turns virtual-token ids into what the model receives.

    prompt tuning   E[i]                                (V, token_dim)
    p-tuning        MLP(E[i])  or  MLP(BiLSTM(E[i]))    (V, token_dim)
    prefix tuning   E[i]  or  MLP_tanh(E[i])            (V, num_layers * 2 * token_dim): a key and a value per layer

E is an `embedding` of the virtual tokens. Sub-module names (embedding, mlp_head, lstm_head, transform)
are peft's, so weights can be compared one to one in tests. With `inference_mode` the reparameterising
encoders are not built: a saved checkpoint holds their *output* (peft's `prompt_embeddings`), which
then sits in `embedding` directly.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn

from ...errors import ConfigError

LAYER_CLASSES: dict[str, type] = {}  # no layers are injected: the wrapper prepends the prompt


class PromptEncoderBase(nn.Module):
    """`embedding` holds the virtual tokens; `reparameterized` says whether forward is more than a lookup."""

    embedding: nn.Embedding

    @property
    def reparameterized(self) -> bool:
        return False

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        return self.embedding(indices)


class PromptEmbedding(PromptEncoderBase):
    """Prompt tuning: a plain table of V * num_transformer_submodules virtual token embeddings."""

    def __init__(self, config: Any, word_embeddings: nn.Module | None):
        super().__init__()
        total = config.num_virtual_tokens * config.num_transformer_submodules
        self.embedding = nn.Embedding(total, config.token_dim)
        if config.inference_mode or config.prompt_tuning_init == "RANDOM":
            return
        if word_embeddings is None:
            raise ConfigError(type(config).__name__, ["prompt_tuning_init: needs the model's input embeddings, which this model does not expose"])
        if config.prompt_tuning_init == "TEXT":
            ids = _text_token_ids(config, total)
        else:  # SAMPLE_VOCAB
            ids = torch.randint(0, word_embeddings.num_embeddings, (total,), dtype=torch.long).tolist()
        with torch.no_grad():
            start = word_embeddings(torch.tensor(ids, dtype=torch.long, device=word_embeddings.weight.device))
        self.embedding.weight = nn.Parameter(start.detach().clone().float())


def _text_token_ids(config: Any, total: int) -> list[int]:
    """The init text's token ids, repeated or cut to exactly `total` (tokenizer from a folder or the Hub cache)."""
    from transformers import AutoTokenizer

    kwargs = {k: v for k, v in (config.tokenizer_kwargs or {}).items() if k != "trust_remote_code"}
    try:
        tokenizer = AutoTokenizer.from_pretrained(config.tokenizer_name_or_path, **kwargs)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            type(config).__name__,
            [f"tokenizer_name_or_path: cannot load a tokenizer from {config.tokenizer_name_or_path!r} ({exc}); give a local tokenizer folder"],
        ) from exc
    ids = list(tokenizer(config.prompt_tuning_init_text)["input_ids"])
    if not ids:
        raise ConfigError(type(config).__name__, [f"prompt_tuning_init_text: {config.prompt_tuning_init_text!r} gives no tokens"])
    return (ids * math.ceil(total / len(ids)))[:total]


class PromptEncoder(PromptEncoderBase):
    """P-tuning: virtual token embeddings sent through an MLP, or a bidirectional LSTM and an MLP."""

    def __init__(self, config: Any):
        super().__init__()
        dim, hidden = config.token_dim, config.encoder_hidden_size
        self.encoder_type = config.encoder_reparameterization_type
        self.embedding = nn.Embedding(config.num_virtual_tokens * config.num_transformer_submodules, dim)
        self._reparameterized = not config.inference_mode
        if config.inference_mode:
            return
        if self.encoder_type == "LSTM":
            self.lstm_head = nn.LSTM(
                dim, hidden, num_layers=config.encoder_num_layers, dropout=config.encoder_dropout, bidirectional=True, batch_first=True
            )
            self.mlp_head = nn.Sequential(nn.Linear(2 * hidden, 2 * hidden), nn.ReLU(), nn.Linear(2 * hidden, dim))
        else:  # MLP: three linear layers whatever encoder_num_layers says (as peft)
            self.mlp_head = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, dim))

    @property
    def reparameterized(self) -> bool:
        return self._reparameterized

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        x = self.embedding(indices)
        if not self._reparameterized:
            return x
        if self.encoder_type == "LSTM":
            x = self.lstm_head(x)[0]
        return self.mlp_head(x)


class PrefixEncoder(PromptEncoderBase):
    """Prefix tuning: per virtual token a key and a value for every layer, optionally through a tanh MLP."""

    def __init__(self, config: Any):
        super().__init__()
        dim, width = config.token_dim, config.num_layers * 2 * config.token_dim
        self._reparameterized = bool(config.prefix_projection) and not config.inference_mode
        if self._reparameterized:
            self.embedding = nn.Embedding(config.num_virtual_tokens, dim)
            self.transform = nn.Sequential(nn.Linear(dim, config.encoder_hidden_size), nn.Tanh(), nn.Linear(config.encoder_hidden_size, width))
            last = self.transform[-1]
        else:
            self.embedding = nn.Embedding(config.num_virtual_tokens, width)
            last = self.embedding
        if config.init_weights == "zero":
            with torch.no_grad():
                for p in last.parameters():
                    p.zero_()

    @property
    def reparameterized(self) -> bool:
        return self._reparameterized

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        x = self.embedding(indices)
        return self.transform(x) if self._reparameterized else x


def build_encoder(config: Any, word_embeddings: nn.Module | None) -> PromptEncoderBase:
    """The prompt encoder for a filled-in config (token_dim etc. set from the model)."""
    kind = config.peft_type.value
    if kind == "PROMPT_TUNING":
        return PromptEmbedding(config, word_embeddings)
    if kind == "P_TUNING":
        return PromptEncoder(config)
    if kind == "PREFIX_TUNING":
        return PrefixEncoder(config)
    raise ConfigError(type(config).__name__, [f"peft_type: {kind} is not a prompt-learning method peft_core implements"])
