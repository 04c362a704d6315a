#!/usr/bin/env bash
# Benchmarks http-logger against Python's own logging.handlers.HTTPHandler and against the
# loopback limit, all in one run on one receiver, and prints a table and the ratios to the
# targets of issue 5:
#
#   our median log! call vs Python's        <= 1/1000
#   our delivery rate vs Python's           >= 25x
#   our delivery rate vs the plain client   >= 70% (same connections)
#   peak memory, receiver down, 1M records  < 64 MiB above the baseline
#
# One command from a clean clone: `bash scripts/bench.sh`. It builds the receiver and
# examples/loadgen.rs in release mode, starts ONE receiver (`--quiet`, a free port), then runs
# Python's handler (scripts/bench_python.py), the loadgen over 1, 2 and 4 connections, the
# plain HTTP/1.1 client over the same connections right after each, and the `--down` memory
# run. A missed target is marked MISSED; the script fails only when something crashes.
#
# Settings (environment): RECORDS (loadgen and plain client, default 200000), PY_RECORDS
# (Python, default 5000), DOWN_RECORDS (default 1000000), CONNECTIONS (default "1 2 4"),
# METHOD (post or get, default post), PYTHON (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."

RECORDS=${RECORDS:-200000}
PY_RECORDS=${PY_RECORDS:-5000}
DOWN_RECORDS=${DOWN_RECORDS:-1000000}
CONNECTIONS=${CONNECTIONS:-"1 2 4"}
METHOD=${METHOD:-post}
PYTHON=${PYTHON:-python3}

started=$(date +%s)
echo "building (release)..." >&2
cargo build --release --quiet --example receiver --example loadgen
bin=target/release/examples

