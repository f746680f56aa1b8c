from __future__ import annotations

import pytest

from tests.support.fixtures import database_url, postgres_url, session, studio  # noqa: F401
from tests.support.stack import running_stack

SHAPES = ["sqlite+filesystem", "postgresql+redis"]


@pytest.fixture(scope="module", params=SHAPES)
def stack(request, tmp_path_factory):
    """One worker on each stack shape, shared by a module's tests (each test uses its own jobs)."""
    with running_stack(request, tmp_path_factory.mktemp("stack"), request.param) as s:
        yield s
