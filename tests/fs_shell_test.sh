#!/usr/bin/env bash
# fs_shell_test.sh -- everyday shell tools through a real kvfs mount: echo/cat, cp -a, mv, rm -r,
# find, du, stat, ln -s, touch -d, truncate, dd with seek, getfattr/setfattr, an editor-style
# save (write temp, fsync, rename over), and that all of it survives a remount.
# Each check compares observable results (bytes, sizes, modes, times) with what the tool was told
# to produce, or with the same operation done on a local directory.
source "$(dirname "${BASH_SOURCE[0]}")/fs_lib.sh"
fs_init fs_shell_test
kvfs_mount || fs_done

REF=$TMP/ref         # the same operations on the local disk, as the reference
mkdir -p "$REF"

# ---- echo, cat, append ---------------------------------------------------------------------
echo "hello world" >"$MNT/hello.txt"
check_eq "echo > file, cat reads it back" "$(cat "$MNT/hello.txt")" "hello world"
echo "second line" >>"$MNT/hello.txt"
check_eq ">> appends" "$(cat "$MNT/hello.txt")" $'hello world\nsecond line'
check_eq "size after append" "$(stat -c %s "$MNT/hello.txt")" 24
printf '' >"$MNT/empty"
check_eq "empty file has size 0" "$(stat -c %s "$MNT/empty")" 0
check_eq "cat of an empty file prints nothing" "$(cat "$MNT/empty" | wc -c)" 0
echo "short" >"$MNT/hello.txt"
check_eq "> truncates an existing file" "$(cat "$MNT/hello.txt")" "short"

# Binary bytes, every value 0..255, several chunks (a 64 KiB chunk boundary is crossed).
head -c 300000 /dev/urandom >"$REF/random.bin"
cat "$REF/random.bin" >"$MNT/random.bin"
check_same_file "300 KB of random bytes round-trip through cat" "$REF/random.bin" "$MNT/random.bin"

# ---- cp -a of a small tree with modes, times, symlinks -------------------------------------
mkdir -p "$REF/tree/a/b/c" "$REF/tree/empty-dir"
echo one >"$REF/tree/a/one"
echo two >"$REF/tree/a/b/two"
head -c 70000 /dev/urandom >"$REF/tree/a/b/c/three.bin"
chmod 0640 "$REF/tree/a/one"
chmod 0700 "$REF/tree/a/b"
chmod 4755 "$REF/tree/a/b/two"
ln -s ../one "$REF/tree/a/b/link-to-one"
ln -s /nonexistent/target "$REF/tree/dangling"
touch -d '2001-02-03 04:05:06.123456789' "$REF/tree/a/one"
touch -h -d '2002-01-01 00:00:00' "$REF/tree/dangling"
chown 1234:5678 "$REF/tree/a/b/c/three.bin"
check "cp -a tree into the mount" cp -a "$REF/tree" "$MNT/tree"
check "diff -r of the copied tree" diff -r --no-dereference "$REF/tree" "$MNT/tree"
meta() { (cd "$1" && find . ! -path . -printf '%p %y %m %U:%G %l\n' | sort); }
check_eq "cp -a keeps types, modes, owners, link targets" "$(meta "$MNT/tree")" "$(meta "$REF/tree")"
check_eq "cp -a keeps mtime with nanoseconds" "$(stat -c %y "$MNT/tree/a/one")" "$(stat -c %y "$REF/tree/a/one")"
check_eq "cp -a keeps a symlink's own mtime" "$(stat -c %Y "$MNT/tree/dangling")" "$(stat -c %Y "$REF/tree/dangling")"
check_eq "setuid bit kept" "$(stat -c %a "$MNT/tree/a/b/two")" 4755

