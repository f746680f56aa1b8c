"""The publish request on the run's row, on SQLite and PostgreSQL: validation in words, the token only as
ciphertext, only the job id in the broker message, the claim, the ending, and the reaper."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import inspect, select, text, update

from app.api.main import create_app
from app.db.base import utcnow
from app.db.models import Job, Secret
from app.services import jobs, publishing
from app.services.jobs import JobStateError
from tests.app.services.test_merges import SPEC, finished_run
from tests.support.broker_messages import queued_messages as all_queued


def queued_messages(settings) -> list:
    return [m for m in all_queued(settings) if m[0] == publishing.PUBLISH_TASK]

TOKEN = "hf_" + "ServiceTestToken" * 3


def all_text_in_db(session) -> str:
    """Every value of every row of every table, as text: what a dump of the database would show."""
    out = []
    for table in inspect(session.connection()).get_table_names():
        for row in session.execute(text(f'SELECT * FROM "{table}"')):
            out.extend(str(v) for v in row)
    return "\n".join(out)


def test_bad_requests_are_refused_with_every_problem_named(session, studio):
    queued = jobs.create_job(session, spec=SPEC)
    with pytest.raises(publishing.PublishRequestError) as info:
        publishing.request_publish(session, job_id=queued.id, repo_id="bad name!", target="gguf", token="two words")
    message = str(info.value)
    assert "repo: 'bad name!' is not a Hub repo name" in message and "target: 'gguf' is not one of adapter, merged" in message
    assert "only a run that succeeded can be published" in message and "token: paste one Hub access token" in message
    job_id = finished_run(session, studio)
    with pytest.raises(publishing.PublishRequestError, match="no finished merge; merge it into its base model first"):
        publishing.request_publish(session, job_id=job_id, repo_id="alice/x", target="merged")
    for bad in ("a--b", "-x", "x.", "a/b/c", "x.git", "a" * 97):
        with pytest.raises(publishing.PublishRequestError):
            publishing.request_publish(session, job_id=job_id, repo_id=bad)
    assert jobs.get_job(session, job_id=job_id).publish_status is None and not queued_messages(studio)


def test_a_request_stores_only_ciphertext_and_sends_only_the_job_id(session, studio):
    job_id = finished_run(session, studio)
    job = publishing.request_publish(session, job_id=job_id, repo_id="alice/tiny", token=f"  {TOKEN} ", private=False)
    assert (job.publish_status, job.publish_repo_id, job.publish_target, job.publish_private) == ("queued", "alice/tiny", "adapter", False)
    assert queued_messages(studio) == [(publishing.PUBLISH_TASK, [job_id])]
    assert TOKEN not in all_text_in_db(session)
    assert not publishing.has_saved_token(session)  # not remembered: kept for this publish only
    assert publishing.resolve_token(session, job_id=job_id, settings=studio) == TOKEN
    for path in studio.broker_dir.rglob("*"):
        assert not path.is_file() or TOKEN.encode() not in path.read_bytes()


def test_a_remembered_token_serves_later_publishes_and_can_be_forgotten(session, studio, monkeypatch):
    for var in publishing.TOKEN_ENV:
        monkeypatch.delenv(var, raising=False)
    job_id = finished_run(session, studio)
    publishing.request_publish(session, job_id=job_id, repo_id="alice/tiny", token=TOKEN, remember=True)
    assert publishing.has_saved_token(session) and session.get(Secret, publishing.one_shot_name(job_id)) is None
    other = finished_run(session, studio)
    assert publishing.resolve_token(session, job_id=other, settings=studio) == TOKEN
    assert publishing.forget_token(session) and not publishing.has_saved_token(session)
    assert publishing.resolve_token(session, job_id=other, settings=studio) is None
    monkeypatch.setenv("HF_TOKEN", "hf_fromtheenvironment")
    assert publishing.resolve_token(session, job_id=other, settings=studio) == "hf_fromtheenvironment"


def test_claim_once_then_the_ending_deletes_the_one_shot_token_and_records_the_push(session, studio):
    job_id = finished_run(session, studio)
    publishing.request_publish(session, job_id=job_id, repo_id="alice/tiny", token=TOKEN)
    assert publishing.claim_publish(session, job_id=job_id, owner="w1", lease_seconds=30)
    assert not publishing.claim_publish(session, job_id=job_id, owner="w2", lease_seconds=30)  # a duplicate delivery
    with pytest.raises(JobStateError, match="being published right now"):
        publishing.request_publish(session, job_id=job_id, repo_id="alice/tiny")
    assert not publishing.finish_publish(session, job_id=job_id, owner="w2", ok=True, message="not mine")
    url = "https://hub.example/alice/tiny"
    assert publishing.finish_publish(session, job_id=job_id, owner="w1", ok=True, message="Published.", url=url, commit="abc")
    session.expire_all()
    job = jobs.get_job(session, job_id=job_id)
    assert (job.publish_status, job.publish_url, job.publish_commit, job.publish_owner) == ("succeeded", url, "abc", None)
    assert session.get(Secret, publishing.one_shot_name(job_id)) is None
    assert [a.path for a in job.artifacts if a.kind == "hub_push"] == [url]
    publishing.request_publish(session, job_id=job_id, repo_id="alice/tiny")  # publishing again is allowed
    assert publishing.claim_publish(session, job_id=job_id, owner="w3", lease_seconds=30)
    assert publishing.finish_publish(session, job_id=job_id, owner="w3", ok=True, message="Published.", url=url, commit="abc")
    session.expire_all()
    assert len([a for a in jobs.get_job(session, job_id=job_id).artifacts if a.kind == "hub_push"]) == 1


def test_the_reaper_fails_a_publish_whose_worker_died_and_rings_a_forgotten_one(session, studio):
    dead, waiting = finished_run(session, studio), finished_run(session, studio)
    publishing.request_publish(session, job_id=dead, repo_id="alice/a", token=TOKEN)
    publishing.claim_publish(session, job_id=dead, owner="gone", lease_seconds=30)
    publishing.request_publish(session, job_id=waiting, repo_id="alice/b")
    past = utcnow() - timedelta(hours=1)
    session.execute(update(Job).where(Job.id == dead).values(publish_lease_expires_at=past))
    session.execute(update(Job).where(Job.id == waiting).values(updated_at=past))
    session.commit()
    before = len(queued_messages(studio))
    assert publishing.reap_publishes(session, settings=studio) == ([dead], [waiting])
    session.expire_all()
    job = jobs.get_job(session, job_id=dead)
    assert job.publish_status == "failed" and job.publish_message == publishing.WORKER_GONE and job.publish_owner is None
    assert session.scalars(select(Secret.name)).all() == []
    assert queued_messages(studio)[before:] == [(publishing.PUBLISH_TASK, [waiting])]


def test_the_api_queues_hides_the_token_and_answers_in_words(session, studio):
    job_id = finished_run(session, studio)
    with TestClient(create_app()) as client:
        assert client.post("/api/jobs/999/publish", json={"repo_id": "a/b"}).status_code == 404
        bad = client.post(f"/api/jobs/{job_id}/publish", json={"repo_id": "bad name", "token": TOKEN, "private": "maybe"})
        assert bad.status_code == 422 and TOKEN not in bad.text
        bad = client.post(f"/api/jobs/{job_id}/publish", json={"repo_id": "bad name", "token": TOKEN})
        assert bad.status_code == 422 and "is not a Hub repo name" in bad.text and TOKEN not in bad.text
        ok = client.post(f"/api/jobs/{job_id}/publish", json={"repo_id": "alice/tiny", "token": TOKEN, "remember": True})
        assert ok.status_code == 202 and ok.json()["publish_status"] == "queued" and TOKEN not in ok.text
        assert client.get("/api/hub/token").json() == {"saved": True}
        shown = client.get(f"/api/jobs/{job_id}").text + client.get(f"/api/jobs/{job_id}/publish").text
        assert "alice/tiny" in shown and TOKEN not in shown
        assert client.post(f"/api/jobs/{job_id}/publish", json={"repo_id": "alice/tiny"}).status_code == 202  # queued: ring again
        assert client.delete("/api/hub/token").json() == {"saved": False}
        assert client.put("/api/hub/token", json={"token": " "}).status_code == 422
    session.expire_all()
    assert TOKEN not in all_text_in_db(session)


def test_the_cli_queues_a_publish_asks_for_the_token_hidden_and_refuses_in_words(session, studio, monkeypatch, capsys):
    from app.cli import main

    job_id = finished_run(session, studio)
    session.commit()  # end the test's transaction: on SQLite the CLI's own session needs the write lock
    assert main(["publish", str(job_id), "--repo", "bad name"]) == 1
    assert "is not a Hub repo name" in capsys.readouterr().err
    monkeypatch.setattr("getpass.getpass", lambda prompt="": TOKEN)
    assert main(["publish", str(job_id), "--repo", "alice/cli", "--public", "--ask-token", "--remember"]) == 0
    out = capsys.readouterr().out
    assert "publish queued to alice/cli" in out and TOKEN not in out
    assert main(["status", str(job_id)]) == 0 and "publish:  queued" in capsys.readouterr().out
    session.expire_all()
    job = jobs.get_job(session, job_id=job_id)
    assert job.publish_private is False and publishing.has_saved_token(session)
