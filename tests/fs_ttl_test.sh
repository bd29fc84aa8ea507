#!/usr/bin/env bash
# fs_ttl_test.sh -- per-file expiry through user.kvfs.ttl / user.kvfs.expires and
# user.kvfs.default_ttl on directories, through a real mount:
#   - ttl reads -1 without expiry, the remaining whole seconds with one; expires reads and
#     writes epoch seconds; setfattr -x removes the expiry;
#   - writing the file keeps its expiry, rename carries it;
#   - at expiry the file is gone from ls, cat (ENOENT) and stat at once, and an inotify
#     watcher on the file gets DELETE_SELF (the kernel is told by the daemon);
#   - files created in a directory with default_ttl get that TTL;
#   - invalid values (negative, non-numeric, overflowing, empty) are EINVAL and change nothing;
#   - expiry survives a remount and a SIGKILL (a file that expired while the daemon was down
#     is gone at the next mount), and kvfsctl check stays clean after the reaper.
source "$(dirname "${BASH_SOURCE[0]}")/fs_lib.sh"
fs_init fs_ttl_test
WATCH_PIDS=()
stop_watches() { local p; for p in "${WATCH_PIDS[@]}"; do kill "$p" 2>/dev/null; done; }
FS_CLEANUP_HOOK=stop_watches

xval() { getfattr --only-values -n "$2" "$1" 2>/dev/null; }
in_range() { [[ $1 =~ ^[0-9]+$ ]] && (($1 >= $2 && $1 <= $3)); }
check_range() { if in_range "$2" "$3" "$4"; then ok "$1"; else bad "$1: got '$2', wanted $3..$4"; fi; }

kvfs_mount || fs_done

# ---- reading and setting ------------------------------------------------------------------
echo data >"$MNT/f"
check_eq "ttl of a file without expiry is -1" "$(xval "$MNT/f" user.kvfs.ttl)" "-1"
check_eq "expires of a file without expiry is -1" "$(xval "$MNT/f" user.kvfs.expires)" "-1"
check "setfattr user.kvfs.ttl 100" setfattr -n user.kvfs.ttl -v 100 "$MNT/f"
check_range "ttl reads the remaining seconds" "$(xval "$MNT/f" user.kvfs.ttl)" 98 100
now=$(date +%s)
check_range "expires is now + ttl (epoch seconds)" "$(xval "$MNT/f" user.kvfs.expires)" $((now + 98)) $((now + 101))
echo more >>"$MNT/f"
check_range "writing the file keeps its expiry" "$(xval "$MNT/f" user.kvfs.ttl)" 97 100
mv "$MNT/f" "$MNT/f2"
check_range "rename carries the expiry" "$(xval "$MNT/f2" user.kvfs.ttl)" 97 100
check "setfattr -x user.kvfs.ttl removes the expiry" setfattr -x user.kvfs.ttl "$MNT/f2"
check_eq "ttl after removal is -1" "$(xval "$MNT/f2" user.kvfs.ttl)" "-1"
check_errno "removing a missing expiry: ENODATA" ENODATA 'os.removexattr(a[0], "user.kvfs.ttl")' "$MNT/f2"
check "setfattr user.kvfs.expires (absolute)" setfattr -n user.kvfs.expires -v $((now + 500)) "$MNT/f2"
check_eq "expires reads back what was written" "$(xval "$MNT/f2" user.kvfs.expires)" $((now + 500))
check_eq "user.kvfs.* names are not listed by listxattr" "$(getfattr -d -m - "$MNT/f2" 2>/dev/null | grep -c kvfs)" 0

# ---- invalid values -----------------------------------------------------------------------
for v in -1 abc 12x 1e3 " 5" 99999999999999999999999 18446744073709551616 ""; do
    check_errno "ttl '$v' is EINVAL" EINVAL 'os.setxattr(a[0], "user.kvfs.ttl", a[1].encode())' "$MNT/f2" "$v"
done
check_errno "expires 0 is EINVAL" EINVAL 'os.setxattr(a[0], "user.kvfs.expires", b"0")' "$MNT/f2"
check_errno "expires -5 is EINVAL" EINVAL 'os.setxattr(a[0], "user.kvfs.expires", b"-5")' "$MNT/f2"
check_errno "expires over 100 years ahead is EINVAL" EINVAL \
    'os.setxattr(a[0], "user.kvfs.expires", str(int(a[1]) + 3153600100).encode())' "$MNT/f2" "$now"
check "expires 99 years ahead is accepted" setfattr -n user.kvfs.expires -v $((now + 3122064000)) "$MNT/f2"
check "setfattr user.kvfs.expires (absolute) again" setfattr -n user.kvfs.expires -v $((now + 500)) "$MNT/f2"
check_eq "invalid values changed nothing" "$(xval "$MNT/f2" user.kvfs.expires)" $((now + 500))
check_errno "ttl on a directory is EINVAL" EINVAL 'os.setxattr(a[0], "user.kvfs.ttl", b"5")' "$MNT"
check_errno "user.kvfs.version is read-only" EPERM 'os.setxattr(a[0], "user.kvfs.version", b"5")' "$MNT/f2"

