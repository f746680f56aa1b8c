"""Forms generated from a config's JSON schema: one widget per field, and the values read back.

This is why adding a tuner to peft_core adds it to the studio with no UI code: the method's config
class publishes `json_schema()` (type, default, enum, bounds, help, x-advanced per field) and this
module turns each property into a widget by its type alone:

    enum              -> Dropdown            boolean            -> Checkbox
    integer / number  -> Number (min/max)    string             -> Textbox
    optional number   -> Textbox read as a number, blank = not set (gr.Number cannot be blank)
    list[str] | str   -> multi-select of module names with free text ("all-linear" when offered)
    other scalars     -> Textbox read as JSON when it parses (true, 4) else as text ("pissa")
    objects / lists   -> JSON Textbox, checked when read

Values come back through `read_value`, which never raises: it returns (value, problem) so the page
can show every problem at once next to the form. Bounds and choices are checked again by the config
class itself (app.jobspec), which is the authority.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Literal

import gradio as gr

from app.ui import strings as S

Kind = Literal["choice", "bool", "int", "float", "text", "modules", "loose", "json"]
MODULE_SUGGESTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
WORDS = {"r": "Rank (r)", "lora": "LoRA", "dora": "DoRA", "rslora": "rsLoRA", "lr": "LR", "eval": "eval", "ia3": "IA³"}


@dataclass(frozen=True)
class Field:
    """One form field, described by what its widget needs."""

    name: str
    kind: Kind
    label: str
    help: str
    default: Any
    optional: bool
    advanced: bool
    choices: tuple[Any, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    offers_all_linear: bool = False


def humanize(name: str) -> str:
    words = [WORDS.get(w, w) for w in name.split("_")]
    first = words[0] if words[0] != words[0].lower() else words[0].capitalize()
    return " ".join([first, *words[1:]])


def _types(prop: dict[str, Any]) -> list[dict[str, Any]]:
    return prop["anyOf"] if "anyOf" in prop else [prop]


def describe(name: str, prop: dict[str, Any]) -> Field:
    """Classify one JSON-schema property."""
    variants = _types(prop)
    optional = any(v.get("type") == "null" for v in variants)
    kinds = [v for v in variants if v.get("type") != "null"]
    names = {v.get("type") for v in kinds}
    common = dict(name=name, label=humanize(name), help=prop.get("description", ""), default=prop.get("default"),
                  optional=optional, advanced=bool(prop.get("x-advanced")))
    enum = [c for c in prop.get("enum", []) if c is not None]
    if enum:
        return Field(kind="choice", choices=tuple(enum), **common)
    if names == {"boolean"}:
        return Field(kind="bool", **common)
    if names <= {"integer", "number"} and names:
        lo = prop.get("minimum")
        if lo is None and prop.get("exclusiveMinimum") is not None:
            lo = prop["exclusiveMinimum"] + 1 if names == {"integer"} else prop["exclusiveMinimum"]
        return Field(kind="int" if names == {"integer"} else "float", minimum=lo, maximum=prop.get("maximum"), **common)
    if names == {"string"}:
        return Field(kind="text", **common)
    string_list = any(v.get("type") == "array" and v.get("items", {}).get("type") == "string" for v in kinds)
    if string_list and names == {"array", "string"}:
        return Field(kind="modules", offers_all_linear="all-linear" in common["help"], **common)
    if names <= {"boolean", "string", "integer", "number"}:
        return Field(kind="loose", **common)
    return Field(kind="json", **common)


def describe_schema(schema: dict[str, Any], skip: set[str] = frozenset()) -> list[Field]:
    return [describe(name, prop) for name, prop in schema.get("properties", {}).items() if name not in skip]


# --- widgets -------------------------------------------------------------------------------------


def _choice_label(value: Any) -> str:
    return json.dumps(value) if isinstance(value, bool) else str(value)


def _text_of(field: Field, value: Any) -> str:
    if value is None:
        return ""
    if field.kind == "loose":
        return value if isinstance(value, str) else json.dumps(value)
    if field.kind == "json":
        return "" if value in ({}, []) and value == field.default else json.dumps(value)
    return str(value)


def info_for(field: Field) -> str:
    """The help line under a widget: the schema's help, plus how to fill the less obvious kinds."""
    if field.kind == "modules" and field.offers_all_linear:
        return f"{field.help} {S.MODULES_DEFAULT_HINT}"
    if field.kind == "json":
        return f"{field.help} {S.JSON_FIELD_HINT.format(example=_json_example(field))}"
    return field.help


