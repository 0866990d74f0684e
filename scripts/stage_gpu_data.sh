#!/usr/bin/env bash
# Copies the data sets the GPU recipes read into .gpu_data/ (ignored by git), so that a device run can carry them:
# only the checkout travels to the GPU machine, not ../shared. See docs/gpu_runbook.md.
set -euo pipefail
cd "$(dirname "$0")/.."
source_dir="${TFORMER_DATA_DIR:-../shared/data}"
target=.gpu_data
exclude="$(git rev-parse --git-path info/exclude)"
mkdir -p "$(dirname "$exclude")"
grep -qxF "/$target/" "$exclude" 2>/dev/null || echo "/$target/" >> "$exclude"
mkdir -p "$target"
for name in multi30k iwslt14_de_en tinyshakespeare wikitext2; do
  if [ ! -d "$source_dir/$name" ]; then
    echo "stage_gpu_data: $source_dir/$name is missing (set TFORMER_DATA_DIR to the data directory)" >&2
    exit 2
  fi
  rm -rf "${target:?}/$name"
  cp -r "$source_dir/$name" "$target/$name"
done
du -sh "$target"