# ---- expiry: ls, cat, stat, inotify -------------------------------------------------------
echo bye >"$MNT/e1"
echo stay >"$MNT/keep"
ls -l "$MNT" >/dev/null                # the kernel caches the entries
inotifywait -q -e delete_self --format '%e' "$MNT/e1" >"$TMP/iw1" 2>"$TMP/iw1.err" &
WATCH_PIDS+=($!)
sleep 0.5
setfattr -n user.kvfs.ttl -v 2 "$MNT/e1"
cat "$MNT/e1" >/dev/null
# xattrs and symlink targets follow the inode's expiry, not the one in force when written
echo kept >"$MNT/x1"
setfattr -n user.kvfs.ttl -v 2 "$MNT/x1"
setfattr -n user.tag -v hello "$MNT/x1"
setfattr -x user.kvfs.ttl "$MNT/x1"
sleep 2.4
check_eq "an xattr set under a removed TTL outlives it" "$(cd "$MNT" && getfattr --only-values -n user.tag x1 2>&1)" hello
check_eq "expired file is gone from ls at once" "$(ls "$MNT" | grep -c '^e1$')" 0
check_err_msg "cat of the expired file: ENOENT" "No such file or directory" cat "$MNT/e1"
check_errno "stat of the expired file: ENOENT" ENOENT 'os.stat(a[0])' "$MNT/e1"
check_eq "other files stay" "$(cat "$MNT/keep")" "stay"
sleep 0.3
check_eq "an inotify watcher on the file got DELETE_SELF" "$(cat "$TMP/iw1")" "DELETE_SELF"
check "the name can be reused" sh -c "echo new >'$MNT/e1'"
check_eq "the new file has no expiry" "$(xval "$MNT/e1" user.kvfs.ttl)" "-1"
# a file open while it expires
echo open >"$MNT/e2"
setfattr -n user.kvfs.ttl -v 1 "$MNT/e2"
exec 8<"$MNT/e2"
sleep 1.6
check_errno "expired while open: gone from the tree" ENOENT 'os.stat(a[0])' "$MNT/e2"
exec 8<&-

# ---- default TTL on directories -----------------------------------------------------------
mkdir "$MNT/tmpd"
echo before >"$MNT/tmpd/old"
check "setfattr user.kvfs.default_ttl on a directory" setfattr -n user.kvfs.default_ttl -v 2 "$MNT/tmpd"
check_eq "default_ttl reads back" "$(xval "$MNT/tmpd" user.kvfs.default_ttl)" 2
check_errno "default_ttl -3 is EINVAL" EINVAL 'os.setxattr(a[0], "user.kvfs.default_ttl", b"-3")' "$MNT/tmpd"
check_errno "default_ttl on a file is EINVAL" EINVAL 'os.setxattr(a[0], "user.kvfs.default_ttl", b"3")' "$MNT/keep"
echo new >"$MNT/tmpd/new"
mkdir "$MNT/tmpd/sub"
check_range "a file created inside gets the default TTL" "$(xval "$MNT/tmpd/new" user.kvfs.ttl)" 1 2
check_eq "a file created before has none" "$(xval "$MNT/tmpd/old" user.kvfs.ttl)" "-1"
sleep 2.5
check_eq "the new file expired, the old one and the subdirectory stay" "$(ls "$MNT/tmpd" | tr '\n' ' ')" "old sub "
check "setfattr -x user.kvfs.default_ttl" setfattr -x user.kvfs.default_ttl "$MNT/tmpd"
echo n2 >"$MNT/tmpd/n2"
check_eq "after removing default_ttl new files have none" "$(xval "$MNT/tmpd/n2" user.kvfs.ttl)" "-1"

# ---- restart and crash --------------------------------------------------------------------
echo r >"$MNT/r_long"; setfattr -n user.kvfs.ttl -v 300 "$MNT/r_long"
echo r >"$MNT/r_short"; setfattr -n user.kvfs.ttl -v 3 "$MNT/r_short"
kvfs_remount || fs_done
check_range "expiry survives a remount" "$(xval "$MNT/r_long" user.kvfs.ttl)" 290 300
sleep 3.2
check_errno "a file expires after a remount" ENOENT 'os.stat(a[0])' "$MNT/r_short"
echo k >"$MNT/k_short"; setfattr -n user.kvfs.ttl -v 2 "$MNT/k_short"
echo k >"$MNT/k_long"; setfattr -n user.kvfs.ttl -v 300 "$MNT/k_long"
perr 'fd = os.open(a[0], os.O_RDONLY); os.fsync(fd)' "$MNT/k_long" >/dev/null
kvfs_kill9
sleep 2.5                                # k_short expires while no daemon runs
kvfs_mount || fs_done
check_range "expiry survives SIGKILL" "$(xval "$MNT/k_long" user.kvfs.ttl)" 290 300
check_eq "a file that expired while down is gone at mount" "$(ls "$MNT" | grep -c '^k_short$')" 0
check_errno "cat of it: ENOENT" ENOENT 'open(a[0])' "$MNT/k_short"
sleep 0.5
if [[ -x $KVFSCTL ]]; then
    ctl check
    check_eq "kvfsctl check is clean after the reaper" "$CTL_RC" 0
    ctl ls
    check_eq "kvfsctl ls no longer lists expired files" "$(grep -c -e e2 -e k_short -e r_short "$TMP/ctl.out")" 0
fi

fs_done