# ---- find, du, stat ------------------------------------------------------------------------
check_eq "find lists the same names" "$(cd "$MNT/tree" && find . | sort)" "$(cd "$REF/tree" && find . | sort)"
check_eq "find -type f" "$(cd "$MNT/tree" && find . -type f | sort)" "$(cd "$REF/tree" && find . -type f | sort)"
check_eq "find -type l" "$(cd "$MNT/tree" && find . -type l | sort)" $'./a/b/link-to-one\n./dangling'
check_eq "find -newer by mtime" "$(cd "$MNT/tree" && find . -type f ! -newermt 2001-12-31 | sort)" "./a/one"
check_eq "du --apparent-size -b counts the bytes" "$(du --apparent-size -b "$MNT/tree/a/b/c/three.bin" | cut -f1)" 70000
blocks=$(stat -c %b "$MNT/tree/a/b/c/three.bin")
if ((blocks * 512 >= 70000)); then ok "st_blocks covers the data ($blocks blocks)"; else bad "st_blocks $blocks too small for 70000 bytes"; fi
du_k=$(du -sk "$MNT/tree" | cut -f1)
if ((du_k >= 68)); then ok "du -sk reports real usage ($du_k KiB)"; else bad "du -sk reports $du_k KiB for >= 70 KB of data"; fi
check_eq "stat -c %F of a dir" "$(stat -c %F "$MNT/tree/a")" "directory"
check_eq "stat -c %F of a file" "$(stat -c %F "$MNT/tree/a/one")" "regular file"
check_eq "stat -c %F of a symlink" "$(stat -c %F "$MNT/tree/dangling")" "symbolic link"
check_eq "stat -L follows a symlink" "$(stat -L -c %s "$MNT/tree/a/b/link-to-one")" 4
check_eq "directory nlink = 2 + subdirs" "$(stat -c %h "$MNT/tree/a")" 3
check_eq "file nlink = 1" "$(stat -c %h "$MNT/tree/a/one")" 1
ino1=$(stat -c %i "$MNT/tree/a/one"); ino2=$(stat -c %i "$MNT/tree/a/b/two")
[[ $ino1 != "$ino2" ]] && ok "distinct files have distinct inode numbers" || bad "two files share inode $ino1"
check_eq "ls -a of a directory" "$(ls -a "$MNT/tree/a/b" | tr '\n' ' ')" ". .. c link-to-one two "

# ---- ln -s, readlink -----------------------------------------------------------------------
check "ln -s" ln -s hello.txt "$MNT/sym"
check_eq "readlink" "$(readlink "$MNT/sym")" "hello.txt"
check_eq "cat through a symlink" "$(cat "$MNT/sym")" "short"
long_target=$(printf 'x%.0s' $(seq 1 1000))/y
check "ln -s with a 1002-byte target" ln -s "$long_target" "$MNT/longsym"
check_eq "readlink of the long target" "$(readlink "$MNT/longsym")" "$long_target"

# ---- mv ------------------------------------------------------------------------------------
check "mv a file" mv "$MNT/random.bin" "$MNT/tree/moved.bin"
check_fails "old name gone after mv" test -e "$MNT/random.bin"
check_same_file "moved file keeps its bytes" "$REF/random.bin" "$MNT/tree/moved.bin"
check "mv a directory" mv "$MNT/tree/a" "$MNT/a-moved"
check_eq "moved directory keeps its subtree" "$(cat "$MNT/a-moved/b/two")" "two"
check_same_file "deep file in moved dir" "$REF/tree/a/b/c/three.bin" "$MNT/a-moved/b/c/three.bin"
echo replacement >"$MNT/victim-src"; echo old >"$MNT/victim"
check "mv over an existing file" mv -f "$MNT/victim-src" "$MNT/victim"
check_eq "target has the new content" "$(cat "$MNT/victim")" "replacement"
check_fails "source gone" test -e "$MNT/victim-src"
check "mv the directory back" mv "$MNT/a-moved" "$MNT/tree/a"
check "diff -r after moves" diff -r --no-dereference -x moved.bin "$REF/tree" "$MNT/tree"

# ---- touch -d, truncate, dd seek -----------------------------------------------------------
check "touch -d sets a past time" touch -d '1999-12-31 23:59:58' "$MNT/hello.txt"
check_eq "mtime set by touch -d" "$(stat -c %Y "$MNT/hello.txt")" "$(date -d '1999-12-31 23:59:58' +%s)"
check "touch -a -d sets atime only" touch -a -d '2010-01-01 00:00:00' "$MNT/hello.txt"
check_eq "atime set" "$(stat -c %X "$MNT/hello.txt")" "$(date -d '2010-01-01 00:00:00' +%s)"
check_eq "mtime untouched by touch -a" "$(stat -c %Y "$MNT/hello.txt")" "$(date -d '1999-12-31 23:59:58' +%s)"
before=$(date +%s)
check "touch creates a file" touch "$MNT/touched"
check_eq "touched file is empty" "$(stat -c %s "$MNT/touched")" 0
m=$(stat -c %Y "$MNT/touched")
((m >= before - 1 && m <= before + 5)) && ok "new file mtime is now" || bad "new file mtime $m, now $before"

