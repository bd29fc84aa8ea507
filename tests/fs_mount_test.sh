#!/usr/bin/env bash
# fs_mount_test.sh -- the kvfs command line: --help/--version, mount errors that must give one
# clear line and a non-zero exit (missing mountpoint, busy mountpoint, data dir already in use),
# -f (foreground; SIGINT unmounts), SIGTERM flushes and unmounts cleanly (unsynced data is kept),
# large unlinked files purged at once (and after a crash by the next mount), and a non-root
# user's default data directory ($XDG_DATA_HOME/kvfs, created on first use).
source "$(dirname "${BASH_SOURCE[0]}")/fs_lib.sh"
fs_init fs_mount_test

# ---- --help, --version ------------------------------------------------------------------------
out=$(timeout 10 "$KVFS" --help 2>&1); rc=$?
check_eq "--help exits 0" "$rc" 0
grep -q 'data=' <<<"$out" && ok "--help documents -o data=DIR" || bad "--help does not mention data=: $(head -c 300 <<<"$out")"
grep -qi 'usage' <<<"$out" && ok "--help shows a usage line" || bad "--help has no usage line"
out=$(timeout 10 "$KVFS" --version 2>&1); rc=$?
check_eq "--version exits 0" "$rc" 0
grep -qi 'kvfs' <<<"$out" && ok "--version names kvfs ($(head -1 <<<"$out"))" || bad "--version: $out"

# ---- mount errors ------------------------------------------------------------------------------
# one_line_error WHAT CMD...: CMD must exit non-zero with exactly one non-empty line of output.
one_line_error() {
    local what=$1 out rc
    shift
    out=$(timeout 30 "$@" 2>&1); rc=$?
    local lines
    lines=$(grep -c . <<<"$out")
    if ((rc == 0)); then
        bad "$what: exit 0"
    elif ((lines != 1)); then
        bad "$what: exit $rc but $lines lines of output: $(head -c 400 <<<"$out")"
    else
        ok "$what: exit $rc, '$out'"
    fi
}
one_line_error "missing mountpoint" "$KVFS" -o data="$DATA" "$TMP/no-such-dir"
check_fails "no mount left by the failed attempt" is_mounted "$TMP/no-such-dir"
kvfs_mount || fs_done
mkdir -p "$TMP/mnt2"
one_line_error "data directory already in use" "$KVFS" -o data="$DATA" "$TMP/mnt2"
check_fails "second mount of the same data dir did not happen" is_mounted "$TMP/mnt2"
one_line_error "mountpoint already mounted (busy)" "$KVFS" -o data="$TMP/data2" "$MNT"
check_eq "the first mount still works" "$(echo hi >"$MNT/f" && cat "$MNT/f")" hi

# ---- SIGTERM flushes and unmounts ---------------------------------------------------------------
head -c 500000 /dev/urandom >"$TMP/payload"
cp "$TMP/payload" "$MNT/unsynced"          # no fsync
mkdir "$MNT/dir"; mv "$MNT/unsynced" "$MNT/dir/unsynced"
pid=$KVFS_PID
kill -TERM "$pid"
if wait_pid_exit "$pid" 20; then ok "SIGTERM: the daemon exits"; else bad "SIGTERM: daemon still running after 20 s"; kill -9 "$pid"; fi
for _ in 1 2 3 4 5 6 7 8 9 10; do is_mounted "$MNT" || break; sleep 0.2; done
if is_mounted "$MNT"; then bad "SIGTERM: the mount is still there"; force_unmount "$MNT"; else ok "SIGTERM: unmounted"; fi
KVFS_PID=
check "kvfsctl check clean after SIGTERM" "$KVFSCTL" --data "$DATA" check
kvfs_mount || fs_done
check_same_file "SIGTERM kept the unsynced file and rename" "$TMP/payload" "$MNT/dir/unsynced"
# -o readahead: the mount's kernel readahead (its bdi in sysfs), 1 MiB unless told otherwise
check_eq "default readahead of the mount is 1024 KiB" \
    "$(cat "/sys/class/bdi/$(mountpoint -d "$MNT")/read_ahead_kb")" 1024
kvfs_umount
kvfs_mount readahead=256 || fs_done
check_eq "-o readahead=256 sets 256 KiB" "$(cat "/sys/class/bdi/$(mountpoint -d "$MNT")/read_ahead_kb")" 256
check_same_file "files read back with another readahead" "$TMP/payload" "$MNT/dir/unsynced"
kvfs_umount
one_line_error "-o readahead=3 (below 4 KiB) is refused" "$KVFS" -o data="$DATA",readahead=3 "$MNT"
check_fails "no mount left by the refused readahead" is_mounted "$MNT"
# -o spin: 0 (never) serves like the default; out-of-range values are refused with one line
kvfs_mount spin=0 || fs_done
check_same_file "files read back with -o spin=0" "$TMP/payload" "$MNT/dir/unsynced"
kvfs_umount
one_line_error "-o spin=10001 (above 10 ms) is refused" "$KVFS" -o data="$DATA",spin=10001 "$MNT"
one_line_error "-o spin=fast (not a number) is refused" "$KVFS" -o data="$DATA",spin=fast "$MNT"
check_fails "no mount left by the refused spin" is_mounted "$MNT"

