"""In a real browser: merge a finished demo run from its page, watch it end, then check the listed files
(sizes, SHA-256) against the API and download the merged model as a zip that transformers loads."""

from __future__ import annotations

import hashlib
import io
import time
import zipfile
from pathlib import Path

import pytest

from tests.app.ui.conftest import Studio, screenshot

pytestmark = pytest.mark.integration

SPEC = {"name": "to merge in the browser", "base_model": "demo", "method": {"peft_type": "LORA", "r": 4}, "training": {"max_steps": 4}}


def _wait_succeeded(studio: Studio, run_id: int, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = studio.api("GET", f"/api/jobs/{run_id}").json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            assert job["status"] == "succeeded", job["message"]
            return
        time.sleep(0.5)
    raise AssertionError(f"run {run_id} did not finish in {timeout:g} s")


def test_merge_a_finished_run_and_download_the_merged_model(studio: Studio, page, tmp_path):
    run_id = studio.api("POST", "/api/jobs", json=SPEC).json()["id"]
    _wait_succeeded(studio, run_id)
    page.goto(f"{studio.url}/run?run={run_id}")
    page.locator("#ps-run-header .ps-succeeded").wait_for()
    page.locator("#ps-merge-button").click()
    page.locator("#ps-merged-zip").wait_for(timeout=240_000)
    assert page.locator("#ps-merge-button").is_visible()  # it can be merged again
    screenshot(page, "run-merged")

    merged = next(a for a in studio.api("GET", f"/api/jobs/{run_id}/artifacts").json() if a["kind"] == "merged")
    shown = page.locator("#ps-merge-box").inner_text()
    for f in merged["files"]:
        assert f["path"] in shown and f["sha256"] in shown

    with page.expect_download() as download:
        page.locator("#ps-merged-zip").click()
    folder = tmp_path / "merged"
    zipfile.ZipFile(io.BytesIO(Path(download.value.path()).read_bytes())).extractall(folder)
    for f in merged["files"]:
        assert hashlib.sha256((folder / f["path"]).read_bytes()).hexdigest() == f["sha256"]

    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(folder).config.model_type
