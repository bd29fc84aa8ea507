#!/usr/bin/env bash
# compare-db-bench.sh -- run kvfs-bench and RocksDB's db_bench back to back on this machine
# with identical parameters and print a side-by-side table.
#
#   tools/compare-db-bench.sh [--kvfs-bench PATH] [--num N] [--sync-num N] [--zstd]
#                             [--dir PARENT] [--keep]
#
# What is run (the same flags are given to both tools; kvfs-bench speaks db_bench's flags):
#   1. async writes, WAL on, no per-write sync, one thread, --num=N (default 1000000),
#      --key_size=16 --value_size=100, compression none:
#         fillseq, readrandom, fillrandom, overwrite, readrandom
#      (each readrandom reads the store the preceding fills left; fill* start fresh).
#   2. with --zstd: the same again with --compression_type=zstd for both.
#   3. sync writes (--sync=1, fillrandom) with --threads=1 and --threads=8. These use a
#      smaller total, --sync-num (default 20000) operations: one thread does all of them,
#      and with 8 threads each does sync-num/8 (db_bench's --num is per thread), so both runs
#      write the same number of keys. The 8-thread/1-thread ops/s ratio shows how well
#      concurrent sync writers share fsyncs (group commit).
# Both stores live in fresh directories under one temporary directory (same filesystem);
# it is removed on exit unless --keep is given. db_bench comes from Debian's rocksdb-tools,
# installed with apt-get when missing (needs root).
set -euo pipefail

NUM=1000000
SYNC_NUM=20000
ZSTD=0
KEEP=0
PARENT=${TMPDIR:-/tmp}
KVFS_BENCH=

usage() {
    sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'
}

while [[ $# -gt 0 ]]; do
    case "$1" in
    --kvfs-bench) KVFS_BENCH=$2; shift 2 ;;
    --kvfs-bench=*) KVFS_BENCH=${1#*=}; shift ;;
    --num) NUM=$2; shift 2 ;;
    --num=*) NUM=${1#*=}; shift ;;
    --sync-num) SYNC_NUM=$2; shift 2 ;;
    --sync-num=*) SYNC_NUM=${1#*=}; shift ;;
    --zstd) ZSTD=1; shift ;;
    --dir) PARENT=$2; shift 2 ;;
    --dir=*) PARENT=${1#*=}; shift ;;
    --keep) KEEP=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "compare-db-bench: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
for v in NUM SYNC_NUM; do
    if ! [[ ${!v} =~ ^[1-9][0-9]*$ ]]; then
        echo "compare-db-bench: --${v,,} must be a positive integer" >&2
        exit 2
    fi
done
if ((SYNC_NUM < 8)); then
    echo "compare-db-bench: --sync-num must be at least 8" >&2
    exit 2
fi

# ---- find the tools ---------------------------------------------------------------------
here=$(cd "$(dirname "$0")" && pwd)
if [[ -z "$KVFS_BENCH" ]]; then
    for c in "${KVFS_BIN_DIR:-}/kvfs-bench" "$here/../build/kvfs-bench" "$(command -v kvfs-bench || true)"; do
        if [[ -n "$c" && -x "$c" && ! -d "$c" ]]; then KVFS_BENCH=$c; break; fi
    done
fi
if [[ -z "$KVFS_BENCH" || ! -x "$KVFS_BENCH" ]]; then
    echo "compare-db-bench: kvfs-bench not found; build it and pass --kvfs-bench PATH" >&2
    exit 1
fi
if ! command -v db_bench >/dev/null 2>&1; then
    if [[ $(id -u) -ne 0 ]]; then
        echo "compare-db-bench: db_bench missing; install it: apt-get install rocksdb-tools" >&2
        exit 1
    fi
    echo "compare-db-bench: installing rocksdb-tools for db_bench" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y rocksdb-tools >/dev/null ||
        { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y rocksdb-tools >/dev/null; }
fi
DB_BENCH=$(command -v db_bench)

