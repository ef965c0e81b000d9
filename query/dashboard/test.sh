#!/usr/bin/env bash
# Type-checks the dashboard and runs its unit tests (test/*.test.ts, node's built-in runner):
#
#   bash query/dashboard/test.sh
#
# Needs node and npm (and the npm registry, the first time): node_modules/ is installed from the
# lock file when it is missing or older than package-lock.json. The tests are bundled by the
# pinned esbuild into a scratch folder and run there with `node --test`, so any node ≥ 18 runs
# them (node's own type stripping needs ≥ 22.6 and explicit .ts import paths).
set -euo pipefail
cd "$(dirname "$0")"

if [[ ! -x node_modules/.bin/tsc || ! -x node_modules/.bin/esbuild || ! -d node_modules/@types/node ||
  ! -e node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
  npm ci --no-audit --no-fund --loglevel=error
fi

# the sources alone (DOM only, as the bundle sees them), then the tests with node's types
npx --no-install tsc --noEmit -p tsconfig.json
npx --no-install tsc --noEmit -p test/tsconfig.json

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
npx --no-install esbuild test/*.test.ts \
  --bundle --platform=node --format=esm --target=node18 --sourcemap=inline \
  --outdir="$out" --out-extension:.js=.mjs --log-level=warning
# TAP on every node version and terminal: it ends with the "# pass N" / "# fail N" summary
node --test --test-reporter=tap "$out"/*.test.mjs
