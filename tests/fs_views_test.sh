#!/usr/bin/env bash
# fs_views_test.sh -- one store, two views. While kvfs is mounted, kvfsctl (which then talks to
# the daemon over DATA/kvfs.sock) and the mount must agree at all times:
#   - a file written through the mount is the key: `kvfsctl get a/b/c` prints exactly its bytes
#     (small, empty, binary, multi-chunk, sparse), and metadata (mode, xattrs, times) never
#     leaks into the value;
#   - `kvfsctl put x/y/z` appears at once as MNT/x/y/z with its parents implied, even when the
#     kernel had cached the old content or a negative lookup; `kvfsctl del` removes it;
#   - `kvfsctl ls` lists what the mount holds, `kvfsctl check` runs against the live store;
#   - the same holds with the store unmounted (kvfsctl opens it itself), in both directions.
source "$(dirname "${BASH_SOURCE[0]}")/fs_lib.sh"
fs_init fs_views_test
if [[ ! -x $KVFSCTL ]]; then
    echo "fs_views_test: $KVFSCTL is missing" >&2
    exit 1
fi
kvfs_mount || fs_done

# ctl_get_matches WHAT KEY FILE: kvfsctl get KEY prints exactly the bytes of FILE.
ctl_get_matches() {
    if ! ctl get "$2"; then
        bad "$1: kvfsctl get $2 exit $CTL_RC: $(head -c 300 "$TMP/ctl.err")"
    elif cmp -s "$TMP/ctl.out" "$3"; then
        ok "$1"
    else
        bad "$1: kvfsctl get $2 gave $(stat -c %s "$TMP/ctl.out") bytes, the file has $(stat -c %s "$3")"
    fi
}

# ---- mount -> key ------------------------------------------------------------------------------
check "the daemon serves a control socket in the data dir" test -S "$DATA/kvfs.sock"
check_eq "control socket mode 0600" "$(stat -c %a "$DATA/kvfs.sock" 2>/dev/null)" 600
mkdir -p "$MNT/a/b"
printf 'hello key view\n' >"$MNT/a/b/c"
ctl_get_matches "small file read back through kvfsctl get" a/b/c "$MNT/a/b/c"
ctl_get_matches "leading slash in the key is accepted" /a/b/c "$MNT/a/b/c"
: >"$MNT/a/empty"
ctl_get_matches "empty file is an empty value" a/empty "$MNT/a/empty"
head -c 1000000 /dev/urandom >"$TMP/bin"
cp "$TMP/bin" "$MNT/a/bin"
ctl_get_matches "1 MB binary file (16 chunks) read back" a/bin "$TMP/bin"
truncate -s 300000 "$MNT/a/sparse"; printf 'end' | dd of="$MNT/a/sparse" bs=1 seek=299997 conv=notrunc status=none
ctl_get_matches "sparse file: holes come back as zeros" a/sparse "$MNT/a/sparse"
chmod 600 "$MNT/a/b/c"; setfattr -n user.meta -v "not-in-value" "$MNT/a/b/c"; touch -d @12345 "$MNT/a/b/c"
ctl_get_matches "mode, xattr and times are not part of the value" a/b/c "$MNT/a/b/c"
printf 'edited' | dd of="$MNT/a/b/c" bs=1 seek=6 conv=notrunc status=none
ctl_get_matches "an in-place edit is visible to kvfsctl after close" a/b/c "$MNT/a/b/c"
check_eq "kvfsctl get shows the edited bytes" "$(ctl get a/b/c; cat "$TMP/ctl.out")" "hello editedew"
"$PY" - "$MNT/a/open" "$KVFSCTL" "$DATA" <<'EOF' >"$TMP/open.out" 2>&1
import os, subprocess, sys
p, ctl, data = sys.argv[1:]
fd = os.open(p, os.O_WRONLY | os.O_CREAT, 0o644)
os.write(fd, b"written but not closed")
os.fsync(fd)
v = subprocess.run([ctl, "--data", data, "get", "a/open"], capture_output=True).stdout
os.close(fd)
print("OK" if v == b"written but not closed" else "got %r" % v)
EOF
check_eq "after fsync, kvfsctl sees data of a file still open" "$(cat "$TMP/open.out")" OK
ctl get a/b
check_eq "kvfsctl get of a directory fails (exit 1)" "$CTL_RC" 1
ctl get a/nothing
check_eq "kvfsctl get of a missing key exits 1" "$CTL_RC" 1
grep -qi "no such" "$TMP/ctl.err" && ok "missing key says 'No such ...'" || bad "missing key stderr: $(cat "$TMP/ctl.err")"
ln -s b/c "$MNT/a/link"
ctl get a/link
[[ $CTL_RC -ne 0 ]] && ok "a symlink is not a value (kvfsctl get fails)" || bad "kvfsctl get of a symlink succeeded"
ctl ls a/
check_eq "kvfsctl ls a/ lists the regular files" "$(sort "$TMP/ctl.out" | sed 's|^/||' | tr '\n' ' ')" \
    "a/b/c a/bin a/empty a/open a/sparse "

