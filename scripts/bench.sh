#!/usr/bin/env bash
# Benchmarks http-logger against Python's own logging.handlers.HTTPHandler and against the
# loopback limit, all in one run against one receiver, and prints a table and the ratios to the
# targets:
#
#   our median log! call vs Python's                         <= 1/1000
#   our delivery rate vs Python's                            >= 25x
#   http://:  ours vs wrk, same connections (1 and 2)        >= 0.90
#   https://: ours vs wrk over TLS, same connections         >= 0.80
#   batches (NDJSON, plain and gzip) vs one record a request,
#     one connection, same receiver                          >= 20x
#   peak memory, receiver down, 1M records                   < 64 MiB above the baseline
#   peak memory, receiver down, 20,000 records of 1 MB       < 128 MiB above the baseline
#   a spool, receiver keeping up: delivery vs no spool        >= 0.90 (it writes nothing)
#
# and, with the receiver down and a spool, how fast records go to disk and what a log! call
# costs then, and the CPU time per request of our worker and of wrk (no target: reported).
#
# One command from a clean clone: `bash scripts/bench.sh` (with or without CARGO_TARGET_DIR).
# The receiver is nginx (`return 200`, keep-alive, access log off: a receiver that costs as
# little as a receiver can), on 127.0.0.1, plain and TLS with a certificate this script makes
# with openssl. The plain client is wrk, sending the bytes of the same record
# (`loadgen --payload`). nginx-core and wrk are installed from Debian's packages when absent
# (with the service kept from starting). Each of our runs is right next to wrk's over the same
# connections, so both see the same load from whatever else runs on the machine. A missed
# target is marked MISSED; the script fails only when something crashes.
#
# Settings (environment): RECORDS (our runs, default 200000), WRK_SECONDS (default 5),
# PY_RECORDS (Python, default 5000), DOWN_RECORDS (default 1000000), BIG_RECORDS (records of
# 1 MB with the receiver down, default 20000), BATCH_RECORDS (the batch runs, default
# 1000000), CONNECTIONS (default
# "1 2"), METHOD (post or get, default post), PYTHON (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."

RECORDS=${RECORDS:-200000}
WRK_SECONDS=${WRK_SECONDS:-5}
PY_RECORDS=${PY_RECORDS:-5000}
DOWN_RECORDS=${DOWN_RECORDS:-1000000}
BIG_RECORDS=${BIG_RECORDS:-20000}
BATCH_RECORDS=${BATCH_RECORDS:-1000000}
CONNECTIONS=${CONNECTIONS:-"1 2"}
METHOD=${METHOD:-post}
PYTHON=${PYTHON:-python3}

started=$(date +%s)

install_missing() {
  local missing=()
  command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-core)
  command -v wrk >/dev/null 2>&1 || missing+=(wrk)
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
  [ ${#missing[@]} -eq 0 ] && return
  echo "installing ${missing[*]} (Debian packages; the nginx service is kept from starting)" >&2
  bash scripts/apt_install.sh "${missing[@]}"
}
install_missing
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)

echo "building (release)..." >&2
cargo build --release --quiet --example loadgen
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
bin="$target_dir/release/examples"

