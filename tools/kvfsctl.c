/*
 * kvfsctl.c -- the command-line administration tool for a kvfs store.
 *
 *   kvfsctl [--data DIR] COMMAND [ARGS]
 *
 * Commands: get, put, del, ls, history, snapshot {create|list|delete}, stats, compact, check,
 * checkpoint. `kvfsctl --help` lists them, `kvfsctl COMMAND --help` explains one.
 *
 * Keys are paths of the filesystem view (docs/filesystem.md): the key "a/b/c" IS the regular
 * file MOUNTPOINT/a/b/c and its value is the file's bytes; `put` creates missing parents as
 * directories, `ls PREFIX` lists the paths of regular files starting with PREFIX, `history`
 * lists the versions of the file's inode record. The mapping lives in fs/layout.c.
 *
 * Structure: every command talks to the store only through the "store access" layer below, a
 * table of function pointers (ctl_backend) behind an opaque ctl_store. Two backends:
 *   - ctl_daemon: a kvfs daemon has the store mounted (DATA_DIR/kvfs.sock answers); every
 *     command is a request on the control socket (fs/ctl_client.h), so the mount and kvfsctl
 *     change the store through one serialised path and the daemon invalidates the kernel's
 *     caches after each write.
 *   - ctl_local: nobody serves the socket (ENOENT / ECONNREFUSED); kvfsctl opens the data
 *     directory itself with kv_open and uses fs/layout.c directly.
 * ctl_store_open() picks the backend; no command knows which one it got.
 *
 * Commands are rows of ctl_commands: operand count, options (--ttl, -l) and open mode. The
 * common path is ctl_run_body: ctl_begin parses the options and checks the operand count,
 * ctl_with_store opens the store in the row's mode, runs the row's body and closes the store.
 * snapshot, check and checkpoint have a run function of their own (they check operands
 * first, or open differently) built from the same pieces.
 *
 * Invariants kept:
 *   - Read commands (get, ls, history, snapshot list, stats, check) open the store read-only
 *     and never create it; write commands open it read-write, and only `put` and
 *     `snapshot create` create a missing store.
 *   - Every failure prints exactly one line "kvfsctl: <what>: <reason>" on stderr; for a path
 *     the reason is the strerror text of the path errors (ENOENT, EISDIR, ENOTDIR), else the
 *     backend's message (kv_last_error, layout_last_error or the daemon's message).
 *   - Locally the store is opened with the history window it recorded (KV_HISTORY_STORED), so
 *     kvfsctl keeps exactly what the daemon keeps; --history-ms sets a new window and the store
 *     records it.
 *   - Local writes (put, del) are synced (kv_sync) before kvfsctl exits.
 *   - Exit status: 0 success, 1 failure (missing key, engine or I/O error, damage found by
 *     check), 2 usage error (and for check: the check could not run).
 *   - get writes the value's raw bytes and nothing else to stdout.
 */
#include "ctl_client.h"
#include "kv.h"
#include "layout.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CTL_EXIT_OK 0
#define CTL_EXIT_FAIL 1
#define CTL_EXIT_USAGE 2

/* Global settings, from the options before the command. */
typedef struct ctl_globals {
    const char *data_dir; /* resolved data directory */
    uint64_t history_ms;  /* history retention passed to kv_open */
} ctl_globals;

/* ===================================================================== store access ==== */

typedef struct ctl_store ctl_store;

/* Called once per file by list, in path order; a non-zero return stops the listing and is
 * returned by list. info: seq of the inode record, expire_at_ms, value_len = file size. */
typedef int (*ctl_list_fn)(void *arg, const void *key, size_t klen, const kv_entry_info *info);

/* One way of reaching a store. Every call returns 0 (check: a count) or a negative errno;
 * error_text() then describes the failure (may return ""). */
typedef struct ctl_backend {
    const char *name;
    const char *access; /* for stats: how the store is reached */
    int (*open)(const ctl_globals *g, int writable, int create, ctl_store **st);
    int (*close)(ctl_store *st);
    int (*get)(ctl_store *st, const void *key, size_t klen, void **val, size_t *vlen);
    int (*put)(ctl_store *st, const void *key, size_t klen, const void *val, size_t vlen,
               uint64_t expire_at_ms);
    int (*del)(ctl_store *st, const void *key, size_t klen);
    int (*list)(ctl_store *st, const void *prefix, size_t plen, ctl_list_fn fn, void *arg);
    int (*history)(ctl_store *st, const void *key, size_t klen, kv_version **list, size_t *n);
    int (*snap_create)(ctl_store *st, const char *name, kv_snapinfo *info);
    int (*snap_list)(ctl_store *st, kv_snapinfo **list, size_t *n);
    int (*snap_delete)(ctl_store *st, const char *name);
    int (*stats)(ctl_store *st, kv_stats *out);
    int (*compact)(ctl_store *st);
    int (*check)(ctl_store *st, kv_report_fn report, void *arg);
    int (*checkpoint)(ctl_store *st, const char *dir);
    const char *(*error_text)(void);
} ctl_backend;

struct ctl_store {
    const ctl_backend *be;
    kv_db *db;      /* ctl_local */
    layout_fs *lfs; /* ctl_local */
    ctl_conn *conn; /* ctl_daemon */
};

/* ---- ctl_local: the store opened in this process (kv.h + fs/layout.h) ---- */

/* The message of the latest local failure: copied from the engine or the layout at once, so
 * a later successful call cannot overwrite it. */
static char local_errbuf[512];

static const char *local_error_text(void)
{
    return local_errbuf;
}

static int local_kv(int rc)
{
    if (rc < 0)
        snprintf(local_errbuf, sizeof(local_errbuf), "%s", kv_last_error());
    return rc;
}

static int local_lay(int rc)
{
    if (rc < 0)
        snprintf(local_errbuf, sizeof(local_errbuf), "%s", layout_last_error());
    return rc;
}

static int local_open(const ctl_globals *g, int writable, int create, ctl_store **out)
{
    kv_options opt;
    kv_options_init(&opt);
    opt.read_only = !writable;
    opt.create_if_missing = writable && create;
    opt.history_ms = g->history_ms;
    ctl_store *st = calloc(1, sizeof(*st));
    if (!st)
        return -ENOMEM;
    int rc = local_kv(kv_open(g->data_dir, &opt, &st->db));
    if (rc < 0)
        goto fail;
    /* A writable open creates the root directory of a new store (owned by this user). */
    rc = local_lay(
        layout_open(st->db, !writable, (uint32_t)geteuid(), (uint32_t)getegid(), &st->lfs));
    if (rc < 0) {
        kv_close(st->db);
        goto fail;
    }
    *out = st;
    return 0;
fail:
    free(st);
    return rc;
}

