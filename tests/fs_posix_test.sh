#!/usr/bin/env bash
# fs_posix_test.sh -- POSIX behaviour through a real kvfs mount: every errno a user can hit
# (ENOENT ENOTDIR EISDIR EEXIST ENOTEMPTY ENAMETOOLONG EINVAL, EACCES/EPERM for the nobody user
# against mode bits on an allow_other mount, EROFS on -o ro, never EXDEV inside the mount),
# rename flags (RENAME_NOREPLACE, RENAME_EXCHANGE), O_APPEND from two writers, unlink while open,
# hard links, mkfifo/mknod/sockets, chmod/chown/utimensat, ownership of new files (setgid dirs),
# statfs, fallocate, shared writable mmap, names of any bytes, a 1 GiB sparse file with writes
# at high offsets, a 10 GiB file, and that 4 KiB writes into a big file are cheap.
# Errnos are checked by name through perr (a python3 one-liner printing errno.errorcode).
source "$(dirname "${BASH_SOURCE[0]}")/fs_lib.sh"
fs_init fs_posix_test
kvfs_mount allow_other || fs_done
M=$MNT

# renameat2 through ctypes (python has no os.renameat2): r2(old, new, flags)
R2='import ctypes
libc = ctypes.CDLL(None, use_errno=True)
def r2(o, n, fl):
    if libc.renameat2(-100, o.encode(), -100, n.encode(), fl) != 0:
        e = ctypes.get_errno(); raise OSError(e, os.strerror(e))
'

# ---- ENOENT ENOTDIR EISDIR EEXIST ENOTEMPTY ENAMETOOLONG EINVAL -----------------------------
mkdir -p "$M/d/sub"
echo data >"$M/f"
echo inner >"$M/d/sub/x"
check_errno "open a missing file: ENOENT" ENOENT 'os.open(a[0], os.O_RDONLY)' "$M/nope"
check_errno "stat a missing file: ENOENT" ENOENT 'os.stat(a[0])' "$M/nope"
check_errno "unlink a missing file: ENOENT" ENOENT 'os.unlink(a[0])' "$M/nope"
check_errno "rmdir a missing dir: ENOENT" ENOENT 'os.rmdir(a[0])' "$M/nope"
check_errno "create in a missing dir: ENOENT" ENOENT 'os.open(a[0], os.O_CREAT|os.O_WRONLY)' "$M/nope/x"
check_errno "rename a missing file: ENOENT" ENOENT 'os.rename(a[0], a[1])' "$M/nope" "$M/nope2"
check_errno "readlink of a missing file: ENOENT" ENOENT 'os.readlink(a[0])' "$M/nope"
check_errno "open file/x: ENOTDIR" ENOTDIR 'os.open(a[0], os.O_RDONLY)' "$M/f/x"
check_errno "mkdir file/x: ENOTDIR" ENOTDIR 'os.mkdir(a[0])' "$M/f/x"
check_errno "rmdir of a file: ENOTDIR" ENOTDIR 'os.rmdir(a[0])' "$M/f"
check_errno "opendir of a file: ENOTDIR" ENOTDIR 'os.listdir(a[0])' "$M/f"
check_errno "rename dir over a file: ENOTDIR" ENOTDIR 'os.rename(a[0], a[1])' "$M/d/sub" "$M/f"
check_errno "open a dir for writing: EISDIR" EISDIR 'os.open(a[0], os.O_WRONLY)' "$M/d"
check_errno "unlink a dir: EISDIR" EISDIR 'os.unlink(a[0])' "$M/d"
check_errno "rename file over a dir: EISDIR" EISDIR 'os.rename(a[0], a[1])' "$M/f" "$M/d"
check_errno "mkdir an existing dir: EEXIST" EEXIST 'os.mkdir(a[0])' "$M/d"
check_errno "mkdir over an existing file: EEXIST" EEXIST 'os.mkdir(a[0])' "$M/f"
check_errno "O_CREAT|O_EXCL on an existing file: EEXIST" EEXIST 'os.open(a[0], os.O_CREAT|os.O_EXCL|os.O_WRONLY)' "$M/f"
check_errno "symlink over an existing name: EEXIST" EEXIST 'os.symlink("t", a[0])' "$M/f"
check_errno "link over an existing name: EEXIST" EEXIST 'os.link(a[0], a[1])' "$M/f" "$M/d"
check_errno "rmdir a non-empty dir: ENOTEMPTY" ENOTEMPTY 'os.rmdir(a[0])' "$M/d"
mkdir "$M/d2"
check_errno "rename a dir over a non-empty dir: ENOTEMPTY" ENOTEMPTY 'os.rename(a[0], a[1])' "$M/d2" "$M/d"
check_errno "rename a dir into its own subdir: EINVAL" EINVAL 'os.rename(a[0], a[1])' "$M/d" "$M/d/sub/d"
check_errno "rmdir of '.': EINVAL" EINVAL 'os.rmdir(a[0] + "/.")' "$M/d2"
n255=$(printf 'n%.0s' $(seq 1 255)); n256=${n255}n
check_errno "create a 255-byte name" OK 'os.close(os.open(a[0], os.O_CREAT|os.O_WRONLY))' "$M/$n255"
check_errno "stat the 255-byte name" OK 'os.stat(a[0])' "$M/$n255"
check_errno "create a 256-byte name: ENAMETOOLONG" ENAMETOOLONG 'os.open(a[0], os.O_CREAT|os.O_WRONLY)' "$M/$n256"
check_errno "mkdir a 256-byte name: ENAMETOOLONG" ENAMETOOLONG 'os.mkdir(a[0])' "$M/$n256"
check_errno "rename to a 256-byte name: ENAMETOOLONG" ENAMETOOLONG 'os.rename(a[0], a[1])' "$M/$n255" "$M/$n256"
check_errno "lookup of a 256-byte name: ENAMETOOLONG" ENAMETOOLONG 'os.stat(a[0])' "$M/$n256"

