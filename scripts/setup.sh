#!/usr/bin/env bash
# The README's first command: install, start berthd in the background, run a container.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh

RUN_ROOT=/run/berth
LOG=/var/log/berth/berthd.log
PIDFILE=$RUN_ROOT/berthd.pid
mkdir -p "$RUN_ROOT" /var/log/berth

if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
  echo "berthd already running (pid $(cat "$PIDFILE"))"
else
  # setsid: berthd outlives this shell; containers outlive berthd anyway.
  setsid berth daemon >>"$LOG" 2>&1 < /dev/null &
  echo $! > "$PIDFILE"
  # Ready means answering: a socket file alone may be a stale one from a killed berthd.
  for _ in $(seq 1 100); do berth version >/dev/null 2>&1 && break; sleep 0.1; done
  if ! berth version >/dev/null 2>&1; then
    echo "berthd did not start; see $LOG" >&2
    tail -n 20 "$LOG" >&2
    exit 1
  fi
  echo "berthd started (pid $(cat "$PIDFILE"), log $LOG)"
fi

echo
echo '$ berth run --rm busybox echo "hello from a berth container"'
berth run --rm busybox echo "hello from a berth container"
cat <<'MSG'

Try next:
  berth run -d --name web busybox sh -c 'while true; do date; sleep 5; done'   # a detached container
  berth ps                                            # what is running
  berth exec -it web sh                               # a shell inside it
  berth inspect -f '{{.State.Pid}}' web               # Docker's templates work
  berth stop web && berth rm web
  kill -9 $(cat /run/berth/berthd.pid)                 # containers keep running...
MSG
