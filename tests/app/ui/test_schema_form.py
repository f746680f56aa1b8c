"""Forms from config schemas: every registered method's fields get a widget by type, and values read back as the config expects."""

from __future__ import annotations

import pytest

from app.jobspec import JobSpecError, parse_job_spec
from app.services import catalog
from app.ui.schema_form import describe, describe_schema, humanize, read_value


def _field(schema_cls_schema, name):
    return next(f for f in describe_schema(schema_cls_schema) if f.name == name)


LORA = catalog.method_schema("LORA")
TRAINING = catalog.training_schema()


def test_every_registered_method_renders_from_its_schema_alone():
    for method in catalog.methods():
        fields = describe_schema(catalog.method_schema(method.peft_type), skip=catalog.studio_managed_fields())
        assert fields, method.peft_type
        assert not {f.name for f in fields} & catalog.studio_managed_fields()
        # every default reads back with the right type (a method may still need input, e.g. token ids)
        values = {f.name: read_value(f, _raw_default(f))[0] for f in fields}
        try:
            parse_job_spec({"base_model": "demo", "method": {"peft_type": method.peft_type, **values}})
        except JobSpecError as exc:
            assert not [p for p in exc.problems if "expected" in p], exc.problems


def _raw_default(field):
    if field.kind == "modules":
        return [] if field.default is None else ([field.default] if isinstance(field.default, str) else field.default)
    if field.kind in ("json", "loose"):
        return "" if field.default in (None, {}, []) else str(field.default).lower()
    if field.kind == "choice":
        return "" if field.default is None else str(field.default)
    return field.default


def test_kinds_follow_the_json_types():
    kinds = {f.name: f.kind for f in describe_schema(LORA)}
    assert kinds["r"] == "int" and kinds["lora_alpha"] == "float" and kinds["use_dora"] == "bool"
    assert kinds["bias"] == "choice" and kinds["target_modules"] == "modules" and kinds["rank_pattern"] == "json"
    assert kinds["init_lora_weights"] == "loose"
    r = _field(LORA, "r")
    assert (r.minimum, r.default, r.advanced) == (1, 8, False)
    assert _field(LORA, "target_modules").offers_all_linear and not _field(LORA, "exclude_modules").offers_all_linear
    assert humanize("lora_alpha") == "LoRA alpha" and humanize("max_seq_length") == "Max seq length"


@pytest.mark.parametrize(("name", "raw", "expected"), [
    ("target_modules", [], None),
    ("target_modules", ["all-linear"], "all-linear"),
    ("target_modules", ["q_proj", " v_proj "], ["q_proj", "v_proj"]),
    ("init_lora_weights", "true", True),
    ("init_lora_weights", "pissa", "pissa"),
    ("rank_pattern", '{"q_proj": 4}', {"q_proj": 4}),
    ("rank_pattern", "", {}),
    ("lora_alpha", 16.0, 16),
    ("r", 8.0, 8),
    ("bias", "all", "all"),
])
def test_values_read_back_as_the_config_wants(name, raw, expected):
    assert read_value(_field(LORA, name), raw) == (expected, None)


def test_unreadable_values_become_problems_not_errors():
    assert read_value(_field(LORA, "rank_pattern"), "{oops")[1].startswith("not valid JSON")
    assert read_value(_field(LORA, "r"), 2.5) == (None, "enter a whole number")
    max_steps = _field(TRAINING, "max_steps")
    assert max_steps.optional and read_value(max_steps, "") == (None, None) and read_value(max_steps, "12") == (12, None)
    assert read_value(max_steps, "twelve") == (None, "enter a number")
    assert describe("x", {"type": "object", "description": "d", "default": {}}).kind == "json"
