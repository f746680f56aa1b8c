from tests.support.fixtures import database_url, postgres_url, session, studio  # noqa: F401
