"""Errors people can act on: each names the problem and, where there is one, the fix."""

from __future__ import annotations


class PeftCoreError(Exception):
    """Base class of every error peft_core raises on purpose."""


class ConfigError(PeftCoreError, ValueError):
    """One or more config fields are invalid. `problems` lists each as 'field: what is wrong'."""

    def __init__(self, config_name: str, problems: list[str]):
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid {config_name} ({len(self.problems)} problem(s)):\n{lines}")


class NoMatchingModulesError(PeftCoreError, ValueError):
    """The config's targets matched nothing in the model."""


class UnsupportedLayerError(PeftCoreError, TypeError):
    """A targeted module is of a type the method has no implementation for."""


class AdapterNotFoundError(PeftCoreError, KeyError):
    """An adapter name that the model does not hold."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class CheckpointError(PeftCoreError, OSError):
    """An adapter checkpoint is missing, unreadable or does not fit the model."""


class MergeError(PeftCoreError, RuntimeError):
    """A merge would corrupt the weights (NaN/inf) or is not possible for this adapter."""
