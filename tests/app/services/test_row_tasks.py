"""app.services.row_tasks: the merge and the publish of one run share a row but never each other's columns."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from app.db.base import utcnow
from app.db.models import Job
from app.services import jobs, merges, publishing
from tests.app.services.test_merges import finished_run


def test_a_merge_and_a_publish_of_one_run_keep_to_their_own_columns(session, studio):
    job_id = finished_run(session, studio)
    merges.request_merge(session, job_id=job_id)
    publishing.request_publish(session, job_id=job_id, repo_id="alice/tiny")
    assert merges.claim_merge(session, job_id=job_id, owner="m", lease_seconds=30)
    assert publishing.claim_publish(session, job_id=job_id, owner="p", lease_seconds=30)
    assert not merges.record_merge_progress(session, job_id=job_id, owner="p", done=1, total=2)  # the publish's owner holds no merge
    assert not publishing.renew_publish_lease(session, job_id=job_id, owner="m", lease_seconds=30)
    session.execute(update(Job).where(Job.id == job_id).values(merge_lease_expires_at=utcnow() - timedelta(seconds=1)))
    session.commit()
    session.expire_all()
    job = jobs.get_job(session, job_id=job_id)
    assert merges.worker_vanished(job) and not publishing.worker_vanished(job)
    assert publishing.reap_publishes(session, settings=studio) == ([], [])  # the dead merge is not the publish's to fail
    assert merges.reap_merges(session, settings=studio) == ([job_id], [])
    session.expire_all()
    job = jobs.get_job(session, job_id=job_id)
    assert (job.merge_status, job.merge_message, job.merge_owner) == ("failed", merges.WORKER_GONE, None)
    assert (job.publish_status, job.publish_owner) == ("running", "p")
    assert publishing.finish_publish(session, job_id=job_id, owner="p", ok=False, message="Hub said no.")
    session.expire_all()
    job = jobs.get_job(session, job_id=job_id)
    assert (job.publish_status, job.publish_message, job.merge_status) == ("failed", "Hub said no.", "failed")
