"""The studio in a browser, end to end: start a demo run from the form, watch it, reload, download the adapter;
cancel, clone and delete from the pages. Real web process, real worker, real Chromium (see conftest.py)."""

from __future__ import annotations

import io
import os
import re
import time
import zipfile
from pathlib import Path

import pytest

from tests.app.ui.conftest import Studio, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]

RUN_TIMEOUT_MS = 240_000
DEMO_STEPS = "12"
CHART_POINTS_JS = """(selector) => {
  let n = 0;
  for (const path of document.querySelectorAll(selector + ' g.mark-line path')) {
    n += ((path.getAttribute('d') || '').match(/[ML]/g) || []).length;
  }
  return n;
}"""


def _chart_points(page) -> int:
    return page.evaluate(CHART_POINTS_JS, "#ps-loss-chart")


def _wait_for_points(page, at_least: int, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        n = _chart_points(page)
        if n >= at_least:
            return n
        time.sleep(0.25)
    raise AssertionError(f"the loss chart never showed {at_least} points (has {_chart_points(page)})")


def _status(page) -> str:
    return page.locator("#ps-run-header .ps-pill").inner_text().strip()


def _open_new_run(page, studio: Studio) -> None:
    page.goto(f"{studio.url}/new")
    page.locator("#ps-start").wait_for()
    page.locator("#ps-summary .ps-estimate").wait_for()


def _load_adapter(folder: Path, data_dir: Path) -> None:
    """The downloaded adapter loads onto the demo base model with peft_core and changes its output."""
    import torch
    from transformers import AutoModelForCausalLM

    import peft_core
    from worker.training.demo import demo_model_dir

    base = AutoModelForCausalLM.from_pretrained(demo_model_dir(data_dir))
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.no_grad():
        before = base(ids).logits
        model = peft_core.PeftModel.from_pretrained(base, str(folder))
        after = model(ids).logits
    assert any("lora_A" in name for name, _ in model.named_parameters()), "the adapter added no LoRA weights"
    assert not torch.allclose(before, after), "the trained adapter does not change the model's output"


def test_start_a_demo_run_watch_it_reload_and_download_the_adapter(studio: Studio, page, browser, tmp_path):
    _open_new_run(page, studio)
    screenshot(page, "new-run")

    # Problems are shown next to the field and in one list; nothing is queued.
    page.get_by_label("Max steps").fill("0")
    page.get_by_label("Learning rate").fill("5")
    page.locator("#ps-start").click()
    problems = page.locator("#ps-problems")
    problems.get_by_text("Max steps").wait_for()
    assert "must be > 0" in problems.inner_text() and "Learning rate" in problems.inner_text()
    assert page.get_by_text("⚠ must be > 0").count() >= 1
    screenshot(page, "new-run-problems")
    assert studio.api("GET", "/api/jobs").json() == []

    page.get_by_label("Max steps").fill(DEMO_STEPS)
    page.get_by_label("Learning rate").fill("0.002")
    page.get_by_label("Run name").fill("browser demo")
    page.locator("#ps-start").click()
    page.wait_for_url(re.compile(r".*/run\?run=\d+$"), timeout=30_000)
    run_id = int(page.url.rsplit("=", 1)[1])
    job = studio.api("GET", f"/api/jobs/{run_id}").json()
    assert job["name"] == "browser demo" and job["config"]["training"]["max_steps"] == int(DEMO_STEPS)

    # The chart gains points while it runs; a reload and a second browser show the same chart.
    first = _wait_for_points(page, 2, timeout=180)
    page.reload()
    page.locator("#ps-run-header .ps-pill").wait_for()
    assert _wait_for_points(page, first, timeout=30) >= first
    other = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    other.goto(page.url)
    assert _wait_for_points(other, first, timeout=30) >= first
    other.context.close()

    page.locator("#ps-run-header .ps-succeeded").wait_for(timeout=RUN_TIMEOUT_MS)
    metrics = studio.api("GET", f"/api/jobs/{run_id}/metrics").json()
    assert _wait_for_points(page, len([m for m in metrics if m["loss"] is not None]), timeout=10)
    assert page.locator("#ps-progress").get_by_text(f"Step {DEMO_STEPS} of {DEMO_STEPS}").count() == 1
    # The padding tile shows the last metric row's padding share, as the API returns it.
    last_share = next((m["padding_share"] for m in reversed(metrics) if m["padding_share"] is not None), None)
    if not os.environ.get("PEFT_STUDIO_TEST_TRAINER"):
        assert last_share is not None and 0 <= last_share < 1
    from app.ui.run_detail import padding_text

    assert page.locator("#ps-run-tiles .ps-tile-padding .ps-tile-value").inner_text() == padding_text(last_share)
    screenshot(page, "run-succeeded")

    # Download the adapter (a zip built on the fly) and load it with peft_core.
    with page.expect_download() as download:
        page.locator("#ps-download-adapter").click()
    data = Path(download.value.path()).read_bytes()
    folder = tmp_path / "adapter"
    zipfile.ZipFile(io.BytesIO(data)).extractall(folder)
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in folder.iterdir()}
    if not os.environ.get("PEFT_STUDIO_TEST_TRAINER"):  # a stand-in trainer writes no real weights
        _load_adapter(folder, studio.data_dir)

    # A restarted web process shows the same run: everything comes from the database.
    loss_before = page.locator("#ps-run-tiles .ps-tile-loss .ps-tile-value").inner_text()
    studio.stop()
    studio.start()
    page.reload()
    page.locator("#ps-run-header .ps-succeeded").wait_for()
    assert page.locator("#ps-run-tiles .ps-tile-loss .ps-tile-value").inner_text() == loss_before
    assert _wait_for_points(page, 2, timeout=30)


