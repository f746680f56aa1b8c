"""Datasets in a browser, end to end: upload a CSV whose columns are not recognised, map them, page through the rows,
inspect what the model will see on New run, train the demo model on it. Real studio, worker and Chromium (conftest.py)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.app.ui.conftest import Studio, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]

RUN_TIMEOUT_MS = 240_000
ROWS = 36


def _pick(page, dropdown: str, option: str) -> None:
    """Choose an option of a Gradio dropdown by its visible text."""
    page.locator(f"{dropdown} input").click()
    page.get_by_role("option", name=option).first.click()


def test_upload_map_inspect_and_train_on_a_csv(studio: Studio, page, tmp_path):
    page.goto(f"{studio.url}/datasets")
    page.locator("#ps-ds-list").get_by_text("No datasets yet").wait_for()

    # A broken file is refused in words, naming the file and the line; nothing is listed.
    bad = tmp_path / "broken.csv"
    bad.write_text("ask,reply\nhello,hi\nhow are you?,fine,thanks\n")
    upload = page.locator("#ps-ds-upload input[type=file]")
    upload.set_input_files(str(bad))
    refusal = page.locator("#ps-ds-outcome")
    refusal.get_by_text("line 3: has 3 fields; the header has 2").wait_for()
    assert "broken.csv" in refusal.inner_text()
    assert studio.api("GET", "/api/datasets").json() == []
    page.locator("#ps-ds-upload button[aria-label='Clear']").first.click()

    # Columns the studio cannot name: stored, flagged, then mapped by hand.
    good = tmp_path / "support.csv"
    good.write_text("ask,reply,topic\n" + "".join(f'"How do I reset password {i}?","Open Settings, then Reset ({i}).",account\n' for i in range(ROWS)))
    upload.set_input_files(str(good))
    page.locator("#ps-ds-outcome").get_by_text("check the format and the column mapping").wait_for()
    page.locator("#ps-ds-list").get_by_text("support.csv").wait_for()
    page.locator("#ps-ds-detail").get_by_text("Not recognised for sure").wait_for()
    expect(page.locator("#ps-ds-rows")).to_contain_text("How do I reset password 0?")
    page.locator("#ps-ds-page").get_by_text(f"Page 1 of 4 · {ROWS} rows").wait_for()
    page.locator("#ps-ds-next").click()
    page.locator("#ps-ds-page").get_by_text("Page 2 of 4").wait_for()
    expect(page.locator("#ps-ds-rows")).to_contain_text("How do I reset password 10?")
    screenshot(page, "datasets-unsure")

    _pick(page, "#ps-ds-format", "prompt/completion")
    page.locator("#ps-ds-field-prompt").wait_for()
    _pick(page, "#ps-ds-field-prompt", "ask")
    _pick(page, "#ps-ds-field-completion", "reply")
    page.locator("#ps-ds-save").click()
    page.locator("#ps-ds-saved").get_by_text(f"Saved: {ROWS} rows read as prompt/completion").wait_for()
    [record] = studio.api("GET", "/api/datasets").json()
    assert (record["detected"], record["mapping"], record["rows"]) == ("prompt_completion", {"prompt": "ask", "completion": "reply"}, ROWS)
    page.locator("#ps-ds-list").get_by_text("prompt/completion").wait_for()
    assert page.locator("#ps-ds-detail a#ps-ds-train").get_attribute("href") == f"new?dataset={record['id']}"
    screenshot(page, "datasets-mapped")

    # New run: pick the stored dataset, inspect a row, start.
    page.goto(f"{studio.url}/new")
    page.locator("#ps-summary .ps-estimate").wait_for()
    page.get_by_text("A dataset from the Datasets page").click()
    _pick(page, "#ps-dataset-pick", f"#{record['id']} · support.csv")
    page.locator("#ps-data-note").get_by_text(f"{ROWS} rows").wait_for()
    page.locator("#ps-summary").get_by_text(f"{ROWS - ROWS // 10} training rows").wait_for()  # less the 10% eval split
    page.locator("#ps-inspect-row input").fill("3")
    page.locator("#ps-inspect").click()
    sample = page.locator("#ps-sample")
    sample.get_by_text("Row 3 of 36").wait_for(timeout=60_000)
    assert "How do I reset password 2?" in sample.inner_text() and "Open Settings, then Reset (2)." in sample.inner_text()
    assert "trained" in sample.inner_text() and "masked" in sample.inner_text()
    assert page.locator("#ps-lengths svg, #ps-lengths .ps-histogram").count() >= 1
    page.locator("#ps-inspector").first.scroll_into_view_if_needed()
    screenshot(page, "new-run-inspect")

    page.get_by_label("Max steps").fill("4")
    page.get_by_label("Run name").fill("support csv")
    page.locator("#ps-start").click()
    page.wait_for_url(re.compile(r".*/run\?run=\d+$"), timeout=30_000)
    run_id = int(page.url.rsplit("=", 1)[1])
    job = studio.api("GET", f"/api/jobs/{run_id}").json()
    assert job["config"]["dataset"]["dataset_id"] == record["id"]
    assert job["config"]["dataset"]["mapping"] == {"prompt": "ask", "completion": "reply"}
    page.locator("#ps-run-header .ps-succeeded").wait_for(timeout=RUN_TIMEOUT_MS)
    screenshot(page, "datasets-run-succeeded")

    # While no run needs it any more, the dataset can be deleted after a confirmation.
    page.goto(f"{studio.url}/datasets?dataset={record['id']}")
    page.locator("#ps-ds-detail").get_by_text("support.csv").first.wait_for()
    page.locator("#ps-ds-delete").click()
    page.locator("#ps-ds-saved").get_by_text("Delete support.csv").wait_for()
    page.locator("#ps-ds-delete-confirm").click()
    page.locator("#ps-ds-list").get_by_text("No datasets yet").wait_for()
    assert studio.api("GET", "/api/datasets").json() == []
