"""peft_core.config: the config is the schema.

Validation names every bad field (all of them in one error), adapter_config.json reads and writes like
peft's, unknown keys load with a warning, peft-only features are refused, and json_schema() carries
what the studio's forms need.
"""

from __future__ import annotations

import json
import warnings

import pytest

import peft_core
from peft_core import ConfigError, LoraConfig, PeftConfig, TaskType


def _problems(**kwargs) -> list[str]:
    with pytest.raises(ConfigError) as info:
        LoraConfig(**kwargs)
    return info.value.problems


# ----------------------------------------------------------------------------------------- validation

BAD_FIELDS = [
    ("r-zero", dict(r=0), "r", "> 0"),
    ("r-negative", dict(r=-4), "r", "> 0"),
    ("r-string", dict(r="8"), "r", "expected int"),
    ("r-float", dict(r=8.0), "r", "expected int"),
    ("r-bool", dict(r=True), "r", "expected int"),
    ("alpha-zero", dict(lora_alpha=0), "lora_alpha", "> 0"),
    ("dropout-above", dict(lora_dropout=1.5), "lora_dropout", "<= 0.999"),
    ("dropout-below", dict(lora_dropout=-0.1), "lora_dropout", ">= 0.0"),
    ("dropout-string", dict(lora_dropout="0.1"), "lora_dropout", "expected float"),
    ("init-unknown", dict(init_lora_weights="xavier"), "init_lora_weights", "'xavier'"),
    ("bias-choice", dict(bias="some"), "bias", "'none', 'all', 'lora_only'"),
    ("dora-int", dict(use_dora=1), "use_dora", "expected bool"),
    ("task-unknown", dict(task_type="CHAT"), "task_type", "CAUSAL_LM"),
    ("targets-int", dict(target_modules=5), "target_modules", "expected"),
    ("targets-mixed-list", dict(target_modules=["q_proj", 3]), "target_modules", "expected"),
    ("targets-bad-regex", dict(target_modules="(q_proj"), "target_modules", "not a valid regex"),
    ("exclude-bad-regex", dict(exclude_modules="(v_proj"), "exclude_modules", "not a valid regex"),
    ("targets-empty-list", dict(target_modules=[]), "target_modules", "empty"),
    ("modules-to-save-string", dict(modules_to_save="classifier"), "modules_to_save", "expected list"),
    ("layers-string", dict(layers_to_transform="1"), "layers_to_transform", "expected"),
    ("pattern-without-layers", dict(layers_pattern="layers"), "layers_pattern", "layers_to_transform"),
    ("rank-pattern-list", dict(rank_pattern=["q_proj"]), "rank_pattern", "expected dict"),
    ("rank-pattern-value", dict(rank_pattern={"q_proj": "4"}), "rank_pattern", "expected dict"),
    ("rank-pattern-zero", dict(rank_pattern={"q_proj": 0}), "rank_pattern", "> 0"),
    ("orthogonal-odd-rank", dict(init_lora_weights="orthogonal", r=3), "init_lora_weights", "even"),
    ("dora-with-lora-bias", dict(use_dora=True, lora_bias=True), "lora_bias", "use_dora"),
]


@pytest.mark.parametrize("kwargs, field, fragment", [c[1:] for c in BAD_FIELDS], ids=[c[0] for c in BAD_FIELDS])
def test_bad_field_gives_config_error_naming_it(kwargs, field, fragment):
    problems = _problems(**kwargs)
    mine = [p for p in problems if p.startswith(f"{field}:")]
    assert mine, problems
    assert any(fragment in p for p in mine), mine


def test_all_problems_are_reported_in_one_error():
    with pytest.raises(ConfigError) as info:
        LoraConfig(r=0, lora_dropout=2.0, bias="everything", init_lora_weights="xavier", target_modules=7)
    fields = [p.split(":")[0] for p in info.value.problems]
    assert sorted(fields) == ["bias", "init_lora_weights", "lora_dropout", "r", "target_modules"]
    message = str(info.value)
    assert "5 problem(s)" in message
    assert all(f in message for f in fields)


def test_a_wrong_type_does_not_crash_cross_field_rules():
    """rank_pattern of the wrong type used to crash extra_checks with AttributeError/TypeError."""
    assert _problems(rank_pattern=["q_proj"], init_lora_weights="orthogonal") == [
        "rank_pattern: expected dict[str, int], got ['q_proj']"
    ]
    assert _problems(r="4", init_lora_weights="orthogonal")[0].startswith("r: expected int")


def test_config_error_is_a_value_error():
    with pytest.raises(ValueError):
        LoraConfig(r=0)


def test_task_type_enum_is_stored_as_its_string():
    assert LoraConfig(task_type=TaskType.CAUSAL_LM).task_type == "CAUSAL_LM"
    assert LoraConfig(task_type=TaskType.SEQ_CLS).to_dict()["task_type"] == "SEQ_CLS"


# ---------------------------------------------------------------------------------- adapter_config.json


