"""Real processes for integration tests: a private Redis server, studio workers and web servers.

Each runs from the repository root with an explicit environment and writes to its own log file, which
a failing test prints. Start-up waits poll with deadlines; stopping escalates TERM -> KILL.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen, timeout: float) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


class RedisServer:
    """A throwaway redis-server on a free loopback port, without persistence (a restart empties it)."""

    def __init__(self, folder: Path):
        if shutil.which("redis-server") is None:
            pytest.skip("redis-server is not installed (.ci/run installs and starts Redis)")
        self.folder = folder
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        cmd = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(self.folder)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self._pong, timeout=10, what=f"redis on port {self.port}")

    def _pong(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc:
            _stop(self.proc, 10)

    def restart(self) -> None:
        self.stop()
        self.start()


class StudioProcess:
    """`python -m app.cli <args>` with the given environment, logging to a file."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path):
        self.args, self.env, self.log_path = args, env, log_path
        self.proc: subprocess.Popen | None = None

    def start(self) -> StudioProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "app.cli", *self.args], cwd=REPO, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for_log(self, text: str, timeout: float = 60, count: int = 1) -> None:
        def seen() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"{self.args} exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            return self.log().count(text) >= count

        wait_for(seen, timeout=timeout, what=f"{text!r} in the log of {self.args}")

    def stop(self, timeout: float = 30) -> None:
        if self.proc:
            _stop(self.proc, timeout)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def start_worker(env: dict[str, str], log_path: Path) -> StudioProcess:
    """A worker process, returned once Celery says it is ready to take messages."""
    worker = StudioProcess(["worker"], env, log_path).start()
    worker.wait_for_log(" ready.", timeout=60)
    return worker


def start_web(env: dict[str, str], log_path: Path, port: int) -> StudioProcess:
    """`peft-studio run --no-worker`, returned once /api/health answers."""
    web = StudioProcess(["run", "--no-worker", "--port", str(port)], env, log_path).start()

    def healthy() -> bool:
        if web.proc is not None and web.proc.poll() is not None:
            raise AssertionError(f"web server exited:\n{web.log()[-3000:]}")
        try:
            return httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(healthy, timeout=60, what="the web server's /api/health", interval=0.1)
    return web


def pid_alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def wait_gone(pid: int, timeout: float = 20) -> None:
    """Once gone, the kernel has freed the process's memory (GPU memory included)."""
    wait_for(lambda: not pid_alive(pid), timeout=timeout, what=f"process {pid} to exit")
