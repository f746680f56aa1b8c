"""End to end through a real worker process: a finished run published to the local fake Hub with the real
huggingface_hub client. The Hub gets exactly the adapter, the card and the chart in one commit; a retry makes no
second commit; failures end in words; and the literal token is in no log, no DB row, no broker message, no message."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import yaml
from PIL import Image

from app.db.session import session_scope
from app.services import publishing
from tests.app.services.test_publishing import all_text_in_db
from tests.support.fake_hub import FakeHub
from tests.support.stack import running_stack
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

TOKEN = "hf_" + "WorkerTestToken" * 3


def _ended(stack, job_id):
    job = stack.job(job_id)
    return job if job.publish_status in ("succeeded", "failed") else None


def _publish(stack, job_id: int, **kw):
    with session_scope(stack.settings) as session:
        publishing.request_publish(session, job_id=job_id, settings=stack.settings, **kw)
    return wait_for(lambda: _ended(stack, job_id), timeout=60, what=f"the publish of run {job_id} to end")


def assert_token_nowhere(stack, token: str) -> None:
    """Every file of the stack (worker logs, attempt logs, the SQLite file, broker messages) and every DB row."""
    for path in Path(stack.folder).rglob("*"):
        if path.is_file():
            assert token.encode() not in path.read_bytes(), f"the token leaked into {path}"
    with session_scope(stack.settings) as session:
        assert token not in all_text_in_db(session)


@pytest.fixture
def hub():
    with FakeHub() as h:
        h.add_account(TOKEN, "alice")
        yield h


@pytest.mark.timeout(240)
@pytest.mark.parametrize("shape", ["sqlite+filesystem", "postgresql+redis"])
def test_a_finished_run_is_published_once_with_its_card_and_chart_and_the_token_leaks_nowhere(request, tmp_path, hub, shape):
    with running_stack(request, tmp_path, shape, STUDIO_HUB_ENDPOINT=hub.url, HF_HUB_OFFLINE="0", HF_HUB_DISABLE_XET="1",
                       STUDIO_LOG_LEVEL="DEBUG") as stack:
        job_id = stack.submit(name="to publish", max_steps=4, checkpoint_every=2)
        assert stack.wait_status(job_id, "succeeded", "failed").status == "succeeded"
        job = _publish(stack, job_id, repo_id="alice/tiny-adapter", token=TOKEN, private=True)
        assert job.publish_status == "succeeded", job.publish_message
        assert job.publish_url == f"{hub.url}/alice/tiny-adapter" and "1 commit" not in job.publish_message
        [commit] = hub.commits_to("alice/tiny-adapter")
        assert job.publish_commit == commit.oid
        adapter = Path(next(a.path for a in job.artifacts if a.kind == "adapter"))
        assert set(commit.files) == {"adapter_config.json", "adapter_model.safetensors", "README.md", "loss_chart.png"}
        assert commit.files["adapter_model.safetensors"] == (adapter / "adapter_model.safetensors").read_bytes()
        card = commit.files["README.md"].decode()
        meta = yaml.safe_load(card.split("---\n")[1])
        assert meta["library_name"] == "peft" and "lora" in meta["tags"]
        assert "Steps: 4" in card and "Final training loss: " in card and "not recorded" in card.split("Final evaluation loss:")[1][:20]
        assert '"r": 4' in card and "![Training loss](loss_chart.png)" in card and "peft_core.PeftModel.from_pretrained" in card
        assert Image.open(io.BytesIO(commit.files["loss_chart.png"])).format == "PNG"
        assert [a.path for a in job.artifacts if a.kind == "hub_push"] == [job.publish_url]

        with session_scope(stack.settings) as session:
            publishing.save_token(session, token=TOKEN, settings=stack.settings)
        again = _publish(stack, job_id, repo_id="alice/tiny-adapter")  # a retry, with the saved token
        assert again.publish_status == "succeeded" and "no new commit" in again.publish_message
        assert len(hub.commits_to("alice/tiny-adapter")) == 1 and again.publish_commit == commit.oid

        hub.reject_token = True
        failed = _publish(stack, job_id, repo_id="alice/tiny-adapter")
        assert failed.publish_status == "failed" and "rejected the token" in failed.publish_message
        hub.reject_token = False
        hub.add_foreign_repo("alice/clash", owner="mallory")
        clash = _publish(stack, job_id, repo_id="alice/clash")
        assert clash.publish_status == "failed" and "taken by a repo of 'mallory'" in clash.publish_message
        hub.stop()
        offline = _publish(stack, job_id, repo_id="alice/tiny-adapter", token=TOKEN)
        assert offline.publish_status == "failed" and "cannot be reached" in offline.publish_message
        assert len(hub.commits) == 1
        assert_token_nowhere(stack, TOKEN)


def test_without_any_token_the_publish_fails_in_words(request, tmp_path, hub):
    with running_stack(request, tmp_path, "sqlite+filesystem", STUDIO_HUB_ENDPOINT=hub.url, HF_HUB_OFFLINE="0", HF_TOKEN="",
                       STUDIO_HF_TOKEN="") as stack:
        job_id = stack.submit(name="no token", max_steps=2)
        assert stack.wait_status(job_id, "succeeded", "failed").status == "succeeded"
        job = _publish(stack, job_id, repo_id="alice/x")
        assert job.publish_status == "failed" and "No Hub token" in job.publish_message and "settings/tokens" in job.publish_message
        assert not hub.repos and not hub.requests


@pytest.mark.timeout(240)
def test_a_publish_whose_worker_died_is_failed_in_words_by_the_reaper_and_a_retry_adds_no_files(request, tmp_path, hub):
    with running_stack(request, tmp_path, "sqlite+filesystem", STUDIO_HUB_ENDPOINT=hub.url, HF_HUB_OFFLINE="0",
                       HF_HUB_DISABLE_XET="1") as stack:
        job_id = stack.submit(name="killed while publishing", max_steps=2)
        assert stack.wait_status(job_id, "succeeded", "failed").status == "succeeded"
        with session_scope(stack.settings) as session:
            publishing.save_token(session, token=TOKEN, settings=stack.settings)
        hub.commit_delay = 4.0
        with session_scope(stack.settings) as session:
            publishing.request_publish(session, job_id=job_id, repo_id="alice/killed", settings=stack.settings)
        wait_for(lambda: any(p.endswith("/commit/main") for _, p in hub.requests), timeout=60, what="the worker to post its commit")
        stack.workers[0].kill()
        stack.add_worker()  # its reaper finds the expired lease
        job = wait_for(lambda: _ended(stack, job_id), timeout=60, what="the reaper to end the publish")
        assert job.publish_status == "failed" and job.publish_message == publishing.WORKER_GONE and job.publish_owner is None
        hub.commit_delay = 0.0
        wait_for(lambda: len(hub.commits_to("alice/killed")) == 1, timeout=30, what="the in-flight commit to land")
        again = _publish(stack, job_id, repo_id="alice/killed")
        assert again.publish_status == "succeeded" and "no new commit" in again.publish_message
        assert len(hub.commits_to("alice/killed")) == 1
        assert_token_nowhere(stack, TOKEN)
