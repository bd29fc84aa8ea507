#!/usr/bin/env bash
# fs_full_test.sh -- a full disk under a mounted kvfs. The data directory lives on a 160 MiB
# tmpfs mounted below TMP, beside filler files that stand for whatever else fills a disk.
#   - the disk fills while files are written: the write fails with "No space left on
#     device", reads go on, and once the filler is removed writes go on, without a remount;
#   - the disk fills while a memtable flush needs room: the same, and `kvfsctl stats` says
#     "disk full"; the full store unmounts and mounts again; once there is room the flush
#     completes by itself;
#   - a store on a disk full to the last byte mounts (no room for the new MANIFEST written at
#     open: it appends to the old one);
#   - the disk filled through the mount itself: df shows nothing left, and rm, rmdir and
#     rename still work (kvfs keeps a reserve for them, as ext4 does for root);
#   - deleting frees room once the history window has passed; remounting with -o history=0
#     brings it back at once;
#   - at the end `kvfsctl check` is clean and every file written in full reads back.
# Needs root (mount -t tmpfs).
source "$(dirname "$0")/fs_lib.sh"
fs_init fs_full_test

DISK=$TMP/disk
mkdir -p "$DISK"
if ! mount -t tmpfs -o size=160m kvfs-full-test "$DISK" 2>"$TMP/tmpfs.err"; then
    echo "fs_full_test: cannot mount a tmpfs for the data directory: $(cat "$TMP/tmpfs.err")" >&2
    exit 1
fi
DATA=$DISK/data

head -c $((16 << 20)) /dev/urandom >"$TMP/rand16m" # incompressible: tables as big as the data
head -c 4096 /dev/urandom >"$TMP/keep"

# fill FILE: writes FILE on DISK until the disk is full.
fill() { dd if=/dev/zero of="$1" bs=1M 2>/dev/null; sync; }

# stats_line: the "disk full" line of kvfsctl stats.
stats_line() { "$KVFSCTL" --data "$DATA" stats 2>&1 | grep '^disk full'; }

# wait_stats_line WANT: waits (at most 10 s) until the "disk full" line matches WANT.
wait_stats_line() {
    local i line
    for i in $(seq 100); do
        line=$(stats_line)
        [[ $line =~ $1 ]] && return 0
        sleep 0.1
    done
    echo "$line"
    return 1
}

kvfs_mount || fs_done
cp "$TMP/keep" "$MNT/keep" && sync "$MNT/keep"
check_same_file "a file written before the disk fills" "$TMP/keep" "$MNT/keep"

# ---- 1. the WAL meets the full disk ----------------------------------------------------------
fill "$DISK/filler1"
if cp "$TMP/rand16m" "$MNT/refused" 2>"$TMP/cp.err"; then
    bad "16 MiB written to a full disk: cp succeeded"
else
    check_eq "a write to the full disk fails with ENOSPC" \
        "$(grep -c 'No space left on device' "$TMP/cp.err")" 1
fi
check_same_file "reads go on while the disk is full" "$TMP/keep" "$MNT/keep"
rm -f "$DISK/filler1"
check "once there is room again a write succeeds, with no remount" cp "$TMP/rand16m" "$MNT/after1"
check_same_file "it reads back" "$TMP/rand16m" "$MNT/after1"
check "the partly written file can be removed" rm "$MNT/refused"

# ---- 2. a flush meets the full disk ----------------------------------------------------------
# 80 MiB of filler leaves ~70 MiB: the WAL takes 64 MiB before the memtable is full, and its
# table finds no room.
dd if=/dev/zero of="$DISK/filler2" bs=1M count=80 2>/dev/null
if cat "$TMP/rand16m" "$TMP/rand16m" "$TMP/rand16m" "$TMP/rand16m" "$TMP/rand16m" \
    "$TMP/rand16m" >"$MNT/huge" 2>"$TMP/cat.err"; then
    bad "96 MiB written into ~70 MiB: the write succeeded"
else
    check_eq "the write that fills the disk fails with ENOSPC" \
        "$(grep -c 'No space left on device' "$TMP/cat.err")" 1
fi
if wait_stats_line 'No space left on device' >"$TMP/stats.out"; then
    ok "kvfsctl stats: disk full while the flush has no room"
