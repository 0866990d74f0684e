#!/usr/bin/env bash
# Create (or refresh) the local virtual environment .venv with tformer and its test tools.
#
# torch is installed first, pinned, so that pip resolves tformer's `torch>=2.4` against it instead of
# pulling a multi-GB CUDA wheel. On a GPU machine choose your build, e.g.
#   TFORMER_TORCH="torch==2.5.1 --index-url https://download.pytorch.org/whl/cu124" bash scripts/venv.sh
set -euo pipefail
cd "$(dirname "$0")/.."
torch_spec=${TFORMER_TORCH:-torch==2.13.0}
stamp=.venv/.tformer-installed
want="$(cat pyproject.toml) $torch_spec"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
# shellcheck disable=SC2086  # the spec may carry pip options such as --index-url
.venv/bin/python -m pip install --quiet $torch_spec
.venv/bin/python -m pip install --quiet -e ".[dev,logging]"
printf '%s' "$want" >"$stamp"
