#!/usr/bin/env bash
# Create .venv (if missing) and install the package with the given extras.
# pip runs with -qq: errors still show; its warnings about the local machine's package
# mirrors do not bury the output of the command that follows.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv (first run only)" >&2
  python3 -m venv .venv
  .venv/bin/python -m pip install -qq --upgrade pip
fi
echo "setup: installing chatroom_async${extras:+[$extras]} into .venv" >&2
.venv/bin/python -m pip install -qq -e ".${extras:+[$extras]}"