# Names may hold any byte but / and NUL.
check_eq "names of arbitrary bytes round-trip" "$(perr '
d = a[0].encode()
names = [bytes(range(1, 47)), bytes(range(48, 128)), bytes(range(128, 256)), b" lead", b"trail ", b"\n", b"-", b"..."]
for n in names:
    fd = os.open(d + b"/" + n, os.O_CREAT | os.O_WRONLY); os.write(fd, n); os.close(fd)
got = sorted(os.listdir(d))
assert got == sorted(names), got
for n in names:
    assert open(d + b"/" + n, "rb").read() == n
' "$M/d2")" OK
rm -rf "$M/d2"; mkdir "$M/d2"

# ---- rename: EXDEV never, NOREPLACE, EXCHANGE, over files, atomic replace ------------------
check_errno "rename across directories works (no EXDEV)" OK 'os.rename(a[0], a[1])' "$M/d/sub/x" "$M/d2/x"
check_eq "renamed file content" "$(cat "$M/d2/x")" inner
check_errno "rename a directory across directories" OK 'os.rename(a[0], a[1])' "$M/d/sub" "$M/d2/sub"
check_eq "parent nlink updated after dir move (old parent)" "$(stat -c %h "$M/d")" 2
check_eq "parent nlink updated after dir move (new parent)" "$(stat -c %h "$M/d2")" 3
check_errno "rename to itself is a no-op" OK 'os.rename(a[0], a[0])' "$M/f"
check_eq "file still there after self-rename" "$(cat "$M/f")" data
echo A >"$M/ra"; echo B >"$M/rb"
check_errno "RENAME_NOREPLACE onto an existing name: EEXIST" EEXIST "$R2"'r2(a[0], a[1], 1)' "$M/ra" "$M/rb"
check_eq "NOREPLACE left both files" "$(cat "$M/ra" "$M/rb" | tr '\n' ' ')" "A B "
check_errno "RENAME_NOREPLACE onto a free name" OK "$R2"'r2(a[0], a[1], 1)' "$M/ra" "$M/rc"
check_errno "RENAME_EXCHANGE of two files" OK "$R2"'r2(a[0], a[1], 2)' "$M/rb" "$M/rc"
check_eq "EXCHANGE swapped contents" "$(cat "$M/rb" "$M/rc" | tr '\n' ' ')" "A B "
check_errno "RENAME_EXCHANGE of a file and a dir" OK "$R2"'r2(a[0], a[1], 2)' "$M/rb" "$M/d2"
check_eq "after EXCHANGE d2 is the file" "$(cat "$M/d2")" A
check_eq "after EXCHANGE rb is the dir" "$(cat "$M/rb/x")" inner
check_errno "swap them back" OK "$R2"'r2(a[0], a[1], 2)' "$M/rb" "$M/d2"
check_errno "RENAME_EXCHANGE with a missing target: ENOENT" ENOENT "$R2"'r2(a[0], a[1], 2)' "$M/rb" "$M/none"
ino_rc=$(stat -c %i "$M/rc")
check "rename over an existing file" mv -f "$M/rc" "$M/rb"
check_eq "target now is the source inode" "$(stat -c %i "$M/rb")" "$ino_rc"
mkdir "$M/emptyd"
check_errno "rename a dir over an empty dir" OK 'os.rename(a[0], a[1])' "$M/d2/sub" "$M/emptyd"
check_eq "moved dir over empty dir" "$(ls "$M/emptyd")" ""

