#!/usr/bin/env bash
# Set up and run the whole test suite. Tests marked real_redis use the server at
# CHATROOM_ASYNC_REDIS_URL (default redis://127.0.0.1:6379/0) and are skipped, with the
# reason, when none answers -- unless CHATROOM_ASYNC_REQUIRE_REDIS=1, as in CI.
# With no arguments it runs ruff and mypy, then everything with a coverage floor of 90 %; arguments go to
# pytest instead (e.g. `bash scripts/test.sh -k queue`), without the floor.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
if [ "$#" -eq 0 ]; then
  echo "ruff (lint: errors, imports, async, complexity) and mypy --strict on the package"
  .venv/bin/ruff check --quiet chatroom_async tests benchmarks
  .venv/bin/mypy --no-error-summary
  exec .venv/bin/pytest -q --cov=chatroom_async --cov-report=term:skip-covered \
    --cov-fail-under=90
fi
exec .venv/bin/pytest "$@"
