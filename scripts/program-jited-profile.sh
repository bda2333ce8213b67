#!/usr/bin/env bash
# The check program's JIT'd instructions with the cpu-clock samples each took (BENCHMARKS.md):
# like program-profile.sh, but by machine instruction rather than source line. Runs a scenario
# loop under `capprof record` pinned to CPU 1 and samples that CPU with perf. As root, after
# `cargo build --release -p capprof -p capprof-tests`; CAPPROF_BENCH_BIN=PATH for another build.
#   scripts/program-jited-profile.sh setuid-loop|mmap-loop [SECONDS] > annotated.txt
set -euo pipefail
cd "$(dirname "$0")/.."
loop=${1:?setuid-loop or mmap-loop}
secs=${2:-4}
bin=${CAPPROF_BENCH_BIN:-./target/release/capprof}
command -v perf >/dev/null || apt-get install -y linux-perf >/dev/null
command -v bpftool >/dev/null || apt-get install -y bpftool >/dev/null
command -v objdump >/dev/null || apt-get install -y binutils >/dev/null
out=$(mktemp -d)
trap 'pkill -f "scenario $loop" || true; rm -rf "$out"' EXIT
"$bin" record -f json -o "$out/profile.json" -- taskset -c 1 ./target/release/scenario "$loop" 100000000 >/dev/null 2>&1 &
sleep 2
id=$(bpftool prog show | awk -F: '/raw_tracepoint +name cap_capable$|raw_tracepoint  name cap_capable /{print $1}' | tail -1)
perf record -q -e cpu-clock -F 25000 -C 1 -o "$out/perf.data" -- sleep "$secs" >/dev/null 2>&1
perf script -i "$out/perf.data" -F ip,sym 2>/dev/null | awk '/bpf_prog_/ && !/floor/ {print $1}' > "$out/ips.txt"
/usr/bin/python3 scripts/program-jited.py "$id" "$out/ips.txt"