# ---- ownership, setgid dirs, permissions for a non-root user --------------------------------
check_eq "new file belongs to the caller (root)" "$(stat -c %u:%g "$M/f")" "0:0"
mkdir -m 1777 "$M/pub"
PERR_AS=nobody check_errno "nobody creates a file in a 1777 dir" OK \
    'fd = os.open(a[0], os.O_CREAT|os.O_WRONLY, 0o644); os.write(fd, b"mine"); os.close(fd)' "$M/pub/nob"
check_eq "nobody's new file is owned by 65534:65534" "$(stat -c %u:%g "$M/pub/nob")" "65534:65534"
check_eq "umask/mode applied to nobody's file" "$(stat -c %a "$M/pub/nob")" 644
PERR_AS=nobody check_errno "nobody mkdir in a 1777 dir" OK 'os.mkdir(a[0], 0o750)' "$M/pub/nobdir"
check_eq "nobody's new dir owner and mode" "$(stat -c %u:%g:%a "$M/pub/nobdir")" "65534:65534:750"
echo secret >"$M/pub/rootfile"
chmod 600 "$M/pub/rootfile"
PERR_AS=nobody check_errno "nobody reads a 0600 root file: EACCES" EACCES 'open(a[0]).read()' "$M/pub/rootfile"
chmod 644 "$M/pub/rootfile"
PERR_AS=nobody check_errno "nobody reads a 0644 root file" OK 'open(a[0]).read()' "$M/pub/rootfile"
PERR_AS=nobody check_errno "nobody writes a 0644 root file: EACCES" EACCES 'os.open(a[0], os.O_WRONLY)' "$M/pub/rootfile"
PERR_AS=nobody check_errno "nobody deletes root's file in a sticky dir: EPERM" EPERM 'os.unlink(a[0])' "$M/pub/rootfile"
PERR_AS=nobody check_errno "nobody chmods root's file: EPERM" EPERM 'os.chmod(a[0], 0o777)' "$M/pub/rootfile"
PERR_AS=nobody check_errno "nobody chowns own file to root: EPERM" EPERM 'os.chown(a[0], 0, 0)' "$M/pub/nob"
PERR_AS=nobody check_errno "nobody chmods own file" OK 'os.chmod(a[0], 0o600)' "$M/pub/nob"
PERR_AS=nobody check_errno "nobody creates in a 0755 root dir: EACCES" EACCES 'os.open(a[0], os.O_CREAT|os.O_WRONLY)' "$M/d/x"
mkdir -m 700 "$M/priv"; echo hidden >"$M/priv/h"; chmod 644 "$M/priv/h"
PERR_AS=nobody check_errno "nobody lists a 0700 dir: EACCES" EACCES 'os.listdir(a[0])' "$M/priv"
PERR_AS=nobody check_errno "nobody traverses a 0700 dir: EACCES" EACCES 'os.stat(a[0])' "$M/priv/h"
chmod 711 "$M/priv"
PERR_AS=nobody check_errno "nobody traverses a 0711 dir" OK 'open(a[0]).read()' "$M/priv/h"
PERR_AS=nobody check_errno "nobody still cannot list a 0711 dir: EACCES" EACCES 'os.listdir(a[0])' "$M/priv"
printf '#!/bin/sh\necho ran\n' >"$M/script.sh"; chmod 755 "$M/script.sh"
check_eq "exec a 0755 script on the mount" "$("$M/script.sh" 2>&1)" "ran"
chmod 644 "$M/script.sh"
check_errno "exec a 0644 script: EACCES" EACCES 'os.execv(a[0], [a[0]])' "$M/script.sh"
mkdir "$M/sgid"; chown 0:1234 "$M/sgid"; chmod 2775 "$M/sgid"
touch "$M/sgid/file"; mkdir "$M/sgid/subdir"
check_eq "file in a setgid dir takes the dir's group" "$(stat -c %g "$M/sgid/file")" 1234
check_eq "subdir of a setgid dir takes the group and the setgid bit" "$(stat -c %g:%a "$M/sgid/subdir")" "1234:2755"
PERR_AS=nobody check_errno "nobody writes to a 0644 file: EACCES even via truncate" EACCES 'os.truncate(a[0], 0)' "$M/pub/rootfile"
check_eq "root's file unchanged after nobody's attempts" "$(cat "$M/pub/rootfile")" secret
# a write or truncation by a user without CAP_FSETID clears setuid (and a group-executable
# file's setgid), as on ext4, also through O_WRONLY (direct I/O) and an open with O_TRUNC
for f in wronly rdwr append trunc empty ftrunc gnox rootw; do
    echo data >"$M/pub/suid_$f"
    chmod 6777 "$M/pub/suid_$f"
