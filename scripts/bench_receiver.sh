#!/usr/bin/env bash
# How many requests a second the companion receiver (examples/receiver.rs --quiet) takes, with
# wrk sending the bytes of a real record (`loadgen --payload`), at 1, 2 and 64 connections;
# beside nginx (`return 200`) as the reference on the same machine in the same run, and,
# with BASELINE_REV set (a git revision), beside the receiver of that revision built in a
# scratch worktree: the ratio new / baseline is the figure to watch.
#
# One command from a clone: `bash scripts/bench_receiver.sh` (with or without
# CARGO_TARGET_DIR); `BASELINE_REV=<rev> bash scripts/bench_receiver.sh` to compare.
# nginx-core and wrk come from Debian's packages when absent (the service kept from starting).
# Settings: WRK_SECONDS (default 3), REPEAT (rounds, each figure their median; default 3), CONNECTIONS (default "1 2 64"), PYTHON (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."

WRK_SECONDS=${WRK_SECONDS:-3}
REPEAT=${REPEAT:-3}
CONNECTIONS=${CONNECTIONS:-"1 2 64"}
PYTHON=${PYTHON:-python3}
BASELINE_REV=${BASELINE_REV:-}

if ! command -v wrk >/dev/null 2>&1 || ! { command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; }; then
  echo "installing nginx-core and wrk (Debian packages; the nginx service is kept from starting)" >&2
  bash scripts/apt_install.sh nginx-core wrk
fi

echo "building (release)..." >&2
cargo build --release --quiet --example receiver --example loadgen
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
bin="$target_dir/release/examples"

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -d "$work/base" ] && git worktree remove --force "$work/base" >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT

receivers=("receiver=$bin/receiver")
declare -A pid_of=()
tick=$(getconf CLK_TCK)
# cpu_ticks NAME: the CPU time (user and system, all threads) the receiver NAME has used.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/${pid_of[$1]}/stat"; }
if [ -n "$BASELINE_REV" ]; then
  echo "building the receiver of $BASELINE_REV (release, in a scratch worktree)..." >&2
  git worktree add --detach --quiet "$work/base" "$BASELINE_REV"
  (cd "$work/base" && CARGO_TARGET_DIR="$work/base-target" cargo build --release --quiet --example receiver)
  receivers+=("baseline=$work/base-target/release/examples/receiver")
fi

# start NAME COMMAND...: starts a receiver that prints `listening on http://HOST:PORT` on
# stderr; sets $started_host.
start() {
  local name=$1
  shift
  : >"$work/$name.err"
  "$@" >/dev/null 2>"$work/$name.err" &
  pids+=($!)
  pid_of[$name]=$!
  for _ in $(seq 200); do
    started_host=$(sed -n 's|^listening on http://||p' "$work/$name.err" | head -n 1)
    [ -n "$started_host" ] && return
    sleep 0.05
  done
  echo "bench: $name did not start:" >&2
  cat "$work/$name.err" >&2
  exit 1
}

free_port() { "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port=$(free_port)
bash scripts/nginx_return_200.sh "$work" "$port" 2>"$work/nginx.start" &
pids+=($!)
for _ in $(seq 200); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.05
done
hosts=("nginx=127.0.0.1:$port")
for entry in "${receivers[@]}"; do
  start "${entry%%=*}" "${entry#*=}" --quiet --port 0
  hosts+=("${entry%%=*}=$started_host")
done

"$bin/loadgen" --payload "$work/payload" --method post >/dev/null
cat >"$work/wrk.lua" <<LUA
local f = assert(io.open("$work/payload", "rb"))
wrk.body = f:read("*a")
f:close()
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
LUA

echo
echo "== receiver requests/s (wrk, POST of one record, median of $REPEAT runs of ${WRK_SECONDS}s; $(nproc) cores; $(date -u +%Y-%m-%dT%H:%MZ)) =="
printf '%-12s' connections
for entry in "${hosts[@]}"; do printf '%12s' "${entry%%=*}"; done
[ -n "$BASELINE_REV" ] && printf '%22s' "receiver / baseline"
printf '%20s\n' "receiver / nginx"
# median "V V V ...": the median of the values.
median() { tr ' ' '\n' <<<"$1" | grep . | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
cpu_lines=()
for c in $CONNECTIONS; do
  printf '%-12s' "$c"
  declare -A runs=() cpu=()
  threads=$c
  [ "$threads" -gt 2 ] && threads=2
  # REPEAT rounds, each running every receiver once, in turn: each figure is the median of
  # its rounds, so a burst of load from elsewhere hits one round, not one receiver.
  for _ in $(seq "$REPEAT"); do
    for entry in "${hosts[@]}"; do
      name=${entry%%=*}
      before=
      [ -n "${pid_of[$name]:-}" ] && before=$(cpu_ticks "$name")
      out=$(wrk -t "$threads" -c "$c" -d "${WRK_SECONDS}s" -s "$work/wrk.lua" "http://${entry#*=}/")
      runs[$name]+="$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' <<<"$out") "
      if [ -n "$before" ]; then
        requests=$(awk '/ requests in / { print $1 }' <<<"$out")
        cpu[$name]+="$(awk -v t="$(($(cpu_ticks "$name") - before))" -v hz="$tick" -v n="$requests" \
          'BEGIN { printf "%.1f", t / hz * 1e6 / (n > 0 ? n : 1) }') "
      fi
      if grep -q 'Non-2xx\|Socket errors' <<<"$out"; then
        echo "bench: errors against $name: $(grep 'Non-2xx\|Socket errors' <<<"$out")" >&2
      fi
    done
  done
  declare -A rate=()
  for entry in "${hosts[@]}"; do
    name=${entry%%=*}
    rate[$name]=$(median "${runs[$name]}")
    printf '%12s' "${rate[$name]}"
  done
  ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / (b > 0 ? b : 1) }'; }
  [ -n "$BASELINE_REV" ] && printf '%22s' "$(ratio "${rate[receiver]}" "${rate[baseline]}")"
  printf '%20s\n' "$(ratio "${rate[receiver]}" "${rate[nginx]}")"
  cpu_line=
  for name in "${!cpu[@]}"; do
    cpu_line+="$name $(median "${cpu[$name]}") us, "
  done
  cpu_lines+=("$c connections: ${cpu_line%, }")
  unset rate runs cpu
done
# What each request cost the receiver's process in CPU time (user and system, all threads), the
# median of the rounds: with two cores shared by wrk and the receiver, the rate follows it.
echo
echo "receiver CPU per request (median):"
for line in "${cpu_lines[@]}"; do echo "  $line"; done