def _write(tmp_path, data) -> str:
    (tmp_path / "adapter_config.json").write_text(data if isinstance(data, str) else json.dumps(data))
    return str(tmp_path)


def test_unknown_peft_type_names_it_and_what_is_available(tmp_path):
    with pytest.raises(ConfigError) as info:
        PeftConfig.from_pretrained(_write(tmp_path, {"peft_type": "FANCY_NEW_METHOD", "r": 4}))
    message = str(info.value)
    assert "peft_type" in message and "FANCY_NEW_METHOD" in message and "LORA" in message


def test_missing_peft_type_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="peft_type: missing"):
        PeftConfig.from_pretrained(_write(tmp_path, {"r": 4, "target_modules": ["q_proj"]}))


def test_invalid_json_names_the_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        PeftConfig.from_pretrained(_write(tmp_path, '{"peft_type": "LORA", "r": 4,'))
    assert "adapter_config.json" in str(info.value) and "not valid JSON" in str(info.value)


def test_json_that_is_not_an_object_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="expected a JSON object"):
        PeftConfig.from_pretrained(_write(tmp_path, '["LORA"]'))


def test_invalid_values_in_a_file_are_config_errors(tmp_path):
    with pytest.raises(ConfigError) as info:
        PeftConfig.from_pretrained(_write(tmp_path, {"peft_type": "LORA", "r": -1, "bias": "x"}))
    assert [p.split(":")[0] for p in info.value.problems] == ["r", "bias"]


def test_minimal_config_from_peft_docs_loads(tmp_path):
    config = PeftConfig.from_pretrained(_write(tmp_path, {"target_modules": ["query", "value"], "peft_type": "LORA"}))
    assert isinstance(config, LoraConfig)
    assert (config.r, config.lora_alpha, config.target_modules) == (8, 8, ["query", "value"])


def test_unknown_keys_load_with_a_warning_naming_them(tmp_path):
    data = {"peft_type": "LORA", "r": 4, "brand_new_option": 1, "another_one": {"x": 1}}
    with pytest.warns(UserWarning, match="another_one.*brand_new_option"):
        config = PeftConfig.from_pretrained(_write(tmp_path, data))
    assert config.r == 4
    assert "brand_new_option" not in config.to_dict()


PEFT_ONLY_FEATURES = [
    ("use_qalora", True),
    ("layer_replication", [[0, 2], [1, 2]]),
    ("alora_invocation_tokens", [5, 6]),
    ("megatron_config", {"tensor_model_parallel_size": 2}),
    ("ensure_weight_tying", True),
]


@pytest.mark.parametrize("key, value", PEFT_ONLY_FEATURES, ids=[f[0] for f in PEFT_ONLY_FEATURES])
def test_peft_only_feature_switched_on_is_refused(tmp_path, key, value):
    with pytest.raises(ConfigError) as info:
        PeftConfig.from_pretrained(_write(tmp_path, {"peft_type": "LORA", key: value}))
    (problem,) = info.value.problems
    assert problem.startswith(f"{key}: ") and "does not support" in problem and "load this adapter with peft" in problem


def test_peft_only_features_left_off_load_silently(tmp_path):
    data = {"peft_type": "LORA", "use_qalora": False, "layer_replication": None, "loftq_config": {},
            "megatron_core": "megatron.core", "auto_mapping": {"base_model_class": "X", "parent_library": "y"}}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        config = PeftConfig.from_pretrained(_write(tmp_path, data))
    assert config.to_dict()["use_qalora"] is False


