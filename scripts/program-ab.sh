#!/usr/bin/env bash
# A/B of the check program's run time between capprof builds, against its floor (BENCHMARKS.md).
# Each round runs the empty program in the check program's place (CAPPROF_BENCH_FLOOR=1, with
# the first build), then each build, taking turns going first, on the same loop pinned to CPU 1
# (kernel BPF statistics, `record --bpf-stats`); prints every round, then per column the median,
# the median of the per-round ratios to the floor, and the fastest, and each build's paired
# per-round ratio to the first build. As root, after
# `cargo build --release -p capprof -p capprof-tests`.
#   scripts/program-ab.sh ROUNDS setuid-loop|mmap-loop ITERATIONS BUILD [BUILD...]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:?rounds}; loop=${2:?loop}; n=${3:?iterations}; shift 3
[ $# -ge 1 ] || { echo "give at least one capprof binary" >&2; exit 2; }
scenario=./target/release/scenario
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
mean_ns() { # BINARY FLOOR(0|1)
    if [ "$2" = 1 ]; then
        CAPPROF_BENCH_FLOOR=1 "$1" record --bpf-stats -f json -o "$out/p.json" -- taskset -c 1 "$scenario" "$loop" "$n" >/dev/null 2>&1
    else
        "$1" record --bpf-stats -f json -o "$out/p.json" -- taskset -c 1 "$scenario" "$loop" "$n" >/dev/null 2>&1
    fi
    /usr/bin/python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['backend']['program']['mean_ns'])" "$out/p.json"
}
builds=("$@")
for r in $(seq "$rounds"); do
    line="floor=$(mean_ns "$1" 1)"
    # The builds take turns going first: a run right after another runs faster here (about
    # 7 % on setuid-loop), which a fixed order would credit to the later build.
    ns=()
    for k in $(seq 0 $((${#builds[@]} - 1))); do
        i=$(( (k + r) % ${#builds[@]} ))
        ns[$i]=$(mean_ns "${builds[$i]}" 0)
    done
    for i in $(seq 0 $((${#builds[@]} - 1))); do
        line="$line build$((i + 1))=${ns[$i]}"
    done
    echo "$line"
done | tee "$out/rounds.txt"
/usr/bin/python3 - "$out/rounds.txt" <<'PY'
import statistics, sys
rows = [dict(kv.split("=") for kv in l.split()) for l in open(sys.argv[1]) if l.strip()]
for k in rows[0]:
    vals = [float(r[k]) for r in rows]
    ratios = [float(r[k]) / float(r["floor"]) for r in rows]
    print(f"{k}: median {statistics.median(vals):.1f} ns, median ratio to the floor {statistics.median(ratios):.2f}, fastest {min(vals):.1f} ns")
for k in list(rows[0])[2:]:
    paired = [float(r[k]) / float(r["build1"]) for r in rows]
    print(f"{k} / build1, paired by round: median {statistics.median(paired):.3f}, faster in {sum(p < 1 for p in paired)} of {len(paired)} rounds")
PY
