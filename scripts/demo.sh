#!/usr/bin/env bash
# Set up and run the demo on the embedded fakeredis (no server needed).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/chatroom-async demo
