"""app.datasets.templates: each built-in renders a known conversation to the expected text, its assistant spans are
trained, and rendering matches transformers' apply_chat_template (transformers is the oracle here, never the product)."""

from __future__ import annotations

import pytest
from jinja2 import TemplateError

from app.datasets import DatasetError
from app.datasets.templates import (
    BUILTIN_TEMPLATES,
    ChatTemplate,
    fold_system,
    render,
    render_with_spans,
    resolve_template,
    with_system_prompt,
)

CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello."},
    {"role": "user", "content": "Bye"},
    {"role": "assistant", "content": "Bye!"},
]
SPECIAL = {"bos_token": "<s>", "eos_token": "</s>"}

EXPECTED = {
    "chatml": (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n"
        "<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\nBye!<|im_end|>",
        ["Hello.<|im_end|>", "Bye!<|im_end|>"],
    ),
    "llama-3": (
        "<s><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nBye<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nBye!<|eot_id|>",
        ["Hello.<|eot_id|>", "Bye!<|eot_id|>"],
    ),
    "mistral": ("<s>[INST] Be brief.\n\nHi [/INST] Hello.</s>[INST] Bye [/INST] Bye!</s>", [" Hello.</s>", " Bye!</s>"]),
    "gemma": (
        "<s><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello.<end_of_turn>\n"
        "<start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\nBye!<end_of_turn>",
        ["Hello.<end_of_turn>", "Bye!<end_of_turn>"],
    ),
    "phi-3": (
        "<|system|>\nBe brief.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\nHello.<|end|>\n<|user|>\nBye<|end|>\n<|assistant|>\nBye!<|end|>",
        ["Hello.<|end|>", "Bye!<|end|>"],
    ),
    "alpaca": (
        "Be brief.\n\n### Instruction:\nHi\n\n### Response:\nHello.</s>\n\n### Instruction:\nBye\n\n### Response:\nBye!</s>",
        ["Hello.</s>", "Bye!</s>"],
    ),
    "plain": (
        "### System:\nBe brief.\n### User:\nHi\n### Assistant:\nHello.</s>\n### User:\nBye\n### Assistant:\nBye!</s>",
        ["Hello.</s>", "Bye!</s>"],
    ),
}
GENERATION_PROMPT = {
    "chatml": "<|im_start|>assistant\n",
    "llama-3": "<|start_header_id|>assistant<|end_header_id|>\n\n",
    "mistral": "[INST] Hi [/INST]",
    "gemma": "<start_of_turn>model\n",
    "phi-3": "<|assistant|>\n",
    "alpaca": "### Response:\n",
    "plain": "### Assistant:\n",
}


def test_every_choice_of_the_job_spec_has_a_built_in_or_is_auto():
    from app.jobspec import CHAT_TEMPLATE_CHOICES

    assert set(CHAT_TEMPLATE_CHOICES) == {"auto", *BUILTIN_TEMPLATES} == {"auto", *EXPECTED}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_built_in_renders_the_conversation_and_spans_its_answers(name):
    text, spans = render_with_spans(resolve_template(name, None), CONVERSATION, SPECIAL)
    expected_text, expected_answers = EXPECTED[name]
    assert text == expected_text
    assert [text[a:b] for a, b in spans] == expected_answers


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_built_in_ends_a_prompt_with_its_generation_prompt(name):
    rendered = render(resolve_template(name, None), [{"role": "user", "content": "Hi"}], SPECIAL, add_generation_prompt=True)
    assert rendered.endswith(GENERATION_PROMPT[name])


@pytest.mark.parametrize("name", sorted(BUILTIN_TEMPLATES))
def test_each_built_in_renders_as_transformers_renders_it(name, demo_tokenizer):
    """The same Jinja source through transformers' apply_chat_template gives the same text (the rendering rules match)."""
    import copy

    hf = copy.deepcopy(demo_tokenizer)
    hf.chat_template = BUILTIN_TEMPLATES[name]
    special = {"eos_token": hf.eos_token}  # the demo tokenizer has no BOS: both leave it out
    for generation in (False, True):
        messages = CONVERSATION if not generation else CONVERSATION[:4]
        ours = render(resolve_template(name, None), messages, special, add_generation_prompt=generation)
        assert ours == hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)