static int local_close(ctl_store *st)
{
    layout_close(st->lfs);
    int rc = local_kv(kv_close(st->db));
    free(st);
    return rc;
}

static int local_get(ctl_store *st, const void *key, size_t klen, void **val, size_t *vlen)
{
    return local_lay(layout_read_file(st->lfs, key, klen, val, vlen, NULL));
}

static int local_put(ctl_store *st, const void *key, size_t klen, const void *val, size_t vlen,
                     uint64_t expire_at_ms)
{
    int rc = local_lay(layout_write_file(st->lfs, key, klen, val, vlen, expire_at_ms,
                                         (uint32_t)geteuid(), (uint32_t)getegid()));
    return rc < 0 ? rc : local_kv(kv_sync(st->db));
}

/* Nothing else has the store open, so an inode whose last name went is purged at once. */
static int local_del(ctl_store *st, const void *key, size_t klen)
{
    uint64_t ino = 0;
    int orphan = 0;
    int rc = local_lay(layout_unlink_path(st->lfs, key, klen, &ino, &orphan));
    if (rc == 0 && orphan)
        rc = local_lay(layout_purge(st->lfs, ino));
    return rc < 0 ? rc : local_kv(kv_sync(st->db));
}

static int local_list(ctl_store *st, const void *prefix, size_t plen, ctl_list_fn fn, void *arg)
{
    return local_lay(layout_list_prefix(st->lfs, prefix, plen, fn, arg));
}

static int local_history(ctl_store *st, const void *key, size_t klen, kv_version **list, size_t *n)
{
    return local_lay(layout_history(st->lfs, key, klen, list, n));
}

static int local_snap_create(ctl_store *st, const char *name, kv_snapinfo *info)
{
    return local_kv(kv_named_snapshot_create(st->db, name, info));
}

static int local_snap_list(ctl_store *st, kv_snapinfo **list, size_t *n)
{
    return local_kv(kv_named_snapshot_list(st->db, list, n));
}

static int local_snap_delete(ctl_store *st, const char *name)
{
    return local_kv(kv_named_snapshot_delete(st->db, name));
}

static int local_stats(ctl_store *st, kv_stats *out)
{
    return local_kv(kv_get_stats(st->db, out));
}

static int local_compact(ctl_store *st)
{
    int rc = local_kv(kv_flush(st->db));
    if (rc < 0)
        return rc;
    return local_kv(kv_compact_range(st->db, NULL, 0, NULL, 0));
}

/* The engine's checksums, then the filesystem invariants (I1-I3 of fs/layout.h). */
static int local_check(ctl_store *st, kv_report_fn report, void *arg)
{
    int n = local_kv(kv_verify(st->db, report, arg));
    if (n < 0)
        return n;
    int m = local_lay(layout_check(st->lfs, report, arg));
    if (m == -EUCLEAN) {
        /* Damage the engine check usually named already: a finding, not a failed run. */
        char line[600];
        snprintf(line, sizeof(line), "filesystem check stopped: %s", local_errbuf);
        report(arg, line);
        m = 1;
    }
    return m < 0 ? m : n + m;
}

static int local_checkpoint(ctl_store *st, const char *dir)
{
    return local_kv(kv_checkpoint(st->db, dir));
}

static const ctl_backend ctl_local = {
    .name = "local",
    .access = "opened directly (not mounted)",
    .open = local_open,
    .close = local_close,
    .get = local_get,
    .put = local_put,
    .del = local_del,
    .list = local_list,
    .history = local_history,
    .snap_create = local_snap_create,
    .snap_list = local_snap_list,
    .snap_delete = local_snap_delete,
    .stats = local_stats,
    .compact = local_compact,
    .check = local_check,
    .checkpoint = local_checkpoint,
    .error_text = local_error_text,
};

/* ---- ctl_daemon: the store mounted by a kvfs daemon, reached over DATA_DIR/kvfs.sock ---- */

/* Returns 0 with *st connected to a daemon that answered a ping; -ENOENT, -ECONNREFUSED or
 * -ENOTDIR when no daemon serves g->data_dir (the caller falls back to ctl_local); another
 * negative errno when a socket is there but cannot be used. writable/create do not matter:
 * the daemon already holds the store (a read-only mount refuses writes with -EROFS). */
static int daemon_open(const ctl_globals *g, int writable, int create, ctl_store **out)
{
    (void)writable;
    (void)create;
    ctl_conn *c = NULL;
    int rc = ctl_client_connect(g->data_dir, &c);
    if (rc < 0)
        return rc;
    uint32_t version = 0;
    rc = ctl_client_ping(c, &version);
    if (rc == -ECONNRESET || rc == -EPIPE)
        rc = -EACCES; /* the daemon hangs up on users other than its own and root */
    if (rc < 0) {
        ctl_client_close(c);
        return rc;
    }
    ctl_store *st = calloc(1, sizeof(*st));
    if (!st) {
        ctl_client_close(c);
        return -ENOMEM;
    }
    st->conn = c;
    *out = st;
    return 0;
}

static int daemon_close(ctl_store *st)
{
    ctl_client_close(st->conn);
    free(st);
    return 0;
}

static int daemon_get(ctl_store *st, const void *key, size_t klen, void **val, size_t *vlen)
{
    return ctl_client_get(st->conn, key, klen, val, vlen);
}

static int daemon_put(ctl_store *st, const void *key, size_t klen, const void *val, size_t vlen,
                      uint64_t expire_at_ms)
{
    return ctl_client_put(st->conn, key, klen, val, vlen, expire_at_ms);
}

static int daemon_del(ctl_store *st, const void *key, size_t klen)
{
    return ctl_client_del(st->conn, key, klen);
}

static int daemon_list(ctl_store *st, const void *prefix, size_t plen, ctl_list_fn fn, void *arg)
{
    return ctl_client_list(st->conn, prefix, plen, fn, arg);
}

static int daemon_history(ctl_store *st, const void *key, size_t klen, kv_version **list, size_t *n)
{
    return ctl_client_history(st->conn, key, klen, list, n);
}

static int daemon_snap_create(ctl_store *st, const char *name, kv_snapinfo *info)
{
    return ctl_client_snap_create(st->conn, name, info);
}

