# fs_lib.sh -- shared helpers for the filesystem tests (tests/fs_*_test.sh). Source it, never run it.
#
# Every test gets a fresh store: a private temp dir TMP holding DATA (the kvfs data directory),
# MNT (the mountpoint) and scratch files. kvfs_mount mounts `$KVFS -o data=$DATA MNT` (the daemon
# forks into the background and returns once the mount is ready); kvfs_umount unmounts and waits
# for the daemon to exit, so the store can be reopened. Invariants the helpers keep:
#   - An EXIT trap ALWAYS unmounts everything under TMP (fusermount3 -u, then umount -l), kills a
#     daemon that does not go away (by its pid, never by name), and deletes TMP only when nothing
#     is mounted below it any more. No test leaves a mount behind, whatever happens.
#   - A watchdog kills the test's daemons after FS_TEST_LIMIT seconds (default 170), so a hung
#     FUSE request turns into failures (ENOTCONN) instead of a hung test.
#   - Every check prints "ok - what" or "FAIL - what: why"; fs_done prints the closing line
#     "<test name>: N passed, M failed" and exits non-zero when M > 0 (or nothing was checked).
# Environment: KVFS_BIN_DIR (build dir holding fs/kvfs and kvfsctl), KVFS_SRC_DIR (source dir).
# Variables a test may use after fs_init: TMP DATA MNT KVFS KVFSCTL PY KVFS_PID TEST_NAME.
set -uo pipefail

PASS=0
FAIL=0
KVFS_PIDS=()          # every daemon pid we have seen, for cleanup
KVFS_PID=             # the current daemon's pid
WATCHDOG_PID=
PY=/usr/bin/python3   # the system python: readable by the nobody user (no pyenv shim)
[[ -x $PY ]] || PY=$(command -v python3)

ok()  { PASS=$((PASS + 1)); echo "ok - $1"; }
bad() { FAIL=$((FAIL + 1)); echo "FAIL - $1"; }

# fs_init NAME: checks the environment and creates TMP/DATA/MNT. Exits 1 with a clear message
# when FUSE cannot be used here (no /dev/fuse): CTest has no skip code set for shell tests.
fs_init() {
    TEST_NAME=$1
    local bin=${KVFS_BIN_DIR:-}
    if [[ -z $bin ]]; then
        echo "$TEST_NAME: KVFS_BIN_DIR is not set (CTest sets it to the build directory)" >&2
        exit 2
    fi
    KVFS=$bin/fs/kvfs
    KVFSCTL=$bin/kvfsctl
    if [[ ! -x $KVFS ]]; then
        echo "$TEST_NAME: $KVFS is missing or not executable (build the fs/ target first)" >&2
        exit 1
    fi
    if [[ ! -c /dev/fuse ]]; then
        echo "$TEST_NAME: SKIPPED -- /dev/fuse is missing, FUSE tests cannot run on this machine" >&2
        exit 1
    fi
    if ! command -v fusermount3 >/dev/null; then
        echo "$TEST_NAME: SKIPPED -- fusermount3 is not installed (Debian package fuse3)" >&2
        exit 1
    fi
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/$TEST_NAME.XXXXXX") || exit 2
    chmod 755 "$TMP"          # the nobody user must reach MNT for the EACCES checks
    DATA=$TMP/data
    MNT=$TMP/mnt
    mkdir -p "$MNT"
    trap fs_cleanup EXIT
    trap 'echo "$TEST_NAME: interrupted" >&2; exit 130' INT TERM
    fs_start_watchdog "${FS_TEST_LIMIT:-170}"
}

# fs_start_watchdog SECONDS: after SECONDS, kill -9 every daemon pid listed in TMP/pids.
fs_start_watchdog() {
    local limit=$1
    (
        sleep "$limit" &
        sp=$!
        trap 'kill $sp 2>/dev/null; exit 0' TERM
        wait $sp
        echo "$TEST_NAME: WATCHDOG -- still running after ${limit}s, killing the daemon" >&2
        if [[ -f $TMP/pids ]]; then
            while read -r p; do kill -9 "$p" 2>/dev/null; done <"$TMP/pids"
        fi
    ) &
    WATCHDOG_PID=$!
}

# pid_alive PID: true while PID exists and is not a zombie.
pid_alive() {
    local st
    [[ -r /proc/$1/stat ]] || return 1
    st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
    [[ -n $st && $st != Z && $st != X ]]
}

# kvfs_find_pid MNT: prints the pid of the kvfs daemon serving MNT (our binary, MNT in argv).
kvfs_find_pid() {
    local mnt=$1 exe p
    exe=$(readlink -f "$KVFS")
    for p in /proc/[0-9]*; do
        [[ $(readlink "$p/exe" 2>/dev/null) == "$exe" ]] || continue
        if tr '\0' '\n' <"$p/cmdline" 2>/dev/null | grep -qxF -- "$mnt"; then
            echo "${p#/proc/}"
            return 0
        fi
    done
    return 1
}