def test_runs_page_cancel_clone_and_delete(studio: Studio, page):
    spec = {"name": "long run", "base_model": "demo", "method": {"peft_type": "LORA", "r": 4}, "training": {"max_steps": 5000}}
    run_id = studio.api("POST", "/api/jobs", json=spec).json()["id"]

    page.goto(studio.url)
    row = page.locator(f'tr[data-run="{run_id}"]')
    row.wait_for()
    row.locator(".ps-running").wait_for(timeout=120_000)
    screenshot(page, "runs")

    # Cancel from the run page; the run stops within a step and says so.
    row.locator(".ps-run-name a").click()
    page.wait_for_url(re.compile(rf".*/run\?run={run_id}$"))
    _wait_for_points(page, 1, timeout=120)
    screenshot(page, "run-running")
    page.locator("#ps-cancel").click()
    page.locator("#ps-run-header .ps-cancelled").wait_for(timeout=120_000)
    assert studio.api("GET", f"/api/jobs/{run_id}").json()["status"] == "cancelled"

    # Clone prefills the New run form.
    page.goto(studio.url)
    page.locator(f'tr[data-run="{run_id}"] a', has_text="Clone").click()
    page.wait_for_url(re.compile(rf".*/new\?clone={run_id}$"))
    page.get_by_text(f"Settings copied from run #{run_id}").wait_for()
    assert page.get_by_label("Run name").input_value() == "Copy of long run"
    assert page.get_by_label("Max steps").input_value() == "5000"
    screenshot(page, "new-run-clone")

    # Delete asks first, then removes the run.
    page.goto(studio.url)
    page.locator(f'tr[data-run="{run_id}"] button[data-action="delete"]').click()
    page.locator("#ps-confirm").get_by_text(f"Delete run #{run_id}").wait_for()
    page.locator("#ps-confirm-yes").click()
    page.locator(f'tr[data-run="{run_id}"]').wait_for(state="detached", timeout=15_000)
    assert studio.api("GET", f"/api/jobs/{run_id}").status_code == 404


def test_upload_a_jsonl_file_and_pick_a_hub_model(studio: Studio, page, tmp_path):
    _open_new_run(page, studio)
    page.get_by_text("Upload a new file").click()
    upload = page.locator("#ps-upload input[type=file]")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\nnot json\n')
    upload.set_input_files(str(bad))
    page.get_by_text("line 2: not valid JSON").wait_for()
    page.locator("#ps-upload button[aria-label='Clear']").first.click()
    good = tmp_path / "support.jsonl"
    good.write_text("".join(f'{{"prompt": "q{i}", "completion": "a{i}"}}\n' for i in range(40)))
    upload.set_input_files(str(good))
    page.locator("#ps-data-note").get_by_text("40 rows").wait_for()  # stored as a dataset and picked
    page.locator("#ps-summary").get_by_text("36 training rows").wait_for()  # 40 rows less the 10% eval split

    # Any Hub id can be typed; a known one gets parameter and memory estimates.
    model = page.locator("#ps-model input")
    model.fill("Qwen/Qwen2.5-0.5B-Instruct")
    model.press("Enter")
    page.locator("#ps-summary").get_by_text("of 494M").wait_for()
    screenshot(page, "new-run-upload")
