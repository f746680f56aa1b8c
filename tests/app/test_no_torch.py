"""The web process (app.server: API + UI) and the worker's parent never import torch or transformers."""

from __future__ import annotations

import subprocess
import sys

WEB_AND_WORKER_PARENT = ("app.server", "app.api.main", "app.cli", "worker.tasks", "worker.supervisor")


def test_web_and_worker_parent_import_without_torch(tmp_path):
    code = (
        f"import importlib, sys\n"
        f"for name in {WEB_AND_WORKER_PARENT!r}:\n"
        "    importlib.import_module(name)\n"
        "from app.server import create_app\n"
        "create_app()\n"
        "print(','.join(m for m in ('torch', 'transformers') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "STUDIO_DATA_DIR": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"the web or worker parent imported {done.stdout.strip()}"
