"""Tiny models for engine tests, built in code from small configs (no downloads)."""

from __future__ import annotations

import torch
import torch.nn as nn


class MLP(nn.Module):
    """Embedding -> Linear -> Conv1d -> Linear head: one of each layer kind LoRA supports."""

    def __init__(self, vocab: int = 50, dim: int = 16):
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.Embedding(vocab, dim)
        self.lin0 = nn.Linear(dim, dim)
        self.conv = nn.Conv1d(dim, 8, 3)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.lin0(self.emb(x))).transpose(1, 2)
        return self.head(self.conv(h).transpose(1, 2))


class ConvNet(nn.Module):
    """Conv2d and Conv3d layers for conv adapters."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv2d = nn.Conv2d(3, 6, 3, padding=1)
        self.conv3d = nn.Conv3d(6, 4, (1, 3, 3))
        self.lin = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv2d(x)).unsqueeze(2)
        h = self.conv3d(h).mean(dim=(2, 3, 4))
        return self.lin(h)


def tiny_llama(**overrides):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    cfg.update(overrides)
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(**cfg)).eval()


def tiny_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(vocab_size=64, n_embd=32, n_layer=2, n_head=4, n_positions=64)).eval()


def tiny_bert(num_labels: int = 3):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, max_position_embeddings=64, num_labels=num_labels)
    return BertForSequenceClassification(cfg).eval()


def tiny_t5():
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    cfg = T5Config(vocab_size=64, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=4, decoder_start_token_id=0)
    return T5ForConditionalGeneration(cfg).eval()
