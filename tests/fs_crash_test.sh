#!/usr/bin/env bash
# fs_crash_test.sh -- SIGKILL the kvfs daemon in the middle of a write-heavy workload, many
# times; after each crash `kvfsctl check` must be clean, the store must mount again, and every
# file must be in a state it really had:
#
#   Two worker processes hammer their own set of names with pwrite (1 B .. 64 KiB at random
#   offsets, across chunk boundaries), O_APPEND writes, truncate, unlink, fsync (file + dir) and
#   editor-style saves (write tmp, fsync, rename over a doc, fsync the dir). Each worker logs
#   every operation to a local file BEFORE issuing it, and logs an acknowledgement "A name" only
#   AFTER fsync returned. The verifier replays the logs over the previous (verified) contents:
#   for every name it computes the hash of the file after each of its operations; the real file
#   must equal one of the states at or after its last acknowledgement (so every fsync'd byte is
#   there, no byte that was never written appears, no write is torn, a rename is done or not),
#   and no unexpected names may exist. The verified contents become the base of the next round.
source "$(dirname "${BASH_SOURCE[0]}")/fs_lib.sh"
fs_init fs_crash_test
ROUNDS=${FS_CRASH_ROUNDS:-8}
BASE=$TMP/base
mkdir -p "$BASE"

cat >"$TMP/model.py" <<'EOF'
"""Crash-test workload and verifier. Operation log grammar (one line each, fields by spaces):
  O name          open with O_CREAT: a missing file becomes empty
  C name          open with O_CREAT|O_TRUNC: the file becomes empty
  W name off len seed   pwrite of random.Random(seed).randbytes(len) at off (file must exist)
  P name len seed       O_APPEND write of those bytes at the end
  T name size     truncate (no-op on a missing file)
  U name          unlink (no-op on a missing file)
  R src dst       rename src over dst (no-op when src is missing)
  A name          fsync of name (and its directory) returned: acknowledged
"""
import errno, hashlib, os, random, sys, time

def data(seed, n):
    return random.Random(seed).randbytes(n)

