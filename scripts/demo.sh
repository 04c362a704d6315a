#!/usr/bin/env bash
# See records arrive: builds the examples, starts the receiver on a free port, sends records
# with examples/hello.rs (POST, then GET) and examples/tracing.rs (tracing events with their
# spans), and shows what the receiver printed.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --examples --features tracing
# Where cargo put them: target/, or $CARGO_TARGET_DIR (or a target-dir of a cargo config).
bin="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/debug/examples"
log=$(mktemp)
"$bin/receiver" --port "${PORT:-0}" 2>"$log" &
receiver=$!
trap 'kill "$receiver" 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 100); do
  grep -q '^listening on' "$log" && break
  sleep 0.05
done
addr=$(sed -n 's|^listening on http://||p' "$log")
[ -n "$addr" ] || { cat "$log" >&2; exit 1; }
echo "receiver listening on $addr; sending with examples/hello.rs (POST, then GET):" >&2
echo "== POST: the records as a form body ==" >&2
"$bin/hello" "$addr" post
sleep 0.3
echo "== GET: the same records as a query string ==" >&2
"$bin/hello" "$addr" get
sleep 0.3
echo "== tracing: events of tokio tasks with their spans (examples/tracing.rs) ==" >&2
"$bin/tracing" "$addr" >/dev/null
sleep 0.3
