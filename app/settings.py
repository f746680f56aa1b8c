"""The studio's settings: one typed, validated object read from `STUDIO_*` environment variables.

Built on demand by `get_settings()` (cached), never at import, so tests and tools can set the
environment first. The defaults need no outside service: SQLite and a filesystem message queue under
the data directory. Production points STUDIO_DATABASE_URL at PostgreSQL and STUDIO_BROKER_URL at Redis.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PREFIX = "STUDIO_"
_SIZE_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}


class SettingsError(ValueError):
    """Some STUDIO_* variables are invalid; `problems` names each variable and what it accepts."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid studio settings:\n" + "\n".join(f"  - {p}" for p in problems))


@dataclass(frozen=True)
class Settings:
    """Everything a studio process (web, worker, training child, CLI) needs to find its data and peers."""

    data_dir: Path
    database_url: str
    broker_url: str
    host: str = "127.0.0.1"
    port: int = 7860
    queue: str = "studio"
    lease_seconds: float = 90.0
    reap_interval_seconds: float = 60.0
    redeliver_after_seconds: float = 300.0
    cancel_grace_seconds: float = 30.0
    max_attempts: int = 3
    max_upload_bytes: int = 2 * 2**30
    trainer: str = "worker.training:run_training"
    log_level: str = "INFO"
    hub_endpoint: str = "https://huggingface.co"  # where publishing goes (a Hub mirror or, in tests, a local fake)
    # Folders server-path datasets must lie under (resolved); empty: any path on loopback, none otherwise (app/datasets/roots.py).
    dataset_roots: tuple[Path, ...] = ()

    @property
    def jobs_dir(self) -> Path:
        """Each job's files (checkpoints, adapter, attempt logs) live in jobs_dir/<id>."""
        return self.data_dir / "jobs"

    @property
    def broker_dir(self) -> Path:
        """Message folder of the embedded filesystem broker."""
        return self.data_dir / "broker"

    @property
    def uses_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def _text(raw: str) -> str:
    if not raw.strip():
        raise ValueError("must not be empty")
    return raw.strip()


def _int_in(lo: int, hi: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"expected a whole number, got {raw!r}") from None
        if not lo <= value <= hi:
            raise ValueError(f"must be between {lo} and {hi}, got {value}")
        return value

    return parse


def _seconds(lo: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"expected a number of seconds, got {raw!r}") from None
        if not value >= lo:
            raise ValueError(f"must be at least {lo:g} seconds, got {raw}")
        return value

    return parse


def _size(raw: str) -> int:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", raw)
    unit = match.group(2).upper() if match else ""
    if not match or unit not in _SIZE_UNITS:
        raise ValueError(f"expected a size such as 500MB, 2GiB or a number of bytes, got {raw!r}")
    value = int(float(match.group(1)) * _SIZE_UNITS[unit])
    if value <= 0:
        raise ValueError("must be more than 0 bytes")
    return value


def _matching(pattern: str, expected: str) -> Callable[[str], str]:
    """A parser accepting text that starts with a match of `pattern` (anchor it with $ to match it all)."""

    def parse(raw: str) -> str:
        if not re.match(pattern, raw):
            raise ValueError(f"expected {expected}, got {raw!r}")
        return raw

    return parse


def _folders(raw: str) -> tuple[Path, ...]:
    """Folders separated by the OS path separator (':' on Linux) or commas, each made absolute with symlinks followed."""
    parts = [p.strip() for p in re.split(rf"[{re.escape(os.pathsep)},]", raw) if p.strip()]
    bad = [p for p in parts if not Path(p).expanduser().is_absolute()]
    if bad:
        raise ValueError(f"expected absolute folders such as /srv/datasets, got {', '.join(repr(b) for b in bad)}")
    return tuple(Path(p).expanduser().resolve() for p in parts)


def _log_level(raw: str) -> str:
    if raw.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ValueError(f"expected DEBUG, INFO, WARNING or ERROR, got {raw!r}")
    return raw.upper()


_PARSERS: dict[str, Callable[[str], Any]] = {
    "data_dir": lambda raw: Path(_text(raw)).expanduser().resolve(),
    "database_url": _matching(r"(sqlite|postgresql)(\+\w+)?://", "sqlite:///path/to/studio.db or postgresql+psycopg://user@host/db"),
    "broker_url": _matching(r"(filesystem|redis|rediss|amqp|pyamqp|memory)://", "filesystem:// (embedded) or redis://host:6379/0"),
    "host": _text,
    "port": _int_in(1, 65535),
    "queue": _matching(r"[\w.-]+$", "letters, digits, '.', '_' or '-'"),
    "lease_seconds": _seconds(1.0),
    "reap_interval_seconds": _seconds(0.1),
    "redeliver_after_seconds": _seconds(1.0),
    "cancel_grace_seconds": _seconds(0.0),
    "max_attempts": _int_in(1, 100),
    "max_upload_bytes": _size,
    "trainer": _matching(r"[\w.]+:\w+$", "'package.module:function'"),
    "log_level": _log_level,
    "dataset_roots": _folders,
    "hub_endpoint": lambda raw: _matching(r"https?://[^\s/]+", "an http(s) URL such as https://huggingface.co")(raw.strip()).rstrip("/"),
}
# Read elsewhere, on purpose not fields (a token or key must never sit in a Settings repr): app/secrets.py, worker/publishing.py.
SECRET_VARS = {"STUDIO_SECRET_KEY", "STUDIO_HF_TOKEN"}


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every STUDIO_* variable; raise SettingsError naming each bad one."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    problems: list[str] = []
    for f in fields(Settings):
        var = PREFIX + f.name.upper()
        if var not in env:
            continue
        try:
            values[f.name] = _PARSERS[f.name](env[var])
        except ValueError as exc:
            problems.append(f"{var}: {exc}")
    known = {PREFIX + f.name.upper() for f in fields(Settings)} | SECRET_VARS
    for var in sorted(v for v in env if v.startswith(PREFIX) and v not in known):
        log.warning("%s is not a studio setting and is ignored (known: %s)", var, ", ".join(sorted(known)))
    if problems:
        raise SettingsError(problems)
    data_dir = values.setdefault("data_dir", Path("data").resolve())
    values.setdefault("database_url", f"sqlite:///{data_dir / 'studio.db'}")
    values.setdefault("broker_url", "filesystem://")
    return Settings(**values)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once; call get_settings.cache_clear() after changing the environment."""
    return load_settings()
