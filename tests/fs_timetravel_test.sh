#!/usr/bin/env bash
# fs_timetravel_test.sh -- .snapshots and time travel through a real mount:
#   - mkdir/ls/rmdir of named snapshots in .snapshots (and kvfsctl snapshot list agrees);
#     .snapshots is hidden from the root listing unless -o snapdir=visible;
#   - a snapshot, an @ISO-8601 time and an @SEQ view show old contents after overwrites,
#     deletes and renames; views are stable while the live tree changes;
#   - everything under .snapshots is EROFS (create, write, unlink, rename, chmod, truncate,
#     link, setxattr, mkdir inside a view);
#   - user.kvfs.version / user.kvfs.versions after a series of writes, each listed seq
#     readable at .snapshots/@SEQ/path; kvfsctl history lists the same seqs;
#   - times before the history window are ENOENT with a log line saying why;
#   - snapshots and history survive a remount and a SIGKILL of the daemon;
#   - retention: with a short -o history, overwritten data is freed by kvfsctl compact.
source "$(dirname "${BASH_SOURCE[0]}")/fs_lib.sh"
fs_init fs_timetravel_test
S=$MNT/.snapshots

# xval FILE NAME: the value of xattr NAME (empty on error).
xval() { getfattr --only-values -n "$2" "$1" 2>/dev/null; }
iso_now() { date -u +%Y-%m-%dT%H:%M:%SZ; }

kvfs_mount history=1h || fs_done

# ---- snapshots and views -------------------------------------------------------------------
echo v1 >"$MNT/a"
echo b1 >"$MNT/b"
echo c1 >"$MNT/c"
mkdir -p "$MNT/d/e" && echo deep >"$MNT/d/e/f"
sleep 1.1
T1=$(iso_now)
T1_OFF=$(date +%Y-%m-%dT%H:%M:%S%:z)  # the same second with the local offset
sleep 1.1
echo v2 >"$MNT/a"
check "mkdir .snapshots/s1 creates a named snapshot" mkdir "$S/s1"
echo v3 >"$MNT/a"
rm "$MNT/b"
mv "$MNT/c" "$MNT/c2"
echo changed >"$MNT/d/e/f"

check_eq "ls -a of the root does not list .snapshots" "$(ls -a "$MNT" | grep -c '^\.snapshots$')" 0
check_eq "ls .snapshots lists the snapshot" "$(ls "$S")" "s1"
check_eq "snapshot shows the content of then (overwritten since)" "$(cat "$S/s1/a")" "v2"
check_eq "snapshot shows a file deleted since" "$(cat "$S/s1/b")" "b1"
check_eq "snapshot shows the old name of a renamed file" "$(cat "$S/s1/c")" "c1"
check_errno "snapshot does not show the new name" ENOENT 'os.stat(a[0])' "$S/s1/c2"
check_eq "snapshot: deep path" "$(cat "$S/s1/d/e/f")" "deep"
check_eq "live tree has the newest content" "$(cat "$MNT/a")" "v3"
check_eq "@ISO (UTC) view shows the tree of that second" "$(cat "$S/@$T1/a")" "v1"
check_eq "@ISO with an offset is the same moment" "$(cat "$S/@$T1_OFF/a")" "v1"
check_eq "@ views are not listed" "$(ls "$S")" "s1"
check_eq "find over the root does not walk .snapshots" \
    "$(find "$MNT" -name a | sort | tr '\n' ' ')" "$MNT/a "
# metadata of then
chmod 600 "$MNT/a"
check_eq "view shows the mode of then" "$(stat -c %a "$S/s1/a")" "644"
check_eq "view size is the size of then" "$(stat -c %s "$S/@$T1/d/e/f")" "5"
live_ino=$(stat -c %i "$MNT/a"); snap_ino=$(stat -c %i "$S/s1/a")
if [[ $live_ino != "$snap_ino" ]]; then ok "view inode numbers differ from live ones"; else bad "view inode $snap_ino equals live inode"; fi
# stable while read: a file open in a view keeps its bytes while the live file changes
exec 7<"$S/s1/a"
echo v4 >"$MNT/a"
check_eq "an open view file is stable while the live file changes" "$(cat <&7)" "v2"
exec 7<&-