done
: >"$M/pub/suid_empty"
chmod 6777 "$M/pub/suid_empty"
touch -d @1000 "$M/pub/suid_empty"
chmod 6767 "$M/pub/suid_gnox"
PERR_AS=nobody check_errno "nobody writes O_WRONLY to a 6777 file" OK \
    'fd = os.open(a[0], os.O_WRONLY); os.write(fd, b"x"); os.close(fd)' "$M/pub/suid_wronly"
PERR_AS=nobody check_errno "nobody writes O_RDWR to a 6777 file" OK \
    'fd = os.open(a[0], os.O_RDWR); os.write(fd, b"x"); os.close(fd)' "$M/pub/suid_rdwr"
PERR_AS=nobody check_errno "nobody appends to a 6777 file" OK \
    'fd = os.open(a[0], os.O_WRONLY|os.O_APPEND); os.write(fd, b"x"); os.close(fd)' "$M/pub/suid_append"
PERR_AS=nobody check_errno "nobody opens a 6777 file with O_TRUNC" OK \
    'os.close(os.open(a[0], os.O_WRONLY|os.O_TRUNC))' "$M/pub/suid_trunc"
PERR_AS=nobody check_errno "nobody opens an empty 6777 file with O_TRUNC" OK \
    'os.close(os.open(a[0], os.O_WRONLY|os.O_TRUNC))' "$M/pub/suid_empty"
PERR_AS=nobody check_errno "nobody truncates a 6777 file" OK 'os.truncate(a[0], 1)' "$M/pub/suid_ftrunc"
PERR_AS=nobody check_errno "nobody writes to a 6767 file" OK \
    'fd = os.open(a[0], os.O_WRONLY); os.write(fd, b"x"); os.close(fd)' "$M/pub/suid_gnox"
echo more >>"$M/pub/suid_rootw"
check_eq "setuid/setgid cleared by nobody's writes and truncations" \
    "$(stat -c %a "$M"/pub/suid_{wronly,rdwr,append,trunc,empty,ftrunc} | tr '\n' ' ')" \
    "777 777 777 777 777 777 "
check_eq "setgid kept on a file that is not group-executable" "$(stat -c %a "$M/pub/suid_gnox")" 2767
check_eq "root's write keeps setuid/setgid" "$(stat -c %a "$M/pub/suid_rootw")" 6777
check_eq "nobody's writes reached the files" \
    "$(head -c 4 "$M/pub/suid_wronly"):$(tail -c 1 "$M/pub/suid_append"):$(stat -c %s "$M/pub/suid_trunc")" \
    "xata:x:0"
(($(stat -c %Y "$M/pub/suid_empty") > 1000)) && ok "O_TRUNC of an empty file updates its mtime" ||
    bad "mtime of an empty file after O_TRUNC: $(stat -c %Y "$M/pub/suid_empty")"
echo eleven-byte >"$M/rdtrunc"
check_errno "open O_RDONLY|O_TRUNC" OK 'os.close(os.open(a[0], os.O_RDONLY|os.O_TRUNC))' "$M/rdtrunc"
check_eq "O_RDONLY|O_TRUNC truncates, as on ext4" "$(stat -c %s "$M/rdtrunc")" 0