# ---- key -> mount --------------------------------------------------------------------------------
check_fails "x/y/z does not exist yet (the kernel may cache this negative lookup)" stat "$MNT/x/y/z"
check_fails "x does not exist yet" stat "$MNT/x"
if ctl put x/y/z "value from kvfsctl"; then ok "kvfsctl put x/y/z while mounted"; else
    bad "kvfsctl put x/y/z while mounted: exit $CTL_RC: $(cat "$TMP/ctl.err")"; fi
check_eq "put value appears at MNT/x/y/z at once" "$(cat "$MNT/x/y/z" 2>&1)" "value from kvfsctl"
check_eq "parents are implied directories" "$(stat -c %F "$MNT/x" 2>&1):$(stat -c %F "$MNT/x/y" 2>&1)" "directory:directory"
check_eq "ls of the implied dir" "$(ls "$MNT/x/y" 2>&1)" z
check_eq "size of the put file" "$(stat -c %s "$MNT/x/y/z" 2>&1)" 18
cat "$MNT/x/y/z" >/dev/null   # now the page cache holds the old content
ctl put x/y/z "a longer replacement value"
check_eq "put over a cached file: the mount shows the new bytes" "$(cat "$MNT/x/y/z" 2>&1)" "a longer replacement value"
check_eq "put over a cached file: new size" "$(stat -c %s "$MNT/x/y/z" 2>&1)" 26
ctl put x/y/z "short"
check_eq "put of a shorter value: no stale tail" "$(cat "$MNT/x/y/z" 2>&1)" "short"
head -c 3000000 /dev/urandom >"$TMP/big"
if ctl put x/big <"$TMP/big"; then ok "kvfsctl put of 3 MB from stdin"; else bad "put from stdin: $(cat "$TMP/ctl.err")"; fi
check_same_file "3 MB put value read through the mount" "$TMP/big" "$MNT/x/big"
echo "mount edit" >"$MNT/x/y/z"
ctl_get_matches "mount overwrites a put key" x/y/z "$MNT/x/y/z"
chmod 640 "$MNT/x/y/z"; chown 12:34 "$MNT/x/y/z"
ctl put x/y/z "keeps metadata"
check_eq "put over an existing file keeps its inode mode and owner" "$(stat -c %a:%u:%g "$MNT/x/y/z")" "640:12:34"
ino=$(stat -c %i "$MNT/x/y/z")
ctl put x/y/z "again"
check_eq "put keeps the inode number" "$(stat -c %i "$MNT/x/y/z")" "$ino"
if ctl del x/y/z; then ok "kvfsctl del while mounted"; else bad "kvfsctl del: $(cat "$TMP/ctl.err")"; fi
check_fails "deleted key vanishes from the mount" stat "$MNT/x/y/z"
check_eq "ls no longer shows it" "$(ls "$MNT/x/y" 2>&1)" ""
ctl get x/y/z
check_eq "kvfsctl get of the deleted key exits 1" "$CTL_RC" 1
echo "kept open" >"$MNT/x/held"
exec 7<"$MNT/x/held"
ctl del x/held
check_eq "a file deleted by kvfsctl stays readable through an open fd" "$(cat <&7)" "kept open"
exec 7<&-
check_fails "and is gone by name" stat "$MNT/x/held"
ctl put 'sp ace/ü/名前' "unicode"
check_eq "keys with spaces and UTF-8 map to names" "$(cat "$MNT/sp ace/ü/名前" 2>&1)" unicode
ctl put a/b/c/d "under a file"
[[ $CTL_RC -ne 0 ]] && ok "put under a regular file fails" || bad "put a/b/c/d succeeded although a/b/c is a file"
check_eq "and a/b/c is unchanged" "$(cat "$MNT/a/b/c")" "hello editedew"
# A put replacing a file with a shorter value must not leave the old bytes past the new size:
# growing the file again has to show zeros (layout invariant I1).
ctl put x/regrow "0123456789ABCDEF"
ctl put x/regrow "abc"
truncate -s 16 "$MNT/x/regrow"
check_eq "put of a shorter value, then the file grows: zeros, not the old bytes" \
    "$(od -An -c "$MNT/x/regrow" | tr -s ' ' | tr -d '\n')" " a b c \\0 \\0 \\0 \\0 \\0 \\0 \\0 \\0 \\0 \\0 \\0 \\0 \\0"
