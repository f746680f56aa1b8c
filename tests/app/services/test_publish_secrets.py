"""The secret store for the Hub token: Fernet round trip, a 0600 key file in the data directory, clear errors."""

from __future__ import annotations

import stat

import pytest
from cryptography.fernet import Fernet

from app import secrets
from app.settings import load_settings

TOKEN = "hf_" + "SecretForTests" * 3


@pytest.fixture
def settings(tmp_path, monkeypatch):
    monkeypatch.delenv(secrets.KEY_ENV, raising=False)
    return load_settings({"STUDIO_DATA_DIR": str(tmp_path / "data")})


def test_round_trip_with_a_private_key_file_and_no_plain_text(settings):
    sealed = secrets.encrypt(settings, TOKEN)
    assert TOKEN not in sealed and secrets.decrypt(settings, sealed) == TOKEN
    key = secrets.key_path(settings)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and TOKEN.encode() not in key.read_bytes()
    assert secrets.encrypt(settings, TOKEN) != sealed  # a fresh IV each time: equal tokens do not give equal rows


def test_the_environment_key_wins_and_another_key_cannot_decrypt(settings, monkeypatch):
    sealed = secrets.encrypt(settings, TOKEN)
    monkeypatch.setenv(secrets.KEY_ENV, Fernet.generate_key().decode())
    with pytest.raises(secrets.SecretError, match="enter the token again") as info:
        secrets.decrypt(settings, sealed)
    assert TOKEN not in str(info.value)
    assert secrets.decrypt(settings, secrets.encrypt(settings, TOKEN)) == TOKEN


def test_a_malformed_key_says_what_to_do(settings, monkeypatch):
    monkeypatch.setenv(secrets.KEY_ENV, "not-a-key")
    with pytest.raises(secrets.SecretError, match="not a valid Fernet key"):
        secrets.encrypt(settings, TOKEN)
