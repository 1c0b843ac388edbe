#!/usr/bin/env bash
# The chat room against the simulated AI served over HTTP, all offline, in one command:
# browser -> chat room (chatroom-async serve) -> OpenAI SDK -> chatroom-async sim-server.
# Open http://127.0.0.1:${CHAT_PORT:-8000} ; Ctrl-C stops both. Extra arguments go to
# `serve` (e.g. --scheduler exercises.scheduling:IntelligentTaskScheduler).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || bash scripts/setup.sh "chat,provider"
sim_port="${SIM_PORT:-8100}"
.venv/bin/python -m chatroom_async sim-server --port "$sim_port" --log-level warning \
  --set failure_rate=0 &
sim=$!
OPENAI_API_KEY=sim .venv/bin/python -m chatroom_async serve --port "${CHAT_PORT:-8000}" \
  --backend openai --base-url "http://127.0.0.1:$sim_port/v1" --model glm-4-flash "$@" &
web=$!
# Ctrl-C or a TERM stops both servers (a trap runs while `wait` waits, not after it).
trap 'kill "$web" "$sim" 2>/dev/null || true; wait "$web" "$sim" 2>/dev/null || true' \
  EXIT INT TERM
wait "$web"
