#!/usr/bin/env bash
# Installs Debian packages (`bash scripts/apt_install.sh nginx-core wrk`), with
# /usr/sbin/policy-rc.d answering 101 meanwhile so that no package's service starts (the file is
# removed afterwards unless it was there before). Uses sudo when not root. Used by .ci/run and
# the bench scripts for what they need and the machine lacks.
set -euo pipefail
[ "$#" -gt 0 ] || exit 0
sudo=
[ "$(id -u)" -eq 0 ] || sudo=sudo
rc=/usr/sbin/policy-rc.d
had_rc=false
[ -e "$rc" ] && had_rc=true
if ! $had_rc; then
  printf '#!/bin/sh\nexit 101\n' | $sudo tee "$rc" >/dev/null
  $sudo chmod +x "$rc"
fi
status=0
{ $sudo apt-get update -qq &&
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null; } || status=$?
$had_rc || $sudo rm -f "$rc"
if [ "$status" -ne 0 ]; then
  echo "apt_install: cannot install $* (apt-get status $status)" >&2
  exit "$status"
fi
