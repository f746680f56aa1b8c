"""What can be trained: methods with their config schemas, suggested base models, and a pre-flight estimate."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, status

from app.services import catalog
from app.services.estimate import estimate_run
from app.services.uploads import dataset_rows

router = APIRouter(prefix="/api", tags=["catalog"])


@router.get("/methods")
def list_methods() -> list[dict[str, str]]:
    """Every method the engine registers, by peft_type."""
    return [asdict(m) for m in catalog.methods()]


@router.get("/methods/{peft_type}/schema")
def method_schema(peft_type: str) -> dict[str, Any]:
    """JSON schema of the method's config: type, default, enum, bounds, help (description) and x-advanced per field."""
    try:
        return catalog.method_schema(peft_type)
    except catalog.UnknownMethod as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc


@router.get("/training/schema")
def training_schema() -> dict[str, Any]:
    """JSON schema of a job's `training` section."""
    return catalog.training_schema()


@router.get("/models")
def list_models() -> list[dict[str, Any]]:
    """Suggested base models (any Hub id or local folder works too), with their size in parameters."""
    return [{"id": m.id, "label": m.label, "params": m.arch.total_params()} for m in catalog.MODELS]


@router.post("/estimate")
def estimate(spec: Annotated[dict[str, Any], Body(description="a job spec, as for POST /api/jobs")]) -> dict[str, Any]:
    """A rough pre-flight estimate (trainable parameters, steps, memory in bytes) without starting anything."""
    dataset = spec.get("dataset") if isinstance(spec.get("dataset"), dict) else None
    return asdict(estimate_run(spec, dataset_rows=dataset_rows(dataset)))
