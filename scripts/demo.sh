#!/usr/bin/env bash
# See records arrive: builds the examples, starts the receiver on a free port, sends records
# with examples/hello.rs (POST, then GET), and shows what the receiver printed.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --examples
log=$(mktemp)
target/debug/examples/receiver --port "${PORT:-0}" 2>"$log" &
receiver=$!
trap 'kill "$receiver" 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 100); do
  grep -q '^listening on' "$log" && break
  sleep 0.05
done
addr=$(sed -n 's|^listening on http://||p' "$log")
[ -n "$addr" ] || { cat "$log" >&2; exit 1; }
echo "receiver listening on $addr; sending with examples/hello.rs (POST, then GET):" >&2
target/debug/examples/hello "$addr" post
target/debug/examples/hello "$addr" get
sleep 0.3
