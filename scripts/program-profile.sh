#!/usr/bin/env bash
# Where the check program spends its time (BENCHMARKS.md): runs a scenario loop under
# `capprof record` pinned to CPU 1, samples that CPU with perf (cpu-clock: this VM has no PMU),
# and maps the samples inside the JIT'd program to source lines through the program's jited
# line info, or with --jited to each JIT'd machine instruction (program-jited.py). As root,
# after `cargo build --release -p capprof -p capprof-tests`; CAPPROF_BENCH_BIN=PATH for another
# build.
#   scripts/program-profile.sh [--jited] setuid-loop|mmap-loop [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
jited=0
if [ "${1:-}" = --jited ]; then jited=1; shift; fi
loop=${1:?setuid-loop or mmap-loop}
secs=${2:-5}
bin=${CAPPROF_BENCH_BIN:-./target/release/capprof}
command -v perf >/dev/null || apt-get install -y linux-perf >/dev/null
command -v bpftool >/dev/null || apt-get install -y bpftool >/dev/null
[ "$jited" = 0 ] || command -v objdump >/dev/null || apt-get install -y binutils >/dev/null
out=$(mktemp -d)
trap 'pkill -f "scenario $loop" || true; rm -rf "$out"' EXIT
"$bin" record -f json -o "$out/profile.json" -- taskset -c 1 ./target/release/scenario "$loop" 100000000 >/dev/null 2>&1 &
sleep 2
id=$(bpftool prog show | awk -F: '/raw_tracepoint +name cap_capable$|raw_tracepoint  name cap_capable /{print $1}' | tail -1)
[ "$jited" = 1 ] || bpftool prog dump xlated id "$id" linum > "$out/xlated.txt"
perf record -q -e cpu-clock -F 25000 -C 1 -o "$out/perf.data" -- sleep "$secs" >/dev/null 2>&1
perf script -i "$out/perf.data" -F ip,sym 2>/dev/null | awk '/bpf_prog_/ && !/floor/ {print $1}' > "$out/ips.txt"
if [ "$jited" = 1 ]; then
    /usr/bin/python3 scripts/program-jited.py "$id" "$out/ips.txt"
else
    python3 scripts/program-profile.py "$id" "$out/xlated.txt" "$out/ips.txt"
fi
