#!/usr/bin/env bash
# The README's second command and what CI runs: install what is needed (which also builds
# and so type-checks), then lint, the monitor's smoke test, unit tests and integration
# tests against the real kernel, runc and berthd.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh
export PATH="/opt/berth/node/bin:$PATH"

echo "==> lint (eslint, prettier)"
npx eslint --max-warnings=0 .
npx prettier --check . >/dev/null || { npx prettier --list-different .; exit 1; }
echo "==> berth-monitor smoke test"
bash monitor/smoke-test.sh >/tmp/berth-monitor-smoke.log 2>&1 || { cat /tmp/berth-monitor-smoke.log; exit 1; }
tail -n 1 /tmp/berth-monitor-smoke.log
echo "==> benchmark smoke run (berth vs runc, --quick)"
npm run --silent bench -- --quick >/tmp/berth-bench-smoke.log 2>&1 || { cat /tmp/berth-bench-smoke.log; exit 1; }
grep -A4 '^subject' /tmp/berth-bench-smoke.log
echo "==> unit and integration tests"
node --enable-source-maps --test --test-concurrency=2 --test-timeout=180000 \
  'dist/test/unit/**/*.test.js' 'dist/test/integration/**/*.test.js'