WORK=$(mktemp -d "$PARENT/kvfs-compare.XXXXXX")
cleanup() {
    if [[ $KEEP -eq 1 ]]; then
        echo "compare-db-bench: kept $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

# run_one TOOL LABEL ARGS...: runs a benchmark tool with a fresh store; leaves its stdout in
# $WORK/LABEL.out and prints nothing on success; on failure prints its stderr and exits.
run_one() {
    local tool=$1 label=$2
    shift 2
    local db="$WORK/db-$label"
    rm -rf "$db"
    echo "  running $label ..." >&2
    if ! "$tool" "$@" --db="$db" --use_existing_db=0 --histogram=1 \
        >"$WORK/$label.out" 2>"$WORK/$label.err"; then
        echo "compare-db-bench: $label failed:" >&2
        tail -n 20 "$WORK/$label.err" >&2
        exit 1
    fi
    rm -rf "$db"
}

# results FILE: one line per benchmark result: "label ops_per_sec p99_micros", where a
# readrandom/readseq label names the write benchmark before it.
results() {
    awk '
        / micros\/op / {
            name = $1; ops = "?"
            for (i = 1; i <= NF; i++) if ($i == "ops/sec" || $i == "ops/sec;") { ops = $(i - 1); break }
            label = name
            if (name ~ /^read/ && last_write != "") label = name "(after-" last_write ")"
            else if (name !~ /^read/) last_write = name
            n++; labels[n] = label; opss[n] = ops; p99s[n] = "?"
            next
        }
        /^Percentiles:/ && n > 0 {
            for (i = 1; i <= NF; i++) if ($i == "P99:") p99s[n] = $(i + 1)
        }
        END { for (i = 1; i <= n; i++) print labels[i], opss[i], p99s[i] }
    ' "$1"
}

# table KVFS_FILE ROCKS_FILE: prints the side-by-side rows of two result files.
table() {
    paste -d'|' <(results "$1") <(results "$2") | awk -F'|' '{
        split($1, k, " "); split($2, r, " ")
        if (k[1] != r[1]) { printf "%-34s (mismatched benchmark order: %s)\n", k[1], r[1]; next }
        ratio = (r[2] + 0 > 0) ? sprintf("%.2f", k[2] / r[2]) : "?"
        printf "%-34s %14s %14s %8s %12s %12s\n", k[1], k[2], r[2], ratio, k[3], r[3]
    }'
}

header() {
    printf '\n%s\n' "$1"
    printf "%-34s %14s %14s %8s %12s %12s\n" benchmark "kvfs ops/s" "rocksdb ops/s" ratio \
        "kvfs p99us" "rocks p99us"
    printf '%.0s-' {1..99}
    printf '\n'
}

COMMON=(--key_size=16 --value_size=100 --compression_ratio=0.5 --disable_wal=0
    --cache_size=67108864 --write_buffer_size=67108864 --seed=301)
ASYNC=(--benchmarks=fillseq,readrandom,fillrandom,overwrite,readrandom --num="$NUM"
    --threads=1 --sync=0)

echo "compare-db-bench: kvfs-bench=$KVFS_BENCH db_bench=$DB_BENCH" >&2
echo "compare-db-bench: work dir $WORK ($(df -PT "$WORK" | awk 'NR==2 {print $2 " on " $7}'))" >&2

comps=(none)
[[ $ZSTD -eq 1 ]] && comps+=(zstd)
for comp in "${comps[@]}"; do
    run_one "$KVFS_BENCH" "kvfs-async-$comp" "${COMMON[@]}" "${ASYNC[@]}" --compression_type="$comp"
    run_one "$DB_BENCH" "rocks-async-$comp" "${COMMON[@]}" "${ASYNC[@]}" --compression_type="$comp"
done

per8=$((SYNC_NUM / 8))
for t in 1 8; do
    n=$SYNC_NUM
    [[ $t -eq 8 ]] && n=$per8
    SYNC=(--benchmarks=fillrandom --num="$n" --threads="$t" --sync=1 --compression_type=none)
    run_one "$KVFS_BENCH" "kvfs-sync-t$t" "${COMMON[@]}" "${SYNC[@]}"
    run_one "$DB_BENCH" "rocks-sync-t$t" "${COMMON[@]}" "${SYNC[@]}"
done

echo
echo "kvfs-bench vs RocksDB db_bench $("$DB_BENCH" --version 2>/dev/null | head -n1 || true)"
if grep -q 'Assertions are enabled' "$WORK"/rocks-*.out "$WORK"/rocks-*.err 2>/dev/null; then
    echo "note: this db_bench build has assertions enabled (db_bench warns it runs slower)"
fi
echo "machine: $(nproc) CPUs, $(uname -r); ratio = kvfs ops/s / rocksdb ops/s (higher is better for kvfs)"
for comp in "${comps[@]}"; do
    header "async writes (WAL on, no per-write sync), --num=$NUM, 1 thread, compression $comp"
    table "$WORK/kvfs-async-$comp.out" "$WORK/rocks-async-$comp.out"
done

header "sync writes (--sync=1 fillrandom, compression none): $SYNC_NUM writes in total; with 8 threads each does $per8"
for t in 1 8; do
    table "$WORK/kvfs-sync-t$t.out" "$WORK/rocks-sync-t$t.out" | sed "s/^fillrandom  /fillrandom t=$t/"
done
k1=$(results "$WORK/kvfs-sync-t1.out" | awk 'NR==1 {print $2}')
k8=$(results "$WORK/kvfs-sync-t8.out" | awk 'NR==1 {print $2}')
r1=$(results "$WORK/rocks-sync-t1.out" | awk 'NR==1 {print $2}')
r8=$(results "$WORK/rocks-sync-t8.out" | awk 'NR==1 {print $2}')
awk -v k1="$k1" -v k8="$k8" -v r1="$r1" -v r8="$r8" 'BEGIN {
    printf "%-34s %14s %14s\n", "sync 8-thread/1-thread ratio",
        (k1 > 0 ? sprintf("%.2f", k8 / k1) : "?"), (r1 > 0 ? sprintf("%.2f", r8 / r1) : "?")
}'
