"""Publishing a folder with the real huggingface_hub client to the local fake Hub: one commit with exactly the
files, LFS for the weights and chart, a retry that commits nothing, and each failure in words without the token."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pytest

from tests.support.fake_hub import FakeHub
from worker.publish_hub import PublishError, publish_folder, scrub

TOKEN = "hf_" + "T0kenForTestsOnly" * 2
README = "---\nlibrary_name: peft\ntags:\n- peft-studio\n---\n\n# card\n"


@pytest.fixture(autouse=True)
def _online(monkeypatch):
    """tests/conftest.py makes the client offline; the fake Hub is on loopback, so let it through here.
    The fake Hub speaks the LFS upload protocol, not Xet's content store, so Xet is switched off."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)


@pytest.fixture
def hub():
    with FakeHub() as h:
        h.add_account(TOKEN, "alice", orgs=["team"])
        yield h


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    out = tmp_path / "adapter"
    out.mkdir()
    (out / "adapter_config.json").write_text('{"peft_type": "LORA", "r": 4}')
    (out / "adapter_model.safetensors").write_bytes(b"\0\1weights" * 100)
    (out / "tokenizer.json").write_text('{"model": {}}')
    (out / ".cache").mkdir()
    (out / ".cache" / "junk").write_text("not published")
    return out


def _publish(hub: FakeHub, folder: Path, repo: str = "alice/my-adapter", token: str = TOKEN, **extra: bytes):
    files = {"README.md": README.encode(), "loss_chart.png": b"\x89PNG\r\n\x1a\n\0chart", **extra}
    return publish_folder(endpoint=hub.url, token=token, repo_id=repo, private=True, folder=folder, extra=files, message="Publish run 1")


def test_one_commit_holds_exactly_the_files_and_weights_go_through_lfs(hub, folder):
    published = _publish(hub, folder)
    assert published.committed and published.url == f"{hub.url}/alice/my-adapter"
    [commit] = hub.commits_to("alice/my-adapter")
    assert commit.oid == published.commit and commit.summary == "Publish run 1"
    assert set(commit.files) == {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "README.md", "loss_chart.png"}
    assert commit.files["adapter_model.safetensors"] == (folder / "adapter_model.safetensors").read_bytes()
    assert commit.files["README.md"].decode() == README
    assert commit.lfs_paths == {"adapter_model.safetensors", "loss_chart.png"}
    assert hashlib.sha256(commit.files["adapter_model.safetensors"]).hexdigest() in hub.lfs
    assert hub.repos["alice/my-adapter"].private


def test_a_retry_commits_nothing_and_a_change_commits_only_the_changed_file(hub, folder):
    first = _publish(hub, folder)
    again = _publish(hub, folder)
    assert not again.committed and again.commit == first.commit
    assert len(hub.commits_to("alice/my-adapter")) == 1
    (folder / "tokenizer.json").write_text('{"model": {"changed": true}}')
    third = _publish(hub, folder)
    commits = hub.commits_to("alice/my-adapter")
    assert third.committed and len(commits) == 2 and set(commits[1].files) == {"tokenizer.json"}


def test_an_organisation_repo_and_a_bare_name_land_where_expected(hub, folder):
    assert _publish(hub, folder, repo="team/shared").url.endswith("/team/shared")
    assert _publish(hub, folder, repo="bare-name").url.endswith("/alice/bare-name")
    assert hub.repos["alice/bare-name"].owner == "alice"


def _failure(hub: FakeHub, folder: Path, caplog, **kw) -> str:
    with caplog.at_level(logging.DEBUG), pytest.raises(PublishError) as info:
        _publish(hub, folder, **kw)
    message = str(info.value)
    assert TOKEN not in message and TOKEN not in caplog.text and "Bearer" not in message
    assert not hub.commits, "a failed publish must commit nothing"
    return message


def test_a_bad_token_says_the_hub_rejected_it_and_where_to_make_one(hub, folder, caplog):
    hub.reject_token = True
    message = _failure(hub, folder, caplog)
    assert "rejected the token" in message and "https://huggingface.co/settings/tokens" in message and "nothing was published" in message


def test_an_unknown_token_is_a_bad_token_too(hub, folder, caplog):
    assert "rejected the token" in _failure(hub, folder, caplog, token="hf_" + "unknown" * 6)


def test_a_read_token_is_refused_before_anything_is_created(hub, folder, caplog):
    hub.add_account("hf_" + "readonly" * 5, "bob", role="read")
    with pytest.raises(PublishError, match="read token"):
        _publish(hub, folder, token="hf_" + "readonly" * 5, repo="bob/x")
    assert not hub.repos


def test_no_write_access_to_the_namespace_says_so(hub, folder, caplog):
    message = _failure(hub, folder, caplog, repo="other-org/model")
    assert "may not write to 'other-org'" in message and "403" in message
    hub.read_only = True
    assert "403" in _failure(hub, folder, caplog)


def test_a_name_taken_by_someone_else_is_a_clash_and_their_repo_is_untouched(hub, folder, caplog):
    hub.add_foreign_repo("team/taken", owner="mallory")
    message = _failure(hub, folder, caplog, repo="team/taken")
    assert "taken by a repo of 'mallory'" in message and "Choose another repo name" in message
    assert hub.repos["team/taken"].files == {"README.md": b"# not yours\n"}


def test_an_unreachable_hub_says_nothing_was_published(hub, folder, caplog):
    hub.stop()
    message = _failure(hub, folder, caplog)
    assert "cannot be reached" in message and "nothing was published" in message and hub.url in message


def test_scrub_removes_the_token_and_anything_shaped_like_one():
    text = f"401 for url, headers={{'authorization': 'Bearer {TOKEN}'}} and hf_abcdefghijklmnopqrstuvwxyz012345 and {TOKEN}"
    cleaned = scrub(text, TOKEN)
    assert TOKEN not in cleaned and "hf_abcdefghij" not in cleaned and "Bearer" not in cleaned
    assert scrub("nothing secret here", None) == "nothing secret here"


def test_offline_mode_on_the_worker_is_named_as_the_cause(hub, folder, caplog, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    message = _failure(hub, folder, caplog)
    assert "HF_HUB_OFFLINE" in message and "nothing was published" in message and not hub.requests


def test_a_private_repo_of_someone_else_is_a_clash_too(hub, folder, caplog):
    hub.add_foreign_repo("alice/hidden", owner="mallory")
    hub.repos["alice/hidden"].private = True
    assert "taken by a repo of 'another account'" in _failure(hub, folder, caplog, repo="alice/hidden")


def test_the_log_scrubber_redacts_tokens_from_every_record(caplog):
    from worker.publish_hub import TokenScrubber

    record = logging.LogRecord("httpx", logging.DEBUG, __file__, 1, "headers %s", ({"authorization": f"Bearer {TOKEN}"},), None)
    assert TokenScrubber().filter(record) and TOKEN not in record.getMessage() and "***" in record.getMessage()
    plain = logging.LogRecord("x", logging.INFO, __file__, 1, "step %d", (3,), None)
    assert TokenScrubber().filter(plain) and plain.getMessage() == "step 3" and plain.args == (3,)
