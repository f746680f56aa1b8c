"""Read what the embedded filesystem broker holds, to check what was enqueued without a worker."""

from __future__ import annotations

import base64
import json

from app.settings import Settings


def queued_messages(settings: Settings) -> list[tuple[str, list]]:
    """(task name, args) of every message waiting in the embedded broker, oldest first."""
    out = []
    for path in sorted((settings.broker_dir / "messages").glob("*.msg")):
        payload = json.loads(path.read_text())
        body = json.loads(base64.b64decode(payload["body"])) if payload["properties"].get("body_encoding") == "base64" else json.loads(payload["body"])
        out.append((payload["headers"]["task"], body[0]))
    return out
