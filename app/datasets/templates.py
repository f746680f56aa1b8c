"""Chat templates: how a conversation becomes the exact text a model trains on (torch-free).

Two kinds, chosen by dataset.template:

    auto      the tokenizer's own chat template when it has one; otherwise the built-in "plain" (it needs
              no special tokens, so it suits any tokenizer). The template used is saved with the adapter's
              tokenizer, so inference formats conversations the same way.
    built-in  BUILTIN_TEMPLATES below, written from each model family's published prompt format.

Rendering follows how transformers renders chat templates (a sandboxed Jinja environment with
trim_blocks/lstrip_blocks, loop controls, `raise_exception`, `tojson`, `strftime_now`, and the special
tokens as variables), so the tokenizer's own template gives here exactly what apply_chat_template gives.

System prompts: `with_system_prompt` adds dataset.system_prompt as a system message to conversations
without one. Templates with no system role (mistral, gemma) fold the system text into the first user turn,
followed by a blank line; alpaca writes it as the preamble before the first instruction.

Which characters are trained: `render_with_spans` finds each assistant turn's span, including the template's
end-of-turn marker (and EOS where the template writes it), so the model learns to stop.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jinja2 import TemplateError, nodes
from jinja2.ext import Extension
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .rows import DatasetError

# The studio's fallback for tokenizers without a template ("### User:" blocks, EOS after each answer).
PLAIN = (
    "{% for m in messages %}### {{ m['role'] | capitalize }}:\n{{ m['content'] }}"
    "{% if m['role'] == 'assistant' %}{{ eos_token }}{% endif %}\n\n{% endfor %}"
    "{% if add_generation_prompt %}### Assistant:\n{% endif %}"
)

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

LLAMA_3 = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)

# A leading system message is kept aside and written before the first user turn (these formats have no system role).
_SYSTEM_ASIDE = (
    "{% set ns = namespace(system='') %}"
    "{% if messages and messages[0]['role'] == 'system' %}{% set ns.system = messages[0]['content'] %}"
    "{% set turns = messages[1:] %}{% else %}{% set turns = messages %}{% endif %}"
)

MISTRAL = (
    _SYSTEM_ASIDE + "{{ bos_token }}{% for m in turns %}"
    "{% if m['role'] == 'user' %}[INST] {% if ns.system %}{{ ns.system }}\n\n{% set ns.system = '' %}{% endif %}"
    "{{ m['content'] }} [/INST]"
    "{% elif m['role'] == 'assistant' %} {{ m['content'] }}{{ eos_token }}"
    "{% else %}{{ raise_exception('mistral template: a system message may only come first') }}{% endif %}{% endfor %}"
)

GEMMA = (
    _SYSTEM_ASIDE + "{{ bos_token }}{% for m in turns %}"
    "{% if m['role'] == 'system' %}{{ raise_exception('gemma template: a system message may only come first') }}{% endif %}"
    "<start_of_turn>{{ 'model' if m['role'] == 'assistant' else 'user' }}\n"
    "{% if m['role'] == 'user' and ns.system %}{{ ns.system }}\n\n{% set ns.system = '' %}{% endif %}"
    "{{ m['content'] }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)

PHI_3 = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

ALPACA = (
    _SYSTEM_ASIDE + "{% if ns.system %}{{ ns.system }}\n\n{% endif %}{% for m in turns %}"
    "{% if m['role'] == 'user' %}### Instruction:\n{{ m['content'] }}\n\n"
    "{% elif m['role'] == 'assistant' %}### Response:\n{{ m['content'] }}{{ eos_token }}\n\n"
    "{% else %}{{ raise_exception('alpaca template: a system message may only come first') }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}### Response:\n{% endif %}"
)

BUILTIN_TEMPLATES: dict[str, str] = {
    "chatml": CHATML,
    "llama-3": LLAMA_3,
    "mistral": MISTRAL,
    "gemma": GEMMA,
    "phi-3": PHI_3,
    "alpaca": ALPACA,
    "plain": PLAIN,
}
AUTO_FALLBACK = "plain"  # "auto" on a tokenizer without a chat template

# Markers a built-in template writes that must be single special tokens of the tokenizer, else they are
# cut into ordinary text pieces (the model then never sees one token that means "end of turn").
REQUIRED_MARKERS: dict[str, tuple[str, ...]] = {
    "chatml": ("<|im_start|>", "<|im_end|>"),
    "llama-3": ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
    "gemma": ("<start_of_turn>", "<end_of_turn>"),
    "phi-3": ("<|user|>", "<|assistant|>", "<|end|>"),
}
# Templates that write the tokenizer's BOS / EOS and mean something only when it has one.
USES_BOS = ("llama-3", "mistral", "gemma")
USES_EOS = ("mistral", "alpaca", "plain")


@dataclass(frozen=True)
class ChatTemplate:
    """A resolved template: its Jinja source and what to call it in messages."""

    name: str  # a BUILTIN_TEMPLATES key, or "tokenizer" for the tokenizer's own
    source: str
    fallback: bool = False  # "auto" fell back to a built-in because the tokenizer has none

    @property
    def label(self) -> str:
        if self.name == "tokenizer":
            return "the tokenizer's own chat template"
        return f"the built-in '{self.name}' template" + (" (the tokenizer has no chat template of its own)" if self.fallback else "")


def resolve_template(choice: str, tokenizer_template: str | None) -> ChatTemplate:
    """The template for dataset.template `choice` and a tokenizer whose own template is `tokenizer_template`."""
    if choice == "auto":
        if tokenizer_template:
            return ChatTemplate("tokenizer", tokenizer_template)
        return ChatTemplate(AUTO_FALLBACK, BUILTIN_TEMPLATES[AUTO_FALLBACK], fallback=True)
    if choice not in BUILTIN_TEMPLATES:
        raise DatasetError(
            f"Unknown chat template {choice!r}.", hint=f"Choose auto or one of: {', '.join(BUILTIN_TEMPLATES)}."
        )
    return ChatTemplate(choice, BUILTIN_TEMPLATES[choice])


# ----------------------------------------------------------------------------------------- rendering


class _GenerationTag(Extension):
    """{% generation %}...{% endgeneration %} (some tokenizers' templates mark assistant text with it): renders its body."""

    tags = {"generation"}

    def parse(self, parser: Any) -> list[nodes.Node]:
        next(parser.stream)
        return parser.parse_statements(("name:endgeneration",), drop_needle=True)


def _raise_exception(message: str) -> None:
    raise TemplateError(message)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None, separators: Any = None, sort_keys: bool = False) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


