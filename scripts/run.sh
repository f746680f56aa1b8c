#!/usr/bin/env bash
# Set up (if needed) and start the studio on its embedded defaults: SQLite and a filesystem broker
# under ./data, the web app on http://127.0.0.1:7860 and one local worker. Extra arguments go to
# `peft-studio run` (e.g. --port 8000).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/peft-studio run "$@"
