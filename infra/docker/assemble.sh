#!/bin/sh
# Build stage helper: copies what the runtime image needs from each built workspace into OUT:
# package.json, dist/ (JavaScript and source maps, no declarations) and the files read at run
# time beside dist/: sql/ (migrations, packages/db) and lua/ (Redis scripts). Workspaces that the
# build did not compile (tests fixtures, the CLI, the embedded stack) are left out.
# Usage: assemble.sh SRC OUT
set -eu
src=$1
out=$2
for dir in "$src"/apps/* "$src"/packages/*; do
  [ -f "$dir/package.json" ] && [ -d "$dir/dist" ] || continue
  rel=${dir#"$src"/}
  mkdir -p "$out/$rel"
  cp "$dir/package.json" "$out/$rel/"
  for part in dist sql lua; do
    if [ -d "$dir/$part" ]; then cp -R "$dir/$part" "$out/$rel/"; fi
  done
  find "$out/$rel/dist" \( -name '*.d.ts' -o -name '*.d.ts.map' -o -name '.tsbuildinfo' \) -delete
done
