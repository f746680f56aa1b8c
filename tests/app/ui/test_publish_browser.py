"""In a real browser against the real studio (web + embedded worker): a finished demo run is merged, downloaded,
then published from its page to the local fake Hub, first the adapter with a typed token (remembered), then the
merged model with the saved token. The Hub gets the files, the card and the chart; the token is nowhere to be seen."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from tests.app.ui.conftest import Studio, _real_trainer_missing, _seed_demo_model, screenshot
from tests.app.ui.test_merge_browser import _wait_succeeded
from tests.support.fake_hub import FakeHub

pytestmark = [pytest.mark.integration, pytest.mark.browser]

TOKEN = "hf_" + "BrowserTestToken" * 3
SPEC = {"name": "to publish in the browser", "base_model": "demo", "method": {"peft_type": "LORA", "r": 4}, "training": {"max_steps": 4}}


class HubStudio(Studio):
    """The studio, allowed to reach the (loopback) fake Hub and pointed at it."""

    def __init__(self, data_dir: Path, hub_url: str):
        super().__init__(data_dir)
        self.hub_url = hub_url

    def env(self) -> dict[str, str]:
        return {**super().env(), "STUDIO_HUB_ENDPOINT": self.hub_url, "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_XET": "1",
                "HF_TOKEN": "", "STUDIO_HF_TOKEN": ""}


@pytest.fixture(scope="module")
def hub() -> Iterator[FakeHub]:
    with FakeHub() as h:
        h.add_account(TOKEN, "alice")
        yield h


@pytest.fixture(scope="module")
def hub_studio(chromium_path, hub, tmp_path_factory) -> Iterator[HubStudio]:
    missing = _real_trainer_missing()
    if missing:
        pytest.skip(f"the browser tests train the demo model with the real trainer, but {missing}")
    server = HubStudio(tmp_path_factory.mktemp("studio") / "data", hub.url)
    _seed_demo_model(server.data_dir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _publish_from_the_page(page, repo: str, *, token: str | None, target_text: str | None = None) -> None:
    panel = page.locator("#ps-publish")
    if target_text:
        panel.locator("#ps-publish-target").get_by_text(target_text).click()
    page.locator("#ps-publish-repo").locator("input, textarea").first.fill(repo)
    password = page.locator("#ps-publish-token input[type=password]")
    if token:
        password.fill(token)
    page.locator("#ps-publish-button").click()
    page.locator("#ps-publish-link", has_text=f"/{repo}").wait_for(timeout=120_000)
    assert password.input_value() == "", "the typed token must leave the page after the click"


@pytest.mark.timeout(600)
def test_merge_download_and_publish_a_finished_run_from_its_page(hub_studio: HubStudio, hub: FakeHub, page, tmp_path):
    studio = hub_studio
    run_id = studio.api("POST", "/api/jobs", json=SPEC).json()["id"]
    _wait_succeeded(studio, run_id)
    page.goto(f"{studio.url}/run?run={run_id}")
    page.locator("#ps-run-header .ps-succeeded").wait_for()
    page.locator("#ps-merge-button").click()
    page.locator("#ps-merged-zip").wait_for(timeout=240_000)
    with page.expect_download() as download:
        page.locator("#ps-merged-zip").click()
    names = set(zipfile.ZipFile(io.BytesIO(Path(download.value.path()).read_bytes())).namelist())
    assert {"config.json", "model.safetensors"} <= names

    page.locator("#ps-publish").scroll_into_view_if_needed()
    _publish_from_the_page(page, "alice/browser-adapter", token=TOKEN)
    assert f"{hub.url}/alice/browser-adapter" in page.locator("#ps-publish-box").inner_text()
    [commit] = hub.commits_to("alice/browser-adapter")
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md", "loss_chart.png"} <= set(commit.files)
    card = commit.files["README.md"].decode()
    assert "library_name: peft" in card and "Steps: 4" in card and "![Training loss](loss_chart.png)" in card
    assert Image.open(io.BytesIO(commit.files["loss_chart.png"])).format == "PNG"
    assert hub.repos["alice/browser-adapter"].private
    assert studio.api("GET", "/api/hub/token").json() == {"saved": True}

    page.reload()
    page.locator("#ps-publish").wait_for()
    assert "A token is saved" in page.locator("#ps-publish-token input").get_attribute("placeholder")
    _publish_from_the_page(page, "alice/browser-merged", token=None, target_text="Merged model")
    [merged] = hub.commits_to("alice/browser-merged")
    assert {"config.json", "model.safetensors", "README.md", "loss_chart.png"} <= set(merged.files)
    assert "library_name: transformers" in merged.files["README.md"].decode()
    shot = screenshot(page, "run-published")

    page.locator("#ps-publish-repo").locator("input, textarea").first.fill("bad name!")
    page.locator("#ps-publish-button").click()
    page.locator("#ps-publish-box .ps-callout-error", has_text="is not a Hub repo name").wait_for()
    hub.reject_token = True
    page.locator("#ps-publish-repo").locator("input, textarea").first.fill("alice/browser-adapter")
    page.locator("#ps-publish-token input[type=password]").fill(TOKEN)
    page.locator("#ps-publish-button").click()
    page.locator("#ps-publish-box .ps-callout-error", has_text="rejected the token").wait_for(timeout=60_000)
    assert "settings/tokens" in page.locator("#ps-publish-box").inner_text()
    hub.reject_token = False
    failed_shot = screenshot(page, "run-publish-failed")
    assert len(hub.commits) == 2

    assert TOKEN not in page.content()
    assert TOKEN.encode() not in shot.read_bytes() and TOKEN.encode() not in failed_shot.read_bytes()
    for path in [studio.log, *Path(studio.data_dir).rglob("*")]:
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), f"the token leaked into {path}"
    for route in (f"/api/jobs/{run_id}", f"/api/jobs/{run_id}/publish", f"/api/jobs/{run_id}/artifacts"):
        assert TOKEN not in studio.api("GET", route).text