def _json_example(field: Field) -> str:
    return '{"q_proj": 16}' if isinstance(field.default, dict) else "[0, 1, 2]"


def widget(field: Field, value: Any, *, key: str | None = None) -> gr.components.Component:
    """The widget for `field` showing `value` (the default when the form is new)."""
    common: dict[str, Any] = {"label": field.label, "info": info_for(field), "key": key, "elem_classes": ["ps-field"]}
    if field.kind == "choice":
        choices = [(_choice_label(c), _choice_label(c)) for c in field.choices]
        if field.optional:
            choices = [("default", ""), *choices]
        shown = "" if value is None else _choice_label(value)
        return gr.Dropdown(choices=choices, value=shown, filterable=False, **common)
    if field.kind == "bool":
        return gr.Checkbox(value=bool(value), **common)
    if field.kind in ("int", "float") and field.optional:
        # gr.Number cannot be blank (it shows 0), and blank means "not set" here (e.g. max_steps).
        return gr.Textbox(value="" if value is None else str(value), placeholder="none", max_lines=1, **common)
    if field.kind in ("int", "float"):
        return gr.Number(
            value=value,
            minimum=field.minimum,
            maximum=field.maximum,
            precision=0 if field.kind == "int" else None,
            step=1 if field.kind == "int" else _float_step(field.default),
            **common,
        )
    if field.kind == "modules":
        suggestions = (["all-linear"] if field.offers_all_linear else []) + list(MODULE_SUGGESTIONS)
        if isinstance(value, str):
            shown = [value]
        else:
            shown = list(value or [])
        return gr.Dropdown(choices=suggestions, value=shown, multiselect=True, allow_custom_value=True, **common)
    if field.kind == "json":
        return gr.Textbox(value=_text_of(field, value), placeholder=_json_example(field), max_lines=4, **common)
    return gr.Textbox(value=_text_of(field, value), placeholder="default" if field.optional else None, max_lines=1, **common)


def _float_step(default: Any) -> float:
    if isinstance(default, (int, float)) and default:
        return 10 ** math.floor(math.log10(abs(default)))
    return 0.01


# --- reading values back -------------------------------------------------------------------------


def read_value(field: Field, raw: Any) -> tuple[Any, str | None]:
    """The config value for a widget's raw browser value, or (None, problem in words)."""
    if field.kind == "choice":
        if raw in (None, ""):
            return (None, None) if field.optional else (field.default, None)
        for choice in field.choices:
            if _choice_label(choice) == str(raw):
                return choice, None
        return raw, None
    if field.kind == "bool":
        return bool(raw), None
    if field.kind in ("int", "float"):
        return _read_number(field, raw)
    if field.kind == "modules":
        values = [v.strip() for v in (raw or []) if isinstance(v, str) and v.strip()]
        if not values:
            return None, None
        if values == ["all-linear"]:
            return "all-linear", None
        return values, None
    text = "" if raw is None else str(raw).strip()
    if field.kind == "text":
        return (None if not text and field.optional else text), None
    if not text:
        return (None if field.optional else field.default), None
    if field.kind == "loose":
        try:
            parsed = json.loads(text)
        except ValueError:
            return text, None
        return (parsed, None) if isinstance(parsed, (bool, int, float, str)) else (text, None)
    try:
        return json.loads(text), None
    except ValueError as exc:
        return None, S.INVALID_JSON.format(error=str(exc).split(":")[0])


def _read_number(field: Field, raw: Any) -> tuple[Any, str | None]:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return (None, None) if field.optional else (field.default, None)
    try:
        number = float(raw)
    except (TypeError, ValueError):
        return None, S.INVALID_NUMBER
    if field.kind == "int":
        if not number.is_integer():
            return None, S.INVALID_WHOLE
        return int(number), None
    if number.is_integer() and isinstance(field.default, int) and not isinstance(field.default, bool):
        return int(number), None  # int | float fields keep whole numbers whole (lora_alpha: 16, not 16.0)
    return number, None


def read_form(fields: list[Field], raws: list[Any], prefix: str) -> tuple[dict[str, Any], dict[str, str]]:
    """Values by field name, and problems keyed by their path (prefix.name) for fields that could not be read."""
    values: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for field, raw in zip(fields, raws):
        value, problem = read_value(field, raw)
        if problem:
            problems[f"{prefix}.{field.name}"] = problem
        else:
            values[field.name] = value
    return values, problems
