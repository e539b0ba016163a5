#!/usr/bin/env bash
# README set-up command 1 as a new user runs it: a fresh clone of this repository in a temporary folder, a new
# virtualenv (pip's cache as it is: "warm" when packages were downloaded before), an empty numba cache; every
# output line stamped with the seconds since the start ("@@installed" marks the end of pip install).
#   bash benchmarks/readme_command1.sh > readme1.log
set -u
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
git clone -q "$repo" "$work/r1" && cd "$work/r1" || exit 1
export NUMBA_CACHE_DIR="$work/numba"
start=$(date +%s.%N)
( python3 -m venv .venv && .venv/bin/pip install -q -c constraints.txt -e . 2>&1 | grep -v WARNING; echo "@@installed"
  COLUMNS=80 .venv/bin/forge evolve 2>&1; echo "@@rc=$?" ) |
  while IFS= read -r line; do printf '%7.1f %s\n' "$(echo "$(date +%s.%N) - $start" | bc)" "$line"; done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
rm -rf "$work"