ctl_get_matches "kvfsctl get of the regrown file" x/regrow "$MNT/x/regrow"
rm -f "$MNT/x/regrow"

# ---- every other command goes through the daemon too ----------------------------------------------
ctl put --ttl 3600 x/ttl "expiring"
check_eq "put --ttl while mounted" "$(cat "$MNT/x/ttl" 2>&1)" "expiring"
ctl ls -l x/ttl
grep -Eq '^ *[0-9]+ +8 +[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]+Z +x/ttl$' "$TMP/ctl.out" \
    && ok "ls -l while mounted shows seq, size and expiry" || bad "ls -l x/ttl: $(cat "$TMP/ctl.out" "$TMP/ctl.err")"
printf 'v1' >"$MNT/x/h"; printf 'v22' >"$MNT/x/h"; ctl put x/h "v333"
ctl history x/h
mapfile -t rows < <(grep -E '^ *[0-9]+ +[0-9]{4}-' "$TMP/ctl.out")
# (older versions are listed only as far as the daemon's history window keeps them)
[[ $CTL_RC -eq 0 && ${#rows[@]} -ge 1 && ${rows[0]} =~ \ 4\ *$ ]] \
    && ok "history while mounted: newest version first with its size" \
    || bad "history x/h: exit $CTL_RC: $(cat "$TMP/ctl.out" "$TMP/ctl.err")"
ctl history x/nothing
check_eq "history of a missing path while mounted exits 1" "$CTL_RC" 1
if ctl snapshot create views1 && ctl snapshot list && grep -q '^views1 ' "$TMP/ctl.out" &&
   ctl snapshot delete views1; then ok "snapshot create/list/delete while mounted"; else
    bad "snapshots while mounted: exit $CTL_RC: $(cat "$TMP/ctl.err")"; fi
ctl stats
grep -q '^access .*kvfs daemon' "$TMP/ctl.out" && ok "stats while mounted comes from the daemon" \
    || bad "stats while mounted: $(cat "$TMP/ctl.out" "$TMP/ctl.err" | head -c 400)"
if ctl compact; then ok "compact while mounted"; else bad "compact while mounted: $(cat "$TMP/ctl.err")"; fi
check_eq "files survive the compaction" "$(cat "$MNT/x/h" 2>&1)" "v333"
if ctl checkpoint "$TMP/cp"; then ok "checkpoint while mounted"; else bad "checkpoint: $(cat "$TMP/ctl.err")"; fi
timeout 60 "$KVFSCTL" --data "$TMP/cp" get x/h >"$TMP/cp.out" 2>&1
check_eq "the checkpoint opens on its own and holds the files" "$(cat "$TMP/cp.out")" "v333"
if ctl check; then ok "kvfsctl check against the live store is clean"; else
    bad "kvfsctl check while mounted: exit $CTL_RC: $(head -c 400 "$TMP/ctl.out" "$TMP/ctl.err")"; fi

# ---- unmounted: kvfsctl opens the store itself --------------------------------------------------
cp "$MNT/a/bin" "$TMP/bin.copy"
check_alive "before unmount"
kvfs_umount
check_fails "no control socket answers once unmounted" bash -c "test -S '$DATA/kvfs.sock' && $PY -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])' '$DATA/kvfs.sock'"
ctl_get_matches "unmounted: kvfsctl get reads the file written through the mount" a/bin "$TMP/bin.copy"
if ctl put offline/new "written offline"; then ok "unmounted: kvfsctl put"; else bad "unmounted put: $(cat "$TMP/ctl.err")"; fi
ctl del a/empty || bad "unmounted del: $(cat "$TMP/ctl.err")"
if ctl check; then ok "unmounted: kvfsctl check clean"; else bad "unmounted check: $(head -c 400 "$TMP/ctl.out" "$TMP/ctl.err")"; fi
kvfs_mount || fs_done
check_eq "offline put appears after mounting" "$(cat "$MNT/offline/new" 2>&1)" "written offline"
check_fails "offline del is gone after mounting" test -e "$MNT/a/empty"
check_same_file "mount data survived the offline session" "$TMP/bin.copy" "$MNT/a/bin"

# ---- a read-only mount refuses kvfsctl writes, serves reads -------------------------------------
kvfs_remount ro || fs_done
ctl put ro/x "nope"
check_eq "put on a read-only mount exits 1" "$CTL_RC" 1
grep -qi 'read-only' "$TMP/ctl.err" && ok "put on a read-only mount says read-only" \
    || bad "put on ro mount: $(cat "$TMP/ctl.err")"
ctl_get_matches "get on a read-only mount" a/bin "$TMP/bin.copy"
fs_done
