#!/usr/bin/env bash
# Set up everything a student needs (.venv with the package and its `notebooks` extra:
# JupyterLab, ipywidgets, matplotlib) and open JupyterLab on the first notebook.
# Arguments go to `jupyter lab` (e.g. `bash scripts/lab.sh --port=8889 --no-browser`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh notebooks
extra=()
if [ "$(id -u)" = 0 ]; then
  extra+=(--allow-root)  # JupyterLab refuses to run as root without it (containers, CI)
fi
exec .venv/bin/jupyter lab notebooks/00_start_here.ipynb ${extra[@]+"${extra[@]}"} "$@"