work=$(mktemp -d)
nginx_pid=
cleanup() {
  if [ -n "$nginx_pid" ]; then
    kill "$nginx_pid" 2>/dev/null || true
    wait "$nginx_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# ---- a CA and a certificate for 127.0.0.1 ----
(
  cd "$work"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=bench-ca -keyout ca.key -out ca.pem 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -subj /CN=127.0.0.1 -keyout leaf.key -out leaf.csr 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >leaf.ext
  openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
    -extfile leaf.ext -out leaf.pem 2>/dev/null
)

# ---- nginx on two free ports ----
free_port() { "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port=$(free_port)
tls_port=$(free_port)
bash scripts/nginx_return_200.sh "$work" "$port" "$tls_port" "$work/leaf.pem" "$work/leaf.key" \
  2>"$work/nginx.start" &
nginx_pid=$!
for _ in $(seq 200); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
  kill -0 "$nginx_pid" 2>/dev/null || { cat "$work/nginx.start" "$work/nginx.err" >&2; exit 1; }
  sleep 0.05
done
host="127.0.0.1:$port"
tls_host="127.0.0.1:$tls_port"
echo "receiver: nginx $("$nginx_bin" -v 2>&1 | sed 's|.*/||') on $host and (TLS) $tls_host" >&2

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

# wrk NAME URL CONNECTIONS: wrk sending the record's bytes; its rate as `delivered_per_s`, its
# CPU time per request as `cpu_ns_per_request`.
run "payload" "$bin/loadgen" --payload "$work/payload" --method "$METHOD"
cat >"$work/wrk.lua" <<EOF
local f = assert(io.open("$work/payload", "rb"))
local payload = f:read("*a")
f:close()
if "$METHOD" == "post" then
  wrk.method = "POST"
  wrk.body = payload
  wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
else
  wrk.path = payload
end
EOF
wrk_run() {
  local name=$1 url=$2 c=$3
  # bash's `time` gives wrk's CPU time (user and system), to set beside our worker's.
  run "$name.raw" bash -c 'TIMEFORMAT="cpu_s: %U %S"; time wrk "$@"' wrk \
    --latency -t "$c" -c "$c" -d "${WRK_SECONDS}s" -s "$work/wrk.lua" "$url"
  local rate errors requests cpu_ns
  rate=$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$work/$name.raw")
  errors=$(awk '/Non-2xx|Socket errors/ { print }' "$work/$name.raw")
  requests=$(awk '/ requests in / { print $1 }' "$work/$name.raw")
  cpu_ns=$(awk -v n="$requests" '/^cpu_s:/ { printf "%.0f", ($2 + $3) * 1e9 / (n > 0 ? n : 1) }' "$work/$name.raw.err")
  {
    echo "delivered_per_s: $rate"
    echo "cpu_ns_per_request: $cpu_ns"
    echo "latency_p50: $(awk '$1 == "50%" { print $2 }' "$work/$name.raw")"
    echo "latency_p99: $(awk '$1 == "99%" { print $2 }' "$work/$name.raw")"
    echo "errors: ${errors:-none}"
  } >"$work/$name"
}

run python "$PYTHON" scripts/bench_python.py "$host" "$PY_RECORDS" "$METHOD"
for c in $CONNECTIONS; do
  run "ours_http_$c" "$bin/loadgen" --host "$host" --records "$RECORDS" --connections "$c" --method "$METHOD"
  if [ "$c" = 1 ]; then
    # Right next to the run without one: the same load from whatever else runs.
    run ours_http_1_spool "$bin/loadgen" --host "$host" --records "$RECORDS" --connections 1 \
      --method "$METHOD" --spool "$work/spool-up"
  fi
  wrk_run "wrk_http_$c" "http://$host/" "$c"
  run "ours_https_$c" "$bin/loadgen" --host "$tls_host" --secure --ca "$work/ca.pem" \
    --records "$RECORDS" --connections "$c" --method "$METHOD"
  wrk_run "wrk_https_$c" "https://$tls_host/" "$c"
done
if [ "$METHOD" = post ]; then
  run ours_batch "$bin/loadgen" --host "$host" --records "$BATCH_RECORDS" --connections 1 --batch ndjson
  run ours_batch_gzip "$bin/loadgen" --host "$host" --records "$BATCH_RECORDS" --connections 1 --batch ndjson --gzip
fi
run down "$bin/loadgen" --down --records "$DOWN_RECORDS" --method "$METHOD"
run down_spool "$bin/loadgen" --down --records "$DOWN_RECORDS" --method "$METHOD" --spool "$work/spool-down"
run down_big "$bin/loadgen" --down --records "$BIG_RECORDS" --record-bytes 1000000 --method "$METHOD"

# ---- the table ----
py="$work/python"
echo
echo "== results (method $METHOD; $(nproc) cores; $(date -u +%Y-%m-%dT%H:%MZ); receiver nginx) =="
row() { printf '%-30s %5s %9s %13s %11s %11s %11s %8s %8s\n' "$@"; }
row run conns records delivered/s "call med" "call p99" "call max" "peak MiB" lost
row "python HTTPHandler" 1 "$(get records "$py")" "$(get delivered_per_s "$py")" \
  "$(get call_median_ns "$py") ns" "$(get call_p99_ns "$py") ns" "$(get call_max_ns "$py") ns" - "$(get errors "$py")"
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
for scheme in http https; do
  for c in $CONNECTIONS; do
    f="$work/ours_${scheme}_$c"
    w="$work/wrk_${scheme}_$c"
    row "http-logger $scheme://" "$c" "$(get sent "$f")" "$(get delivered_per_s "$f")" \
      "$(get call_median_ns "$f") ns" "$(get call_p99_ns "$f") ns" "$(get call_max_ns "$f") ns" \
      "$(mib "$(get peak_above_baseline_kib "$f")")" "$(($(get dropped "$f") + $(get failed "$f")))"
    row "wrk $scheme://" "$c" "${WRK_SECONDS}s" "$(get delivered_per_s "$w")" \
      "$(get latency_p50 "$w")" "$(get latency_p99 "$w")" - - "$(get errors "$w")"
  done
done
for b in batch batch_gzip; do
  f="$work/ours_$b"
  [ -f "$f" ] || continue
  row "http-logger NDJSON ${b#batch}" 1 "$(get sent "$f")" "$(get delivered_per_s "$f")" \
    "$(get call_median_ns "$f") ns" "$(get call_p99_ns "$f") ns" "$(get call_max_ns "$f") ns" \
    "$(mib "$(get peak_above_baseline_kib "$f")")" "$(($(get dropped "$f") + $(get failed "$f")))"
done
f="$work/ours_http_1_spool"
row "http-logger http://, spool" 1 "$(get sent "$f")" "$(get delivered_per_s "$f")" \
  "$(get call_median_ns "$f") ns" "$(get call_p99_ns "$f") ns" "$(get call_max_ns "$f") ns" \
  "$(mib "$(get peak_above_baseline_kib "$f")")" "$(($(get dropped "$f") + $(get failed "$f")))"
d="$work/down"
row "http-logger, receiver down" 1 "$(get logged "$d")" 0 \
  "$(get call_median_ns "$d") ns" "$(get call_p99_ns "$d") ns" "$(get call_max_ns "$d") ns" \
  "$(get peak_above_baseline_mib "$d")" "$(($(get dropped "$d") + $(get failed "$d")))"
ds="$work/down_spool"
row "http-logger, down, spool" 1 "$(get logged "$ds")" 0 \
  "$(get call_median_ns "$ds") ns" "$(get call_p99_ns "$ds") ns" "$(get call_max_ns "$ds") ns" \
  "$(get peak_above_baseline_mib "$ds")" "$(get dropped "$ds")"
echo "(call costs net of an empty timer pair: Instant $(get instant_pair_ns "$work/ours_http_1") ns," \
  "perf_counter_ns $(get perf_counter_pair_ns "$py") ns; wrk: request latency p50 and p99;" \
  "peak MiB: VmHWM above the baseline before the logger was built; our queue holds every record)"

# ---- the ratios ----
echo
verdict() { awk -v x="$1" -v op="$2" -v t="$3" 'BEGIN { ok = (op == "<=") ? x <= t : (op == ">=") ? x >= t : x < t; print ok ? "ok" : "MISSED" }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / (b > 0 ? b : 1) }'; }
line() { printf '%-58s %-30s %s\n' "$@"; }
ours_call=$(get call_median_ns "$work/ours_http_1")
py_call=$(get call_median_ns "$py")
py_rate=$(get delivered_per_s "$py")
inverse_call=$(awk -v a="$ours_call" -v b="$py_call" 'BEGIN { printf "%.0f", b / (a > 0 ? a : 1) }')
ratio_call=$(awk -v a="$ours_call" -v b="$py_call" 'BEGIN { printf "%.6f", a / b }')
line "median log! call, ours / Python's (http, connections 1)" \
  "$ours_call / $py_call ns = 1/$inverse_call" "target <= 1/1000: $(verdict "$ratio_call" '<=' 0.001)"
best_rate=0
for c in $CONNECTIONS; do
  rate=$(get delivered_per_s "$work/ours_http_$c")
  [ "$rate" -gt "$best_rate" ] && best_rate=$rate
done
r=$(awk -v a="$best_rate" -v b="$py_rate" 'BEGIN { printf "%.1f", a / b }')
line "delivery rate, ours (best http) / Python's" "$best_rate / $py_rate = ${r}x" \
  "target >= 25x: $(verdict "$r" '>=' 25)"
for scheme in http https; do
  target=0.90
  [ "$scheme" = https ] && target=0.80
  for c in $CONNECTIONS; do
    f="$work/ours_${scheme}_$c"
    ours=$(get delivered_per_s "$f")
    plain=$(get delivered_per_s "$work/wrk_${scheme}_$c")
    r=$(ratio "$ours" "$plain")
    note=
    [ "$(get all_sent "$f")" = true ] || note=" (not every record was sent: $(get sent "$f") of $RECORDS)"
    line "$scheme:// delivery, ours / wrk (connections $c)" "$ours / $plain = $r" \
      "target >= $target: $(verdict "$r" '>=' "$target")$note"
  done
done
single=$(get delivered_per_s "$work/ours_http_1")
for b in batch batch_gzip; do
  f="$work/ours_$b"
  [ -f "$f" ] || continue
  r=$(awk -v a="$(get delivered_per_s "$f")" -v b="$single" 'BEGIN { printf "%.1f", a / (b > 0 ? b : 1) }')
  line "${b/_/ + } delivery, ours / one record a request (connections 1)" \
    "$(get delivered_per_s "$f") / $single = ${r}x" "target >= 20x: $(verdict "$r" '>=' 20)"
done
echo "worker CPU per record: one record a request $(get worker_cpu_ns_per_record "$work/ours_http_1") ns," \
  "NDJSON batches $(get worker_cpu_ns_per_record "$work/ours_batch" 2>/dev/null || echo -) ns," \
  "with gzip $(get worker_cpu_ns_per_record "$work/ours_batch_gzip" 2>/dev/null || echo -) ns"
# Where the two cores are shared by nginx and the client, the rate follows the client's CPU
# time per request: ours encodes each record and frames and parses through ureq-proto, wrk
# sends the same bytes again.
for c in $CONNECTIONS; do
  echo "client CPU per request, http:// (connections $c): ours (worker)" \
    "$(get worker_cpu_ns_per_record "$work/ours_http_$c") ns, wrk $(get cpu_ns_per_request "$work/wrk_http_$c") ns"
done
down_mib=$(get peak_above_baseline_mib "$d")
big="$work/down_big"
big_mib=$(get peak_above_baseline_mib "$big")
line "peak memory above baseline, receiver down, $(get logged "$d") records" \
  "$down_mib MiB" "target < 64 MiB: $(verdict "$down_mib" '<' 64)"
line "peak memory above baseline, receiver down, $(get logged "$big") records of 1 MB" \
  "$big_mib MiB" "target < 128 MiB: $(verdict "$big_mib" '<' 128)"
spool_rate=$(get delivered_per_s "$work/ours_http_1_spool")
r=$(ratio "$spool_rate" "$single")
line "http:// delivery with a spool / without (connections 1)" "$spool_rate / $single = $r" \
  "target >= 0.90: $(verdict "$r" '>=' 0.90)"
echo "receiver down with a spool: $(get spooled "$ds") of $(get logged "$ds") records on disk at" \
  "$(get spooled_per_s "$ds") records/s (done $(get spool_done_s "$ds") s after the first call)," \
  "$(get dropped "$ds") dropped (past the hand-over's queue_max_bytes while the disk caught up);" \
  "log! call median $(get call_median_ns "$ds") ns vs $(get call_median_ns "$d") ns without a spool"
echo "receiver down: logged $(get logged "$d"), sent $(get sent "$d"), dropped $(get dropped "$d")," \
  "failed $(get failed "$d"), queued $(get queued "$d"), retried $(get retried "$d"); shutdown took $(get shutdown_s "$d") s"
echo "took $(($(date +%s) - started)) s"
