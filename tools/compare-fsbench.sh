#!/usr/bin/env bash
# compare-fsbench.sh -- runs tools/fsbench on kvfs and on libfuse's own passthrough_ll example
# mounted over a local ext4 directory, alternating (A B A B ...), and prints the ratio
# kvfs / passthrough_ll for every phase, plus the disk's own fdatasync-per-4-KiB-write rate
# measured directly on the ext4 directory (the ceiling for kvfs's fsync'd-create rate).
#
#   tools/compare-fsbench.sh [-r ROUNDS] [-k] [-o PT_OPTS] [BUILD_DIR] [-- FSBENCH_ARGS...]
#
#   BUILD_DIR   the CMake build dir holding fs/kvfs (default: $KVFS_BIN_DIR, else ./build)
#   -r ROUNDS   alternating rounds (default 2: passthrough, kvfs, passthrough, kvfs)
#   -k          keep the work directory (logs, raw outputs) for inspection
#   -o PT_OPTS  more mount options for passthrough_ll, e.g. -o default_permissions: the kernel
#               then checks permissions for it as it does for kvfs (on by default there), which
#               costs a GETATTR of the parent directory before each create, unlink and rename
#   FSBENCH_ARGS  passed to every fsbench run (e.g. -- -n 2000 -m 64 for a quick run)
#
# Setup: passthrough_ll.c comes from Debian's libfuse3-dev (found with dpkg -L) and is compiled
# with gcc $(pkg-config --cflags --libs fuse3). The ext4 directory is a directory on / when / is
# ext4 (stat -f reports ext2/ext3), else a 4 GiB ext4 image (mkfs.ext4 on a loop file, needs
# root). The kvfs data directory, the passthrough_ll source directory and the raw fdatasync
# measurement all live on that same ext4. Both daemons run with -f in the background so their
# pids are known; an EXIT trap always unmounts both (fusermount3 -u, then umount -l), stops
# the daemons by pid and detaches the loop device.
# Values: each phase's figure per filesystem is the median over the rounds; ratio = kvfs value
# / passthrough value for rates; for dirrename and bigunlink (seconds, lower is better) the
# ratio printed is passthrough seconds / kvfs seconds, so > 1 always means kvfs is faster. The
# disk's fdatasync rate is measured right before and right after each kvfs round (it drifts over
# minutes on a shared machine); fsynccreate's kvfs/disk is the median of the rounds' ratios, each
# against the mean of its two disk measurements.
set -uo pipefail

ROUNDS=2
KEEP=
PT_OPTS=
while getopts "r:ko:h" opt; do
    case $opt in
    r) ROUNDS=$OPTARG ;;
    k) KEEP=1 ;;
    o) PT_OPTS=$OPTARG ;;
    h) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "usage: $0 [-r ROUNDS] [-k] [-o PT_OPTS] [BUILD_DIR] [-- FSBENCH_ARGS...]" >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