static int daemon_snap_list(ctl_store *st, kv_snapinfo **list, size_t *n)
{
    return ctl_client_snap_list(st->conn, list, n);
}

static int daemon_snap_delete(ctl_store *st, const char *name)
{
    return ctl_client_snap_delete(st->conn, name);
}

static int daemon_stats(ctl_store *st, kv_stats *out)
{
    return ctl_client_stats(st->conn, out);
}

static int daemon_compact(ctl_store *st)
{
    return ctl_client_compact(st->conn);
}

static int daemon_check(ctl_store *st, kv_report_fn report, void *arg)
{
    return ctl_client_check(st->conn, report, arg);
}

static int daemon_checkpoint(ctl_store *st, const char *dir)
{
    return ctl_client_checkpoint(st->conn, dir);
}

static const ctl_backend ctl_daemon = {
    .name = "daemon",
    .access = "mounted: through the kvfs daemon's control socket",
    .open = daemon_open,
    .close = daemon_close,
    .get = daemon_get,
    .put = daemon_put,
    .del = daemon_del,
    .list = daemon_list,
    .history = daemon_history,
    .snap_create = daemon_snap_create,
    .snap_list = daemon_snap_list,
    .snap_delete = daemon_snap_delete,
    .stats = daemon_stats,
    .compact = daemon_compact,
    .check = daemon_check,
    .checkpoint = daemon_checkpoint,
    .error_text = ctl_client_last_error,
};

/* ---- the layer's entry points ---- */

/* The reason for the latest failure of backend be with error rc. */
static const char *ctl_reason(const ctl_backend *be, int rc)
{
    const char *msg = be ? be->error_text() : "";
    if (msg && *msg)
        return msg;
    return strerror(-rc);
}

/* Prints the error line for operation what; returns CTL_EXIT_FAIL. */
static int ctl_fail(const ctl_backend *be, const char *what, int rc)
{
    fprintf(stderr, "kvfsctl: %s: %s\n", what, ctl_reason(be, rc));
    return CTL_EXIT_FAIL;
}

/* Opens the store without reporting: through the daemon when DATA_DIR/kvfs.sock answers,
 * else directly. OUT: *st, *be (the backend that answered or failed). */
static int ctl_store_try_open(const ctl_globals *g, int writable, int create, ctl_store **st,
                              const ctl_backend **be)
{
    *be = &ctl_daemon;
    int rc = ctl_daemon.open(g, writable, create, st);
    if (rc == -ENOENT || rc == -ECONNREFUSED || rc == -ENOTDIR) {
        *be = &ctl_local;
        local_errbuf[0] = 0;
        rc = ctl_local.open(g, writable, create, st);
    }
    if (rc == 0)
        (*st)->be = *be;
    return rc;
}

/* Prints the error line for a failed ctl_store_try_open. */
static void ctl_open_fail(const ctl_globals *g, const ctl_backend *be, int rc, int may_create)
{
    if (be == &ctl_daemon && rc == -EACCES)
        fprintf(stderr,
                "kvfsctl: %s: the kvfs daemon serving this store refused the "
                "connection (only its own user and root may use it)\n",
                g->data_dir);
    else if (be == &ctl_daemon)
        fprintf(stderr, "kvfsctl: %s: kvfs daemon: %s\n", g->data_dir, ctl_reason(be, rc));
    else if (rc == -EBUSY)
        fprintf(stderr,
                "kvfsctl: %s: store is in use by another process (a mounted kvfs or "
                "another kvfsctl)\n",
                g->data_dir);
    else if (rc == -ENOENT && !may_create)
        fprintf(stderr, "kvfsctl: %s: no kvfs store there (%s)\n", g->data_dir, ctl_reason(be, rc));
    else
        ctl_fail(be, g->data_dir, rc);
}

/* Opens the store for a command. On failure prints the error line and returns it. */
static int ctl_store_open(const ctl_globals *g, int writable, int create, ctl_store **st)
{
    const ctl_backend *be;
    int rc = ctl_store_try_open(g, writable, create, st, &be);
    if (rc < 0)
        ctl_open_fail(g, be, rc, writable && create);
    return rc;
}

/* Closes st; a failure is reported and turns a successful exit code into a failing one. */
static int ctl_store_close(ctl_store *st, const ctl_globals *g, int code)
{
    const ctl_backend *be = st->be;
    int rc = be->close(st);
    if (rc < 0) {
        ctl_fail(be, g->data_dir, rc);
        if (code == CTL_EXIT_OK)
            code = CTL_EXIT_FAIL;
    }
    return code;
}

/* Reports the failure rc of an operation on path key; returns CTL_EXIT_FAIL. Path errors read
 * like the shell's ("No such file or directory"); other failures give the backend's message. */
static const char *ctl_key_label(const char *key);
static int ctl_key_fail(const ctl_store *st, const char *key, int rc)
{
    const char *msg = st->be->error_text();
    const char *reason;
    if (rc == -ENOENT || rc == -EISDIR || rc == -ENOTDIR)
        reason = strerror(-rc);
    else if (rc == -EINVAL && msg && strncmp(msg, "invalid key", 11))
        reason = "Not a regular file"; /* a symlink, fifo, socket or device node */
    else
        reason = ctl_reason(st->be, rc);
    fprintf(stderr, "kvfsctl: %s: %s\n", ctl_key_label(key), reason);
    return CTL_EXIT_FAIL;
}

/* ========================================================================= helpers ==== */

static void ctl_iso_time(uint64_t ms, char *buf, size_t n)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    if (!gmtime_r(&t, &tm) || !strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(buf, n, "@%" PRIu64, ms);
}

static uint64_t ctl_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Prints key to f, escaping bytes that are not printable ASCII as \xNN and '\' as "\\". */
static void ctl_print_key(FILE *f, const void *key, size_t klen)
{
    const unsigned char *p = key;
    for (size_t i = 0; i < klen; i++) {
        if (p[i] == '\\')
            fputs("\\\\", f);
        else if (p[i] < 0x20 || p[i] >= 0x7f)
            fprintf(f, "\\x%02x", p[i]);
        else
            fputc(p[i], f);
    }
}

/* key as it goes into an error line: escaped like ls, cut after 64 bytes. Returns a static
 * buffer (kvfsctl is single-threaded). */