# ---- chmod, chown, utimensat, ctime ---------------------------------------------------------
touch "$M/meta"
c0=$(stat -c %Z "$M/meta")
sleep 1.1
check "chmod 0" chmod 0 "$M/meta"
check_eq "mode 0" "$(stat -c %a "$M/meta")" 0
check "chmod 6751" chmod 6751 "$M/meta"
check_eq "mode 6751 with setuid/setgid" "$(stat -c %a "$M/meta")" 6751
c1=$(stat -c %Z "$M/meta")
((c1 > c0)) && ok "chmod updates ctime" || bad "ctime $c0 -> $c1 after chmod"
check "chown 1:2" chown 1:2 "$M/meta"
check_eq "owner 1:2" "$(stat -c %u:%g "$M/meta")" "1:2"
check "chown -h on a symlink" bash -c "ln -s meta '$M/metalink' && chown -h 7:8 '$M/metalink'"
check_eq "symlink owner changed, target untouched" "$(stat -c %u:%g "$M/metalink"):$(stat -c %u:%g "$M/meta")" "7:8:1:2"
check_errno "utimensat with nanoseconds" OK 'os.utime(a[0], ns=(1234567890123456789, 987654321987654321))' "$M/meta"
nsof() { "$PY" -c 'import os, sys; s = os.lstat(sys.argv[1]); print(s.st_atime_ns, s.st_mtime_ns)' "$1"; }
check_eq "atime/mtime with nanoseconds" "$(nsof "$M/meta")" "1234567890123456789 987654321987654321"
touch "$M/nsf"
check_errno "utimensat on a second file" OK 'os.utime(a[0], ns=(1, 1600000000123456789))' "$M/nsf"
check_errno "utimensat UTIME_OMIT for atime" OK 'os.utime(a[0], ns=(1, 5000000000))' "$M/meta"
check_eq "mtime = 5 s" "$(stat -c %Y "$M/meta")" 5
check_errno "utimensat on a symlink (nofollow)" OK 'os.utime(a[0], ns=(0, 77000000000), follow_symlinks=False)' "$M/metalink"
check_eq "symlink's own mtime set, target unchanged" "$(stat -c %Y "$M/metalink"):$(stat -c %Y "$M/meta")" "77:5"
echo x >"$M/mt"; touch -d @1000 "$M/mt"; echo y >>"$M/mt"
m=$(stat -c %Y "$M/mt")
((m > 1000)) && ok "write updates mtime" || bad "mtime stayed $m after a write"
touch -d @1000 "$M/d"; touch "$M/d/newentry"
m=$(stat -c %Y "$M/d")
((m > 1000)) && ok "create updates the parent dir's mtime" || bad "parent mtime stayed $m after a create"

# ---- hard links ----------------------------------------------------------------------------
echo "linked" >"$M/h1"
check "ln (hard link)" ln "$M/h1" "$M/d/h2"
check_eq "same inode" "$(stat -c %i "$M/h1")" "$(stat -c %i "$M/d/h2")"
check_eq "nlink 2 on both" "$(stat -c %h "$M/h1"):$(stat -c %h "$M/d/h2")" "2:2"
echo "more" >>"$M/d/h2"
check_eq "write through one name seen through the other" "$(cat "$M/h1")" $'linked\nmore'
chmod 600 "$M/h1"
check_eq "chmod shared" "$(stat -c %a "$M/d/h2")" 600
check "rm the first name" rm "$M/h1"
check_eq "second name keeps the data" "$(cat "$M/d/h2")" $'linked\nmore'
check_eq "nlink back to 1" "$(stat -c %h "$M/d/h2")" 1
check_errno "hard link to a directory: EPERM" EPERM 'os.link(a[0], a[1])' "$M/d" "$M/dlink"
ln "$M/d/h2" "$M/h3"; mv "$M/h3" "$M/h4"
check_eq "rename keeps nlink" "$(stat -c %h "$M/h4")" 2
echo replaced >"$M/h5"; mv -f "$M/h5" "$M/h4"
check_eq "rename over a link drops nlink of the old inode" "$(stat -c %h "$M/d/h2")" 1

# ---- symlinks ------------------------------------------------------------------------------
ln -s d/h2 "$M/s1"; ln -s s1 "$M/s2"; ln -s loop "$M/loop"
check_eq "chain of symlinks" "$(cat "$M/s2")" $'linked\nmore'
check_errno "symlink loop: ELOOP" ELOOP 'open(a[0])' "$M/loop"
check_eq "lstat size of a symlink = target length" "$(stat -c %s "$M/s1")" 4
check_errno "O_NOFOLLOW on a symlink: ELOOP" ELOOP 'os.open(a[0], os.O_RDONLY|os.O_NOFOLLOW)' "$M/s1"
check_errno "readlink of a file: EINVAL" EINVAL 'os.readlink(a[0])' "$M/f"
ln -s "$M/d" "$M/absdir"
check_eq "absolute symlink into the mount" "$(cat "$M/absdir/h2" | head -1)" linked

