"""The quantization field in a browser: pick 4-bit (QLoRA) in the New run form's advanced training settings,
start a demo run, and watch it succeed on the CPU with its eval pass. Real web process, real worker, real
Chromium (see conftest.py); the run trains the demo model through bitsandbytes."""

from __future__ import annotations

import os
import re

import pytest

from tests.app.ui.conftest import Studio, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]

RUN_TIMEOUT_MS = 300_000


def test_a_4bit_demo_run_started_from_the_form_succeeds(studio: Studio, page):
    pytest.importorskip("bitsandbytes")
    page.goto(f"{studio.url}/new")
    page.locator("#ps-start").wait_for()
    page.locator("#ps-summary .ps-estimate").wait_for()

    page.get_by_label("Max steps").fill("6")
    page.get_by_label("Learning rate").fill("0.002")
    page.get_by_label("Run name").fill("4-bit demo")
    page.get_by_text("Advanced training settings").click()
    page.get_by_label("Eval every").fill("3")
    field = page.get_by_label("Quantization")
    field.click()
    page.get_by_role("option", name="4bit-nf4").first.click()
    assert field.input_value() == "4bit-nf4"
    screenshot(page, "new-run-quantization")

    page.locator("#ps-start").click()
    page.wait_for_url(re.compile(r".*/run\?run=\d+$"), timeout=30_000)
    run_id = int(page.url.rsplit("=", 1)[1])
    job = studio.api("GET", f"/api/jobs/{run_id}").json()
    assert job["name"] == "4-bit demo"
    assert job["config"]["training"]["quantization"] == "4bit-nf4" and job["config"]["training"]["eval_every"] == 3

    page.locator("#ps-run-header .ps-succeeded").wait_for(timeout=RUN_TIMEOUT_MS)
    screenshot(page, "run-quantization-succeeded")
    detail = studio.api("GET", f"/api/jobs/{run_id}").json()
    if not os.environ.get("PEFT_STUDIO_TEST_TRAINER"):  # a stand-in trainer loads no model
        assert "loaded in 4bit-nf4 (bitsandbytes)" in detail["log_tail"], detail["log_tail"][-2000:]
        evals = [m["eval_loss"] for m in studio.api("GET", f"/api/jobs/{run_id}/metrics").json() if m["eval_loss"] is not None]
        assert len(evals) == 2, evals  # steps 3 and 6: the eval passes that used to fail inside bitsandbytes on a CPU
    assert page.locator("#ps-progress").get_by_text("Step 6 of 6").count() == 1
    page.get_by_role("tab", name="Log").click()
    log = page.locator("#ps-log textarea")
    log.wait_for()
    assert "bitsandbytes" in log.input_value()
    screenshot(page, "run-quantization-log")