def work(mnt, logpath, tag, seed, seconds, rnd):
    r = random.Random(seed)
    log = open(logpath, "a", buffering=1)
    def L(*a):
        log.write(" ".join(map(str, a)) + "\n")
    names = ["%s_f%02d" % (tag, i) for i in range(10)]
    docs = ["%s_doc%d" % (tag, i) for i in range(3)]
    tmp = "%s_tmp" % tag
    dfd = os.open(mnt, os.O_RDONLY | os.O_DIRECTORY)
    kept = 0
    end = time.time() + seconds
    while time.time() < end:
        x = r.random()
        name = r.choice(names)
        p = os.path.join(mnt, name)
        try:
            if x < 0.40:
                off, n, s = r.randrange(0, 200000), r.randint(1, 65536), r.getrandbits(32)
                L("O", name); L("W", name, off, n, s)
                fd = os.open(p, os.O_WRONLY | os.O_CREAT, 0o644)
                try:
                    os.pwrite(fd, data(s, n), off)
                finally:
                    os.close(fd)
            elif x < 0.50:
                n, s = r.randint(1, 20000), r.getrandbits(32)
                L("O", name); L("P", name, n, s)
                fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                try:
                    os.write(fd, data(s, n))
                finally:
                    os.close(fd)
            elif x < 0.57:
                size = r.randrange(0, 250000)
                L("T", name, size)
                try:
                    os.truncate(p, size)
                except FileNotFoundError:
                    pass
            elif x < 0.61:
                L("U", name)
                try:
                    os.unlink(p)
                except FileNotFoundError:
                    pass
            elif x < 0.75:
                try:
                    fd = os.open(p, os.O_RDONLY)
                except FileNotFoundError:
                    continue
                L("S", name)      # marker only (the ack follows the fsync)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.fsync(dfd)
                L("A", name)
            elif x < 0.90:
                doc = r.choice(docs)
                n, s = r.randint(0, 100000), r.getrandbits(32)
                L("C", tmp); L("W", tmp, 0, n, s)
                fd = os.open(os.path.join(mnt, tmp), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                try:
                    os.write(fd, data(s, n))
                    os.fsync(fd)
                finally:
                    os.close(fd)
                L("A", tmp)
                L("R", tmp, doc)
                os.rename(os.path.join(mnt, tmp), os.path.join(mnt, doc))
                os.fsync(dfd)
                L("A", doc); L("A", tmp)
            else:
                k = "%s_k%03d_%05d" % (tag, rnd, kept); kept += 1
                # never touched again once acknowledged; the name carries the seed
                n, s = r.randint(1, 30000), r.getrandbits(32)
                L("C", k); L("W", k, 0, n, s)
                fd = os.open(os.path.join(mnt, k), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                try:
                    os.write(fd, data(s, n)); os.fsync(fd)
                finally:
                    os.close(fd)
                os.fsync(dfd)
                L("A", k)
        except OSError as e:
            if e.errno in (errno.ENOTCONN, errno.ECONNABORTED, errno.EIO, errno.ENODEV):
                sys.stderr.write("worker %s: stopped by %s\n" % (tag, errno.errorcode[e.errno]))
                sys.exit(0)
            sys.stderr.write("worker %s: unexpected %s on %s\n" % (tag, e, name))
            sys.exit(3)
    sys.exit(0)

def h(state):
    return None if state is None else hashlib.sha1(state).hexdigest()

def verify(mnt, base, logs):
    states = {}
    for n in os.listdir(base):
        with open(os.path.join(base, n), "rb") as f:
            states[n] = bytearray(f.read())
    hist = {n: [h(s)] for n, s in states.items()}
    ack = {}
    def push(n):
        hist.setdefault(n, [None]).append(h(states.get(n)))
    for lp in logs:
        for line in open(lp):
            f = line.split()
            if not f or len(f) < 2:
                continue
            op, n = f[0], f[1]
            hist.setdefault(n, [h(states.get(n))])
            cur = states.get(n)
            if op == "O":
                if cur is None:
                    states[n] = bytearray()
            elif op == "C":
                states[n] = bytearray()
            elif op == "W":
                if cur is None:
                    raise SystemExit("log: W on missing " + n)
                off, ln, s = int(f[2]), int(f[3]), int(f[4])
                if len(cur) < off:
                    cur.extend(bytes(off - len(cur)))
                cur[off:off + ln] = data(s, ln)
            elif op == "P":
                cur.extend(data(int(f[3]), int(f[2])))
            elif op == "T":
                if cur is not None:
                    size = int(f[2])
                    if size < len(cur):
                        del cur[size:]
                    else:
                        cur.extend(bytes(size - len(cur)))
            elif op == "U":
                states.pop(n, None)
            elif op == "R":
                d = f[2]
                hist.setdefault(d, [h(states.get(d))])
                if cur is not None:
                    states[d] = states.pop(n)
                    push(d)
            elif op == "A":
                ack[n] = len(hist[n]) - 1
                continue
            elif op == "S":
                continue
            push(n)
    bad = 0
    present = set(os.listdir(mnt))
    for n in sorted(set(hist) | present):
        p = os.path.join(mnt, n)
        actual = None
        if n in present:
            with open(p, "rb") as fh:
                actual = hashlib.sha1(fh.read()).hexdigest()
        if n not in hist:
            print("FAIL - unexpected file %s after the crash" % n); bad += 1; continue
        k = ack.get(n, 0)
        allowed = hist[n][k:]
        if actual not in allowed:
            sz = os.path.getsize(p) if n in present else "missing"
            why = "a state it never had" if actual not in hist[n] else \
                  "an older state than the last fsync (state %d, ack at %d)" % (hist[n].index(actual), k)
            print("FAIL - %s: size %s is %s (%d ops, ack at op %d)" % (n, sz, why, len(hist[n]) - 1, k))
            bad += 1
    nack = sum(1 for n in ack)
    print("verify: %d names, %d acknowledged, %d wrong" % (len(hist), nack, bad))
    return bad

def rebase(mnt, base):
    for n in os.listdir(base):
        os.unlink(os.path.join(base, n))
    for n in os.listdir(mnt):
        with open(os.path.join(mnt, n), "rb") as s, open(os.path.join(base, n), "wb") as d:
            d.write(s.read())

if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "work":
        work(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), float(sys.argv[6]), int(sys.argv[7]))
    elif cmd == "verify":
        sys.exit(1 if verify(sys.argv[2], sys.argv[3], sys.argv[4:]) else 0)
    elif cmd == "rebase":
        rebase(sys.argv[2], sys.argv[3])
EOF

SEED=${FS_CRASH_SEED:-$$}      # FS_CRASH_SEED=N repeats a run
RANDOM=$SEED
echo "# seed $SEED rounds $ROUNDS"
for ((round = 1; round <= ROUNDS; round++)); do
    kvfs_mount || break
    rm -f "$TMP"/ops.*
    "$PY" "$TMP/model.py" work "$MNT" "$TMP/ops.0" p0 "$RANDOM" 60 "$round" 2>"$TMP/w0.err" & w0=$!
    "$PY" "$TMP/model.py" work "$MNT" "$TMP/ops.1" p1 "$RANDOM" 60 "$round" 2>"$TMP/w1.err" & w1=$!
    sleep "$((1 + RANDOM % 3)).$((RANDOM % 10))"
    alive=1
    pid_alive $w0 && pid_alive $w1 || alive=0
    # the workers stop on their own: every request fails once the daemon is gone. Only then is
    # the dead mount detached, or a worker's rename could resolve its old name on the mount
    # and its new one beneath it (EXDEV)
    kill -9 "$KVFS_PID" 2>/dev/null
    wait $w0; r0=$?; wait $w1; r1=$?
    kvfs_kill9
    if ((alive)); then
        ok "round $round: workers were running when the daemon was killed ($(cat "$TMP"/ops.* | wc -l) ops logged)"
    else
        bad "round $round: a worker ended before the crash: $(cat "$TMP/w0.err" "$TMP/w1.err")"
    fi
    ((r0 != 3 && r1 != 3)) || bad "round $round: worker saw an unexpected error: $(cat "$TMP/w0.err" "$TMP/w1.err")"
    if ctl check; then
        ok "round $round: kvfsctl check clean after SIGKILL"
    else
        bad "round $round: kvfsctl check (exit $CTL_RC): $(head -c 500 "$TMP/ctl.out" "$TMP/ctl.err")"
    fi
    kvfs_mount || break
    out=$("$PY" "$TMP/model.py" verify "$MNT" "$BASE" "$TMP"/ops.* 2>&1)
    vrc=$?
    echo "$out" | grep -v '^FAIL'
    if ((vrc == 0)); then
        ok "round $round: every file is a state it had, every fsync'd state kept"
    else
        bad "round $round: files damaged by the crash:"$'\n'"$(echo "$out" | grep '^FAIL' | head -20)"
    fi
    "$PY" "$TMP/model.py" rebase "$MNT" "$BASE" || bad "round $round: cannot read the files back"
    kvfs_umount
done

# A clean unmount/remount after all the crashes changes nothing.
if kvfs_mount; then
    : >"$TMP/ops.empty"
    check "after the crash rounds, a clean remount shows exactly the verified files" \
        "$PY" "$TMP/model.py" verify "$MNT" "$BASE" "$TMP/ops.empty"
    n=$(ls "$MNT" | grep -c '_k')
    ((n > 0)) && ok "$n fsync'd files written and kept over $ROUNDS crashes" || bad "no fsync'd file survived"
    kvfs_umount
fi
if ctl check; then ok "final kvfsctl check clean"; else bad "final kvfsctl check: $(head -c 500 "$TMP/ctl.out" "$TMP/ctl.err")"; fi
fs_done