is_mounted() { grep -qF " $1 fuse" /proc/mounts; }

# kvfs_mount [OPTION...]: mounts DATA on MNT; each OPTION is passed as `-o OPTION`.
# Sets KVFS_PID. Returns non-zero (and records a failure) when the mount does not come up.
kvfs_mount() {
    local opts=() o
    # KVFS_TEST_MOUNT_OPTS: extra comma-separated options for every mount (debugging aid).
    [[ -n ${KVFS_TEST_MOUNT_OPTS:-} ]] && opts+=(-o "$KVFS_TEST_MOUNT_OPTS")
    for o in "$@"; do opts+=(-o "$o"); done
    if is_mounted "$MNT"; then
        bad "kvfs_mount: $MNT is already mounted"
        return 1
    fi
    timeout 30 "$KVFS" -o "data=$DATA" "${opts[@]}" "$MNT" >"$TMP/mount.out" 2>&1
    local rc=$?
    if ((rc != 0)); then
        bad "mount kvfs ${*:-} (exit status $rc): $(head -c 600 "$TMP/mount.out")"
        return 1
    fi
    if ! is_mounted "$MNT" || ! stat "$MNT" >/dev/null 2>&1; then
        bad "kvfs returned but $MNT is not a working mount: $(head -c 600 "$TMP/mount.out")"
        return 1
    fi
    KVFS_PID=$(kvfs_find_pid "$MNT")
    if [[ -z $KVFS_PID ]]; then
        bad "mounted, but no kvfs daemon process found for $MNT"
        return 1
    fi
    KVFS_PIDS+=("$KVFS_PID")
    echo "$KVFS_PID" >>"$TMP/pids"
    return 0
}

# wait_pid_exit PID SECONDS: true if PID is gone within SECONDS.
wait_pid_exit() {
    local pid=$1 n=$(( $2 * 10 ))
    while ((n-- > 0)); do
        pid_alive "$pid" || return 0
        sleep 0.1
    done
    ! pid_alive "$pid"
}

# force_unmount DIR: lazy/forced unmount of DIR; used after a daemon was killed.
force_unmount() {
    local d=$1 i
    for i in 1 2 3; do
        is_mounted "$d" || return 0
        fusermount3 -u -z "$d" 2>/dev/null || umount -l "$d" 2>/dev/null
        sleep 0.1
    done
    ! is_mounted "$d"
}

# kvfs_umount: clean unmount; the daemon must exit by itself (flushing the store) within 20 s.
kvfs_umount() {
    local rc=0
    if is_mounted "$MNT"; then
        if ! fusermount3 -u "$MNT" 2>"$TMP/umount.err"; then
            bad "fusermount3 -u $MNT: $(cat "$TMP/umount.err")"
            rc=1
            force_unmount "$MNT"
        fi
    fi
    if [[ -n $KVFS_PID ]]; then
        if ! wait_pid_exit "$KVFS_PID" 20; then
            bad "kvfs daemon $KVFS_PID did not exit within 20 s of the unmount; killing it"
            kill -9 "$KVFS_PID" 2>/dev/null
            wait_pid_exit "$KVFS_PID" 5
            rc=1
        fi
    fi
    KVFS_PID=
    return $rc
}

# kvfs_remount [OPTION...]: unmount cleanly, then mount again with the options.
kvfs_remount() {
    kvfs_umount
    kvfs_mount "$@"
}

# kvfs_kill9: SIGKILL the daemon (a crash), then detach the dead mount.
kvfs_kill9() {
    if [[ -n $KVFS_PID ]]; then
        kill -9 "$KVFS_PID" 2>/dev/null
        wait_pid_exit "$KVFS_PID" 10 || bad "daemon $KVFS_PID survived SIGKILL"
    fi
    force_unmount "$MNT" || bad "cannot detach $MNT after killing the daemon"
    KVFS_PID=
}

# ctl ARGS...: runs kvfsctl on DATA. Leaves stdout in TMP/ctl.out, stderr in TMP/ctl.err, status
# in CTL_RC.
ctl() {
    timeout 60 "$KVFSCTL" --data "$DATA" "$@" >"$TMP/ctl.out" 2>"$TMP/ctl.err"
    CTL_RC=$?
    return $CTL_RC
}

# ---- checks ------------------------------------------------------------------------------
# check WHAT CMD...: CMD must succeed.
check() {
    local what=$1 out
    shift
    if out=$("$@" 2>&1); then
        ok "$what"
    else
        local rc=$? cmd="$*"
        bad "$what: '${cmd:0:200}' exit $rc: $(printf '%s' "$out" | head -c 400)"
    fi
}

# check_fails WHAT CMD...: CMD must fail.
check_fails() {
    local what=$1
    shift
    if "$@" >/dev/null 2>&1; then
        bad "$what: '$*' succeeded, should have failed"
    else
        ok "$what"
    fi
}