# ---- EROFS everywhere ---------------------------------------------------------------------
check_errno "create in a view: EROFS" EROFS 'open(a[0], "w")' "$S/s1/new"
check_errno "write open of a view file: EROFS" EROFS 'os.open(a[0], os.O_WRONLY)' "$S/s1/a"
check_errno "O_TRUNC in a view: EROFS" EROFS 'os.open(a[0], os.O_RDONLY | os.O_TRUNC)' "$S/s1/a"
check_errno "unlink in a view: EROFS" EROFS 'os.unlink(a[0])' "$S/s1/a"
check_errno "rmdir in a view: EROFS" EROFS 'os.rmdir(a[0])' "$S/s1/d/e"
check_errno "mkdir in a view: EROFS" EROFS 'os.mkdir(a[0])' "$S/s1/newdir"
check_errno "rename inside a view: EROFS" EROFS 'os.rename(a[0], a[1])' "$S/s1/a" "$S/s1/a2"
check_errno "rename out of a view: EROFS" EROFS 'os.rename(a[0], a[1])' "$S/s1/a" "$MNT/a9"
check_errno "chmod in a view: EROFS" EROFS 'os.chmod(a[0], 0o600)' "$S/s1/a"
check_errno "truncate in a view: EROFS" EROFS 'os.truncate(a[0], 0)' "$S/s1/a"
check_errno "utime in a view: EROFS" EROFS 'os.utime(a[0], (1, 1))' "$S/s1/a"
check_errno "hard link from a view: EROFS" EROFS 'os.link(a[0], a[1])' "$S/s1/a" "$MNT/lnk"
check_errno "symlink in a view: EROFS" EROFS 'os.symlink("x", a[0])' "$S/s1/sl"
check_errno "setxattr in a view: EROFS" EROFS 'os.setxattr(a[0], "user.x", b"1")' "$S/s1/a"
check_errno "set user.kvfs.ttl in a view: EROFS" EROFS 'os.setxattr(a[0], "user.kvfs.ttl", b"5")' "$S/s1/a"
check_errno "removexattr in a view: EROFS" EROFS 'os.removexattr(a[0], "user.x")' "$S/s1/a"
check_errno "create a file in .snapshots: EROFS" EROFS 'open(a[0], "w")' "$S/file"
check_errno "rmdir of an @ view: EROFS" EROFS 'os.rmdir(a[0])' "$S/@$T1"
check_errno "mkdir of an @name: EINVAL" EINVAL 'os.mkdir(a[0])' "$S/@x"
check_errno "mkdir of an existing snapshot: EEXIST" EEXIST 'os.mkdir(a[0])' "$S/s1"
check_errno "creating .snapshots in the root: EEXIST" EEXIST 'os.mkdir(a[0])' "$MNT/.snapshots"

# ---- version xattrs -----------------------------------------------------------------------
for i in 1 2 3 4 5; do printf 'gen%s-%*s' "$i" "$i" "" >"$MNT/h"; done
vers=$(xval "$MNT/h" user.kvfs.versions)
ver=$(xval "$MNT/h" user.kvfs.version)
check_eq "user.kvfs.version is the newest line of user.kvfs.versions" "$ver" "$(head -1 <<<"$vers" | cut -d' ' -f1)"
n=$(grep -c . <<<"$vers")
if ((n >= 10)); then ok "user.kvfs.versions lists every write ($n lines)"; else bad "only $n versions: $vers"; fi
if grep -Eqv '^[0-9]+ [0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z [0-9]+( deleted)?$' <<<"$vers"; then
    bad "version lines are 'SEQ ISO-TIME SIZE[ deleted]': $vers"
else
    ok "version lines are 'SEQ ISO-TIME SIZE[ deleted]'"
fi
sorted=$(cut -d' ' -f1 <<<"$vers" | sort -rn | tr '\n' ' ')
check_eq "versions are newest first" "$(cut -d' ' -f1 <<<"$vers" | tr '\n' ' ')" "$sorted"
good=1
while read -r seq when size rest; do
    got=$(stat -c %s "$S/@$seq/h" 2>/dev/null) || { good=0; echo "# @$seq/h unreadable"; continue; }
    [[ $got == "$size" ]] || { good=0; echo "# @$seq/h size $got, listed $size"; }
done <<<"$vers"
((good)) && ok "every listed version is readable at .snapshots/@SEQ/h with its size" || bad "some listed versions do not match"
check_eq "the newest version reads as the live file" "$(cat "$S/@$ver/h")" "$(cat "$MNT/h")"
rm "$MNT/h"
echo again >"$MNT/h"
vers2=$(xval "$MNT/h" user.kvfs.versions)
if grep -q ' deleted$' <<<"$vers2"; then ok "versions mark the removal of the name as deleted"; else bad "no deleted line: $vers2"; fi
dseq=$(grep ' deleted$' <<<"$vers2" | head -1 | cut -d' ' -f1)
check_errno "at the deleted seq the name does not exist" ENOENT 'os.stat(a[0])' "$S/@$dseq/h"
check_eq "user.kvfs.version on a directory" "$(xval "$MNT/d" user.kvfs.version | grep -Ec '^[0-9]+$')" 1
if [[ -x $KVFSCTL ]]; then
    ctl history h
    check_eq "kvfsctl history lists the same versions" \
        "$(grep -Eo '^ *[0-9]+' "$TMP/ctl.out" | tr -d ' ' | tr '\n' ' ')" \
        "$(cut -d' ' -f1 <<<"$vers2" | tr '\n' ' ')"
    ctl snapshot list
    if grep -q 's1' "$TMP/ctl.out"; then ok "kvfsctl snapshot list shows s1"; else bad "kvfsctl snapshot list: $(cat "$TMP/ctl.out")"; fi
    # the kernel caches lookups (a negative one too): the daemon invalidates them
    check_errno "before kvfsctl snapshot create: ENOENT" ENOENT 'os.stat(a[0])' "$S/byctl"
    ctl snapshot create byctl
    check_eq "kvfsctl snapshot create while mounted" "$CTL_RC" 0
    check_eq "the new snapshot is there at once" "$(cat "$S/byctl/a" 2>&1)" "$(cat "$MNT/a" 2>&1)"
    ctl snapshot delete byctl
    check_errno "after kvfsctl snapshot delete: ENOENT at once" ENOENT 'os.stat(a[0])' "$S/byctl"
