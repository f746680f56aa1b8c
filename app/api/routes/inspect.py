"""The sample inspector over HTTP: one row as the trainer will see it, and the token lengths of all rows.

POST bodies carry a job spec as for POST /api/jobs (only base_model, dataset and training are read). Torch-free,
like the rest of the API; a dataset or tokenizer a person must fix answers 422 with {message, hint}.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException

from app.datasets import DatasetError
from app.services.inspector import inspect_sample, length_report
from app.ui.inspector import histogram_html, sample_html

router = APIRouter(prefix="/api/inspect", tags=["inspect"])
Spec = Annotated[dict[str, Any], Body(description="a job spec, as for POST /api/jobs")]


def _unusable(exc: DatasetError) -> HTTPException:
    return HTTPException(422, detail={"message": exc.message, "hint": exc.hint})


@router.post("/sample")
def sample(spec: Spec, row: int = 0) -> dict[str, Any]:
    """Row `row` (0-based): its rendered text, tokens (id, piece, trained, special, eos) and the inspector's HTML."""
    try:
        view = inspect_sample(spec, row)
    except DatasetError as exc:
        raise _unusable(exc) from exc
    return {**asdict(view), "trained_tokens": view.trained_tokens, "masked_tokens": view.masked_tokens, "html": sample_html(view)}


@router.post("/lengths")
def lengths(spec: Spec) -> dict[str, Any]:
    """Histogram of token lengths against max_seq_length, with how many rows are cut or dropped, and its HTML."""
    try:
        report = length_report(spec)
    except DatasetError as exc:
        raise _unusable(exc) from exc
    return {**asdict(report), "html": histogram_html(report)}
