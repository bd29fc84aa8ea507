#!/usr/bin/env bash
# fs_inotify_test.sh -- local changes on a kvfs mount raise inotify events as on any filesystem:
# `inotifywait -m` sees create, modify, close_write, moved_from/moved_to and delete, in order,
# for files and directories, recursively, and attrib for chmod/touch/setfattr.
source "$(dirname "${BASH_SOURCE[0]}")/fs_lib.sh"
fs_init fs_inotify_test
if ! command -v inotifywait >/dev/null; then
    echo "fs_inotify_test: inotifywait is missing (Debian package inotify-tools)" >&2
    exit 1
fi
kvfs_mount || fs_done

IW_PID=
stop_watch() {
    if [[ -n $IW_PID ]]; then
        kill "$IW_PID" 2>/dev/null
        wait "$IW_PID" 2>/dev/null
        IW_PID=
    fi
}
# start_watch OUTFILE ARGS...: inotifywait -m ARGS in the background; returns once the watches
# are established.
start_watch() {
    local out=$1 n=100
    shift
    inotifywait -m --format '%e %w%f' "$@" >"$out" 2>"$out.err" &
    IW_PID=$!
    while ((n-- > 0)); do
        grep -q 'Watches established' "$out.err" 2>/dev/null && return 0
        sleep 0.1
    done
    bad "inotifywait did not establish its watches: $(cat "$out.err")"
    return 1
}
# wait_for OUTFILE REGEX: waits up to 10 s for a line matching REGEX.
wait_for() {
    local n=100
    while ((n-- > 0)); do
        grep -Eq -- "$2" "$1" && return 0
        sleep 0.1
    done
    return 1
}
# events OUTFILE: the events with the mount prefix removed, consecutive duplicates collapsed
# (a write may be split into several MODIFY events).
events() { sed "s|$MNT/||" "$1" | uniq; }
FS_CLEANUP_HOOK=stop_watch

# ---- files: create, modify, close_write, moved_from/moved_to, delete -------------------------
mkdir "$MNT/w"
start_watch "$TMP/ev1" -e create -e modify -e close_write -e moved_from -e moved_to -e delete "$MNT/w"
echo "hello" >"$MNT/w/file"
echo "more" >>"$MNT/w/file"
mv "$MNT/w/file" "$MNT/w/renamed"
rm "$MNT/w/renamed"
mkdir "$MNT/w/sub"
rmdir "$MNT/w/sub"
wait_for "$TMP/ev1" 'DELETE,ISDIR .*sub$' || bad "the last event (DELETE,ISDIR sub) never arrived"
stop_watch
want='CREATE w/file
MODIFY w/file
CLOSE_WRITE,CLOSE w/file
MODIFY w/file
CLOSE_WRITE,CLOSE w/file
MOVED_FROM w/file
MOVED_TO w/renamed
DELETE w/renamed
CREATE,ISDIR w/sub
DELETE,ISDIR w/sub'
check_eq "create, modify, close_write, moved_from/to, delete in order" "$(events "$TMP/ev1")" "$want"

# ---- move between two watched directories, rename over an existing file ------------------------
mkdir "$MNT/w/a" "$MNT/w/b"
echo x >"$MNT/w/a/f1"
echo y >"$MNT/w/b/old"
start_watch "$TMP/ev2" -r -e moved_from -e moved_to -e delete -e create "$MNT/w"
mv "$MNT/w/a/f1" "$MNT/w/b/f1"
mv -f "$MNT/w/b/f1" "$MNT/w/b/old"
touch "$MNT/w/a/marker"
wait_for "$TMP/ev2" 'CREATE .*marker$' || bad "the marker event never arrived"
stop_watch
want='MOVED_FROM w/a/f1
MOVED_TO w/b/f1
MOVED_FROM w/b/f1
MOVED_TO w/b/old
CREATE w/a/marker'
check_eq "recursive watch: moves between dirs and rename over a file" "$(events "$TMP/ev2")" "$want"
check_eq "the renamed-over file holds the moved content" "$(cat "$MNT/w/b/old")" x

# ---- attrib and the editor-save pattern --------------------------------------------------------
echo "v1" >"$MNT/w/doc"
start_watch "$TMP/ev3" -e attrib -e close_write -e moved_to -e create -e delete -e modify "$MNT/w"
chmod 600 "$MNT/w/doc"
"$PY" -c 'import os, sys; os.utime(sys.argv[1], (1000, 1000))' "$MNT/w/doc"   # touch would open it
setfattr -n user.tag -v 1 "$MNT/w/doc"
"$PY" - "$MNT/w" <<'EOF'
import os, sys
d = sys.argv[1]
fd = os.open(d + "/.doc.tmp", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
os.write(fd, b"v2\n"); os.fsync(fd); os.close(fd)
os.rename(d + "/.doc.tmp", d + "/doc")
EOF
wait_for "$TMP/ev3" 'MOVED_TO .*doc$' || bad "the MOVED_TO doc event never arrived"
stop_watch
want='ATTRIB w/doc
CREATE w/.doc.tmp
MODIFY w/.doc.tmp
CLOSE_WRITE,CLOSE w/.doc.tmp
MOVED_TO w/doc'
check_eq "chmod/touch/setfattr raise ATTRIB; editor save raises create..moved_to" "$(events "$TMP/ev3")" "$want"
check_eq "content after the editor save" "$(cat "$MNT/w/doc")" v2

# ---- a watch on one file: modify, close_write, delete_self ---------------------------------------
echo base >"$MNT/w/one"
start_watch "$TMP/ev4" -e modify -e close_write -e delete_self -e attrib "$MNT/w/one"
echo app >>"$MNT/w/one"
"$PY" -c 'import os, sys; os.truncate(sys.argv[1], 2)' "$MNT/w/one"   # truncate(1) would open it
rm "$MNT/w/one"
wait_for "$TMP/ev4" 'DELETE_SELF' || bad "DELETE_SELF never arrived"
stop_watch
got=$(events "$TMP/ev4" | cut -d' ' -f1 | tr '\n' ' ')
want_re='^MODIFY CLOSE_WRITE,CLOSE MODIFY (ATTRIB )?DELETE_SELF '
[[ $got =~ $want_re ]] && ok "file watch: modify, close_write, truncate modify, delete_self ($got)" \
    || bad "file watch events '$got' do not match /$want_re/"

fs_done