fi

# ---- outside the window -------------------------------------------------------------------
check_errno "a time before the history window: ENOENT" ENOENT 'os.stat(a[0])' "$S/@2001-01-01T00:00:00Z"
check_errno "a time in the future: ENOENT" ENOENT 'os.stat(a[0])' "$S/@2999-01-01T00:00:00Z"
check_errno "a sequence in the future: ENOENT" ENOENT 'os.stat(a[0])' "$S/@999999999999"
check_errno "a malformed time: ENOENT" ENOENT 'os.stat(a[0])' "$S/@yesterday"
check_errno "a missing snapshot: ENOENT" ENOENT 'os.stat(a[0])' "$S/nosuch"

# ---- restore path: cp -a from a snapshot ---------------------------------------------------
check "cp -a restores a tree from a snapshot" cp -a "$S/s1/d" "$MNT/restored"
check_eq "restored content is the snapshot's" "$(cat "$MNT/restored/e/f")" "deep"

# ---- remount and crash --------------------------------------------------------------------
kvfs_remount history=1h || fs_done
check_eq "after remount: snapshot still listed" "$(ls "$S")" "s1"
check_eq "after remount: snapshot content" "$(cat "$S/s1/a")" "v2"
check_eq "after remount: @ISO view" "$(cat "$S/@$T1/a")" "v1"
mkdir "$S/s2"
echo post-s2 >"$MNT/a"
kvfs_kill9
kvfs_mount history=1h snapdir=visible || fs_done
check_eq "after SIGKILL: both snapshots listed" "$(ls "$S" | tr '\n' ' ')" "s1 s2 "
check_eq "after SIGKILL: s2 content" "$(cat "$S/s2/a")" "v4"
check_eq "snapdir=visible lists .snapshots in the root" "$(ls -a "$MNT" | grep -c '^\.snapshots$')" 1
check "rmdir deletes a snapshot" rmdir "$S/s1"
check_eq "deleted snapshot is gone from the listing" "$(ls "$S")" "s2"
check_errno "deleted snapshot is not reachable" ENOENT 'os.stat(a[0])' "$S/s1/a"
rmdir "$S/s2"
kvfs_umount

# ---- the log line for a time outside the window (foreground daemon, stderr captured) -------
timeout 60 "$KVFS" -f -o "data=$DATA" -o history=1h "$MNT" 2>"$TMP/fg.log" &
FGPID=$!
KVFS_PIDS+=("$FGPID"); echo "$FGPID" >>"$TMP/pids"
for _ in $(seq 50); do is_mounted "$MNT" && break; sleep 0.1; done
stat "$S/@2001-01-01T00:00:00Z" >/dev/null 2>&1
if grep -q 'older than the retained history' "$TMP/fg.log"; then ok "the daemon logs why an old time is ENOENT"; else bad "no log line: $(cat "$TMP/fg.log")"; fi
fusermount3 -u "$MNT"
wait_pid_exit "$FGPID" 20 || bad "foreground daemon did not exit"

# ---- retention and space reclaim ----------------------------------------------------------
kvfs_mount history=2s || fs_done
for i in 1 2 3 4 5 6; do # distinct versions: nothing for the compressor to share
    head -c $((8 << 20)) /dev/urandom >"$TMP/big"
    cp "$TMP/big" "$MNT/big"
done
ctl compact >/dev/null
before=$(du -sk "$DATA" | cut -f1)
sleep 3
for i in 1 2; do echo tick >"$MNT/tick$i"; done
ctl compact
check_eq "kvfsctl compact succeeds" "$CTL_RC" 0
sleep 1
ctl compact
after=$(du -sk "$DATA" | cut -f1)
echo "# data dir: ${before} KiB before, ${after} KiB after the window passed and compaction"
if ((after < before - 8192)); then ok "space of versions older than the window is freed ($before -> $after KiB)"; else bad "space not freed: $before -> $after KiB"; fi
check_same_file "the live file is intact after compaction" "$TMP/big" "$MNT/big"
check_errno "a version older than -o history is gone" ENOENT 'os.stat(a[0])' "$S/@$ver/a"

fs_done
