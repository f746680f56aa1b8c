"""The real studio in a real browser: `peft-studio run` as a subprocess (web + embedded worker, SQLite in a
temporary data directory) driven by Debian's Chromium through Playwright. Skipped when Chromium is missing.

PEFT_STUDIO_TEST_TRAINER=module:function swaps the trainer (e.g. tests.worker.fake_trainer:run_training)
to try the pages quickly; by default the real trainer trains the built-in demo model.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]
REPO = Path(__file__).resolve().parents[3]
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"
DEMO_CACHE = REPO / "test-artifacts" / "cache"  # the built demo model, reused across test sessions (git-ignored)
START_TIMEOUT = 180


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Studio:
    """One `peft-studio run` process (web + embedded worker) on a data directory that survives restarts."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir.parent / "studio.log"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("STUDIO_")}
        env.update(STUDIO_DATA_DIR=str(self.data_dir), STUDIO_PORT=str(self.port), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                   HF_DATASETS_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1")
        if os.environ.get("PEFT_STUDIO_TEST_TRAINER"):
            env["STUDIO_TRAINER"] = os.environ["PEFT_STUDIO_TEST_TRAINER"]
        return env

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "app.cli", "run"], cwd=REPO, env=self.env(), stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"peft-studio run exited with {self.proc.returncode}; see {self.log}:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/api/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"the studio did not answer within {START_TIMEOUT} s; see {self.log}")

    def stop(self) -> None:
        """Warm stop (SIGTERM: the embedded worker hands its job back), then make sure the whole group is gone."""
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)  # a worker left behind by a crash
        except ProcessLookupError:
            pass
        self.proc = None

    def api(self, method: str, path: str, **kwargs) -> httpx.Response:
        return httpx.request(method, f"{self.url}{path}", timeout=30, **kwargs)


@pytest.fixture(scope="module")
def chromium_path() -> Path:
    if not CHROMIUM.exists():
        pytest.skip(f"browser tests need Chromium at {CHROMIUM} (Debian package 'chromium'); it is not installed")
    return CHROMIUM


def _real_trainer_missing() -> str | None:
    if os.environ.get("PEFT_STUDIO_TEST_TRAINER"):
        return None
    import importlib

    try:
        training = importlib.import_module("worker.training")
    except ImportError as exc:
        return f"worker.training cannot be imported ({exc})"
    return None if hasattr(training, "run_training") else "worker.training has no run_training yet"


@pytest.fixture(scope="module")
def studio(chromium_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Studio]:
    missing = _real_trainer_missing()
    if missing:
        pytest.skip(f"the browser tests train the demo model with the real trainer, but {missing}; "
                    "PEFT_STUDIO_TEST_TRAINER=tests.worker.fake_trainer:run_training runs them with a stand-in")
    server = Studio(tmp_path_factory.mktemp("studio") / "data")
    if not os.environ.get("PEFT_STUDIO_TEST_TRAINER"):
        _seed_demo_model(server.data_dir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _seed_demo_model(data_dir: Path) -> None:
    """Copy the demo model into the data directory, building it once into DEMO_CACHE if needed.

    The worker would build the same model (deterministic, keyed by its recipe's fingerprint) on the
    first demo run; seeding it keeps the tests about the studio, not about a minute of pre-training.
    """
    subprocess.run([sys.executable, "-m", "worker.training.demo", "--data-dir", str(DEMO_CACHE)], cwd=REPO, check=True,
                   capture_output=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    shutil.copytree(DEMO_CACHE / "demo-model", data_dir / "demo-model")


@pytest.fixture(scope="module")
def browser(chromium_path: Path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(chromium_path), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    context.set_default_timeout(30_000)
    tab = context.new_page()
    yield tab
    context.close()


def screenshot(tab, name: str) -> Path:
    """Save a full-page screenshot under test-artifacts/screenshots/ (git-ignored) for people to look at."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    tab.screenshot(path=str(path), full_page=True)
    return path
