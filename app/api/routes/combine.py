"""Combining the adapters of finished runs over HTTP (app.services.combining).

POST only records the combination as a new job (202); it is followed like any run (GET /api/jobs/{id})
and, once it succeeded, its adapter is downloaded, merged or published like a trained run's.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, Field

from app.api.deps import SessionDep, SettingsDep
from app.api.schemas import JobPublic
from app.services import combining

router = APIRouter(prefix="/api/combine", tags=["combine"])


class CombineRequest(BaseModel):
    run_ids: list[int] = Field(description="two or more succeeded LoRA runs on the same base model")
    weights: list[float] = Field(description="one weight per run, in the same order")
    combination_type: str = Field("svd", description=f"one of {', '.join(combining.COMBINATION_TYPES)}")
    name: str = ""
    density: float | None = Field(None, description=f"share of entries kept, in (0, 1]; for {', '.join(combining.NEEDS_DENSITY)}")
    majority_sign_method: str = Field("total", description="total or frequency; for ties and dare_ties")
    svd_rank: int | None = Field(None, description="rank of an svd combination (empty: the largest source rank)")
    seed: int = Field(0, description="random seed of the dare_* drops")


class CandidatePublic(BaseModel):
    id: int
    name: str
    base_model: str
    method: str
    rank: int | None
    reason: str | None = Field(description="why the run can never be combined; null when it can")


@router.get("/candidates", response_model=list[CandidatePublic])
def candidates(session: SessionDep) -> Any:
    """Succeeded runs, newest first; runs combine only with runs of the same base model and method."""
    return [CandidatePublic(**c.__dict__) for c in combining.candidates(session)]


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=JobPublic)
def request_combine(session: SessionDep, settings: SettingsDep, body: CombineRequest) -> Any:
    try:
        return combining.request_combine(session, settings=settings, **body.model_dump())
    except combining.CombineError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, detail={"message": "cannot combine these runs", "problems": exc.problems}) from exc
