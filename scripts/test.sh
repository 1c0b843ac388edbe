#!/usr/bin/env bash
# Set up and run the whole test suite, the notebooks included (nbval: every cell must run;
# cells whose first line is `# NBVAL_CHECK_OUTPUT` must print what is stored).
# Tests marked real_redis use the server at CHATROOM_ASYNC_REDIS_URL (default
# redis://127.0.0.1:6379/0) and are skipped, with the reason, when none answers -- unless
# CHATROOM_ASYNC_REQUIRE_REDIS=1, as in CI. Tests marked browser drive JupyterLab in
# /usr/bin/chromium and are skipped without it -- unless CHATROOM_ASYNC_REQUIRE_BROWSER=1.
# With no arguments it runs ruff and mypy, then everything with a coverage floor of 90 %;
# arguments go to pytest instead (e.g. `bash scripts/test.sh -k queue` or
# `bash scripts/test.sh notebooks/01_architecture.ipynb`), without the floor.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
# The exercise notebooks (08, 09) load the reference solutions under test, not the stubs.
export CHATROOM_ASYNC_IMPL="${CHATROOM_ASYNC_IMPL:-solutions}"
nbval=(--nbval-lax --nbval-current-env --nbval-sanitize-with notebooks/nbval_sanitize.cfg
       --nbval-cell-timeout=120)
if [ "$#" -eq 0 ]; then
  echo "ruff (lint: errors, imports, async, complexity) and mypy --strict on the package"
  .venv/bin/ruff check --quiet chatroom_async tests benchmarks
  .venv/bin/mypy --no-error-summary
  shopt -s nullglob
  exec .venv/bin/pytest -q "${nbval[@]}" --cov=chatroom_async --cov-report=term:skip-covered \
    --cov-fail-under=90 tests notebooks/*.ipynb
fi
exec .venv/bin/pytest "${nbval[@]}" "$@"
