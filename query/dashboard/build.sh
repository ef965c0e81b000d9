#!/usr/bin/env bash
# Rebuilds the dashboard bundle in query/dashboard/dist/ (committed, embedded into the binary by
# query/src/routes/dashboard.rs, so a cargo build needs no node):
#
#   bash query/dashboard/build.sh           npm ci, type-check, bundle into dist/
#   bash query/dashboard/build.sh --check   same into a scratch folder; fails if dist/ differs
#
# The output is byte-identical for the same sources and lock file: pinned esbuild, no
# timestamps, and index.html names the assets with a hash of their content (?v=…), so browsers
# cache them for good and still pick up a new build.
set -euo pipefail
cd "$(dirname "$0")"

mode=${1:-build}
case $mode in
  build) out=dist ;;
  --check) out=$(mktemp -d) ; trap 'rm -rf "$out"' EXIT ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

npm ci --no-audit --no-fund --loglevel=error
npx --no-install tsc --noEmit -p tsconfig.json

mkdir -p "$out"
rm -f "$out/app.js" "$out/app.css" "$out/index.html"
npx --no-install esbuild src/app.ts \
  --bundle --minify --format=iife --target=es2020 --charset=utf8 \
  --banner:js="/*! Flightline dashboard. Bundles uPlot $(node -p 'require("uplot/package.json").version'), (c) Leon Sorokin, MIT License */" \
  --outfile="$out/app.js" --log-level=warning

version=$(cat "$out/app.js" "$out/app.css" | sha256sum | cut -c1-12)
sed "s/__VERSION__/$version/g" src/index.html > "$out/index.html"

if [[ $mode == --check ]]; then
  for file in index.html app.js app.css; do
    if ! cmp -s "$out/$file" "dist/$file"; then
      echo "dashboard: dist/$file is not what build.sh makes from the sources; run bash query/dashboard/build.sh" >&2
      exit 1
    fi
  done
  echo "dashboard: dist/ is up to date ($version)"
else
  echo "dashboard: built dist/ ($version): $(wc -c < dist/app.js) B app.js, $(wc -c < dist/app.css) B app.css"
fi
