#!/usr/bin/env bash
# fs_trees_test.sh -- whole trees through a real kvfs mount: `tar x` of a real source tree
# (/usr/include, thousands of files, symlinks) and `diff -r` against the original, `tar c` back
# out of the mount, a directory of 5,000 entries, `git clone` of a local repository (both the
# local-copy and the pack-protocol paths) followed by `git fsck --full`, commits and `git gc`
# inside the mount, and the whole lot again after a remount.
source "$(dirname "${BASH_SOURCE[0]}")/fs_lib.sh"
fs_init fs_trees_test
SRC_TREE=${FS_TREE_SRC:-/usr/include}
KSRC=${KVFS_SRC_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
kvfs_mount || fs_done

# ---- tar x of a real source tree, diff -r ---------------------------------------------------
tar --format=posix -C "$(dirname "$SRC_TREE")" -cf "$TMP/src.tar" "$(basename "$SRC_TREE")" 2>/dev/null
nfiles=$(tar -tf "$TMP/src.tar" | wc -l)
mkdir "$MNT/x"
t0=$SECONDS
check "tar x of $SRC_TREE ($nfiles entries)" timeout 120 tar -C "$MNT/x" -xpf "$TMP/src.tar"
echo "# tar x took $((SECONDS - t0)) s"
check "diff -r against the original" timeout 120 diff -r --no-dereference "$SRC_TREE" "$MNT/x/$(basename "$SRC_TREE")"
# directory sizes are filesystem-specific: compared for everything but directories
meta() { (cd "$1" && { find . -type d -printf '%p %y %m %U:%G %T@\n'; find . ! -type d -printf '%p %y %m %U:%G %s %T@ %l\n'; } | LC_ALL=C sort); }
check_eq "types, modes, owners, sizes, mtimes and link targets match" \
    "$(meta "$MNT/x/$(basename "$SRC_TREE")" | md5sum)" "$(meta "$SRC_TREE" | md5sum)"
check "tar c back out of the mount" timeout 120 tar -C "$MNT/x" -cf "$TMP/back.tar" "$(basename "$SRC_TREE")"
check_eq "tar c lists the same entries" "$(tar -tf "$TMP/back.tar" | LC_ALL=C sort | md5sum)" \
    "$(tar -tf "$TMP/src.tar" | LC_ALL=C sort | md5sum)"
fbytes() { find "$1" -type f -printf '%s\n' | awk '{s += $1} END {print s}'; }
check_eq "total file bytes agree" "$(fbytes "$MNT/x/$(basename "$SRC_TREE")")" "$(fbytes "$SRC_TREE")"
du_k=$(du -sk "$MNT/x" | cut -f1)
((du_k * 1024 >= $(fbytes "$SRC_TREE") / 2)) && ok "du reports real usage ($du_k KiB)" || bad "du -sk says $du_k KiB"

# ---- a directory with 5,000 entries ----------------------------------------------------------
check "create 5000 files in one directory" "$PY" -c '
import os, sys
d = sys.argv[1]
os.mkdir(d)
for i in range(5000):
    with open("%s/f%05d" % (d, i), "w") as f:
        f.write(str(i))' "$MNT/wide"
check_eq "ls sees 5000 entries" "$(ls "$MNT/wide" | wc -l)" 5000
check_eq "readdir returns each name once" "$(ls -f "$MNT/wide" | grep -v '^\.\.\?$' | sort | uniq -d | wc -l)" 0
check_eq "content of a sampled file" "$(cat "$MNT/wide/f04321")" 4321
check "rename the 5000-entry directory" mv "$MNT/wide" "$MNT/wide2"
check_eq "renamed directory still has 5000 entries" "$(ls "$MNT/wide2" | wc -l)" 5000
check "rm -r the 5000-entry directory" rm -r "$MNT/wide2"

# ---- git clone of a local repository, git fsck -------------------------------------------------
export GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@example.com GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@example.com
export GIT_CONFIG_NOSYSTEM=1 HOME=$TMP
REPO=$TMP/repo
mkdir "$REPO"
(
    cd "$REPO" || exit 1
    git init -q -b main .
    cp -r "$KSRC/engine" "$KSRC/tests" . 2>/dev/null
    cp "$KSRC/CMakeLists.txt" . 2>/dev/null
    git add -A && git commit -q -m "first"
    for i in 1 2 3 4 5; do
        echo "change $i" >>CHANGES && head -c 20000 /dev/urandom | base64 >"blob$i"
        git add -A && git commit -q -m "commit $i"
    done
    git tag v1
) >"$TMP/git.log" 2>&1 || bad "building the source repository failed: $(tail -5 "$TMP/git.log")"
check "git clone (local) into the mount" timeout 120 git clone -q "$REPO" "$MNT/clone"
check "git fsck --full on the clone" timeout 120 git -C "$MNT/clone" fsck --full --strict --no-progress
check_eq "clone has every commit" "$(git -C "$MNT/clone" rev-list --count HEAD)" 6
check_eq "clone HEAD = origin HEAD" "$(git -C "$MNT/clone" rev-parse HEAD)" "$(git -C "$REPO" rev-parse HEAD)"
check_eq "git status clean after clone" "$(git -C "$MNT/clone" status --porcelain)" ""
check "working tree equals the source" diff -r -x .git "$REPO" "$MNT/clone"
check "git clone --no-local (pack protocol) into the mount" timeout 120 git clone -q --no-local "$REPO" "$MNT/clone2"
check "git fsck --full on the pack clone" timeout 120 git -C "$MNT/clone2" fsck --full --strict --no-progress
(
    cd "$MNT/clone2" || exit 1
    for i in 1 2 3; do
        echo "edit $i" >>CHANGES && git commit -q -am "edit $i" || exit 1
    done
    git mv blob1 renamed-blob && git commit -q -m "rename" || exit 1
    git gc -q --prune=now || exit 1
    git fsck --full --strict --no-progress || exit 1
) >"$TMP/git2.log" 2>&1 && ok "commits, git mv, git gc, fsck inside the mount" \
    || bad "git work inside the mount failed: $(tail -5 "$TMP/git2.log")"
check_eq "4 new commits" "$(git -C "$MNT/clone2" rev-list --count HEAD)" 10
check_eq "git status clean" "$(git -C "$MNT/clone2" status --porcelain)" ""
head2=$(git -C "$MNT/clone2" rev-parse HEAD)

# ---- all of it again after a remount ----------------------------------------------------------
check_alive "before remount"
kvfs_remount || fs_done
check "diff -r after remount" timeout 120 diff -r --no-dereference "$SRC_TREE" "$MNT/x/$(basename "$SRC_TREE")"
check "git fsck after remount" timeout 120 git -C "$MNT/clone2" fsck --full --strict --no-progress
check_eq "HEAD after remount" "$(git -C "$MNT/clone2" rev-parse HEAD)" "$head2"
check_eq "git status clean after remount" "$(git -C "$MNT/clone2" status --porcelain)" ""
check "rm -r of the whole tree" timeout 120 rm -r "$MNT/x"
check_eq "tree gone" "$(ls "$MNT")" $'clone\nclone2'
fs_done
