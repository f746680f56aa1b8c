"""The studio's database: typed models, the engine and session factory, and migrations to head."""

from app.db.models import Artifact, Base, Dataset, Job, Metric
from app.db.session import get_engine, session_scope, sessionmaker_for

__all__ = ["Artifact", "Base", "Dataset", "Job", "Metric", "get_engine", "session_scope", "sessionmaker_for"]
