"""In a real browser: with STUDIO_DATASET_ROOTS set, the Datasets page refuses a server path outside it where the person
is looking (naming the folders and the setting) and keeps nothing; a path inside it is brought in. No worker needed."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from tests.app.ui.conftest import screenshot
from tests.support.processes import StudioProcess, free_port
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]


def test_the_datasets_page_refuses_a_path_outside_the_roots_in_words(browser, tmp_path: Path):
    allowed, outside = tmp_path / "allowed", tmp_path / "private"
    for folder in (allowed, outside):
        folder.mkdir()
        (folder / "qa.csv").write_text("question,answer\n" + "".join(f"What is {i} + {i}?,{2 * i}\n" for i in range(4)))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STUDIO_")}
    env.update(STUDIO_DATA_DIR=str(tmp_path / "data"), STUDIO_DATASET_ROOTS=str(allowed), GRADIO_ANALYTICS_ENABLED="False")
    studio = StudioProcess(["run", "--no-worker", "--port", str(port)], env, tmp_path / "run.log").start()
    url = f"http://127.0.0.1:{port}"
    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    page.set_default_timeout(30_000)
    try:
        def healthy() -> bool:
            try:
                return httpx.get(f"{url}/api/health", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, timeout=90, what="the studio's /api/health", interval=0.2)
        page.goto(f"{url}/datasets")
        page.locator("#ps-ds-list").get_by_text("No datasets yet").wait_for()
        page.get_by_role("tab", name="Path on this server").click()
        page.locator("#ps-ds-path textarea, #ps-ds-path input").first.fill(str(outside / "qa.csv"))
        page.locator("#ps-ds-add-path").click()
        outcome = page.locator("#ps-ds-outcome")
        outcome.get_by_text("is outside the folders datasets may be read from").wait_for()
        assert str(allowed) in outcome.inner_text() and "STUDIO_DATASET_ROOTS" in outcome.inner_text()
        screenshot(page, "datasets-path-outside-roots")
        assert httpx.get(f"{url}/api/datasets").json() == []

        page.locator("#ps-ds-path textarea, #ps-ds-path input").first.fill(str(allowed / "qa.csv"))
        page.locator("#ps-ds-add-path").click()
        page.locator("#ps-ds-list").get_by_text("qa.csv").wait_for()
        assert [d["origin"] for d in httpx.get(f"{url}/api/datasets").json()] == [str(allowed / "qa.csv")]
    finally:
        page.context.close()
        studio.stop()