PEFT_CONFIGS = [
    ("list-targets", dict(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"], lora_dropout=0.1, task_type="CAUSAL_LM")),
    ("regex-targets", dict(target_modules=r".*\.(q_proj|v_proj)", exclude_modules=r".*layers\.0\..*", bias="lora_only")),
    ("all-linear", dict(target_modules="all-linear", use_rslora=True, use_dora=True, init_lora_weights="gaussian")),
    ("patterns", dict(target_modules=["q_proj"], rank_pattern={"q_proj": 2}, alpha_pattern={r"layers\.1\..*": 32},
                      modules_to_save=["lm_head"], layers_to_transform=[0, 1], layers_pattern="layers")),
    ("seq-cls", dict(task_type="SEQ_CLS", target_modules=["query", "value"], init_lora_weights="pissa_niter_4", lora_dropout=0.05)),
    ("base-model", dict(target_modules=["q"], base_model_name_or_path="google-t5/t5-small", revision="main", inference_mode=True)),
]


@pytest.mark.oracle
@pytest.mark.parametrize("kwargs", [c[1] for c in PEFT_CONFIGS], ids=[c[0] for c in PEFT_CONFIGS])
def test_config_written_by_peft_loads_and_saves_back_the_same(tmp_path, peft, kwargs):
    peft.LoraConfig(**kwargs).save_pretrained(tmp_path / "theirs")
    theirs = json.loads((tmp_path / "theirs" / "adapter_config.json").read_text())

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing peft writes is unknown to us
        config = PeftConfig.from_pretrained(tmp_path / "theirs")
    assert isinstance(config, LoraConfig)
    config.save_pretrained(tmp_path / "ours")
    ours = json.loads((tmp_path / "ours" / "adapter_config.json").read_text())

    theirs.pop("peft_version")
    ours.pop("peft_version")
    assert ours == theirs


@pytest.mark.oracle
@pytest.mark.parametrize("kwargs", [c[1] for c in PEFT_CONFIGS], ids=[c[0] for c in PEFT_CONFIGS])
def test_config_written_by_us_loads_in_peft_with_the_same_values(tmp_path, peft, kwargs):
    LoraConfig(**kwargs).save_pretrained(tmp_path)
    ours = json.loads((tmp_path / "adapter_config.json").read_text())
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        theirs = peft.PeftConfig.from_pretrained(str(tmp_path))
    assert type(theirs).__name__ == "LoraConfig"
    for key, value in ours.items():
        if key == "peft_version":
            continue
        got = getattr(theirs, key)
        got = sorted(got) if isinstance(got, set) else got
        want = sorted(value) if isinstance(got, list) and isinstance(value, list) and isinstance(getattr(theirs, key), set) else value
        got = got.value if hasattr(got, "value") else got
        assert got == want, key


def test_config_save_pretrained_writes_inference_mode_as_is(tmp_path):
    """Like peft's: only PeftModel.save_pretrained marks the saved adapter as inference-only."""
    LoraConfig(target_modules=["q"]).save_pretrained(tmp_path)
    assert json.loads((tmp_path / "adapter_config.json").read_text())["inference_mode"] is False


def test_saved_json_is_sorted_and_indented_like_peft(tmp_path):
    config = LoraConfig(target_modules=["v_proj", "q_proj"], r=4)
    config.save_pretrained(tmp_path)
    text = (tmp_path / "adapter_config.json").read_text()
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True)
    assert json.loads(text)["target_modules"] == ["v_proj", "q_proj"]


# --------------------------------------------------------------------- target_modules string = regex


def test_string_target_modules_is_kept_as_one_regex(tmp_path):
    """peft issue #3229: a string target was turned into a set of its characters."""
    from tests.peft_core import models

    regex = r".*\.(q_proj|v_proj)"
    config = LoraConfig(target_modules=regex)
    assert config.target_modules == regex and config.to_dict()["target_modules"] == regex
    model = peft_core.get_peft_model(models.tiny_llama(), config)
    assert model.peft_config["default"].target_modules == regex
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "adapter_config.json").read_text())["target_modules"] == regex
    reloaded = PeftConfig.from_pretrained(tmp_path)
    assert reloaded.target_modules == regex
    adapted = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if hasattr(m, "lora_A")}
    assert adapted == {"q_proj", "v_proj"}


@pytest.mark.parametrize("value", ["all-linear", "q", "(q|v)"])
def test_short_string_targets_are_never_split_into_characters(value):
    config = PeftConfig.from_dict({"peft_type": "LORA", "target_modules": value, "exclude_modules": value})
    assert config.target_modules == value and config.exclude_modules == value
    assert json.loads(config.to_json_string())["target_modules"] == value


# ----------------------------------------------------------------------------------------- json schema


def test_json_schema_describes_every_field_for_the_ui():
    schema = LoraConfig.json_schema()
    json.dumps(schema)  # the API publishes it as JSON
    props = schema["properties"]
    assert schema["title"] == "LoraConfig" and schema["x-peft-type"] == "LORA" and schema["description"]
    assert set(props) == set(LoraConfig.field_names())
    assert all(p["description"] and isinstance(p["x-advanced"], bool) and "default" in p for p in props.values())

    assert props["r"]["type"] == "integer" and props["r"]["default"] == 8 and props["r"]["exclusiveMinimum"] == 0
    assert props["lora_dropout"]["type"] == "number"
    assert (props["lora_dropout"]["minimum"], props["lora_dropout"]["maximum"]) == (0.0, 0.999)
    assert props["bias"]["enum"] == ["none", "all", "lora_only"] and props["bias"]["default"] == "none"
    assert props["task_type"]["enum"] == [None, *[t.value for t in TaskType]]
    assert {"type": "boolean"} in props["init_lora_weights"]["anyOf"] and {"type": "string"} in props["init_lora_weights"]["anyOf"]
    assert {"type": "array", "items": {"type": "string"}} in props["target_modules"]["anyOf"]
    assert props["rank_pattern"] == {**props["rank_pattern"], "type": "object", "default": {}}
    assert props["rank_pattern"]["additionalProperties"] == {"type": "integer"}
    assert props["use_dora"]["type"] == "boolean" and props["use_dora"]["x-advanced"] is False
    assert props["use_rslora"]["x-advanced"] is True


def test_json_schema_defaults_build_a_valid_config():
    props = LoraConfig.json_schema()["properties"]
    config = LoraConfig(**{name: p["default"] for name, p in props.items()})
    assert config.to_dict()["r"] == 8