work=$(mktemp -d)
receiver=
cleanup() {
  if [ -n "$receiver" ]; then
    kill "$receiver" 2>/dev/null || true
    wait "$receiver" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

"$bin/receiver" --quiet --port 0 >"$work/receiver.out" 2>"$work/receiver.err" &
receiver=$!
for _ in $(seq 200); do
  grep -q '^listening on' "$work/receiver.err" && break
  kill -0 "$receiver" 2>/dev/null || break
  sleep 0.05
done
host=$(sed -n 's|^listening on http://||p' "$work/receiver.err")
if [ -z "$host" ]; then
  echo "bench: the receiver did not start:" >&2
  cat "$work/receiver.err" >&2
  exit 1
fi
echo "receiver (examples/receiver.rs --quiet, release) on $host" >&2

# get KEY FILE: the value of a `key: value` line.
get() { sed -n "s|^$1: ||p" "$2" | head -n 1; }

# run NAME COMMAND...: runs a step, its output kept in $work/NAME; fails the script on a crash.
run() {
  local name=$1
  shift
  echo "running $name: $*" >&2
  if ! "$@" >"$work/$name" 2>"$work/$name.err"; then
    echo "bench: $name crashed:" >&2
    cat "$work/$name" "$work/$name.err" >&2
    exit 1
  fi
}

run python "$PYTHON" scripts/bench_python.py "$host" "$PY_RECORDS" "$METHOD"
for c in $CONNECTIONS; do
  # Each loadgen right next to the plain client over the same connections, so that both see
  # the same load from whatever else runs on the machine.
  run "logger_$c" "$bin/loadgen" --host "$host" --records "$RECORDS" --connections "$c" --method "$METHOD"
  run "plain_$c" "$bin/loadgen" --host "$host" --records "$RECORDS" --connections "$c" --method "$METHOD" --plain
done
run down "$bin/loadgen" --down --records "$DOWN_RECORDS" --method "$METHOD"

# ---- the table ----
py="$work/python"
echo
echo "== results (method $METHOD; $(nproc) cores; $(date -u +%Y-%m-%dT%H:%MZ)) =="
printf '%-26s %5s %9s %13s %11s %11s %11s %8s %8s\n' \
  run conns records delivered/s "call med" "call p99" "call max" "peak MiB" drops
printf '%-26s %5s %9s %13s %11s %11s %11s %8s %8s\n' \
  "python HTTPHandler" 1 "$(get records "$py")" "$(get delivered_per_s "$py")" \
  "$(get call_median_ns "$py") ns" "$(get call_p99_ns "$py") ns" "$(get call_max_ns "$py") ns" - "$(get errors "$py")"
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
for c in $CONNECTIONS; do
  f="$work/logger_$c"
  p="$work/plain_$c"
  printf '%-26s %5s %9s %13s %11s %11s %11s %8s %8s\n' \
    "http-logger" "$c" "$(get sent "$f")" "$(get delivered_per_s "$f")" \
    "$(get call_median_ns "$f") ns" "$(get call_p99_ns "$f") ns" "$(get call_max_ns "$f") ns" \
    "$(mib "$(get peak_above_baseline_kib "$f")")" "$(($(get dropped "$f") + $(get failed "$f")))"
  printf '%-26s %5s %9s %13s %11s %11s %11s %8s %8s\n' \
    "plain HTTP/1.1 client" "$c" "$(get records "$p")" "$(get delivered_per_s "$p")" \
    "$(get request_median_us "$p") us" "$(get request_p99_us "$p") us" - - -
done
d="$work/down"
printf '%-26s %5s %9s %13s %11s %11s %11s %8s %8s\n' \
  "http-logger, receiver down" 1 "$(get logged "$d")" 0 \
  "$(get call_median_ns "$d") ns" "$(get call_p99_ns "$d") ns" "$(get call_max_ns "$d") ns" \
  "$(get peak_above_baseline_mib "$d")" "$(($(get dropped "$d") + $(get failed "$d")))"
echo "(call costs net of an empty timer pair: Instant $(get instant_pair_ns "$work/logger_1" 2>/dev/null || true) ns," \
  "perf_counter_ns $(get perf_counter_pair_ns "$py") ns; plain client: request round trip; peak MiB: VmHWM above the" \
  "baseline before the logger was built; loadgen queue = records, so nothing is dropped)"

# ---- per connection count, and the best ----
echo
best_c=
best_rate=0
for c in $CONNECTIONS; do
  f="$work/logger_$c"
  rate=$(get delivered_per_s "$f")
  plain=$(get delivered_per_s "$work/plain_$c")
  all=$(get all_sent "$f")
  pct=$(awk -v a="$rate" -v b="$plain" 'BEGIN { printf "%.0f", 100 * a / b }')
  mark=ok
  [ "$pct" -ge 70 ] || mark=MISSED
  note=
  [ "$all" = true ] || note=" (not every record was sent: sent $(get sent "$f") of $RECORDS, dropped $(get dropped "$f"), failed $(get failed "$f"))"
  echo "connections $c: $rate records/s delivered, plain client $plain/s: ours/plain = $pct% (target >= 70%) $mark$note"
  if [ "$rate" -gt "$best_rate" ]; then
    best_rate=$rate
    best_c=$c
  fi
done
echo "best: connections $best_c ($best_rate records/s)"

# ---- the ratios ----
echo
bf="$work/logger_$best_c"
ours_call=$(get call_median_ns "$work/logger_1")
py_call=$(get call_median_ns "$py")
py_rate=$(get delivered_per_s "$py")
plain_best=$(get delivered_per_s "$work/plain_$best_c")
down_mib=$(get peak_above_baseline_mib "$d")
verdict() { awk -v x="$1" -v op="$2" -v t="$3" 'BEGIN { ok = (op == "<=") ? x <= t : (op == ">=") ? x >= t : x < t; print ok ? "ok" : "MISSED" }'; }
ratio_call=$(awk -v a="$ours_call" -v b="$py_call" 'BEGIN { printf "%.6f", a / b }')
inverse_call=$(awk -v a="$ours_call" -v b="$py_call" 'BEGIN { printf "%.0f", b / (a > 0 ? a : 1) }')
ratio_py=$(awk -v a="$best_rate" -v b="$py_rate" 'BEGIN { printf "%.1f", a / b }')
ratio_plain=$(awk -v a="$best_rate" -v b="$plain_best" 'BEGIN { printf "%.2f", a / b }')
printf '%-58s %-28s %s\n' "median log! call, ours / Python's (connections 1)" \
  "$ours_call / $py_call ns = 1/$inverse_call" "target <= 1/1000: $(verdict "$ratio_call" '<=' 0.001)"
printf '%-58s %-28s %s\n' "delivery rate, ours (connections $best_c) / Python's" \
  "$best_rate / $py_rate = ${ratio_py}x" "target >= 25x: $(verdict "$ratio_py" '>=' 25)"
printf '%-58s %-28s %s\n' "delivery rate, ours / plain client (connections $best_c)" \
  "$best_rate / $plain_best = $ratio_plain" "target >= 0.70: $(verdict "$ratio_plain" '>=' 0.70)"
printf '%-58s %-28s %s\n' "peak memory above baseline, receiver down, $(get logged "$d") records" \
  "$down_mib MiB" "target < 64 MiB: $(verdict "$down_mib" '<' 64)"
echo "receiver down: logged $(get logged "$d"), sent $(get sent "$d"), dropped $(get dropped "$d")," \
  "failed $(get failed "$d"), queued $(get queued "$d"), retried $(get retried "$d"); shutdown took $(get shutdown_s "$d") s"
sleep 1.1
echo "receiver's own count: $(tail -n 1 "$work/receiver.out" 2>/dev/null || true)"
echo "took $(($(date +%s) - started)) s"