static const char *ctl_key_label(const char *key)
{
    static char buf[64 * 4 + 8];
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
        if ((const char *)p - key == 64) {
            snprintf(buf + n, sizeof(buf) - n, "...");
            return buf;
        }
        if (*p == '\\')
            n += (size_t)snprintf(buf + n, sizeof(buf) - n, "\\\\");
        else if (*p < 0x20 || *p >= 0x7f)
            n += (size_t)snprintf(buf + n, sizeof(buf) - n, "\\x%02x", *p);
        else
            buf[n++] = (char)*p;
    }
    buf[n] = 0;
    return buf;
}

/* 1 if path (which need not exist) lies inside or at directory dir. */
static int ctl_path_inside(const char *path, const char *dir)
{
    char rdir[PATH_MAX], parent[PATH_MAX], rparent[PATH_MAX];
    if (!realpath(dir, rdir))
        return 0;
    int w = snprintf(parent, sizeof(parent), "%s", path);
    if (w < 0 || (size_t)w >= sizeof(parent))
        return 0;
    char *slash = strrchr(parent, '/');
    while (slash && slash > parent && slash[1] == 0) { /* trailing slashes */
        *slash = 0;
        slash = strrchr(parent, '/');
    }
    if (!slash)
        snprintf(parent, sizeof(parent), ".");
    else if (slash == parent)
        parent[1] = 0;
    else
        *slash = 0;
    if (!realpath(parent, rparent))
        return 0;
    size_t n = strlen(rdir);
    return !strncmp(rparent, rdir, n) && (rparent[n] == 0 || rparent[n] == '/');
}

static void ctl_human_bytes(uint64_t v, char *buf, size_t n)
{
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double d = (double)v;
    size_t u = 0;
    while (d >= 1024.0 && u + 1 < sizeof(units) / sizeof(units[0])) {
        d /= 1024.0;
        u++;
    }
    if (u == 0)
        snprintf(buf, n, "%" PRIu64 " B", v);
    else
        snprintf(buf, n, "%.1f %s", d, units[u]);
}

/* Parses a non-negative decimal integer; 0 on success, -1 if s is not one. */
static int ctl_parse_u64(const char *s, uint64_t *out)
{
    if (!s || !*s || *s == '-' || *s == '+')
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}

/* Reads all of stdin, at most LAYOUT_MAX_PUT bytes (the largest file put writes).
 * OUT: *buf (malloc'd), *len. */
static int ctl_read_stdin(void **buf, size_t *len)
{
    size_t cap = 64 * 1024, n = 0;
    char *p = malloc(cap);
    if (!p)
        return -ENOMEM;
    for (;;) {
        if (n == cap) {
            if (cap > LAYOUT_MAX_PUT) {
                free(p);
                return -EFBIG;
            }
            char *q = realloc(p, cap * 2);
            if (!q) {
                free(p);
                return -ENOMEM;
            }
            p = q;
            cap *= 2;
        }
        size_t got = fread(p + n, 1, cap - n, stdin);
        n += got;
        if (got == 0) {
            if (ferror(stdin)) {
                int err = errno ? errno : EIO;
                free(p);
                return -err;
            }
            break;
        }
    }
    if (n > LAYOUT_MAX_PUT) {
        free(p);
        return -EFBIG;
    }
    *buf = p;
    *len = n;
    return 0;
}

/* Flushes stdout; reports and returns CTL_EXIT_FAIL if any earlier write to it failed. */
static int ctl_finish_stdout(int code)
{
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "kvfsctl: stdout: %s\n", strerror(errno ? errno : EIO));
        return CTL_EXIT_FAIL;
    }
    return code;
}

/* ======================================================================== commands ==== */

/* ctl_command.flags: the options a command takes and how it opens the store. */
#define CTL_OPT_TTL 0x1u  /* takes --ttl SECONDS */
#define CTL_OPT_LONG 0x2u /* takes -l, --long */
#define CTL_WRITE 0x4u    /* opens the store read-write (else read-only) */
#define CTL_CREATE 0x8u   /* with CTL_WRITE: creates a missing store */

/* A command's operands and options, as ctl_begin parsed them. */
typedef struct ctl_args {
    char **v; /* the operands: v[0..n-1] */
    int n;
    uint64_t ttl; /* --ttl SECONDS, 0 when not given */
    int lflag;    /* -l given */
} ctl_args;

/* The part of a command that works on the open store; returns the exit code. */
typedef int (*ctl_body_fn)(ctl_store *st, const ctl_args *a, const ctl_globals *g);

typedef struct ctl_command {
    const char *name;
    const char *args;     /* usage after the name */
    const char *summary;  /* one line for `kvfsctl --help` */
    const char *details;  /* extra lines for `kvfsctl NAME --help`, may be NULL */
    int min_ops, max_ops; /* operand count */
    unsigned flags;       /* CTL_OPT_*, CTL_WRITE, CTL_CREATE */
    ctl_body_fn body;     /* run by ctl_run_body; NULL: run does it all */
    int (*run)(const struct ctl_command *cmd, int argc, char **argv, const ctl_globals *g);
} ctl_command;

static void ctl_command_usage(FILE *f, const ctl_command *c)
{
    fprintf(f, "Usage: kvfsctl [--data DIR] %s %s\n  %s\n", c->name, c->args, c->summary);
    if (c->details)
        fprintf(f, "%s", c->details);
}

static int ctl_usage_error(const ctl_command *c, const char *fmt, const char *arg)
{
    fprintf(stderr, "kvfsctl: %s: ", c->name);
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (see 'kvfsctl %s --help')\n", c->name);
    return CTL_EXIT_USAGE;
}

/* Parses a command's options into *a. Knows --help (always), --ttl and -l when c->flags
 * allows them. Returns -1 to continue with argv[optind..], or an exit code. */
static int ctl_parse_opts(const ctl_command *c, int argc, char **argv, ctl_args *a)
{
    static const struct option longopts[] = {
        {"help", no_argument, NULL, 'h'},
        {"ttl", required_argument, NULL, 't'},
        {"long", no_argument, NULL, 'l'},
        {NULL, 0, NULL, 0},
    };
    optind = 0; /* 0: glibc re-initialises getopt (main parsed with "+") */
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, ":hl", longopts, NULL)) != -1) {
        switch (ch) {
        case 'h':
            ctl_command_usage(stdout, c);
            return ctl_finish_stdout(CTL_EXIT_OK);
        case 't':
            if (!(c->flags & CTL_OPT_TTL))
                return ctl_usage_error(c, "unknown option '%s'", "--ttl");
            if (ctl_parse_u64(optarg, &a->ttl) < 0 || a->ttl == 0 || a->ttl > UINT64_MAX / 2000)
                return ctl_usage_error(c, "--ttl needs a positive number of seconds, not '%s'",
                                       optarg);
            break;
        case 'l':
            if (!(c->flags & CTL_OPT_LONG))
                return ctl_usage_error(c, "unknown option '%s'", "-l");
            a->lflag = 1;
            break;
        case ':':
            return ctl_usage_error(c, "option '%s' needs an argument", argv[optind - 1]);
        default:
            return ctl_usage_error(c, "unknown option '%s'", argv[optind - 1]);
        }
    }
    return -1;
}

