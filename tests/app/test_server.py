"""The web process as served: API + studio pages, with Gradio's file access, uploads and monitoring locked down."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from fastapi.testclient import TestClient

from app.server import create_app

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def client(studio, monkeypatch):
    monkeypatch.setenv("STUDIO_MAX_UPLOAD_BYTES", "1MB")
    from app.settings import get_settings

    get_settings.cache_clear()
    with TestClient(create_app(get_settings())) as c:
        yield c


def test_pages_and_api_are_served_together(client):
    assert client.get("/api/health").json()["status"] == "ok"
    for path in ("/", "/new", "/run"):
        page = client.get(path)
        assert page.status_code == 200 and "gradio-app" in page.text, path
    assert client.get("/config").json()["title"] == "PEFT Studio"


def test_gradio_serves_no_files_outside_its_upload_cache(client, studio):
    (studio.jobs_dir / "1").mkdir(parents=True)
    (studio.jobs_dir / "1" / "secret.txt").write_text("adapter")
    for target in ("/etc/passwd", str(studio.data_dir / "studio.db"), str(studio.jobs_dir / "1" / "secret.txt"), "../../etc/passwd"):
        response = client.get(f"/gradio_api/file={target}")
        assert response.status_code in (403, 404), (target, response.status_code)
        assert "root:" not in response.text


def test_monitoring_is_off_and_uploads_are_capped(client):
    for path in ("/monitoring", "/gradio_api/monitoring", "/monitoring/summary", "/gradio_api/monitoring/summary"):
        assert client.get(path).status_code in (403, 404), path
    big = client.post("/gradio_api/upload", files={"files": ("big.jsonl", b"x" * 1_500_000, "application/octet-stream")})
    assert big.status_code == 413
    small = client.post("/gradio_api/upload", files={"files": ("small.jsonl", b'{"text": "hi"}\n', "application/octet-stream")})
    assert small.status_code == 200


def test_the_web_process_never_imports_torch(studio):
    code = (
        "import sys\n"
        "from app.server import create_app\n"
        "create_app()\n"
        "print(','.join(m for m in ('torch', 'transformers', 'worker') if m in sys.modules))\n"
    )
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "STUDIO_DATA_DIR": str(studio.data_dir), "HOME": str(studio.data_dir)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1:] in ([], [""]), f"the web process imported {done.stdout.strip()}"