def test_a_tokenizers_own_template_renders_as_transformers_renders_it(demo_tokenizer):
    """Loop controls, raise_exception, tojson, namespace and trim/lstrip blocks behave as in transformers."""
    import copy

    source = (
        "{%- set ns = namespace(n=0) -%}\n"
        "{%- for m in messages -%}\n"
        "    {%- if m['role'] == 'system' %}{% continue %}{% endif -%}\n"
        "    {%- if m['role'] not in ['user', 'assistant'] %}{{ raise_exception('bad role') }}{% endif -%}\n"
        "    {%- set ns.n = ns.n + 1 %}\n"
        "    [{{ ns.n }}] {{ m['role'] }}: {{ m['content'] | tojson }}\n"
        "    {%- if loop.last %}{% break %}{% endif %}\n"
        "{% endfor -%}\n"
        "{% if add_generation_prompt %}[next] assistant:{% endif %}"
    )
    hf = copy.deepcopy(demo_tokenizer)
    hf.chat_template = source
    template = ChatTemplate("tokenizer", source)
    messages = [*CONVERSATION[:3], {"role": "user", "content": 'Say "ü"'}]
    ours = render(template, messages, {"eos_token": hf.eos_token}, add_generation_prompt=True)
    assert ours == hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert '"Say \\"ü\\""' in ours
    with pytest.raises(TemplateError, match="bad role"):
        render(template, [{"role": "tool", "content": "x"}], {})


def test_generation_blocks_render_their_body():
    template = ChatTemplate("tokenizer", "{% for m in messages %}{% generation %}{{ m['content'] }}{% endgeneration %};{% endfor %}")
    assert render(template, CONVERSATION[1:3], {}) == "Hi;Hello.;"


def test_templates_are_sandboxed():
    template = ChatTemplate("tokenizer", "{{ messages.__class__.__mro__ }}")
    with pytest.raises(TemplateError):
        render(template, [], {})


def test_auto_uses_the_tokenizers_template_or_falls_back_to_plain():
    own = resolve_template("auto", "{{ messages }}")
    assert own.name == "tokenizer" and own.source == "{{ messages }}" and own.label == "the tokenizer's own chat template"
    fallback = resolve_template("auto", None)
    assert fallback.name == "plain" and fallback.fallback and "has no chat template" in fallback.label
    assert resolve_template("gemma", "{{ messages }}").source == BUILTIN_TEMPLATES["gemma"]  # a chosen built-in wins
    with pytest.raises(DatasetError, match="Unknown chat template 'vicuna'") as info:
        resolve_template("vicuna", None)
    assert "chatml" in info.value.hint


def test_system_prompt_is_added_only_where_there_is_none_and_folds_into_the_first_user_turn():
    plain = CONVERSATION[1:]
    assert with_system_prompt(plain, "Be kind.")[0] == {"role": "system", "content": "Be kind."}
    assert with_system_prompt(CONVERSATION, "Be kind.") is CONVERSATION
    assert with_system_prompt(plain, None) is plain
    folded = fold_system(CONVERSATION)
    assert folded[0] == {"role": "user", "content": "Be brief.\n\nHi"} and len(folded) == 4
    assert CONVERSATION[1]["content"] == "Hi"  # the row itself is not changed


@pytest.mark.parametrize("name", ["mistral", "gemma", "alpaca"])
def test_templates_without_a_system_role_refuse_a_system_message_later_on(name):
    messages = [CONVERSATION[1], {"role": "system", "content": "late"}, CONVERSATION[2]]
    with pytest.raises(TemplateError, match="a system message may only come first"):
        render(resolve_template(name, None), messages, SPECIAL)