/* The prologue of every command: parses its options, checks that it got between
 * c->min_ops and c->max_ops operands and fills *a. Returns -1 to go on, or the exit code to
 * return at once (--help printed, or the usage error reported). */
static int ctl_begin(const ctl_command *c, int argc, char **argv, ctl_args *a)
{
    memset(a, 0, sizeof(*a));
    int r = ctl_parse_opts(c, argc, argv, a);
    if (r >= 0)
        return r;
    a->v = argv + optind;
    a->n = argc - optind;
    if (a->n < c->min_ops)
        return ctl_usage_error(c, "missing operand%s", "");
    if (a->n > c->max_ops)
        return ctl_usage_error(c, "too many operands%s", "");
    return -1;
}

/* Opens the store as flags say (CTL_WRITE, CTL_CREATE), runs body on it and closes it. */
static int ctl_with_store(const ctl_globals *g, unsigned flags, ctl_body_fn body, const ctl_args *a)
{
    ctl_store *st;
    if (ctl_store_open(g, !!(flags & CTL_WRITE), !!(flags & CTL_CREATE), &st) < 0)
        return CTL_EXIT_FAIL;
    return ctl_store_close(st, g, body(st, a, g));
}

/* The whole of a command that has a body: prologue, store, body, close. */
static int ctl_run_body(const ctl_command *c, int argc, char **argv, const ctl_globals *g)
{
    ctl_args a;
    int r = ctl_begin(c, argc, argv, &a);
    if (r >= 0)
        return r;
    return ctl_with_store(g, c->flags, c->body, &a);
}

static int get_body(ctl_store *st, const ctl_args *a, const ctl_globals *g)
{
    (void)g;
    const char *key = a->v[0];
    void *val = NULL;
    size_t vlen = 0;
    int code;
    int rc = st->be->get(st, key, strlen(key), &val, &vlen);
    if (rc < 0)
        code = ctl_key_fail(st, key, rc);
    else
        code = ctl_finish_stdout(vlen && fwrite(val, 1, vlen, stdout) != vlen ? CTL_EXIT_FAIL
                                                                              : CTL_EXIT_OK);
    free(val);
    return code;
}

/* Reports the failure rc of ctl_read_stdin. */
static int put_stdin_fail(int rc)
{
    if (rc == -EFBIG)
        fprintf(stderr, "kvfsctl: stdin: value larger than the %u-byte limit\n", LAYOUT_MAX_PUT);
    else
        fprintf(stderr, "kvfsctl: stdin: %s\n", strerror(-rc));
    return CTL_EXIT_FAIL;
}

/* Runs with the store already open: a busy store fails before stdin is consumed. */
static int put_body(ctl_store *st, const ctl_args *a, const ctl_globals *g)
{
    (void)g;
    const char *key = a->v[0];
    void *buf = NULL;
    const void *val = a->v[1];
    size_t vlen = a->n > 1 ? strlen(a->v[1]) : 0;
    if (a->n == 1) {
        int rc = ctl_read_stdin(&buf, &vlen);
        if (rc < 0)
            return put_stdin_fail(rc);
        val = buf;
    }
    uint64_t expire = a->ttl ? ctl_now_ms() + a->ttl * 1000u : 0;
    int rc = st->be->put(st, key, strlen(key), val, vlen, expire);
    free(buf);
    return rc < 0 ? ctl_key_fail(st, key, rc) : CTL_EXIT_OK;
}

static int del_body(ctl_store *st, const ctl_args *a, const ctl_globals *g)
{
    (void)g;
    const char *key = a->v[0];
    int rc = st->be->del(st, key, strlen(key));
    return rc < 0 ? ctl_key_fail(st, key, rc) : CTL_EXIT_OK;
}

static int ls_print(void *arg, const void *key, size_t klen, const kv_entry_info *info)
{
    int lflag = *(int *)arg;
    if (lflag) {
        char exp[40] = "-";
        if (info->expire_at_ms)
            ctl_iso_time(info->expire_at_ms, exp, sizeof(exp));
        printf("%10" PRIu64 " %10zu %-20s ", info->seq, info->value_len, exp);
    }
    ctl_print_key(stdout, key, klen);
    if (putchar('\n') == EOF)
        return -EIO;
    return 0;
}

static int ls_body(ctl_store *st, const ctl_args *a, const ctl_globals *g)
{
    (void)g;
    const char *prefix = a->n ? a->v[0] : "";
    int lflag = a->lflag;
    int code = CTL_EXIT_OK;
    if (lflag)
        printf("%10s %10s %-20s %s\n", "SEQ", "SIZE", "EXPIRES", "PATH");
    int rc = st->be->list(st, prefix, strlen(prefix), ls_print, &lflag);
    if (rc == -EIO && ferror(stdout))
        code = CTL_EXIT_FAIL; /* reported by ctl_finish_stdout */
    else if (rc < 0)
        code = ctl_fail(st->be, *prefix ? prefix : "ls", rc);
    return ctl_finish_stdout(code);
}

/* The table of user.kvfs.versions, from the one formatter both use (fs/layout.c). */
static int history_print(const kv_version *list, size_t n)
{
    char *txt = NULL;
    size_t len = 0;
    int rc = layout_versions_format(list, n, &txt, &len);
    if (rc < 0)
        return rc;
    if (len && fwrite(txt, 1, len, stdout) != len)
        rc = -EIO;
    free(txt);
    return rc;
}

static int history_body(ctl_store *st, const ctl_args *a, const ctl_globals *g)
{
    (void)g;
    const char *key = a->v[0];
    kv_version *list = NULL;
    size_t n = 0;
    int code;
    int rc = st->be->history(st, key, strlen(key), &list, &n);
    if (rc >= 0 && n == 0)
        rc = -ENOENT;
    if (rc >= 0)
        rc = history_print(list, n);
    code = rc < 0 ? ctl_key_fail(st, key, rc) : ctl_finish_stdout(CTL_EXIT_OK);
    free(list);
    return code;
}

