"""Stored datasets over HTTP: bring one in (upload, server path, Hub id), list, get, page through, map columns, delete.

A dataset that cannot be used answers 422 with {"message", "hint", "problems"}: the file, the lines or
rows and what is wrong, the same words the Datasets page shows.
"""

from __future__ import annotations

import json
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, HTTPException, Query, Response, UploadFile, status
from pydantic import BaseModel, ConfigDict, Field

from app.api.deps import SessionDep, SettingsDep
from app.datasets import DatasetError
from app.services import datasets as service

router = APIRouter(prefix="/api/datasets", tags=["datasets"])
COPY_CHUNK = 1 << 20


class DatasetPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    source: str
    origin: str | None
    rows: int
    columns: list[str]
    size_bytes: int
    sha256: str
    format: str
    detected: str | None
    mapping: dict[str, str] | None
    created_at: datetime


class PreviewPublic(BaseModel):
    columns: list[str]
    rows: list[list[str]]
    page: int
    page_size: int
    pages: int
    total: int


class FromPath(BaseModel):
    path: str = Field(description="a CSV/JSON/JSONL/Parquet file or a dataset folder on the server")
    format: str = "auto"
    mapping: dict[str, str] | None = None


class FromHub(BaseModel):
    repo: str = Field(description="a Hub dataset id like 'org/name' (loaded with `datasets`; scripts refused)")
    config: str | None = None
    split: str = "train"
    format: str = "auto"
    mapping: dict[str, str] | None = None


class MappingUpdate(BaseModel):
    format: str
    mapping: dict[str, str] = {}


def _unusable(exc: DatasetError) -> HTTPException:
    return HTTPException(422, detail={"message": exc.message, "hint": exc.hint, "problems": exc.problems})


def _found(session: Any, dataset_id: int) -> Any:
    try:
        return service.get_dataset(session, dataset_id)
    except service.DatasetNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc


@router.get("", response_model=list[DatasetPublic])
def list_datasets(session: SessionDep) -> Any:
    return service.list_datasets(session)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=DatasetPublic)
def upload_dataset(
    session: SessionDep, settings: SettingsDep, file: Annotated[UploadFile, File(description="CSV, JSON, JSONL or Parquet")],
    format: Annotated[str, Form()] = "auto", mapping: Annotated[str | None, Form(description="JSON object field -> column")] = None,
) -> Any:
    try:
        chosen = json.loads(mapping) if mapping else None
    except json.JSONDecodeError as exc:
        raise HTTPException(422, detail={"message": f"mapping is not JSON ({exc.msg})", "hint": 'e.g. {"prompt": "question"}', "problems": []}) from exc
    scratch = settings.data_dir / "tmp"
    scratch.mkdir(parents=True, exist_ok=True)
    name = Path(file.filename or "upload").name
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        target = Path(tmp) / "upload"
        written = 0
        with target.open("wb") as out:
            while chunk := file.file.read(COPY_CHUNK):
                written += len(chunk)
                if written > settings.max_upload_bytes:
                    raise HTTPException(413, detail={"message": f"{name} is larger than the {settings.max_upload_bytes / 2**20:.0f} MiB upload limit",
                                                     "hint": "Use a smaller file, or raise STUDIO_MAX_UPLOAD_BYTES.", "problems": []})
                out.write(chunk)
        try:
            return service.import_file(session, target, name=name, shape=format, mapping=chosen, settings=settings)
        except DatasetError as exc:
            raise _unusable(exc) from exc


@router.post("/path", status_code=status.HTTP_201_CREATED, response_model=DatasetPublic)
def dataset_from_path(session: SessionDep, settings: SettingsDep, body: FromPath) -> Any:
    try:
        return service.import_path(session, body.path, shape=body.format, mapping=body.mapping, settings=settings)
    except DatasetError as exc:
        raise _unusable(exc) from exc


@router.post("/hub", status_code=status.HTTP_201_CREATED, response_model=DatasetPublic)
def dataset_from_hub(session: SessionDep, settings: SettingsDep, body: FromHub) -> Any:
    try:
        return service.import_hub(session, body.repo, config=body.config, split=body.split, shape=body.format, mapping=body.mapping,
                                  settings=settings)
    except DatasetError as exc:
        raise _unusable(exc) from exc


@router.get("/{dataset_id}", response_model=DatasetPublic)
def get_dataset(session: SessionDep, dataset_id: int) -> Any:
    return _found(session, dataset_id)


@router.get("/{dataset_id}/rows", response_model=PreviewPublic)
def preview_rows(session: SessionDep, dataset_id: int, page: Annotated[int, Query(ge=1)] = 1,
                 page_size: Annotated[int, Query(ge=1, le=200)] = 20) -> Any:
    _found(session, dataset_id)
    try:
        view = service.preview(session, dataset_id, page=page, page_size=page_size)
    except DatasetError as exc:
        raise _unusable(exc) from exc
    return PreviewPublic(columns=view.columns, rows=view.rows, page=view.page, page_size=view.page_size, pages=view.pages, total=view.total)


@router.put("/{dataset_id}/mapping", response_model=DatasetPublic)
def update_mapping(session: SessionDep, dataset_id: int, body: MappingUpdate) -> Any:
    _found(session, dataset_id)
    try:
        return service.update_mapping(session, dataset_id, shape=body.format, mapping=body.mapping)
    except DatasetError as exc:
        raise _unusable(exc) from exc


@router.delete("/{dataset_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_dataset(session: SessionDep, dataset_id: int) -> Response:
    _found(session, dataset_id)
    try:
        service.delete_dataset(session, dataset_id)
    except service.DatasetInUse as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from exc
    return Response(status_code=status.HTTP_204_NO_CONTENT)


__all__ = ["router"]