# ---- large unlinked files: one range deletion, finished by the next mount after a crash -------
# A file of more than 64 chunks loses its chunks to one range deletion (no scan of its data),
# so writers beside it never wait. A file still open when the daemon dies keeps its 'O' key and
# the next mount purges it while opening: that mount's first engine deletes are the purge's.
engine_deletes() { ctl stats && sed -n 's/.*deletes \([0-9]*\).*/\1/p' "$TMP/ctl.out"; }
kvfs_mount || fs_done
head -c $((64 << 20)) /dev/urandom >"$TMP/big"
cp "$TMP/big" "$MNT/big1" && cp "$TMP/big" "$MNT/big2" && sync "$MNT/big2"
rm "$MNT/big1"
ctl stats
rd=$(sed -n 's/^range deletions *\([0-9]*\).*/\1/p' "$TMP/ctl.out")
((${rd:-0} >= 1)) && ok "kvfsctl stats shows the range deletion of the removed file ($rd)" ||
    bad "kvfsctl stats: range deletions '${rd:-missing}'"
echo beside >"$MNT/beside"
check_eq "a write right after rm of a 64 MiB file" "$(cat "$MNT/beside")" beside
check_fails "the removed file is gone" test -e "$MNT/big1"
check_same_file "the other large file is intact" "$TMP/big" "$MNT/big2"
exec 3<"$MNT/big2"
rm "$MNT/big2"
check_eq "an unlinked open file is still readable" "$(head -c 65536 <&3 | md5sum)" "$(head -c 65536 "$TMP/big" | md5sum)"
kvfs_kill9
exec 3<&-
kvfs_mount || fs_done
d=$(engine_deletes)
((${d:-0} > 0)) && ok "the next mount purges the file left unlinked by the crash ($d deletes)" ||
    bad "no purge at the mount after the crash (deletes: ${d:-none})"
check_fails "it is gone" test -e "$MNT/big2"
check_same_file "other files are intact" "$TMP/payload" "$MNT/dir/unsynced"
kvfs_remount || fs_done
d=$(engine_deletes)
check_eq "a mount with no unlinked file left deletes nothing" "${d:-none}" 0
kvfs_umount
check "kvfsctl check clean after the purges" "$KVFSCTL" --data "$DATA" check
rm -f "$TMP/big"

# ---- -f: foreground, SIGINT unmounts ------------------------------------------------------------
# A background job of a non-interactive shell starts with SIGINT ignored, and libfuse keeps an
# ignored signal ignored: reset it to the default before exec'ing kvfs.
"$PY" -c 'import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])' \
    "$KVFS" -f -o data="$DATA" "$MNT" >"$TMP/fg.log" 2>&1 &
fg=$!
KVFS_PIDS+=("$fg"); echo "$fg" >>"$TMP/pids"
for _ in $(seq 100); do is_mounted "$MNT" && break; pid_alive $fg || break; sleep 0.1; done
if is_mounted "$MNT" && pid_alive $fg; then ok "-f mounts and stays in the foreground"; else bad "-f: $(tail -3 "$TMP/fg.log")"; fi
check_eq "-f mount serves files" "$(cat "$MNT/f" 2>&1)" hi
kill -INT $fg
if wait_pid_exit $fg 20; then ok "SIGINT ends the foreground daemon"; else bad "SIGINT: still running"; kill -9 $fg; fi
wait $fg 2>/dev/null
fgrc=$?
check_eq "foreground daemon exit status after SIGINT" "$fgrc" 0
if is_mounted "$MNT"; then bad "SIGINT left the mount behind"; force_unmount "$MNT"; else ok "SIGINT unmounted"; fi

# ---- a non-root user's default data directory ---------------------------------------------------
U=$TMP/user
mkdir -p "$U/mnt" "$U/xdg"
chown -R 65534:65534 "$U"
if ! setpriv --reuid=65534 --regid=65534 --clear-groups test -r /dev/fuse -a -w /dev/fuse; then
    echo "# skipped the non-root mount: /dev/fuse is $(stat -c %A /dev/fuse), not usable by nobody here"
    fs_done
fi
out=$(cd / && timeout 30 setpriv --reuid=65534 --regid=65534 --clear-groups \
    env -i PATH=/usr/bin:/bin HOME="$U" XDG_DATA_HOME="$U/xdg" "$KVFS" "$U/mnt" 2>&1); rc=$?
if ((rc == 0)) && is_mounted "$U/mnt"; then
    upid=$(kvfs_find_pid "$U/mnt")
    [[ -n $upid ]] && { KVFS_PIDS+=("$upid"); echo "$upid" >>"$TMP/pids"; }
    ok "non-root user mounts with the default data directory"
    check "default data directory is \$XDG_DATA_HOME/kvfs" test -d "$U/xdg/kvfs"
    check_eq "the data dir belongs to the user" "$(stat -c %u "$U/xdg/kvfs")" 65534
    PERR_AS=nobody check_errno "the user can write into the mount" OK \
        'open(a[0], "w").write("mine")' "$U/mnt/file"
    check_eq "files are the user's" "$(setpriv --reuid=65534 --regid=65534 --clear-groups stat -c %u:%g "$U/mnt/file")" "65534:65534"
    setpriv --reuid=65534 --regid=65534 --clear-groups fusermount3 -u "$U/mnt" || force_unmount "$U/mnt"
    [[ -n ${upid:-} ]] && { wait_pid_exit "$upid" 20 || kill -9 "$upid"; }
else
    bad "non-root mount with the default data dir failed (exit $rc): $(head -c 400 <<<"$out")"
    force_unmount "$U/mnt"
fi
fs_done