/* Reports a failure of snapshot name that has no message of its own. */
static int snap_fail(const ctl_store *st, const char *name, int rc)
{
    char what[KV_SNAPSHOT_NAME_MAX + 32];
    snprintf(what, sizeof(what), "snapshot %s", name);
    return ctl_fail(st->be, what, rc);
}

/* a->v: "create" NAME */
static int snap_create_body(ctl_store *st, const ctl_args *a, const ctl_globals *g)
{
    (void)g;
    const char *name = a->v[1];
    kv_snapinfo info;
    int rc = st->be->snap_create(st, name, &info);
    if (rc == -EEXIST) {
        fprintf(stderr, "kvfsctl: snapshot %s: already exists\n", name);
        return CTL_EXIT_FAIL;
    }
    if (rc < 0)
        return snap_fail(st, name, rc);
    char when[40];
    ctl_iso_time(info.time_ms, when, sizeof(when));
    printf("created snapshot %s at seq %" PRIu64 " (%s)\n", info.name, info.seq, when);
    return ctl_finish_stdout(CTL_EXIT_OK);
}

/* a->v: "list" */
static int snap_list_body(ctl_store *st, const ctl_args *a, const ctl_globals *g)
{
    (void)a;
    (void)g;
    kv_snapinfo *list = NULL;
    size_t n = 0;
    int code;
    int rc = st->be->snap_list(st, &list, &n);
    if (rc < 0) {
        code = ctl_fail(st->be, "snapshot list", rc);
    } else {
        printf("%-24s  %10s  %s\n", "NAME", "SEQ", "CREATED");
        for (size_t i = 0; i < n; i++) {
            char when[40];
            ctl_iso_time(list[i].time_ms, when, sizeof(when));
            printf("%-24s  %10" PRIu64 "  %s\n", list[i].name, list[i].seq, when);
        }
        code = ctl_finish_stdout(CTL_EXIT_OK);
    }
    free(list);
    return code;
}

/* a->v: "delete" NAME */
static int snap_delete_body(ctl_store *st, const ctl_args *a, const ctl_globals *g)
{
    (void)g;
    const char *name = a->v[1];
    int rc = st->be->snap_delete(st, name);
    if (rc == -ENOENT) {
        fprintf(stderr, "kvfsctl: snapshot %s: No such snapshot\n", name);
        return CTL_EXIT_FAIL;
    }
    return rc < 0 ? snap_fail(st, name, rc) : CTL_EXIT_OK;
}

/* Checks the subcommand and its operand, then runs it in the mode it needs. */
static int cmd_snapshot(const ctl_command *c, int argc, char **argv, const ctl_globals *g)
{
    ctl_args a;
    int r = ctl_begin(c, argc, argv, &a);
    if (r >= 0)
        return r;
    const char *sub = a.v[0];
    const char *name = a.n > 1 ? a.v[1] : NULL;
    if (!strcmp(sub, "list")) {
        if (name)
            return ctl_usage_error(c, "'list' takes no operand%s", "");
        return ctl_with_store(g, 0, snap_list_body, &a);
    }
    if (strcmp(sub, "create") && strcmp(sub, "delete"))
        return ctl_usage_error(c, "unknown subcommand '%s'", sub);
    if (!name || !*name)
        return ctl_usage_error(c, "'%s' needs a snapshot NAME", sub);
    if (strlen(name) > KV_SNAPSHOT_NAME_MAX)
        return ctl_usage_error(c, "snapshot name longer than 255 bytes: '%.40s...'", name);
    if (!strcmp(sub, "create"))
        return ctl_with_store(g, CTL_WRITE | CTL_CREATE, snap_create_body, &a);
    return ctl_with_store(g, CTL_WRITE, snap_delete_body, &a);
}

static void stats_print(const ctl_backend *be, const kv_stats *s)
{
    char a[32], b[32];
    printf("last sequence         %" PRIu64 "\n", s->last_seq);
    printf("oldest readable seq   %" PRIu64 "\n", s->oldest_readable_seq);
    printf("snapshots             %" PRIu64 " named, %" PRIu64 " live\n", s->named_snapshots,
           s->live_snapshots);
    ctl_human_bytes(s->memtable_bytes, a, sizeof(a));
    ctl_human_bytes(s->imm_memtable_bytes, b, sizeof(b));
    printf("memtable              %s (+ %s immutable)\n", a, b);
    uint64_t files = 0, bytes = 0;
    for (int i = 0; i < KV_MAX_LEVELS; i++) {
        files += s->level_files[i];
        bytes += s->level_bytes[i];
    }
    ctl_human_bytes(bytes, a, sizeof(a));
    printf("tables                %" PRIu64 " files, %s\n", files, a);
    printf("range deletions       %" PRIu64 " (waiting for compaction to retire them)\n",
           s->range_deletions);
    for (int i = 0; i < KV_MAX_LEVELS; i++) {
        if (!s->level_files[i])
            continue;
        ctl_human_bytes(s->level_bytes[i], a, sizeof(a));
        printf("  L%d                  %" PRIu64 " files, %s\n", i, s->level_files[i], a);
    }
    printf("operations (since the store was opened by %s)\n",
           be == &ctl_daemon ? "the kvfs daemon" : "this process");
    printf("  puts %" PRIu64 ", deletes %" PRIu64 ", gets %" PRIu64 ", batches %" PRIu64 "\n",
           s->puts, s->deletes, s->gets, s->batches);
    ctl_human_bytes(s->wal_bytes, a, sizeof(a));
    printf("  wal %s, %" PRIu64 " syncs, %" PRIu64 " group commits\n", a, s->wal_syncs,
           s->wal_group_commits);
    ctl_human_bytes(s->compaction_bytes_read, a, sizeof(a));
    ctl_human_bytes(s->compaction_bytes_written, b, sizeof(b));
    printf("  flushes %" PRIu64 ", compactions %" PRIu64 " (read %s, written %s)\n", s->flushes,
           s->compactions, a, b);
    printf("  write stalls %" PRIu64 " (%.1f ms)\n", s->write_stalls,
           (double)s->write_stall_us / 1000.0);
    uint64_t lookups = s->cache_hits + s->cache_misses;
    ctl_human_bytes(s->cache_bytes, a, sizeof(a));
    printf("  block cache %s, %" PRIu64 " hits, %" PRIu64 " misses (%.1f%% hit)\n", a,
           s->cache_hits, s->cache_misses,
           lookups ? 100.0 * (double)s->cache_hits / (double)lookups : 0.0);
    printf("  bloom filter skips  %" PRIu64 "\n", s->bloom_useful);
    printf("sticky error          %s\n", s->sticky_error ? strerror(-s->sticky_error) : "none");
    printf("disk full             %s\n", s->no_space ? strerror(-s->no_space) : "no");
}

