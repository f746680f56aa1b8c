"""docker-compose.yml: the services the design names, health checks, a GPU per worker; `docker compose config` when possible."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"


def test_compose_file_shape():
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    assert set(services) == {"app", "worker", "postgres", "redis"}
    for name, service in services.items():
        assert "healthcheck" in service, f"{name} has no health check"
    devices = services["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert services["worker"]["command"] == ["peft-studio", "worker"]
    assert "--no-worker" in services["app"]["command"]
    env = services["app"]["environment"]
    assert env["STUDIO_DATABASE_URL"].startswith("postgresql+psycopg://") and env["STUDIO_BROKER_URL"].startswith("redis://")
    assert "noeviction" in services["redis"]["command"] and "--appendonly" in services["redis"]["command"]


def _compose_cli() -> list[str] | None:
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_docker_compose_config_accepts_the_file():
    cli = _compose_cli()
    if cli is None:
        pytest.skip("no docker compose CLI on this machine")
    done = subprocess.run([*cli, "-f", str(COMPOSE), "config", "--quiet"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