# ---- mkfifo, mknod, sockets ----------------------------------------------------------------
check "mkfifo" mkfifo "$M/fifo"
check_eq "fifo type" "$(stat -c %F "$M/fifo")" fifo
( echo "through the pipe" >"$M/fifo" ) &
wpid=$!
check_eq "data flows through a fifo on the mount" "$(timeout 10 cat "$M/fifo")" "through the pipe"
wait $wpid 2>/dev/null
check "mknod a char device" mknod "$M/null" c 1 3
check_eq "device type and numbers" "$(stat -c '%F %t:%T' "$M/null")" "character special file 1:3"
check "mknod a block device" mknod "$M/blk" b 8 1
check_eq "block device numbers" "$(stat -c '%F %t:%T' "$M/blk")" "block special file 8:1"
check_errno "bind a unix socket on the mount" OK 'import socket; s = socket.socket(socket.AF_UNIX); s.bind(a[0])' "$M/sock"
check_eq "socket type" "$(stat -c %F "$M/sock")" socket

# ---- O_APPEND from two writers ---------------------------------------------------------------
cat >"$TMP/appender.py" <<'EOF'
import os, sys
path, tag, n = sys.argv[1], sys.argv[2].encode(), int(sys.argv[3])
fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
for i in range(n):
    line = tag * 10 + b" %06d " % i + tag * 80 + b"\n"
    assert os.write(fd, line) == len(line)
os.close(fd)
EOF
"$PY" "$TMP/appender.py" "$M/log" A 2000 & p1=$!
"$PY" "$TMP/appender.py" "$M/log" B 2000 & p2=$!
wait $p1; r1=$?; wait $p2; r2=$?
check_eq "both appenders succeeded" "$r1:$r2" "0:0"
linelen=$((10 + 8 + 80 + 1))
check_eq "O_APPEND: size is the sum of all writes" "$(stat -c %s "$M/log")" $((2 * 2000 * linelen))
check_eq "O_APPEND: no line torn or overwritten" "$(grep -cE '^(A{10} [0-9]{6} A{80}|B{10} [0-9]{6} B{80})$' "$M/log")" 4000
check_eq "O_APPEND: writer A's lines in order" "$(grep '^A' "$M/log" | cut -c12-17 | sort -c && echo sorted)" sorted
check_eq "O_APPEND: writer A has all 2000 lines" "$(grep -c '^A' "$M/log")" 2000
echo "head" >"$M/app2"
check_errno "O_APPEND ignores lseek" OK '
fd = os.open(a[0], os.O_WRONLY | os.O_APPEND); os.lseek(fd, 0, 0); os.write(fd, b"tail\n"); os.close(fd)' "$M/app2"
check_eq "O_APPEND wrote at the end" "$(cat "$M/app2")" $'head\ntail'