static int stats_body(ctl_store *st, const ctl_args *a, const ctl_globals *g)
{
    (void)a;
    kv_stats s;
    memset(&s, 0, sizeof(s));
    int rc = st->be->stats(st, &s);
    if (rc < 0)
        return ctl_fail(st->be, "stats", rc);
    printf("store                 %s\n", g->data_dir);
    printf("access                %s\n", st->be->access);
    stats_print(st->be, &s);
    return ctl_finish_stdout(CTL_EXIT_OK);
}

static int compact_body(ctl_store *st, const ctl_args *a, const ctl_globals *g)
{
    (void)a;
    (void)g;
    int rc = st->be->compact(st);
    return rc < 0 ? ctl_fail(st->be, "compact", rc) : CTL_EXIT_OK;
}

typedef struct check_state {
    unsigned long printed;
} check_state;

static void check_report(void *arg, const char *line)
{
    check_state *cs = arg;
    cs->printed++;
    printf("%s\n", line);
}

/* Runs the check on the open store and prints its summary; returns the exit code before
 * stdout is flushed. */
static int check_run(const ctl_backend *be, ctl_store *st, const ctl_globals *g)
{
    check_state cs = {0};
    int rc = be->check(st, check_report, &cs);
    if (rc < 0) {
        ctl_fail(be, "check", rc);
        return CTL_EXIT_USAGE;
    }
    if (rc == 0) {
        printf("check: %s: clean, no problems found\n", g->data_dir);
        return CTL_EXIT_OK;
    }
    printf("check: %s: %d problem%s found\n", g->data_dir, rc, rc == 1 ? "" : "s");
    return CTL_EXIT_FAIL;
}

/* Not ctl_run_body: a store too damaged to open is a finding (exit 1), and a check that
 * cannot run (open or close failing) exits 2. */
static int cmd_check(const ctl_command *c, int argc, char **argv, const ctl_globals *g)
{
    ctl_args a;
    int r = ctl_begin(c, argc, argv, &a);
    if (r >= 0)
        return r;
    const ctl_backend *be;
    ctl_store *st;
    int rc = ctl_store_try_open(g, 0, 0, &st, &be);
    if (rc == -EUCLEAN) {
        printf("%s\n", ctl_reason(be, rc));
        printf("check: %s: 1 problem found (the store does not open)\n", g->data_dir);
        return ctl_finish_stdout(CTL_EXIT_FAIL);
    }
    if (rc < 0) {
        ctl_open_fail(g, be, rc, 0);
        return CTL_EXIT_USAGE;
    }
    int code = ctl_finish_stdout(check_run(be, st, g));
    int crc = be->close(st);
    if (crc < 0 && code == CTL_EXIT_OK) {
        ctl_fail(be, g->data_dir, crc);
        code = CTL_EXIT_USAGE;
    }
    return code;
}

static int checkpoint_body(ctl_store *st, const ctl_args *a, const ctl_globals *g)
{
    (void)g;
    const char *dir = a->v[0];
    int rc = st->be->checkpoint(st, dir);
    if (rc < 0)
        return ctl_fail(st->be, dir, rc);
    printf("checkpoint written to %s\n", dir);
    return ctl_finish_stdout(CTL_EXIT_OK);
}

/* Refuses a DIR inside the store before opening it. */
static int cmd_checkpoint(const ctl_command *c, int argc, char **argv, const ctl_globals *g)
{
    ctl_args a;
    int r = ctl_begin(c, argc, argv, &a);
    if (r >= 0)
        return r;
    if (ctl_path_inside(a.v[0], g->data_dir)) {
        fprintf(stderr, "kvfsctl: %s: a checkpoint must be outside the store's directory %s\n",
                a.v[0], g->data_dir);
        return CTL_EXIT_FAIL;
    }
    return ctl_with_store(g, c->flags, checkpoint_body, &a);
}

static const ctl_command ctl_commands[] = {
    {"get", "PATH", "print the bytes of the file PATH (raw) to stdout",
     "  PATH is a key of the filesystem view: get a/b/c prints MOUNTPOINT/a/b/c. Exits 1\n"
     "  with \"No such file or directory\" when there is no such file, and fails for a\n"
     "  directory, a symlink or a special file. Read-only.\n",
     1, 1, 0, get_body, NULL},
    {"put", "[--ttl SECONDS] PATH [VALUE]", "make the file PATH hold VALUE, or all of stdin",
     "  Missing parent directories are created (mode 0755); a new file gets mode 0644, an\n"
     "  existing one keeps its inode, mode and owner. At most 64 MiB.\n"
     "  --ttl SECONDS  the file expires (disappears) SECONDS from now.\n"
     "  Unmounted store: the write is synced before kvfsctl exits. Mounted store: the\n"
     "  daemon applies it and the mount shows it at once.\n",
     1, 2, CTL_OPT_TTL | CTL_WRITE | CTL_CREATE, put_body, NULL},
    {"del", "PATH", "remove the file PATH",
     "  Directories are not removed (\"Is a directory\"). A file still open through the\n"
     "  mount stays readable by its open descriptors.\n",
     1, 1, CTL_WRITE, del_body, NULL},
    {"ls", "[-l] [PREFIX]", "list the paths of regular files (starting with PREFIX)",
     "  PREFIX is a byte prefix of the path: 'users/al' lists users/alice/x and users/al.txt.\n"
     "  -l, --long  also print the sequence of the file's last change, its size and expiry.\n"
     "  Bytes that are not printable ASCII are shown as \\xNN, a backslash as \\\\.\n",
     0, 1, CTL_OPT_LONG, ls_body, NULL},
    {"history", "PATH", "list every retained version of the file PATH, newest first",
     "  One version per change to the file. Columns: sequence, commit time (ISO-8601 UTC,\n"
     "  one-second resolution), file size at that version, and its expiry if it has one.\n",
     1, 1, 0, history_body, NULL},
    {"snapshot", "create NAME | list | delete NAME", "manage named snapshots",
     "  Named snapshots are durable and keep the store's state as of their creation.\n", 1, 2, 0,
     NULL, cmd_snapshot},
    {"stats", "", "print store statistics", NULL, 0, 0, 0, stats_body, NULL},
    {"compact", "", "flush the memtable and compact the whole key range", NULL, 0, 0, CTL_WRITE,
     compact_body, NULL},
    {"check", "", "verify every checksum and the filesystem's consistency",
     "  Runs the engine's check of every live file, then the filesystem check (dangling\n"
     "  entries, link counts, bytes beyond a file's size, unmarked unlinked inodes).\n"
     "  Prints each problem found and a summary line. Exit status: 0 clean, 1 damage found,\n"
     "  2 the check could not run.\n",
     0, 0, 0, NULL, cmd_check},
    {"checkpoint", "DIR", "write a consistent copy of the store to the new directory DIR",
     "  DIR must not exist; it opens as a store of its own.\n", 1, 1, CTL_WRITE, NULL,
     cmd_checkpoint},
};

