"""Request dependencies, as named types so a route's signature shows what it needs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends
from sqlalchemy.orm import Session

from app.db.session import sessionmaker_for
from app.settings import Settings, get_settings


def _session() -> Iterator[Session]:
    with sessionmaker_for(get_settings())() as session:
        yield session


SessionDep = Annotated[Session, Depends(_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
