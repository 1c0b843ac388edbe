#!/usr/bin/env bash
# Set up and run the whole test suite. Tests marked real_redis use the server at
# CHATROOM_ASYNC_REDIS_URL (default redis://127.0.0.1:6379/0) and are skipped, with the
# reason, when none answers -- unless CHATROOM_ASYNC_REQUIRE_REDIS=1, as in CI.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
exec .venv/bin/pytest "$@"
