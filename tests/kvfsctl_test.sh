#!/usr/bin/env bash
# kvfsctl_test.sh -- end-to-end test of the kvfsctl command-line tool on a temporary store that
# is not mounted (kvfsctl opens it itself and uses the filesystem layout, fs/layout.c): keys are
# paths (a/b/c is the file a/b/c, parents are implied directories). The mounted case, where
# kvfsctl goes through the daemon's control socket, is tests/fs_views_test.sh.
#
# Run by CTest with KVFS_BIN_DIR pointing at the build directory that holds kvfsctl. Every
# check prints "ok - what" or "FAIL - what: why"; the last line is
# "kvfsctl_test: N passed, M failed" and the exit status is non-zero when any check failed.
# Never touches the real default data directory: every command gets KVFS_DATA or --data.
set -uo pipefail

BIN_DIR=${KVFS_BIN_DIR:-}
if [[ -z "$BIN_DIR" ]]; then
    echo "kvfsctl_test: KVFS_BIN_DIR is not set" >&2
    exit 2
fi
CTL="$BIN_DIR/kvfsctl"
if [[ ! -x "$CTL" ]]; then
    echo "kvfsctl_test: $CTL is missing or not executable" >&2
    exit 2
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/kvfsctl_test.XXXXXX")
HOLDER_PID=
cleanup() {
    if [[ -n "$HOLDER_PID" ]]; then
        kill "$HOLDER_PID" 2>/dev/null
        wait "$HOLDER_PID" 2>/dev/null
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT

export KVFS_DATA="$TMP/data"
PASS=0
FAIL=0
ok() { PASS=$((PASS + 1)); echo "ok - $1"; }
bad() { FAIL=$((FAIL + 1)); echo "FAIL - $1"; }

# run CMD...: runs kvfsctl, leaving stdout in $TMP/out, stderr in $TMP/err, status in RC.
run() {
    "$CTL" "$@" >"$TMP/out" 2>"$TMP/err"
    RC=$?
}
# expect_rc WANT WHAT: checks the last run's status.
expect_rc() {
    if [[ $RC -eq $1 ]]; then
        ok "$2"
    else
        bad "$2: exit $RC, wanted $1; stderr: $(head -c 400 "$TMP/err")"
    fi
}
# expect_err REGEX WHAT: the last run's stderr matches REGEX.
expect_err() {
    if grep -Eq -- "$1" "$TMP/err"; then
        ok "$2"
    else
        bad "$2: stderr '$(head -c 400 "$TMP/err")' does not match /$1/"
    fi
}
# expect_out_file FILE WHAT: the last run's stdout is byte-identical to FILE.
expect_out_file() {
    if cmp -s "$1" "$TMP/out"; then
        ok "$2"
    else
        bad "$2: output differs from $1 ($(stat -c %s "$TMP/out") vs $(stat -c %s "$1") bytes)"
    fi
}

# ---- help, version, usage errors ------------------------------------------------------
run --version
expect_rc 0 "--version exits 0"
grep -q 'kvfsctl' "$TMP/out" && ok "--version names the tool" || bad "--version output: $(cat "$TMP/out")"
run --help
expect_rc 0 "--help exits 0"
missing=
for c in get put del ls history snapshot stats compact check checkpoint; do
    grep -Eq "^  $c " "$TMP/out" || missing="$missing $c"
done
[[ -z "$missing" ]] && ok "--help lists every command" || bad "--help does not list:$missing"
grep -q "Default data directory: $TMP/data" "$TMP/out" && ok "KVFS_DATA sets the default data directory" \
    || bad "KVFS_DATA not shown as default: $(grep -i default "$TMP/out")"
if [[ $(id -u) -eq 0 ]]; then want_def=/var/lib/kvfs; else want_def="$TMP/xdg/kvfs"; fi
env -u KVFS_DATA XDG_DATA_HOME="$TMP/xdg" "$CTL" --help >"$TMP/out" 2>&1
grep -q "Default data directory: $want_def\$" "$TMP/out" && ok "default data directory is $want_def" \
    || bad "default data directory: $(grep 'Default data' "$TMP/out"), wanted $want_def"
nohelp=
for c in get put del ls history snapshot stats compact check checkpoint; do
    run "$c" --help
    if [[ $RC -ne 0 ]] || ! grep -q "^Usage: kvfsctl .*$c" "$TMP/out"; then
        nohelp="$nohelp $c(exit $RC)"
    fi
done
[[ -z "$nohelp" ]] && ok "every command has --help" || bad "--help failed for:$nohelp"
[[ ! -e "$TMP/data" ]] && ok "--help creates no store" || bad "--help created $TMP/data"

run
expect_rc 2 "no command is a usage error"
run frobnicate
expect_rc 2 "unknown command is a usage error"
expect_err '^kvfsctl: unknown command' "unknown command message"
run get
expect_rc 2 "get without KEY is a usage error"
run get a b
expect_rc 2 "get with two keys is a usage error"
run put --ttl abc k v
expect_rc 2 "put --ttl abc is a usage error"
run ls --bogus
expect_rc 2 "unknown option is a usage error"
run snapshot frob x
expect_rc 2 "unknown snapshot subcommand is a usage error"
run --nope get k
expect_rc 2 "unknown global option is a usage error"

# ---- read commands on a missing store do not create it --------------------------------
run get k
expect_rc 1 "get on a missing store fails"
expect_err "^kvfsctl: $TMP/data: " "missing store message names the directory"
[[ ! -e "$TMP/data" ]] && ok "read command creates no store" || bad "get created $TMP/data"

# ---- put / get byte-exact -------------------------------------------------------------
run put k1 hello
expect_rc 0 "put k1 hello"
run get k1
expect_rc 0 "get k1"
printf 'hello' >"$TMP/want"
expect_out_file "$TMP/want" "get returns exactly the value, no newline"

run put empty ""
expect_rc 0 "put of an empty value"
run get empty
: >"$TMP/want"
expect_out_file "$TMP/want" "empty value reads back empty"

head -c 70000 /dev/urandom >"$TMP/bin"
printf '\0\n\377' >>"$TMP/bin"
"$CTL" put binkey <"$TMP/bin" >"$TMP/out" 2>"$TMP/err"
RC=$?
expect_rc 0 "put binary value from stdin"
run get binkey
expect_out_file "$TMP/bin" "binary value is byte-exact"

head -c 1048576 /dev/urandom >"$TMP/big"
"$CTL" --data "$TMP/data" put big <"$TMP/big" >"$TMP/out" 2>"$TMP/err"
RC=$?
expect_rc 0 "put 1 MiB value via --data"
run get big
expect_out_file "$TMP/big" "1 MiB value is byte-exact"

head -c $((40 * 1024 * 1024)) /dev/urandom >"$TMP/huge"
"$CTL" put huge <"$TMP/huge" >"$TMP/out" 2>"$TMP/err"
RC=$?
expect_rc 0 "put of a 40 MiB file (above the engine's 32 MiB value limit: chunked)"
run get huge
expect_out_file "$TMP/huge" "40 MiB file reads back byte-exact"
rm -f "$TMP/huge"
run del huge
expect_rc 0 "del of the 40 MiB file"
head -c $((64 * 1024 * 1024 + 1)) /dev/zero | "$CTL" put huge >"$TMP/out" 2>"$TMP/err"
RC=$?
expect_rc 1 "put of a value over 64 MiB fails"
expect_err '^kvfsctl: stdin: value larger than' "over-limit value gives a clear message"

run put -- -dash -value-
expect_rc 0 "put with '--' takes operands starting with '-'"
run get -- -dash
printf -- '-value-' >"$TMP/want"
expect_out_file "$TMP/want" "dash key reads back"

# ---- del ------------------------------------------------------------------------------
run del k1
expect_rc 0 "del k1"
run get k1
expect_rc 1 "get after del exits 1"
expect_err '^kvfsctl: k1: No such file or directory$' "get after del says No such file or directory"
run get never-written
expect_rc 1 "get of a never-written key exits 1"

run put $'nl\nkey\\' v
expect_rc 0 "put of a key with a newline and a backslash"
run ls nl
printf 'nl\\x0akey\\\\\n' >"$TMP/want"
expect_out_file "$TMP/want" "ls escapes unprintable bytes and backslashes"
longkey=$(head -c 20000 /dev/zero | tr '\0' k)
run put "$longkey" v
expect_rc 1 "put of a too-long key fails"
if [[ $(wc -l <"$TMP/err") -eq 1 && $(wc -c <"$TMP/err") -lt 400 ]] && grep -q '^kvfsctl: kkkk.*\.\.\.: ' "$TMP/err"; then
    ok "too-long key gives one short error line"
else
    bad "too-long key error: $(head -c 300 "$TMP/err")"
fi

# ---- paths: parents implied, directories and files keep their roles --------------------
run put d1/d2/f "deep"
expect_rc 0 "put d1/d2/f creates the parents"
run get d1/d2/f
printf 'deep' >"$TMP/want"
expect_out_file "$TMP/want" "get d1/d2/f"
run get /d1/d2/f
expect_out_file "$TMP/want" "a leading slash is accepted"
run get d1/d2
expect_rc 1 "get of a directory exits 1"
expect_err '^kvfsctl: d1/d2: Is a directory$' "get of a directory says Is a directory"
run put d1/d2/f/g x
expect_rc 1 "put under a regular file fails"
expect_err '^kvfsctl: d1/d2/f/g: Not a directory$' "put under a file says Not a directory"
run get d1/d2/f/g
expect_rc 1 "get under a regular file exits 1"
expect_err 'Not a directory' "get under a file says Not a directory"
run put d1/d2 x
expect_rc 1 "put onto a directory fails"
expect_err '^kvfsctl: d1/d2: Is a directory$' "put onto a directory says Is a directory"
run del d1
expect_rc 1 "del of a directory fails"
expect_err '^kvfsctl: d1: Is a directory$' "del of a directory says Is a directory"
run del d1/nothing
expect_rc 1 "del of a missing file exits 1"
expect_err '^kvfsctl: d1/nothing: No such file or directory$' "del of a missing file: No such file or directory"
run get d1/d2/f
expect_out_file "$TMP/want" "failed writes left d1/d2/f unchanged"
badkeys=0
for bad_key in 'a//b' 'a/./b' 'a/../b' 'x/' '' '/'; do
    run put "$bad_key" v
    if [[ $RC -ne 1 ]] || ! grep -q '^kvfsctl: .*invalid key' "$TMP/err"; then
        bad "put of invalid path '$bad_key': exit $RC: $(cat "$TMP/err")"
        badkeys=1
    fi
done
[[ $badkeys -eq 0 ]] && ok "invalid paths (empty component, '.', '..', trailing '/', empty) are refused"
run put d1/over "first"
run put d1/over "2nd"
run get d1/over
printf '2nd' >"$TMP/want"
expect_out_file "$TMP/want" "put of a shorter value replaces the whole file"
run del d1/d2/f
expect_rc 0 "del d1/d2/f"
run ls d1/
printf 'd1/over\n' >"$TMP/want"
expect_out_file "$TMP/want" "del removes the file, the directory d1/d2 stays but lists nothing"
run put d1/d2/f "again"
expect_rc 0 "put into the now empty directory"

# ---- ls -------------------------------------------------------------------------------
for k in a/1 a/2 a/3 b/1 ab; do "$CTL" put "$k" "v-$k" || bad "put $k"; done
run ls a/
expect_rc 0 "ls a/"
printf 'a/1\na/2\na/3\n' >"$TMP/want"
expect_out_file "$TMP/want" "ls a/ lists exactly the keys with the prefix, in order"
run ls
grep -qx 'b/1' "$TMP/out" && grep -qx 'binkey' "$TMP/out" && ok "ls without prefix lists all keys" \
    || bad "ls: $(tr '\n' ' ' <"$TMP/out")"
grep -qx 'k1' "$TMP/out" && bad "ls shows deleted key k1" || ok "ls hides deleted keys"
run put a/al.txt t
run put a/alice/x t
run put a/albert t
run ls a/al
printf 'a/albert\na/al.txt\na/alice/x\n' | LC_ALL=C sort >"$TMP/want"
LC_ALL=C sort "$TMP/out" >"$TMP/got"
cmp -s "$TMP/want" "$TMP/got" && ok "ls PREFIX is a byte prefix of the path, descending directories" \
    || bad "ls a/al: $(tr '\n' ' ' <"$TMP/out")"
for k in a/al.txt a/alice/x a/albert; do "$CTL" del "$k" || bad "del $k"; done
run ls d1
printf 'd1/d2/f\nd1/over\n' >"$TMP/want"
expect_out_file "$TMP/want" "ls lists depth-first in name order"
run ls -l a/
expect_rc 0 "ls -l a/"
if [[ $(grep -c ' a/[123]$' "$TMP/out") -eq 3 ]] && grep -Eq '^ *[0-9]+ +5 +- +a/1$' "$TMP/out"; then
    ok "ls -l shows seq, size and expiry"
else
    bad "ls -l output: $(cat "$TMP/out")"
fi

# ---- history --------------------------------------------------------------------------
# A store keeps old versions only within its history window; set one (the store records it,
# so the later plain kvfsctl calls keep it too).
"$CTL" --history-ms 3600000 put hist/h one && "$CTL" put hist/h twotwo && "$CTL" put hist/h three33 \
    || bad "history setup writes"
run history hist/h
expect_rc 0 "history hist/h"
lines=$(grep -Ec '^ *[0-9]+ +[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z +[0-9]+' "$TMP/out")
if [[ $lines -eq 3 ]]; then ok "history shows 3 versions (one per put)"; else bad "history lines: $lines: $(cat "$TMP/out")"; fi
mapfile -t rows < <(grep -E '^ *[0-9]+ +[0-9]{4}-' "$TMP/out")
if [[ ${#rows[@]} -eq 3 && ${rows[0]} =~ \ 7\ *$ && ${rows[1]} =~ \ 6\ *$ && ${rows[2]} =~ \ 3\ *$ ]]; then
    ok "history is newest first with the file size of each version"
else
    bad "history rows: $(printf '[%s] ' "${rows[@]}")"
fi
s0=$(awk '{print $1}' <<<"${rows[0]:-0}")
s2=$(awk '{print $1}' <<<"${rows[2]:-0}")
[[ $s0 -gt $s2 ]] && ok "history sequences descend" || bad "history seqs $s0 vs $s2"
run history hist
expect_rc 1 "history of a directory exits 1"
run del hist/h
run history hist/h
expect_rc 1 "history of a deleted file exits 1"
expect_err '^kvfsctl: hist/h: No such file or directory$' "history of a deleted file: No such file or directory"
run history nokey
expect_rc 1 "history of an unknown key exits 1"

# ---- snapshots ------------------------------------------------------------------------
run snapshot create snap1
expect_rc 0 "snapshot create snap1"
run snapshot create snap1
expect_rc 1 "creating an existing snapshot fails"
expect_err 'snap1' "duplicate snapshot error names it"
run snapshot list
expect_rc 0 "snapshot list"
grep -Eq '^snap1 +[0-9]+ +[0-9]{4}-' "$TMP/out" && ok "snapshot list shows snap1 with seq and time" \
    || bad "snapshot list: $(cat "$TMP/out")"
run snapshot delete snap1
expect_rc 0 "snapshot delete snap1"
run snapshot list
grep -q '^snap1 ' "$TMP/out" && bad "snap1 still listed after delete" || ok "deleted snapshot is gone"
run snapshot delete snap1
expect_rc 1 "deleting a missing snapshot fails"
run snapshot create
expect_rc 2 "snapshot create without NAME is a usage error"

# ---- TTL ------------------------------------------------------------------------------
run put --ttl 1 ttlkey soon-gone
expect_rc 0 "put --ttl 1"
run get ttlkey
expect_rc 0 "TTL key readable before expiry"
run ls -l ttlkey
grep -Eq '[0-9]{4}-[0-9]{2}-[0-9]{2}T.*Z +ttlkey$' "$TMP/out" && ok "ls -l shows the expiry" \
    || bad "ls -l ttlkey: $(cat "$TMP/out")"
sleep 2
run get ttlkey
expect_rc 1 "TTL key gone after expiry"

# ---- stats, compact, check ------------------------------------------------------------
run stats
expect_rc 0 "stats"
grep -q '^last sequence' "$TMP/out" && ok "stats prints the last sequence" || bad "stats: $(cat "$TMP/out")"
grep -q '^access  *opened directly' "$TMP/out" && ok "stats says the store was opened directly" \
    || bad "stats access line: $(grep access "$TMP/out")"
for i in $(seq 1 100); do printf 'fill%04d value-%04d-%s\n' "$i" "$i" "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"; done \
    >"$TMP/fill"
while read -r k v; do "$CTL" put "$k" "$v" || { bad "fill put $k"; break; }; done <"$TMP/fill"
run compact
expect_rc 0 "compact"
run check
expect_rc 0 "check on a clean store exits 0"
grep -q 'clean' "$TMP/out" && ok "check prints a clean summary" || bad "check output: $(cat "$TMP/out")"

# ---- checkpoint -----------------------------------------------------------------------
run checkpoint "$TMP/cp"
expect_rc 0 "checkpoint"
run --data "$TMP/cp" get fill0042
printf 'value-0042-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx' >"$TMP/want"
expect_out_file "$TMP/want" "get from the checkpoint"
run --data "$TMP/cp" get big
expect_out_file "$TMP/big" "checkpoint holds the 1 MiB value"
run checkpoint "$TMP/cp"
expect_rc 1 "checkpoint into an existing directory fails"
run checkpoint "$TMP/data/inside"
expect_rc 1 "checkpoint inside the store's directory is refused"
[[ ! -e "$TMP/data/inside" ]] && ok "refused checkpoint wrote nothing" || bad "$TMP/data/inside exists"

# ---- a second kvfsctl while the store is held -----------------------------------------
mkfifo "$TMP/fifo"
"$CTL" put holdkey <"$TMP/fifo" >"$TMP/hold.out" 2>"$TMP/hold.err" &
HOLDER_PID=$!
exec 3>"$TMP/fifo"
# Wait until the holder has taken the store's lock (else our own put could take it first).
for _ in $(seq 1 100); do
    ls -l "/proc/$HOLDER_PID/fd" 2>/dev/null | grep -q "$TMP/data/LOCK" && break
    sleep 0.05
done
busy=0
for _ in $(seq 1 100); do
    run put other x
    if [[ $RC -ne 0 ]] && grep -q 'in use' "$TMP/err"; then busy=1; break; fi
    sleep 0.1
done
if [[ $busy -eq 1 ]]; then
    ok "second kvfsctl fails while the store is held"
    expect_rc 1 "busy store exits 1"
    expect_err "^kvfsctl: $TMP/data: .*in use" "busy store message says 'in use'"
else
    bad "second kvfsctl never saw the store in use; last: exit $RC $(cat "$TMP/err")"
fi
( trap '' PIPE; printf 'held-value' >&3 ) 2>/dev/null
exec 3>&-
wait "$HOLDER_PID"
hrc=$?
HOLDER_PID=
[[ $hrc -eq 0 ]] && ok "holder put finished" || bad "holder put: exit $hrc $(cat "$TMP/hold.err")"
run get holdkey
printf 'held-value' >"$TMP/want"
expect_out_file "$TMP/want" "holder's value was stored"

# ---- damage: flip a byte of a table ---------------------------------------------------
sst=$(find "$TMP/data" -name '*.sst' -size +1k | head -n 1)
if [[ -z "$sst" ]]; then
    bad "no .sst file after compact: $(ls "$TMP/data" | tr '\n' ' ')"
else
    off=64
    byte=$(od -An -tu1 -j "$off" -N1 "$sst" | tr -d ' ')
    printf "$(printf '\\%03o' $((byte ^ 0xff)))" | dd of="$sst" bs=1 seek="$off" conv=notrunc status=none
    run check
    expect_rc 1 "check after a flipped byte exits 1"
    grep -q "$(basename "$sst")" "$TMP/out" "$TMP/err" && ok "check names the damaged file" \
        || bad "check output does not name $(basename "$sst"): $(cat "$TMP/out" "$TMP/err")"
fi
run --data "$TMP/nostore" check
expect_rc 2 "check on a missing store exits 2 (could not run)"

echo "kvfsctl_test: $PASS passed, $FAIL failed"
[[ $FAIL -eq 0 ]]