printf 'abcdefghij' >"$MNT/trunc"
check "truncate -s 4 shrinks" truncate -s 4 "$MNT/trunc"
check_eq "shrunk content" "$(cat "$MNT/trunc")" "abcd"
check "truncate -s 100000 grows" truncate -s 100000 "$MNT/trunc"
check_eq "grown size" "$(stat -c %s "$MNT/trunc")" 100000
check_eq "grown part reads as zeros" "$(tail -c +5 "$MNT/trunc" | tr -d '\0' | wc -c)" 0
check_eq "head of grown file kept" "$(head -c 4 "$MNT/trunc")" "abcd"
# shrink inside a chunk, then grow again: the dropped bytes must not come back
head -c 200000 /dev/urandom >"$MNT/trunc2"
truncate -s 70001 "$MNT/trunc2"
truncate -s 200000 "$MNT/trunc2"
check_eq "bytes cut by truncate do not reappear on grow" "$(tail -c +70002 "$MNT/trunc2" | tr -d '\0' | wc -c)" 0

head -c 5000 /dev/urandom >"$REF/patch"
cp "$REF/random.bin" "$REF/dd.bin"; cp "$REF/random.bin" "$MNT/dd.bin"
dd if="$REF/patch" of="$REF/dd.bin" bs=1 seek=65000 conv=notrunc status=none
check "dd seek=65000 conv=notrunc (crosses a chunk boundary)" \
    dd if="$REF/patch" of="$MNT/dd.bin" bs=1 seek=65000 conv=notrunc status=none
check_same_file "dd overwrite in the middle" "$REF/dd.bin" "$MNT/dd.bin"
dd if="$REF/patch" of="$REF/dd.bin" bs=4096 seek=1000 conv=notrunc status=none
check "dd seek past EOF leaves a hole" dd if="$REF/patch" of="$MNT/dd.bin" bs=4096 seek=1000 conv=notrunc status=none
check_same_file "file with a hole after dd seek" "$REF/dd.bin" "$MNT/dd.bin"
check_eq "size after dd seek" "$(stat -c %s "$MNT/dd.bin")" $((4096 * 1000 + 5000))
check "dd conv=fsync" dd if="$REF/patch" of="$MNT/dd2.bin" bs=1000 conv=fsync status=none
check_same_file "dd conv=fsync content" "$REF/patch" "$MNT/dd2.bin"
check_eq "dd skip reads at an offset" "$(dd if="$MNT/dd.bin" bs=1 skip=65000 count=5000 status=none | sha256sum)" \
    "$(sha256sum <"$REF/patch")"

# ---- extended attributes -------------------------------------------------------------------
check "setfattr user.color" setfattr -n user.color -v blue "$MNT/hello.txt"
check "setfattr user.empty (empty value)" setfattr -n user.empty -v '""' "$MNT/hello.txt"
check "setfattr a binary value" setfattr -n user.bin -v 0x00ff10 "$MNT/hello.txt"
check_eq "getfattr reads a value" "$(getfattr --absolute-names --only-values -n user.color "$MNT/hello.txt")" "blue"
check_eq "getfattr binary value" "$(getfattr --absolute-names -e hex -n user.bin "$MNT/hello.txt" 2>/dev/null | grep '^user.bin=')" "user.bin=0x00ff10"
check_eq "getfattr -d lists user attrs" "$(getfattr --absolute-names -d -m '^user\.' "$MNT/hello.txt" 2>/dev/null | grep '^user' | cut -d= -f1 | sort | tr '\n' ' ')" \
    "user.bin user.color user.empty "
check "setfattr replaces a value" setfattr -n user.color -v red "$MNT/hello.txt"
check_eq "replaced value" "$(getfattr --absolute-names --only-values -n user.color "$MNT/hello.txt")" "red"
check "setfattr -x removes" setfattr -x user.color "$MNT/hello.txt"
check_err_msg "getfattr of a removed attr: No such attribute" "No such attribute|No data" \
    getfattr --absolute-names -n user.color "$MNT/hello.txt"
