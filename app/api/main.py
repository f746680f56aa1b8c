"""The REST API alone (one router per routes module); app.server mounts the studio UI on it for `peft-studio run`.

Never imports torch, transformers or the worker package: it only reads and writes rows and rings
the broker, so it starts fast and stays small.
"""

from __future__ import annotations

from fastapi import FastAPI

from app.api.routes import artifacts, catalog, combine, health, jobs, merges, publish, runs
from app.api.routes import datasets as datasets_routes
from app.api.routes import inspect as inspect_routes


def create_app() -> FastAPI:
    app = FastAPI(title="PEFT Studio", summary="Fine-tune models without code", version="0.1.0")
    app.include_router(health.router)
    app.include_router(jobs.router)
    app.include_router(runs.router)
    app.include_router(artifacts.router)
    app.include_router(merges.router)
    app.include_router(catalog.router)
    app.include_router(combine.router)
    app.include_router(publish.router)
    app.include_router(datasets_routes.router)
    app.include_router(inspect_routes.router)
    return app
