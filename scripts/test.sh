#!/usr/bin/env bash
# The README's second command and what CI runs: install what is needed, then lint, type
# check, unit tests and integration tests against the real kernel, runc and berth-monitor.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh
export PATH="/opt/berth/node/bin:$PATH"

echo "==> lint (eslint, prettier)"
npx eslint --max-warnings=0 .
npx prettier --check . >/dev/null || { npx prettier --list-different .; exit 1; }
echo "==> typecheck"
npx tsc -p tsconfig.json --noEmit
echo "==> tests"
node --enable-source-maps --test --test-concurrency=2 --test-timeout=120000 \
  'dist/test/unit/**/*.test.js' 'dist/test/integration/**/*.test.js'