check_err_msg "setfattr -x of a missing attr fails" "No such attribute|No data" setfattr -x user.nothere "$MNT/hello.txt"
check_errno "security.capability query: ENODATA" ENODATA 'os.getxattr(a[0], "security.capability")' "$MNT/hello.txt"
check_errno "trusted.* attributes are refused" ENOTSUP 'os.setxattr(a[0], "trusted.x", b"1")' "$MNT/hello.txt"
check_errno "setxattr XATTR_CREATE on an existing name: EEXIST" EEXIST \
    'os.setxattr(a[0], "user.bin", b"z", os.XATTR_CREATE)' "$MNT/hello.txt"
check_errno "setxattr XATTR_REPLACE on a missing name: ENODATA" ENODATA \
    'os.setxattr(a[0], "user.none", b"z", os.XATTR_REPLACE)' "$MNT/hello.txt"
check "setfattr on a directory" setfattr -n user.dir -v d "$MNT/tree"
# "v" first: setfattr reads a value starting with 0s/0S (base64) or 0x (hex) as encoded
big=v$(head -c 3000 /dev/urandom | base64 -w0)
check "setfattr a 4 KB value" setfattr -n user.big -v "$big" "$MNT/tree"
check_eq "4 KB xattr value reads back" "$(getfattr --absolute-names --only-values -n user.big "$MNT/tree")" "$big"
check "cp -a copies xattrs" cp -a "$MNT/hello.txt" "$MNT/hello-copy.txt"
check_eq "copied xattr" "$(getfattr --absolute-names -e hex --only-values -n user.bin "$MNT/hello-copy.txt" | od -An -tx1 | tr -d ' \n')" "00ff10"

# ---- editor-style save: write temp, fsync, rename over -------------------------------------
echo "version 1" >"$MNT/doc.txt"
setfattr -n user.keep -v yes "$MNT/doc.txt"
"$PY" - "$MNT" <<'EOF'
import os, sys
d = sys.argv[1]
tmp = os.path.join(d, ".doc.txt.swp")
fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
os.write(fd, b"version 2\n" * 1000)
os.fsync(fd)
os.close(fd)
os.rename(tmp, os.path.join(d, "doc.txt"))
dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
os.fsync(dfd)
os.close(dfd)
EOF
check_eq "editor save: rename over replaced the content" "$(sort -u "$MNT/doc.txt")" "version 2"
check_eq "editor save: size" "$(stat -c %s "$MNT/doc.txt")" 10000
check_fails "editor save: temp file gone" test -e "$MNT/.doc.txt.swp"
check_eq "editor save: one doc.txt entry" "$(ls -a "$MNT" | grep -c 'doc.txt')" 1
# vim-like backup: rename original away, write new, delete backup
mv "$MNT/doc.txt" "$MNT/doc.txt~" && echo "version 3" >"$MNT/doc.txt" && rm "$MNT/doc.txt~"
check_eq "backup-style save" "$(cat "$MNT/doc.txt")" "version 3"

# ---- rm -r ---------------------------------------------------------------------------------
cp -a "$MNT/tree" "$MNT/tree2"
check "rm -r a tree" rm -r "$MNT/tree2"
check_fails "tree gone after rm -r" test -e "$MNT/tree2"
check_eq "rm -r left no stray entries" "$(ls -a "$MNT" | grep -c tree2)" 0

# ---- everything survives a clean remount ---------------------------------------------------
snap() { (cd "$MNT" && find . -printf '%p %y %m %U:%G %s %T@ %l\n' | grep -v '^\. ' | sort; \
          find . -type f -print0 | sort -z | xargs -0 sha256sum); }
snap >"$TMP/before"
check_alive "before remount"
kvfs_remount || fs_done
snap >"$TMP/after"
check_same_file "names, modes, owners, sizes, mtimes and bytes identical after remount" "$TMP/before" "$TMP/after"
check_eq "xattr survives remount" "$(getfattr --absolute-names --only-values -n user.bin -e hex "$MNT/hello.txt" | od -An -tx1 | tr -d ' \n')" "00ff10"
check_eq "symlink survives remount" "$(readlink "$MNT/longsym")" "$long_target"
check "diff -r after remount" diff -r --no-dereference -x moved.bin "$REF/tree" "$MNT/tree"

fs_done
