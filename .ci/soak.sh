#!/usr/bin/env bash
# make soak: `make test` three times in a row while two CPU-bound processes run beside it, so
# that a test which depends on the machine's speed shows up here rather than in someone's CI.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${SOAK_RUNS:-3}
burners=()
stop() { for pid in "${burners[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap stop EXIT
for _ in 1 2; do
  sha256sum /dev/zero >/dev/null &
  burners+=($!)
done
for i in $(seq "$runs"); do
  echo "soak: make test, run $i of $runs, beside ${#burners[@]} CPU-bound processes"
  start=$SECONDS
  if ! make test; then
    echo "soak: run $i of $runs failed after $((SECONDS - start))s"
    exit 1
  fi
  echo "soak: run $i of $runs passed in $((SECONDS - start))s"
done
echo "soak: $runs of $runs runs passed"