# check_eq WHAT GOT WANT
check_eq() {
    if [[ "$2" == "$3" ]]; then
        ok "$1"
    else
        bad "$1: got '$(printf '%s' "$2" | head -c 300)', wanted '$(printf '%s' "$3" | head -c 300)'"
    fi
}

# check_same_file WHAT A B: files A and B are byte-identical.
check_same_file() {
    if cmp -s "$2" "$3"; then
        ok "$1"
    else
        bad "$1: $2 and $3 differ ($(cmp "$2" "$3" 2>&1 | head -c 200))"
    fi
}

# check_err_msg WHAT REGEX CMD...: CMD must fail and its stderr match REGEX (e.g. the
# strerror text "No such file or directory").
check_err_msg() {
    local what=$1 re=$2 err
    shift 2
    if err=$("$@" 2>&1 >/dev/null); then
        bad "$what: '$*' succeeded, wanted an error matching /$re/"
    elif grep -Eq -- "$re" <<<"$err"; then
        ok "$what"
    else
        bad "$what: error '$(head -c 300 <<<"$err")' does not match /$re/"
    fi
}

# perr CODE [ARG...]: runs the python statement(s) CODE with `a` = the ARGs (and os, sys,
# errno, fcntl, stat imported) and prints OK, or the errno name of the OSError it raised
# (ENOENT...). PERR_AS=nobody runs it as uid/gid 65534 with no groups.
perr() {
    local code=$1
    shift
    local pre=()
    if [[ ${PERR_AS:-} == nobody ]]; then
        pre=(setpriv --reuid=65534 --regid=65534 --clear-groups)
    fi
    timeout 60 "${pre[@]}" "$PY" -c '
import os, sys, errno, fcntl, stat
a = sys.argv[2:]
try:
    exec(sys.argv[1])
    print("OK")
except OSError as e:
    print(errno.errorcode.get(e.errno, str(e.errno)))
' "$code" "$@" 2>&1
}

# check_errno WHAT WANT CODE [ARG...]: perr CODE must print WANT (an errno name or OK).
check_errno() {
    local what=$1 want=$2 got
    shift 2
    got=$(perr "$@")
    check_eq "$what" "$got" "$want"
}

# check_alive: the daemon is still running and the mount answers (call before unmounting).
check_alive() {
    if [[ -n $KVFS_PID ]] && pid_alive "$KVFS_PID" && stat "$MNT" >/dev/null 2>&1; then
        ok "daemon still alive and the mount answers${1:+ ($1)}"
    else
        bad "daemon died or the mount stopped answering${1:+ ($1)}: $(tail -c 300 "$TMP/mount.out" 2>/dev/null)"
    fi
}

# fs_done: closing line and exit status.
fs_done() {
    if [[ -n $KVFS_PID ]]; then
        check_alive "end of test"
        kvfs_umount
    fi
    echo "$TEST_NAME: $PASS passed, $FAIL failed"
    if ((FAIL > 0 || PASS == 0)); then
        exit 1
    fi
    exit 0
}

# fs_cleanup: EXIT trap. Unmounts everything below TMP, kills our daemons, removes TMP.
fs_cleanup() {
    local rc=$? m p left=0
    trap - EXIT
    cd / || true
    # FS_CLEANUP_HOOK: a command the test wants run first (e.g. stop its background watchers).
    [[ -n ${FS_CLEANUP_HOOK:-} ]] && $FS_CLEANUP_HOOK
    if [[ -n ${TMP:-} && -d $TMP ]]; then
        for m in $(awk -v t="$TMP/" 'index($2, t) == 1 {print $2}' /proc/mounts | sort -r); do
            fusermount3 -u "$m" 2>/dev/null || fusermount3 -u -z "$m" 2>/dev/null \
                || umount -l "$m" 2>/dev/null
        done
    fi
    for p in "${KVFS_PIDS[@]}"; do
        if pid_alive "$p"; then
            wait_pid_exit "$p" 10 || { kill -9 "$p" 2>/dev/null; wait_pid_exit "$p" 5; }
        fi
    done
    if [[ -n ${TMP:-} && -d $TMP ]]; then
        for m in $(awk -v t="$TMP/" 'index($2, t) == 1 {print $2}' /proc/mounts); do
            umount -l "$m" 2>/dev/null
        done
        if awk -v t="$TMP/" 'index($2, t) == 1 {f = 1} END {exit !f}' /proc/mounts; then
            echo "$TEST_NAME: WARNING: could not unmount below $TMP; leaving it in place" >&2
            left=1
        fi
    fi
    if [[ -n $WATCHDOG_PID ]]; then
        kill "$WATCHDOG_PID" 2>/dev/null
        wait "$WATCHDOG_PID" 2>/dev/null
    fi
    if ((left == 0)) && [[ -n ${TMP:-} && -d $TMP && -z ${FS_KEEP_TMP:-} ]]; then
        rm -rf "$TMP"
    fi
    exit $rc
}
