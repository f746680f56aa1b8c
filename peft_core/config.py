"""Config dataclasses that are their own schema.

Every field is declared once with `option(...)`: default, help line, allowed values, bounds and whether
the UI folds it away as advanced. From that single declaration we derive validation (all problems
reported at once), adapter_config.json (PEFT's field names), the JSON schema used by the API and the
studio's method forms. A tuner's config subclasses `AdapterConfig` (or `PeftConfig` for prompt methods)
and adds its fields; it writes no validation or serialisation code of its own beyond `extra_checks`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import types
import typing
import warnings
from collections.abc import Iterator
from dataclasses import MISSING, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Union

from .errors import ConfigError
from .types import PeftType, TaskType

if TYPE_CHECKING:
    from .shapes import ModelShape, ModuleShape

CONFIG_NAME = "adapter_config.json"
# The peft release whose checkpoint format and maths peft_core follows. A config saved without a
# `peft_version` gets this one, with ours as a PEP 440 local label: peft parses the field (it warns that
# OFT checkpoints older than 0.18 used another Cayley-Neumann series, and fails on a null version).
PEFT_FORMAT_VERSION = "0.21.2"


def option(
    default: Any = MISSING,
    *,
    help: str,
    factory: Any = MISSING,
    choices: tuple | None = None,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    advanced: bool = False,
) -> Any:
    """Declare a config field with everything the schema needs (help is one line, shown in the UI)."""
    metadata = {"help": help, "choices": choices, "ge": ge, "gt": gt, "le": le, "advanced": advanced}
    if factory is not MISSING:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


# ---------------------------------------------------------------------------------------------------
# type checking of JSON-like values against the annotations


def _type_ok(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin in (Union, types.UnionType):
        return any(_type_ok(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple, set):
        args = typing.get_args(hint)
        return isinstance(value, (list, tuple, set)) and all(_type_ok(v, args[0]) for v in value)
    if origin is dict:
        key_t, val_t = typing.get_args(hint)
        return isinstance(value, dict) and all(_type_ok(k, key_t) and _type_ok(v, val_t) for k, v in value.items())
    if hint is dict:
        return isinstance(value, dict)
    if hint is list:
        return isinstance(value, (list, tuple))
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


def _type_name(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(hint))
    if hint is type(None):
        return "null"
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(hint))
        return f"{origin.__name__}[{args}]"
    return getattr(hint, "__name__", str(hint))


def _json_schema_of(hint: Any) -> dict[str, Any]:
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        return {"anyOf": [_json_schema_of(a) for a in typing.get_args(hint)]}
    simple = {bool: "boolean", int: "integer", float: "number", str: "string", type(None): "null"}
    if hint in simple:
        return {"type": simple[hint]}
    if origin in (list, tuple, set):
        return {"type": "array", "items": _json_schema_of(typing.get_args(hint)[0])}
    if origin is dict:
        return {"type": "object", "additionalProperties": _json_schema_of(typing.get_args(hint)[1])}
    if hint is dict:
        return {"type": "object"}
    if hint is list:
        return {"type": "array"}
    return {}


def _plain(value: Any) -> Any:
    """A JSON-ready copy: enums to strings, sets to sorted lists, tuples to lists."""
    if isinstance(value, (PeftType, TaskType)):
        return value.value
    if isinstance(value, set):
        return sorted(_plain(v) for v in value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


@dataclass
class Schema:
    """A dataclass whose `option()` fields are validated on construction and described as JSON schema.

    PeftConfig builds on it; so does anything else the studio renders as a form (training settings).
    """

    def __post_init__(self) -> None:
        problems = self._field_problems()
        try:
            problems += self.extra_checks()
        except (TypeError, AttributeError, ValueError):
            if not problems:  # a cross-field rule crashed on well-typed values: a bug, not bad input
                raise
            # a value of the wrong type (already reported above) broke a cross-field rule; report what we have
        if problems:
            raise ConfigError(type(self).__name__, list(dict.fromkeys(problems)))

    def _field_problems(self) -> list[str]:
        problems: list[str] = []
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            md = f.metadata
            if not _type_ok(value, hints[f.name]):
                problems.append(f"{f.name}: expected {_type_name(hints[f.name])}, got {value!r}")
                continue
            if md.get("choices") is not None and value not in md["choices"]:
                allowed = ", ".join(repr(c) for c in md["choices"])
                problems.append(f"{f.name}: {value!r} is not one of {allowed}")
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                for bound, ok, word in (
                    ("ge", lambda v, b: v >= b, ">="),
                    ("gt", lambda v, b: v > b, ">"),
                    ("le", lambda v, b: v <= b, "<="),
                ):
                    b = md.get(bound)
                    if b is not None and not ok(value, b):
                        problems.append(f"{f.name}: must be {word} {b}, got {value!r}")
        return problems

    def extra_checks(self) -> list[str]:
        """Cross-field rules; return problems as 'field: message' strings."""
        return []

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)}

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        """JSON schema of the fields: what the API publishes and the UI renders a form from."""
        hints = typing.get_type_hints(cls)
        props: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            md = f.metadata
            entry = _json_schema_of(hints[f.name])
            entry["description"] = md.get("help", "")
            if f.default is not MISSING:
                default = f.default
            elif f.default_factory is not MISSING:
                default = f.default_factory()
            else:
                default = None
            entry["default"] = _plain(default)
            if md.get("choices") is not None:
                entry["enum"] = list(md["choices"])
            for key, schema_key in (("ge", "minimum"), ("gt", "exclusiveMinimum"), ("le", "maximum")):
                if md.get(key) is not None:
                    entry[schema_key] = md[key]
            entry["x-advanced"] = bool(md.get("advanced"))
            props[f.name] = entry
        doc = (cls.__doc__ or "").strip()
        return {"title": cls.__name__, "description": doc.splitlines()[0] if doc else "", "type": "object", "properties": props}


@dataclass
class PeftConfig(Schema):
    """Fields every adapter config has. Subclasses set `peft_type` and add their own fields.

    `peft_compat_fields` lists fields peft writes that this engine does not implement, with the neutral
    value that means "feature off": they are written so our JSON reads like peft's, accepted silently
    when neutral, and refused with a clear message when a checkpoint turns them on.
    """

    peft_type: ClassVar[PeftType]
    peft_compat_fields: ClassVar[dict[str, Any]] = {"auto_mapping": None}
    is_prompt_learning: ClassVar[bool] = False

    task_type: str | None = option(
        None, help="What the model is for; picks the model wrapper.", choices=(None, *[t.value for t in TaskType])
    )
    base_model_name_or_path: str | None = option(None, help="Hub id or folder of the base model.", advanced=True)
    revision: str | None = option(None, help="Revision of the base model on the Hub.", advanced=True)
    inference_mode: bool = option(False, help="Freeze the adapter (saved checkpoints always say true).", advanced=True)
    peft_version: str | None = option(None, help="Version of the library that wrote the checkpoint.", advanced=True)

    def __post_init__(self) -> None:
        if isinstance(self.task_type, TaskType):
            self.task_type = self.task_type.value
        super().__post_init__()

    # ------------------------------------------------------------------ serialisation

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = dict(self.peft_compat_fields)
        data.update(super().to_dict())
        data["peft_type"] = self.peft_type.value
        return data

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def save_pretrained(self, save_directory: str | os.PathLike, **extra: Any) -> None:
        """Write adapter_config.json as peft does (sorted keys, indent 2); `extra` overrides fields.

        Like peft's, this writes the config as it is: PeftModel.save_pretrained passes inference_mode=True.
        """
        from . import __version__

        os.makedirs(save_directory, exist_ok=True)
        data = self.to_dict()
        data.update(extra)
        if data.get("peft_version") is None:
            data["peft_version"] = f"{PEFT_FORMAT_VERSION}+peftcore.{__version__}"
        with open(os.path.join(save_directory, CONFIG_NAME), "w", encoding="utf-8") as fh:
            fh.write(json.dumps(data, indent=2, sort_keys=True))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PeftConfig:
        """Build the right config class from a dict; unknown keys are dropped with a warning."""
        from .registry import get_method

        if not isinstance(data, dict):
            raise ConfigError(cls.__name__, [f"config: expected a JSON object of fields, got {type(data).__name__}"])
        data = dict(data)
        peft_type = data.pop("peft_type", None)
        target_cls = cls
        if peft_type is not None:
            target_cls = get_method(peft_type).config_cls
        elif getattr(cls, "peft_type", None) is None:
            raise ConfigError(cls.__name__, ["peft_type: missing; say which method this config is for, e.g. 'LORA'"])
        return target_cls._from_fields(data)

    @classmethod
    def _from_fields(cls, data: dict[str, Any]) -> PeftConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        problems: list[str] = []
        unknown: list[str] = []
        for key, value in data.items():
            if key in names:
                kwargs[key] = value
            elif key in cls.peft_compat_fields:
                neutral = cls.peft_compat_fields[key]
                if value not in (neutral, None, {}, [], False) and key != "auto_mapping":
                    problems.append(
                        f"{key}: {value!r} turns on a peft feature that peft_core does not support yet; "
                        f"load this adapter with peft, or set {key} to {neutral!r} if the adapter does not need it"
                    )
            else:
                unknown.append(key)
        if problems:
            raise ConfigError(cls.__name__, problems)
        if unknown:
            warnings.warn(
                f"{cls.__name__}: ignoring unknown config keys {sorted(unknown)} (written by a newer version?)",
                stacklevel=3,
            )
        return cls(**kwargs)

    @classmethod
    def from_pretrained(cls, path_or_repo: str | os.PathLike, subfolder: str | None = None, **hub_kwargs: Any) -> PeftConfig:
        from .hub import resolve_file

        config_file = resolve_file(path_or_repo, CONFIG_NAME, subfolder=subfolder, **hub_kwargs)
        with open(config_file, encoding="utf-8") as fh:
            try:
                data = json.load(fh)
            except json.JSONDecodeError as exc:
                raise ConfigError(cls.__name__, [f"{config_file}: not valid JSON ({exc})"]) from exc
        return cls.from_dict(data)

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        schema = super().json_schema()
        schema["x-peft-type"] = cls.peft_type.value
        return schema

    # ------------------------------------------------------------------ trainable-parameter count (torch-free)

    def trainable_parameter_count(self, shape: ModelShape) -> int | None:
        """How many parameters this config trains on a model of `shape` (peft_core.shapes), without torch.

        The protocol every method implements so the studio can show the number before a run starts
        (tests/peft_core/test_parameter_counts.py checks it against the real adapter for every registered
        method). Layer methods get it from `TargetingConfig` and implement `module_parameter_count`;
        model-level methods (prompt learning) override this, e.g. num_virtual_tokens * token_dim * submodules.
        None: this method does not count yet, or the shape lacks a size it needs.
        """
        return None


@dataclass
class TargetingConfig(PeftConfig):
    """Fields of every method that injects layers into the model: what to target and what else to train.

    Methods whose peft config has no layer selection (IA3, LN tuning) subclass this directly, so their
    adapter_config.json carries exactly peft's fields; the others subclass `AdapterConfig`.
    """

    target_modules: list[str] | str | None = option(
        None,
        help="Modules to adapt: a list of names or name suffixes, a regex (full match), or 'all-linear'.",
    )
    exclude_modules: list[str] | str | None = option(
        None, help="Modules never to adapt: a list of names/suffixes or a regex.", advanced=True
    )
    modules_to_save: list[str] | None = option(
        None, help="Modules trained fully and saved with the adapter (e.g. a classification head).", advanced=True
    )

    def extra_checks(self) -> list[str]:
        problems = super().extra_checks()
        if isinstance(self.target_modules, list) and not self.target_modules and not self._allows_empty_targets():
            problems.append("target_modules: the list is empty; name at least one module or use 'all-linear'")
        for name in ("target_modules", "exclude_modules"):
            value = getattr(self, name)
            if isinstance(value, str):  # a string is a regex (full match), never a list of characters
                try:
                    re.compile(value)
                except re.error as exc:
                    problems.append(f"{name}: {value!r} is not a valid regex ({exc})")
        return problems

    def _allows_empty_targets(self) -> bool:
        return False

    # ------------------------------------------------------------------ trainable-parameter count (torch-free)

    def trainable_parameter_count(self, shape: ModelShape) -> int | None:
        """Sum of `module_parameter_count` over the targeted modules, plus full copies of modules_to_save and
        the biases `bias` trains; None when a targeted module cannot be counted or the targets are unknown."""
        from .shapes import saved_whole

        modules = self.targeted_modules(shape)
        if modules is None or (not modules and not self._allows_empty_targets()):
            return None  # unknown targets, or none match: the engine would refuse, so there is no number
        counts = [self.module_parameter_count(m, shape) for m in modules]
        if any(c is None for c in counts):
            return None
        bias = getattr(self, "bias", "none")
        if bias == "all":
            trained_biases = sum(m.bias for m in shape.modules)
        elif isinstance(bias, str) and bias.endswith("_only"):
            trained_biases = sum(m.bias for m in modules)
        else:
            trained_biases = 0
        return sum(counts) + sum(m.numel for m in saved_whole(shape, self.modules_to_save)) + trained_biases  # type: ignore[misc]

    def module_parameter_count(self, module: ModuleShape, shape: ModelShape) -> int | None:
        """Parameters the adapter adds to one targeted module (its own tensors, not biases or modules_to_save).

        None: not implemented for this method, or a module kind it cannot adapt."""
        return None

    def targeted_modules(self, shape: ModelShape) -> list[ModuleShape] | None:
        """The modules this config adapts on `shape`, by peft_core's targeting rules (None: no targets known)."""
        from .shapes import saved_whole, select_modules

        targets = self.target_modules if self.target_modules is not None else self.default_targets_for(shape)
        if targets is None:
            return None
        return select_modules(
            shape,
            targets,
            exclude=self.exclude_modules,
            layers_to_transform=getattr(self, "layers_to_transform", None),
            layers_pattern=getattr(self, "layers_pattern", None),
            skip=[m.name for m in saved_whole(shape, self.modules_to_save)],
        )

    def default_targets_for(self, shape: ModelShape) -> list[str] | str | None:
        """target_modules when left unset: the method's registered default for the shape's model type."""
        from .registry import get_method

        found = get_method(self.peft_type).default_targets.get(shape.model_type or "")
        return list(found) if isinstance(found, list) else found