#define CTL_NCOMMANDS (sizeof(ctl_commands) / sizeof(ctl_commands[0]))

/* ============================================================================ main ==== */

/* The daemon's default data directory: /var/lib/kvfs for root, else $XDG_DATA_HOME/kvfs or
 * ~/.local/share/kvfs; $KVFS_DATA overrides. OUT: buf. */
static int ctl_default_data_dir(char *buf, size_t n)
{
    const char *env = getenv("KVFS_DATA");
    int w;
    if (env && *env) {
        w = snprintf(buf, n, "%s", env);
    } else if (geteuid() == 0) {
        w = snprintf(buf, n, "/var/lib/kvfs");
    } else if ((env = getenv("XDG_DATA_HOME")) && *env == '/') {
        w = snprintf(buf, n, "%s/kvfs", env);
    } else {
        const char *home = getenv("HOME");
        if (!home || !*home) {
            struct passwd *pw = getpwuid(geteuid());
            home = pw ? pw->pw_dir : NULL;
        }
        if (!home)
            return -ENOENT;
        w = snprintf(buf, n, "%s/.local/share/kvfs", home);
    }
    return w < 0 || (size_t)w >= n ? -ENAMETOOLONG : 0;
}

static void ctl_main_usage(FILE *f, const char *defdir)
{
    fprintf(f, "Usage: kvfsctl [--data DIR] [--history-ms MS] COMMAND [ARGS]\n"
               "       kvfsctl COMMAND --help | --help | --version\n\n"
               "Administer a kvfs store. Keys are paths of the filesystem: the key a/b/c is\n"
               "the file MOUNTPOINT/a/b/c and its value is the file's bytes. While the store\n"
               "is mounted, kvfsctl works through the kvfs daemon (DIR/kvfs.sock); otherwise\n"
               "it opens DIR itself.\n\nCommands:\n");
    for (size_t i = 0; i < CTL_NCOMMANDS; i++)
        fprintf(f, "  %-11s %s\n", ctl_commands[i].name, ctl_commands[i].summary);
    fprintf(f,
            "\nOptions:\n"
            "  -d, --data DIR     the store's data directory\n"
            "  --history-ms MS    set the store's history window (recorded in the store):\n"
            "                     versions older than MS may be dropped by compaction\n"
            "                     (default: the window the store recorded)\n"
            "  -h, --help         this help\n"
            "  -V, --version      print the version\n\n"
            "Default data directory: %s\n"
            "  (root: /var/lib/kvfs, others: $XDG_DATA_HOME/kvfs or ~/.local/share/kvfs;\n"
            "  $KVFS_DATA overrides)\n"
            "Exit status: 0 success, 1 failure, 2 usage error.\n",
            defdir ? defdir : "(unknown: set --data)");
}

/* Runs the command argv[0] with its arguments argv[1..]. */
static int ctl_dispatch(int argc, char **argv, const ctl_globals *g)
{
    for (size_t i = 0; i < CTL_NCOMMANDS; i++) {
        const ctl_command *c = &ctl_commands[i];
        if (strcmp(argv[0], c->name))
            continue;
        int wants_help = 0;
        for (int j = 1; j < argc && strcmp(argv[j], "--"); j++)
            wants_help |= !strcmp(argv[j], "--help") || !strcmp(argv[j], "-h");
        if (!wants_help && (!g->data_dir || !*g->data_dir)) {
            fprintf(stderr, "kvfsctl: no data directory: set --data DIR or KVFS_DATA\n");
            return CTL_EXIT_USAGE;
        }
        return c->body ? ctl_run_body(c, argc, argv, g) : c->run(c, argc, argv, g);
    }
    fprintf(stderr, "kvfsctl: unknown command '%s' (see 'kvfsctl --help')\n", argv[0]);
    return CTL_EXIT_USAGE;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"data", required_argument, NULL, 'd'},
        {"history-ms", required_argument, NULL, 'H'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    char defdir[PATH_MAX];
    int have_def = ctl_default_data_dir(defdir, sizeof(defdir)) == 0;
    ctl_globals g = {have_def ? defdir : NULL, KV_HISTORY_STORED};
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "+:d:hV", longopts, NULL)) != -1) {
        switch (ch) {
        case 'd':
            g.data_dir = optarg;
            break;
        case 'H':
            if (ctl_parse_u64(optarg, &g.history_ms) < 0) {
                fprintf(stderr, "kvfsctl: --history-ms needs a number, not '%s'\n", optarg);
                return CTL_EXIT_USAGE;
            }
            break;
        case 'h':
            ctl_main_usage(stdout, have_def ? defdir : NULL);
            return ctl_finish_stdout(CTL_EXIT_OK);
        case 'V':
            printf("kvfsctl (kvfs) %s\n", KV_VERSION_STRING);
            return ctl_finish_stdout(CTL_EXIT_OK);
        case ':':
            fprintf(stderr, "kvfsctl: option '%s' needs an argument\n", argv[optind - 1]);
            return CTL_EXIT_USAGE;
        default:
            fprintf(stderr, "kvfsctl: unknown option '%s' (see 'kvfsctl --help')\n",
                    argv[optind - 1]);
            return CTL_EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "kvfsctl: no command given (see 'kvfsctl --help')\n");
        return CTL_EXIT_USAGE;
    }
    return ctl_dispatch(argc - optind, argv + optind, &g);
}