else
    bad "kvfsctl stats while the flush has no room: $(cat "$TMP/stats.out")"
fi
check_same_file "reads go on" "$TMP/keep" "$MNT/keep"
check_same_file "the file written in full before reads back" "$TMP/rand16m" "$MNT/after1"
kvfs_umount
if kvfs_mount; then
    ok "the full store mounts again"
fi
check_same_file "after the remount: the first file" "$TMP/keep" "$MNT/keep"
check_same_file "after the remount: the 16 MiB file" "$TMP/rand16m" "$MNT/after1"
rm -f "$DISK/filler2"
if wait_stats_line 'no$' >"$TMP/stats.out"; then
    ok "with room again the pending flush completes by itself"
else
    bad "the flush after the filler went: $(cat "$TMP/stats.out")"
fi
check "a write after that" cp "$TMP/rand16m" "$MNT/after2"
check "the partly written file can be removed" rm "$MNT/huge"
kvfs_umount

check "kvfsctl check is clean" "$KVFSCTL" --data "$DATA" check

# ---- 3. a disk full to the last byte ---------------------------------------------------------
fill "$DISK/filler3"
if kvfs_mount; then
    ok "a store on a disk full to the last byte mounts"
    check_same_file "and reads" "$TMP/rand16m" "$MNT/after2"
    kvfs_umount
fi
rm -f "$DISK/filler3"

# ---- 4. the disk filled through kvfs itself: deleting still works ---------------------------
kvfs_mount || fs_done
mkdir "$MNT/emptydir"
echo victim >"$MNT/victim"
filled=0
for i in $(seq 12); do
    if ! cp "$TMP/rand16m" "$MNT/fill$i" 2>"$TMP/cp.err"; then
        filled=$i
        break
    fi
done
if ((filled > 0)) && grep -q 'No space left on device' "$TMP/cp.err"; then
    ok "writes through the mount filled the disk (file $filled of 16 MiB failed with ENOSPC)"
else
    bad "12 files of 16 MiB did not fill the 160 MiB disk: $(cat "$TMP/cp.err")"
fi
check_eq "df on the mount shows nothing left for writes" "$(stat -f -c %a "$MNT")" 0
check "rm on the full disk works (the reserve is for it)" rm -f "$MNT/fill1" "$MNT/fill$filled"
check_fails "the removed file is gone" test -e "$MNT/fill1"
check "so does rmdir" rmdir "$MNT/emptydir"
if "$KVFSCTL" --data "$DATA" put put-key some-value 2>"$TMP/put.err"; then
    bad "kvfsctl put on the full disk succeeded"
else
    check_eq "kvfsctl put is refused by the reserve too" \
        "$(grep -c 'reserve kept for deletions' "$TMP/put.err")" 1
fi
check "kvfsctl del works on the full disk" "$KVFSCTL" --data "$DATA" del victim
check_fails "the file it deleted is gone from the mount" test -e "$MNT/victim"
check "and rename" mv "$MNT/after1" "$MNT/renamed"
kvfs_umount

kvfs_mount || fs_done
check_fails "after a remount the removed file is still gone" test -e "$MNT/fill1"
check_same_file "and the renamed one reads back" "$TMP/rand16m" "$MNT/renamed"

# ---- 5. room back at once: with -o history=0 deleted data need not wait for the window ------
rm -f "$MNT"/fill*
kvfs_umount
kvfs_mount history=0 || fs_done
room=0 avail=0
for i in $(seq 100); do
    avail=$(($(stat -f -c '%a * %S' "$MNT")))
    if ((avail >= 16 << 20)); then
        room=1
        break
    fi
    sleep 0.1
done
if ((room)); then
    ok "with -o history=0 the deleted files' room comes back ($((avail >> 20)) MiB free)"
else
    bad "with -o history=0 the deleted files' room did not come back: $((avail >> 20)) MiB free"
fi
check "and a 16 MiB file can be written" cp "$TMP/rand16m" "$MNT/after3"
check_same_file "it reads back" "$TMP/rand16m" "$MNT/after3"
kvfs_umount
kvfs_mount || fs_done
check_same_file "after all: the first file" "$TMP/keep" "$MNT/keep"
check_same_file "after all: the last file" "$TMP/rand16m" "$MNT/after2"
kvfs_umount
fs_done