@functools.lru_cache(maxsize=1)
def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[_GenerationTag, "jinja2.ext.loopcontrols"])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env


@functools.lru_cache(maxsize=32)
def _compiled(source: str) -> Any:
    return _environment().from_string(source)


def render(
    template: ChatTemplate, messages: list[dict[str, str]], special_tokens: dict[str, str], add_generation_prompt: bool = False
) -> str:
    """The conversation as text; jinja2.TemplateError (e.g. raise_exception) propagates to the caller."""
    return _compiled(template.source).render(messages=messages, add_generation_prompt=add_generation_prompt, **special_tokens)


def with_system_prompt(messages: list[dict[str, str]], system_prompt: str | None) -> list[dict[str, str]]:
    """`messages` with a leading system message `system_prompt` when they have no system message yet."""
    if not system_prompt or any(m["role"] == "system" for m in messages):
        return messages
    return [{"role": "system", "content": system_prompt}, *messages]


def fold_system(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """A leading system message merged into the first user turn (for templates that refuse a system role)."""
    if not messages or messages[0]["role"] != "system":
        return messages
    system, rest = messages[0]["content"], [dict(m) for m in messages[1:]]
    for m in rest:
        if m["role"] == "user":
            m["content"] = f"{system}\n\n{m['content']}"
            return rest
    return [{"role": "user", "content": system}, *rest]


def render_with_spans(
    template: ChatTemplate, messages: list[dict[str, str]], special_tokens: dict[str, str]
) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation (trailing whitespace removed) and the character spans of its assistant turns.

    A turn's span runs from the end of the conversation rendered up to it with a generation prompt to the
    end of the conversation rendered through it, so it includes the end-of-turn marker. Templates that
    rewrite earlier turns break that prefix property; then the span is the message text itself.
    """
    text = render(template, messages, special_tokens).rstrip()
    spans: list[tuple[int, int]] = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        try:
            before = render(template, messages[:i], special_tokens, add_generation_prompt=True) if i else ""
            through = render(template, messages[: i + 1], special_tokens).rstrip()
        except TemplateError:  # a template that refuses a partial conversation
            before, through = "", ""
        if text.startswith(before) and text.startswith(through) and len(through) > len(before) and (before or i == 0):
            spans.append((len(before), len(through)))
            continue
        start = text.find(message["content"], spans[-1][1] if spans else 0)
        if start >= 0:
            spans.append((start, start + len(message["content"])))
    return text, spans