@dataclass
class AdapterConfig(TargetingConfig):
    """Targeting plus layer selection (`layers_to_transform`), as most adapter methods have it."""

    layers_to_transform: list[int] | int | None = option(
        None, help="Only adapt these layer indices.", advanced=True
    )
    layers_pattern: list[str] | str | None = option(
        None, help="Name of the layer list (e.g. 'layers', 'h') used with layers_to_transform.", advanced=True
    )

    def extra_checks(self) -> list[str]:
        problems = super().extra_checks()
        if self.layers_pattern is not None and self.layers_to_transform is None:
            problems.append("layers_pattern: only meaningful together with layers_to_transform")
        return problems


@contextlib.contextmanager
def skipping_init(config: PeftConfig) -> Iterator[PeftConfig]:
    """Turn the config's init_* switches off for the duration (then restore them).

    Used when saved tensors are about to overwrite the adapter: initialising would be wasted work, and a
    data-driven init (PiSSA, OLoRA, LoftQ) would rewrite the base weights a second time."""
    names = [f.name for f in dataclasses.fields(config) if f.name.startswith("init_") and isinstance(getattr(config, f.name), (bool, str))]
    saved = {name: getattr(config, name) for name in names}
    for name in names:
        object.__setattr__(config, name, False)
    try:
        yield config
    finally:
        for name, value in saved.items():
            object.__setattr__(config, name, value)