# ---- unlink while open -----------------------------------------------------------------------
check_eq "unlink while open: fd stays readable and writable" "$(perr '
p = a[0]
fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
os.write(fd, b"x" * 200000)
os.unlink(p)
assert not os.path.exists(p), "name still visible"
assert os.path.basename(p) not in os.listdir(os.path.dirname(p)), "name still listed"
os.pwrite(fd, b"after-unlink", 100000)
assert os.pread(fd, 12, 100000) == b"after-unlink"
assert os.pread(fd, 5, 0) == b"xxxxx"
st = os.fstat(fd)
assert st.st_nlink == 0, "nlink %d" % st.st_nlink
assert st.st_size == 200000, st.st_size
fd2 = os.open(p, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
os.write(fd2, b"new")
assert os.pread(fd, 5, 0) == b"xxxxx", "new file with the same name clobbered the open one"
os.close(fd2)
os.close(fd)
assert open(p, "rb").read() == b"new"
' "$M/unl")" OK
check_eq "unlinked file did not come back" "$(ls "$M" | grep -c '^unl$')" 1

# ---- statfs ----------------------------------------------------------------------------------
read -r bs blocks bfree bavail files namemax < <("$PY" -c '
import os, sys
s = os.statvfs(sys.argv[1]); print(s.f_frsize, s.f_blocks, s.f_bfree, s.f_bavail, s.f_files, s.f_namemax)' "$M")
read -r hbs hblocks hbavail < <("$PY" -c '
import os, sys
s = os.statvfs(sys.argv[1]); print(s.f_frsize, s.f_blocks, s.f_bavail)' "$DATA")
((blocks > 0 && bavail > 0 && files > 0)) && ok "statfs reports real numbers ($blocks blocks of $bs)" \
    || bad "statfs: blocks=$blocks bavail=$bavail files=$files"
tot=$((bs * blocks)); htot=$((hbs * hblocks))
((tot > htot * 9 / 10 && tot < htot * 11 / 10)) && ok "statfs total matches the data dir's filesystem" \
    || bad "statfs total $tot bytes, the data dir's filesystem has $htot"
avail=$((bs * bavail)); havail=$((hbs * hbavail))
((avail > havail * 9 / 10 - 100000000 && avail < havail * 11 / 10 + 100000000)) && ok "statfs free space matches" \
    || bad "statfs avail $avail bytes, data dir fs has $havail"
check_eq "f_namemax 255" "$namemax" 255
df_line=$(df -B1 "$M" | tail -1)
[[ $(awk '{print $2}' <<<"$df_line") -gt 0 ]] && ok "df shows a size: $df_line" || bad "df: $df_line"

# ---- fallocate -------------------------------------------------------------------------------
check "fallocate -l 1MiB" fallocate -l 1048576 "$M/fa"
check_eq "fallocate extended the size" "$(stat -c %s "$M/fa")" 1048576
check_eq "fallocated range reads as zeros" "$(tr -d '\0' <"$M/fa" | wc -c)" 0
head -c 300000 /dev/urandom >"$TMP/fa.ref"; cp "$TMP/fa.ref" "$M/fa2"
fallocate -p -o 4096 -l 131072 "$TMP/fa.ref"
check "fallocate --punch-hole" fallocate -p -o 4096 -l 131072 "$M/fa2"
check_same_file "punched range reads as zeros, the rest kept" "$TMP/fa.ref" "$M/fa2"
check_eq "punch hole keeps the size" "$(stat -c %s "$M/fa2")" 300000

# ---- shared writable mmap --------------------------------------------------------------------
check_errno "shared writable mmap reaches the file" OK '
import mmap
fd = os.open(a[0], os.O_RDWR | os.O_CREAT, 0o644)
os.ftruncate(fd, 200000)
m = mmap.mmap(fd, 200000, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
m[0:5] = b"hello"; m[131070:131080] = b"0123456789"; m[-3:] = b"end"
m.flush(); m.close(); os.close(fd)
fd = os.open(a[0], os.O_RDONLY)
assert os.pread(fd, 5, 0) == b"hello"
assert os.pread(fd, 10, 131070) == b"0123456789"
assert os.pread(fd, 3, 199997) == b"end"
os.close(fd)' "$M/mm"
check_errno "mmap read of file data" OK '
import mmap
fd = os.open(a[0], os.O_RDONLY)
m = mmap.mmap(fd, 0, mmap.MAP_SHARED, mmap.PROT_READ)
assert m[:5] == b"hello" and m[131070:131080] == b"0123456789"
' "$M/mm"

# ---- large files -----------------------------------------------------------------------------
G=$((1024 * 1024 * 1024))
check "truncate -s 1G (sparse)" truncate -s 1G "$M/big"
check_eq "1 GiB sparse file: writes at high offsets read back, holes are zeros" "$(perr '
import hashlib, random
fd = os.open(a[0], os.O_RDWR)
G = 1 << 30
rnd = random.Random(7)
offs = [G - 8192, G - 1, G // 2 + 12345, 999999999, 65535, 0]
data = {}
for o in offs:
    b = bytes(rnd.getrandbits(8) for _ in range(min(4096, G - o)))
    assert os.pwrite(fd, b, o) == len(b)
    data[o] = b
for o, b in data.items():
    got = os.pread(fd, len(b), o)
    assert got == b, "bytes at %d differ" % o
assert os.pread(fd, 4096, G // 4) == bytes(4096), "hole not zero"
assert os.pread(fd, 100, G - 2000) == bytes(100), "hole before the last byte not zero"
assert os.fstat(fd).st_size == G
assert os.pread(fd, 10, G) == b"", "read past EOF"
os.close(fd)' "$M/big")" OK
check_eq "10 GiB file size" "$(truncate -s 10G "$M/big10" && stat -c %s "$M/big10")" $((10 * G))
check "write 1 MiB at 10 GiB - 1 MiB" dd if=/dev/urandom of="$M/big10" bs=1M seek=10239 count=1 conv=notrunc status=none
check_eq "10 GiB file: size unchanged by the tail write" "$(stat -c %s "$M/big10")" $((10 * G))
check_eq "10 GiB file: middle is a hole" "$(dd if="$M/big10" bs=1M skip=5000 count=1 status=none | tr -d '\0' | wc -c)" 0
check "write 4 KiB past 10 GiB extends" dd if=/dev/zero of="$M/big10" bs=4096 seek=$((10 * G / 4096 + 10)) count=1 conv=notrunc status=none
check_eq "size past 10 GiB" "$(stat -c %s "$M/big10")" $((10 * G + 11 * 4096))
# A 4 KiB write into a big file must cost ~one chunk, not a rewrite: 64 MiB of data written, then
# 2000 random 4 KiB overwrites must finish quickly (a rewrite per write would take hours).
check "write 64 MiB" dd if=/dev/urandom of="$M/big64" bs=1M count=64 status=none
t0=$(date +%s.%N)
check_errno "2000 random 4 KiB overwrites in a 64 MiB file" OK '
import random
fd = os.open(a[0], os.O_RDWR)
r = random.Random(3); b = b"w" * 4096
for i in range(2000):
    os.pwrite(fd, b, r.randrange(0, 64 << 20, 4096))
os.fsync(fd); os.close(fd)' "$M/big64"
t1=$(date +%s.%N)
el=$("$PY" -c "print(round($t1 - $t0, 2))")
"$PY" -c "import sys; sys.exit(0 if $el < 20 else 1)" && ok "random 4 KiB overwrites are cheap (${el}s for 2000)" \
    || bad "2000 random 4 KiB overwrites took ${el}s: writes are not chunk-local"

# ---- everything above survives a remount -------------------------------------------------------
sum_before=$(sha256sum "$M/big64" "$M/log" "$M/mm" "$M/fa2" | cut -c1-64)
big_before=$(dd if="$M/big10" bs=1M skip=10239 count=1 status=none | sha256sum)
check_alive "before remount"
kvfs_remount allow_other || fs_done
check_eq "file contents identical after remount" "$(sha256sum "$M/big64" "$M/log" "$M/mm" "$M/fa2" | cut -c1-64)" "$sum_before"
check_eq "10 GiB file tail identical after remount" "$(dd if="$M/big10" bs=1M skip=10239 count=1 status=none | sha256sum)" "$big_before"
check_eq "hard link count after remount" "$(stat -c %h "$M/d/h2")" 1
check_eq "setgid group after remount" "$(stat -c %g:%a "$M/sgid/subdir")" "1234:2755"
check_eq "device numbers after remount" "$(stat -c '%t:%T' "$M/null")" "1:3"
check_eq "nanosecond times after remount" "$(nsof "$M/nsf")" "1 1600000000123456789"
check_eq "unlinked-while-open file left nothing behind" "$(ls -a "$M" | grep -c '^unl')" 1

# ---- read-only mount: EROFS ---------------------------------------------------------------------
kvfs_umount
kvfs_mount ro || fs_done
check_eq "ro mount: reads work" "$(cat "$M/f")" data
check_errno "ro mount: open for write: EROFS" EROFS 'os.open(a[0], os.O_WRONLY)' "$M/f"
check_errno "ro mount: create: EROFS" EROFS 'os.open(a[0], os.O_CREAT|os.O_WRONLY)' "$M/newfile"
check_errno "ro mount: mkdir: EROFS" EROFS 'os.mkdir(a[0])' "$M/newdir"
check_errno "ro mount: unlink: EROFS" EROFS 'os.unlink(a[0])' "$M/f"
check_errno "ro mount: rename: EROFS" EROFS 'os.rename(a[0], a[1])' "$M/f" "$M/g"
check_errno "ro mount: chmod: EROFS" EROFS 'os.chmod(a[0], 0o777)' "$M/f"
check_errno "ro mount: setxattr: EROFS" EROFS 'os.setxattr(a[0], "user.x", b"1")' "$M/f"
check_errno "ro mount: utime: EROFS" EROFS 'os.utime(a[0])' "$M/f"
check_errno "ro mount: truncate: EROFS" EROFS 'os.truncate(a[0], 0)' "$M/f"
check_eq "ro mount: file unchanged" "$(cat "$M/f")" data
fs_done
