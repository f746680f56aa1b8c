"""In a real browser: combine two finished demo runs on the Combine page (a LoHa run is refused with its
reason, all-zero weights are refused in words), watch the combination succeed on its run page, check the
listed SHA-256 against the API and the downloaded zip, and load that adapter with peft_core."""

from __future__ import annotations

import hashlib
import io
import time
import zipfile
from pathlib import Path

import pytest

from tests.app.ui.conftest import Studio, screenshot

pytestmark = pytest.mark.integration


def _spec(name: str, method: dict, seed: int) -> dict:
    return {"name": name, "base_model": "demo", "method": method, "training": {"max_steps": 4, "seed": seed}}


def _wait_succeeded(studio: Studio, run_id: int, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = studio.api("GET", f"/api/jobs/{run_id}").json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            assert job["status"] == "succeeded", job["message"]
            return job
        time.sleep(0.5)
    raise AssertionError(f"run {run_id} did not finish in {timeout:g} s")


def test_combine_two_finished_runs_and_download_the_new_adapter(studio: Studio, page, tmp_path):
    a = studio.api("POST", "/api/jobs", json=_spec("support", {"peft_type": "LORA", "r": 4}, 1)).json()["id"]
    b = studio.api("POST", "/api/jobs", json=_spec("billing", {"peft_type": "LORA", "r": 4, "lora_alpha": 16}, 2)).json()["id"]
    loha = studio.api("POST", "/api/jobs", json=_spec("loha run", {"peft_type": "LOHA", "r": 4}, 3)).json()["id"]
    for run_id in (a, b, loha):
        _wait_succeeded(studio, run_id)

    page.goto(f"{studio.url}/combine")
    runs = page.locator("#ps-combine-runs")
    runs.get_by_text(f"#{a} · support").wait_for()
    refused = page.locator(f'#ps-combine-unavailable tr[data-run="{loha}"]')
    assert "only LoRA adapters can be combined" in refused.inner_text()
    assert not runs.get_by_text(f"#{loha} ·").count(), "a run that cannot be combined is not offered"

    runs.get_by_text(f"#{a} · support").click()
    page.locator("#ps-combine-weight-0").get_by_text(f"Weight of #{a}").wait_for()
    runs.get_by_text(f"#{b} · billing").click()
    page.locator("#ps-combine-weight-1").get_by_text(f"Weight of #{b}").wait_for()
    for i in (0, 1):
        page.locator(f"#ps-combine-weight-{i} input").fill("0")
    page.locator("#ps-combine-name input, #ps-combine-name textarea").first.fill("support + billing")
    page.locator("#ps-combine-start").click()
    problems = page.locator("#ps-combine-result .ps-problems")
    problems.wait_for()
    assert "weights: all weights are 0" in problems.inner_text()

    page.locator("#ps-combine-weight-0 input").fill("0.7")
    page.locator("#ps-combine-weight-1 input").fill("0.5")
    page.locator("#ps-combine-svd-rank input").fill("3")
    page.locator("#ps-combine-start").click()
    page.locator("#ps-combine-open").wait_for()
    screenshot(page, "combine-started")
    page.locator("#ps-combine-open").click()

    page.locator("#ps-run-header .ps-succeeded").wait_for(timeout=240_000)
    job_id = int(page.url.rsplit("=", 1)[-1])
    job = studio.api("GET", f"/api/jobs/{job_id}").json()
    assert job["name"] == "support + billing" and job["config"]["kind"] == "combine"
    assert [(s["run_id"], s["weight"]) for s in job["config"]["combine"]["sources"]] == [(a, 0.7), (b, 0.5)]
    assert job["message"].startswith(f"Combined #{a} × 0.7, #{b} × 0.5 with svd into a rank-3 LoRA adapter")
    assert f"Combined #{a}" in page.locator("#ps-run-status").inner_text()
    # The page fits a combination: its sources (linked, with names and weights) and knobs; no loss chart, no Clone.
    sources = page.locator("#ps-combined-from")
    assert [sources.locator(f'tr[data-source="{r}"] td').all_inner_texts() for r in (a, b)] == [[f"#{a}", "support", "0.7"], [f"#{b}", "billing", "0.5"]]
    assert sources.locator(f'a[href="run?run={a}"]').count() == 1 and "rank of the result" in sources.inner_text()
    assert not page.locator("#ps-loss-chart").is_visible() and not page.locator("#ps-lr-chart").is_visible()
    assert not page.locator(".ps-tile-loss").count() and "step" not in page.locator("#ps-progress").inner_text().lower()
    assert page.locator("#ps-clone").inner_text().strip() == "Combine again (prefilled)"
    screenshot(page, "combine-result-page")

    adapter = next(x for x in job["artifacts"] if x["kind"] == "adapter")
    shown = studio.api("GET", f"/api/jobs/{job_id}/artifacts/{adapter['id']}").json()["download"]
    page.get_by_role("tab", name="Artifacts").click()
    listed = page.locator(f"#ps-artifact-{adapter['id']}")
    listed.wait_for()
    assert shown["sha256"] in listed.inner_text()
    screenshot(page, "combine-result-run")

    with page.expect_download() as download:
        page.locator("#ps-download-adapter").click()
    body = Path(download.value.path()).read_bytes()
    assert hashlib.sha256(body).hexdigest() == shown["sha256"] and len(body) == shown["size_bytes"]
    folder = tmp_path / "combined"
    zipfile.ZipFile(io.BytesIO(body)).extractall(folder)

    import torch
    from transformers import AutoModelForCausalLM

    import peft_core
    from worker.training.demo import demo_model_dir

    base_dir = demo_model_dir(studio.data_dir)
    ids = torch.tensor([[1, 5, 9, 2, 7, 3]])
    with torch.no_grad():
        model = peft_core.PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), folder).eval()
        assert model.peft_config["default"].r == 3
        combined = model(ids).logits
        plain = AutoModelForCausalLM.from_pretrained(base_dir).eval()(ids).logits
    assert not torch.allclose(combined, plain, atol=1e-6), "the combined adapter must change the outputs"

    # Its clone opens the Combine page with its runs, weights, type, rank and a "Copy of" name filled in.
    page.goto(f"{studio.url}/run?run={job_id}")
    page.locator("#ps-clone").click()
    page.wait_for_url(f"**/combine?clone={job_id}")
    page.locator("#ps-combine-weight-1").get_by_text(f"Weight of #{b}").wait_for()
    assert page.locator("#ps-combine-runs input:checked").count() == 2
    assert [page.locator(f"#ps-combine-weight-{i} input").input_value() for i in (0, 1)] == ["0.7", "0.5"]
    assert page.locator("#ps-combine-svd-rank input").input_value() == "3"
    assert page.locator("#ps-combine-name input, #ps-combine-name textarea").first.input_value() == "Copy of support + billing"
    screenshot(page, "combine-cloned")

    # The Runs list shows the combination's kind, not an empty loss sparkline; its Clone goes to the Combine page.
    page.goto(f"{studio.url}/")
    row = page.locator(f'#ps-runs-table tr[data-run="{job_id}"]')
    row.wait_for()
    assert "Combination" in row.locator(".ps-col-loss").inner_text() and not row.locator(".ps-loss").count()
    assert not row.locator(f'a[href="new?clone={job_id}"]').count() and row.locator(f'a[href="combine?clone={job_id}"]').count() == 1
    assert page.locator(f'#ps-runs-table tr[data-run="{a}"] .ps-loss svg').count() == 1
    screenshot(page, "combine-runs-list")
