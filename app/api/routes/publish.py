"""Publishing a run to the Hugging Face Hub over HTTP, and the studio's saved Hub token (write-only).

POST only records the request (202); the run's publish_* fields (GET .../publish) follow the worker.
A token sent here is encrypted before it is stored and is never sent back: GET /api/hub/token says
only whether one is saved. Every body field has a default, so a validation error can never echo a
whole request body (and with it a token) back to the caller.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, Field, SecretStr

from app.api.deps import SessionDep, SettingsDep
from app.services import jobs, publishing
from app.services.jobs import JobNotFound, JobStateError

router = APIRouter(tags=["publish"])


class PublishRequest(BaseModel):
    repo_id: str = Field("", description="'name' (under the token's user) or 'owner/name'")
    target: str = Field("adapter", description="'adapter', or 'merged' once the run is merged")
    private: bool = True
    token: SecretStr | None = Field(None, description="a Hub write token; omitted: the saved one or the worker's HF_TOKEN")
    remember: bool = Field(False, description="save the token (encrypted) for later publishes")


class TokenRequest(BaseModel):
    token: SecretStr = SecretStr("")


class PublishState(BaseModel):
    job_id: int
    publish_status: str | None
    publish_message: str | None
    publish_target: str | None
    publish_repo_id: str | None
    publish_private: bool | None
    publish_url: str | None
    publish_commit: str | None


class TokenState(BaseModel):
    saved: bool


def _state(job: Any) -> PublishState:
    return PublishState(job_id=job.id, **{k: getattr(job, k) for k in PublishState.model_fields if k != "job_id"})


@router.post("/api/jobs/{job_id}/publish", status_code=status.HTTP_202_ACCEPTED, response_model=PublishState)
def request_publish(session: SessionDep, settings: SettingsDep, job_id: int, body: PublishRequest) -> Any:
    token = body.token.get_secret_value() if body.token else None
    try:
        job = publishing.request_publish(session, job_id=job_id, repo_id=body.repo_id, target=body.target, private=body.private,
                                         token=token, remember=body.remember, settings=settings)
    except JobNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc
    except publishing.PublishRequestError as exc:
        raise HTTPException(422, detail=str(exc)) from exc
    except JobStateError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from exc
    return _state(job)


@router.get("/api/jobs/{job_id}/publish", response_model=PublishState)
def publish_state(session: SessionDep, job_id: int) -> Any:
    try:
        return _state(jobs.get_job(session, job_id=job_id))
    except JobNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc


@router.get("/api/hub/token", response_model=TokenState)
def token_state(session: SessionDep) -> Any:
    return TokenState(saved=publishing.has_saved_token(session))


@router.put("/api/hub/token", response_model=TokenState)
def save_token(session: SessionDep, settings: SettingsDep, body: TokenRequest) -> Any:
    try:
        publishing.save_token(session, token=body.token.get_secret_value(), settings=settings)
    except publishing.PublishRequestError as exc:
        raise HTTPException(422, detail=str(exc)) from exc
    return TokenState(saved=True)


@router.delete("/api/hub/token", response_model=TokenState)
def forget_token(session: SessionDep) -> Any:
    publishing.forget_token(session)
    return TokenState(saved=False)
