#!/bin/bash
# What the daemon costs every system call on the host: a getppid() loop (no capability check)
# timed with nothing attached, with `capprof daemon` (network-use hooks on) and with
# `capprof daemon --no-network-hooks`, round by round. Build first:
#   cargo build --release -p capprof -p capprof-tests
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
C=${C:-$ROOT/target/release/capprof}
S=${S:-$ROOT/target/release/scenario}
D=$(mktemp -d)
med() { "$S" timed-loop getppid 3 | awk '{print $3}' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for round in 1 2 3 4 5 6 7 8 9; do
  none=$(med)
  "$C" daemon --socket $D/a.sock --state $D/a.redb 2>/dev/null & P=$!; sleep 4
  hooks=$(med); kill $P; wait $P 2>/dev/null
  "$C" daemon --detach --socket $D/a.sock --state $D/a.redb 2>/dev/null
  "$C" daemon --no-network-hooks --socket $D/b.sock --state $D/b.redb 2>/dev/null & P=$!; sleep 4
  nohooks=$(med); kill $P; wait $P 2>/dev/null
  "$C" daemon --detach --socket $D/b.sock --state $D/b.redb 2>/dev/null
  echo "round $round: nothing $none ns, daemon $hooks ns, daemon --no-network-hooks $nohooks ns"
done
rm -rf $D
