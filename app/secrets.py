"""Secrets at rest (the Hub token): encrypted with Fernet (AES-128-CBC + HMAC-SHA256, from `cryptography`).

The key never sits in the database: it comes from STUDIO_SECRET_KEY or a file `secret.key` in the data
directory, created on first use with 0600 permissions. A dump of the database alone reveals no token.
The web process encrypts what a person types; the worker decrypts just before the Hub call.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from app.settings import Settings

KEY_FILE = "secret.key"
KEY_ENV = "STUDIO_SECRET_KEY"


class SecretError(Exception):
    """A stored secret cannot be read back (key changed or data damaged); the message says what to do."""


def key_path(settings: Settings) -> Path:
    return settings.data_dir / KEY_FILE


def _key(settings: Settings) -> bytes:
    from_env = os.environ.get(KEY_ENV, "").strip()
    if from_env:
        return from_env.encode()
    path = key_path(settings)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # O_EXCL: two processes starting at once keep one key
        try:
            os.write(fd, Fernet.generate_key())
        except BaseException:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        os.close(fd)
    return path.read_bytes().strip()


def _fernet(settings: Settings) -> Fernet:
    try:
        return Fernet(_key(settings))
    except (ValueError, TypeError) as exc:
        raise SecretError(f"the studio's secret key ({KEY_ENV} or {key_path(settings)}) is not a valid Fernet key: {exc}. "
                          "Remove the key file (saved tokens must then be entered again) or set a key made by "
                          "cryptography.fernet.Fernet.generate_key().") from None


def encrypt(settings: Settings, plain: str) -> str:
    return _fernet(settings).encrypt(plain.encode()).decode("ascii")


def decrypt(settings: Settings, sealed: str) -> str:
    try:
        return _fernet(settings).decrypt(sealed.encode("ascii")).decode()
    except InvalidToken:
        raise SecretError("a saved token cannot be decrypted with this studio's secret key (the key changed, or the worker uses "
                          f"another {KEY_ENV} than the web app); enter the token again") from None