BUILD=${KVFS_BIN_DIR:-build}
if [[ $# -gt 0 && $1 != -- ]]; then BUILD=$1; shift; fi
[[ ${1:-} == -- ]] && shift
FSB_ARGS=("$@")
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=$(cd "$BUILD" 2>/dev/null && pwd) || { echo "compare-fsbench: no build dir '$BUILD'" >&2; exit 2; }
KVFS=$BUILD/fs/kvfs
[[ -x $KVFS ]] || { echo "compare-fsbench: $KVFS not built (cmake --build $BUILD)" >&2; exit 2; }
[[ -c /dev/fuse ]] || { echo "compare-fsbench: /dev/fuse is missing" >&2; exit 2; }

W=$(mktemp -d "${TMPDIR:-/tmp}/compare-fsbench.XXXXXX") || exit 2
LOOPDEV=
EXT=
PT_PID=
KV_PID=
cleanup() {
    local m p
    trap - EXIT
    cd / || true
    for m in "$W/pt-mnt" "$W/kvfs-mnt"; do
        if grep -qF " $m " /proc/mounts; then
            fusermount3 -u "$m" 2>/dev/null || fusermount3 -u -z "$m" 2>/dev/null || umount -l "$m"
        fi
    done
    for p in $PT_PID $KV_PID; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$p" 2>/dev/null && kill -9 "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    if [[ -n $LOOPDEV ]]; then
        umount "$W/ext4" 2>/dev/null || umount -l "$W/ext4"
        losetup -d "$LOOPDEV" 2>/dev/null
    fi
    if grep -qF " $W/" /proc/mounts; then
        echo "compare-fsbench: WARNING: something is still mounted below $W" >&2
    elif [[ -z $KEEP ]]; then
        rm -rf "$W"
    else
        echo "compare-fsbench: kept $W"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
die() { echo "compare-fsbench: $*" >&2; exit 1; }

# ---- fsbench and passthrough_ll binaries ----------------------------------------------------
FSBENCH=
for c in "$BUILD/fsbench" "$BUILD/tools/fsbench"; do [[ -x $c ]] && FSBENCH=$c && break; done
if [[ -z $FSBENCH ]]; then
    FSBENCH=$W/fsbench
    gcc -std=c11 -O2 -Wall -Wextra -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -o "$FSBENCH" \
        "$SRC/tools/fsbench.c" || die "cannot compile tools/fsbench.c"
fi
PT_SRC=$(dpkg -L libfuse3-dev 2>/dev/null | grep '/passthrough_ll\.c$' | head -1)
[[ -n $PT_SRC && -f $PT_SRC ]] || die "passthrough_ll.c not found (apt-get install libfuse3-dev)"
# shellcheck disable=SC2046
gcc -O2 -Wall -D_GNU_SOURCE -I"$(dirname "$PT_SRC")" -o "$W/passthrough_ll" "$PT_SRC" \
    $(pkg-config --cflags --libs fuse3) || die "cannot compile $PT_SRC"

# ---- the local ext4 directory ------------------------------------------------------------------
if [[ $(stat -f -c %T "$W") == ext2/ext3 ]]; then
    EXT=$W/ext4-dir
    mkdir -p "$EXT"
    EXT_DESC="directory on the ext4 filesystem holding $W ($(df --output=source "$W" | tail -1))"
else
    [[ $(id -u) -eq 0 ]] || die "$W is not on ext4 and making an ext4 loop image needs root"
    truncate -s 4G "$W/ext4.img"
    mkfs.ext4 -q -F "$W/ext4.img" || die "mkfs.ext4 failed"
    mkdir -p "$W/ext4"
    LOOPDEV=$(losetup --find --show "$W/ext4.img") || die "losetup failed"
    mount "$LOOPDEV" "$W/ext4" || die "mount of the ext4 image failed"
    EXT=$W/ext4/bench
    mkdir -p "$EXT"
    EXT_DESC="4 GiB ext4 image on $LOOPDEV (the work dir's filesystem is $(stat -f -c %T "$W"))"
fi
mkdir -p "$EXT/pt-src" "$EXT/kvfs-data" "$EXT/raw" "$W/pt-mnt" "$W/kvfs-mnt"

# wait_mount DIR PID: waits up to 30 s for DIR to be a mount served by the live PID.
wait_mount() {
    local i
    for i in $(seq 300); do
        grep -qF " $1 fuse" /proc/mounts && stat "$1" >/dev/null 2>&1 && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}
"$W/passthrough_ll" -f -o source="$EXT/pt-src${PT_OPTS:+,$PT_OPTS}" "$W/pt-mnt" >"$W/pt.log" 2>&1 &
PT_PID=$!
wait_mount "$W/pt-mnt" $PT_PID || die "passthrough_ll did not mount: $(tail -3 "$W/pt.log")"
"$KVFS" -f -o data="$EXT/kvfs-data" "$W/kvfs-mnt" >"$W/kvfs.log" 2>&1 &
KV_PID=$!
wait_mount "$W/kvfs-mnt" $KV_PID || die "kvfs did not mount: $(tail -3 "$W/kvfs.log")"

echo "# compare-fsbench $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -r), $(nproc) CPUs"
echo "# ext4: $EXT_DESC"
echo "# passthrough_ll: $PT_SRC, mounted with: passthrough_ll -f -o source=$EXT/pt-src${PT_OPTS:+,$PT_OPTS} MNT"
echo "# kvfs: $KVFS -f -o data=$EXT/kvfs-data MNT ($(git -C "$SRC" rev-parse --short HEAD 2>/dev/null || echo 'no commit'))"
echo "# fsbench: $FSBENCH ${FSB_ARGS[*]:-(defaults)}; $ROUNDS alternating rounds"

# ---- alternating rounds; the disk's own fdatasync rate just before and after each kvfs round --
disk_rate() {
    "$FSBENCH" -p fdatasync "$EXT/raw" >"$1" || die "fsbench fdatasync on $EXT/raw failed"
}
for ((r = 1; r <= ROUNDS; r++)); do
    for fs in pt kvfs; do
        echo "# round $r: $fs" >&2
        [[ $fs == kvfs ]] && disk_rate "$W/disk.$r.before"
        "$FSBENCH" "${FSB_ARGS[@]}" "$W/$fs-mnt" >"$W/$fs.$r.out" 2>"$W/$fs.$r.err" \
            || die "fsbench on $fs failed in round $r: $(cat "$W/$fs.$r.err")"
        [[ $fs == kvfs ]] && disk_rate "$W/disk.$r.after"
        kill -0 "$([[ $fs == pt ]] && echo $PT_PID || echo $KV_PID)" 2>/dev/null \
            || die "the $fs daemon died during round $r"
    done
done

# ---- report --------------------------------------------------------------------------------------
"${PYTHON:-python3}" - "$W" "$ROUNDS" <<'EOF'
import statistics, sys
w, rounds = sys.argv[1], int(sys.argv[2])
def load(path):
    out = {}
    for line in open(path):
        f = line.split()
        if len(f) >= 3:
            out[f[0]] = (float(f[1]), f[2])
    return out
runs = {fs: [load("%s/%s.%d.out" % (w, fs, r)) for r in range(1, rounds + 1)] for fs in ("pt", "kvfs")}
disks = [(load("%s/disk.%d.before" % (w, r))["fdatasync"][0] +
          load("%s/disk.%d.after" % (w, r))["fdatasync"][0]) / 2 for r in range(1, rounds + 1)]
disk = statistics.median(disks)
phases = list(runs["pt"][0].keys())
target = {"create": 1.0, "stat": 1.0, "read": 1.0, "readdir": 1.0, "rename": 1.0, "unlink": 1.0,
          "seqwrite": 1.0, "seqread": 1.0, "randwrite": 1.0}
print("%-11s %14s %14s %-9s %7s  %s" % ("phase", "passthrough", "kvfs", "unit", "ratio", "target"))
for p in phases:
    pt = statistics.median(r[p][0] for r in runs["pt"])
    kv = statistics.median(r[p][0] for r in runs["kvfs"])
    unit = runs["pt"][0][p][1]
    if unit == "seconds":
        ratio = pt / kv if kv > 0 else float("inf")
        goal = "kvfs < 0.2 s: %s" % ("met" if kv < 0.2 else "MISSED") if p == "dirrename" else ""
    else:
        ratio = kv / pt if pt > 0 else float("inf")
        if p in target:
            goal = ">= %.1f: %s" % (target[p], "met" if ratio >= target[p] else "MISSED")
        elif p == "fsynccreate":
            d = statistics.median(r[p][0] / dr for r, dr in zip(runs["kvfs"], disks))
            goal = "kvfs/disk fdatasync = %.2f (>= 0.8: %s)" % (d, "met" if d >= 0.8 else "MISSED")
        else:
            goal = ""
    print("%-11s %14.6g %14.6g %-9s %7.2f  %s" % (p, pt, kv, unit, ratio, goal))
print("%-11s %14.6g %14s %-9s %7s  %s" % ("disk", disk, "", "ops/s", "",
      "fdatasync per 4 KiB write on the ext4 dir (kvfs/disk: median of the rounds' ratios)"))
print("# per-round raw values (passthrough | kvfs):")
for p in phases:
    print("#   %-11s %s | %s" % (p, " ".join("%.6g" % r[p][0] for r in runs["pt"]),
                                " ".join("%.6g" % r[p][0] for r in runs["kvfs"])))
print("#   %-11s %s (mean of before and after each kvfs round)" % ("disk", " ".join("%.6g" % d for d in disks)))
EOF
