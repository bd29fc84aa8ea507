/*
 * kvfs.c -- the kvfs daemon: `kvfs [options] MOUNTPOINT` mounts the store of a data directory
 * as a POSIX filesystem through the libfuse3 low-level API (multi-threaded loop).
 *
 * Start-up order, chosen so that every failure is one clear line and a non-zero exit of the
 * command the user ran: parse options; check /dev/fuse and the mountpoint; fork (unless -f),
 * the parent waiting on a pipe; in the child open the store (-EBUSY: in use), sweep orphans,
 * create the session, mount, start the control socket; only then tell the parent "ready", so
 * the command returns with the mount usable. The fork comes before kv_open because the
 * engine's threads and lock would not survive it.
 *
 * Shutdown: SIGTERM/SIGINT/SIGHUP or an unmount end the loop; then the control socket stops,
 * the mount goes, orphans are purged, the WAL is synced and the store closed.
 *
 * This file also holds the inode table (kernel lookup counts and open counts per inode, see
 * kvfs.h) and the small helpers shared by the handlers.
 */
#include "kvfs.h"
#include "loop.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#define KVFS_ITAB_BUCKETS 65536u

static int kvfs_foreground = 1; /* where errors go: stderr (1) or syslog (0) */

/* ---------------------------------------------------------------- messages ---- */

static void kvfs_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void kvfs_msg(const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (kvfs_foreground)
        fprintf(stderr, "kvfs: %s\n", line);
    else
        syslog(LOG_ERR, "%s", line);
}

/* The engine's notices (kv_set_log) go where the daemon's own messages go: stderr in the
 * foreground, syslog once daemonized (stderr is /dev/null then). */
static void kvfs_engine_notice(const char *line)
{
    kvfs_msg("%s", line);
}

void kvfs_log(const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    kvfs_msg("%s", line);
}

/* A full disk fails every write until something frees room: one line about it per
 * KVFS_NO_SPACE_LOG_S is enough (the caller gets ENOSPC each time). Whether to log now. */
#define KVFS_NO_SPACE_LOG_S 10
static int kvfs_no_space_log_due(void)
{
    static _Atomic long long last = -KVFS_NO_SPACE_LOG_S;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    long long seen = atomic_load(&last);
    return ts.tv_sec - seen >= KVFS_NO_SPACE_LOG_S &&
           atomic_compare_exchange_strong(&last, &seen, (long long)ts.tv_sec);
}

int kvfs_fail(const char *op, int rc)
{
    if ((rc == -ENOSPC || rc == -EDQUOT) && !kvfs_no_space_log_due())
        return rc;
    switch (rc) {
    case 0:
    case -ENOENT:
    case -EEXIST:
    case -ENOTDIR:
    case -EISDIR:
    case -ENOTEMPTY:
    case -ENAMETOOLONG:
    case -EINVAL:
    case -ENODATA:
    case -ENOTSUP:
    case -ERANGE:
    case -EPERM:
    case -EXDEV:
    case -EFBIG:
    case -ELOOP:
    case -EROFS:
    case -EMFILE:
        return rc;
    default:
        break;
    }
    const char *m = layout_last_error();
    const char *k = kv_last_error();
    kvfs_msg("%s failed: %s (%s)", op, strerror(-rc), (m && *m) ? m : (k ? k : ""));
    return rc;
}

/* ------------------------------------------------------ mounts and readahead ---- */

/* Undoes /proc/self/mountinfo's octal escapes (\040 for a space, ...) in place. */
static void mountinfo_unescape(char *s)
{
    char *o = s;
    for (; *s; s++) {
        if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
            s[3] >= '0' && s[3] <= '7') {
            *o++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
            s += 3;
        } else {
            *o++ = *s;
        }
    }
    *o = '\0';
}

/* Looks mountpoint (absolute, resolved) up in /proc/self/mountinfo, among FUSE mounts only
 * when fuse_only is set, without touching the mountpoint itself (the daemon may not be serving
 * yet). Returns 1 if mounted, with *dev (when dev is not NULL) the "major:minor" of the newest
 * such mount; 0 if not; a negative errno if mountinfo cannot be read. */
static int mountinfo_find(const char *mountpoint, int fuse_only, char *dev, size_t cap)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f)
        return -errno;
    char *line = NULL;
    size_t lcap = 0;
    int found = 0;
    while (getline(&line, &lcap, f) > 0) {
        char mdev[64], mpoint[PATH_MAX], *sep = strstr(line, " - ");
        if (sscanf(line, "%*s %*s %63s %*s %4095s", mdev, mpoint) != 2 ||
            (fuse_only && (!sep || strncmp(sep + 3, "fuse", 4) != 0)))
            continue;
        mountinfo_unescape(mpoint);
        if (strcmp(mpoint, mountpoint) != 0)
            continue;
        found = 1; /* a later line is a newer mount: keep looking */
        if (dev && strlen(mdev) < cap)
            memcpy(dev, mdev, strlen(mdev) + 1);
    }
    free(line);
    fclose(f);
    return found;
}

void kvfs_set_readahead(kvfs *fs, struct fuse_conn_info *conn)
{
    char dev[64], path[128], val[32];
    if (!fs->readahead_kib || !fs->mountpoint)
        return;
    int rc = mountinfo_find(fs->mountpoint, 1, dev, sizeof dev);
    if (rc == 0)
        rc = -ENOENT;
    if (rc > 0) {
        snprintf(path, sizeof path, "/sys/class/bdi/%s/read_ahead_kb", dev);
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        int len = snprintf(val, sizeof val, "%u\n", fs->readahead_kib);
        rc = fd < 0 ? -errno : write(fd, val, (size_t)len) == len ? 0 : -errno;
        if (fd >= 0)
            close(fd);
    }
    if (rc < 0) {
        kvfs_msg("cannot set readahead to %u KiB (%s): sequential reads use the kernel's "
                 "default",
                 fs->readahead_kib, strerror(-rc));
        return;
    }
    conn->max_readahead = fs->readahead_kib * 1024u;
}

int kvfs_commit(kvfs *fs, kv_batch *b)
{
    int rc = kv_write(fs->db, b, KV_WRITE_NOSYNC, NULL);
    if (rc < 0)
        layout_error(rc, "write batch: %s", kv_last_error());
    return rc;
}

void kvfs_stat_of(const layout_inode *in, struct stat *st)
{
    memset(st, 0, sizeof(*st));
    st->st_ino = in->ino;
    st->st_mode = in->mode;
    st->st_nlink = in->nlink;
    st->st_uid = in->uid;
    st->st_gid = in->gid;
    st->st_rdev = (dev_t)in->rdev;
    st->st_size = (off_t)in->size;
    st->st_blksize = 4096;
    st->st_blocks = (blkcnt_t)((in->size + 4095) / 4096 * 8);
    st->st_atim = in->atime;
    st->st_mtim = in->mtime;
    st->st_ctim = in->ctime;
}

void kvfs_entry_of(const layout_inode *in, struct fuse_entry_param *e)
{
    memset(e, 0, sizeof(*e));
    e->ino = in->ino;
    e->generation = in->generation;
    kvfs_stat_of(in, &e->attr);
    e->attr_timeout = KVFS_TIMEOUT;
    e->entry_timeout = KVFS_TIMEOUT;
}

/* ---------------------------------------------------------------- inode table ---- */

static size_t itab_slot(kvfs *fs, uint64_t ino)
{
    return (size_t)((ino * 0x9E3779B97F4A7C15ull) >> 32) % fs->itab_buckets;
}

int kvfs_itab_ref(kvfs *fs, uint64_t ino, uint64_t nlookup, uint64_t nopen)
{
    if (ino == LAYOUT_ROOT_INO)
        return 0; /* the root is never forgotten */
    pthread_mutex_lock(&fs->itab_mu);
    kvfs_inode **pp = &fs->itab[itab_slot(fs, ino)], *n = *pp;
    while (n && n->ino != ino)
        n = n->next;
    if (!n && (n = calloc(1, sizeof(*n))) != NULL) {
        n->ino = ino;
        n->next = *pp;
        *pp = n;
    }
    if (n) {
        n->nlookup += nlookup;
        n->nopen += nopen;
    }
    pthread_mutex_unlock(&fs->itab_mu);
    return n ? 0 : -ENOMEM;
}

int kvfs_itab_unref(kvfs *fs, uint64_t ino, uint64_t nlookup, uint64_t nopen)
{
    int gone = 0;
    if (ino == LAYOUT_ROOT_INO)
        return 0;
    pthread_mutex_lock(&fs->itab_mu);
    kvfs_inode **pp = &fs->itab[itab_slot(fs, ino)];
    while (*pp && (*pp)->ino != ino)
        pp = &(*pp)->next;
    kvfs_inode *n = *pp;
    if (n) {
        n->nlookup -= nlookup < n->nlookup ? nlookup : n->nlookup;
        n->nopen -= nopen < n->nopen ? nopen : n->nopen;
        if (n->nlookup == 0 && n->nopen == 0) {
            *pp = n->next;
            free(n);
            gone = 1;
        }
    }
    pthread_mutex_unlock(&fs->itab_mu);
    return gone;
}

int kvfs_itab_busy(kvfs *fs, uint64_t ino)
{
    pthread_mutex_lock(&fs->itab_mu);
    kvfs_inode *n = fs->itab[itab_slot(fs, ino)];
    while (n && n->ino != ino)
        n = n->next;
    pthread_mutex_unlock(&fs->itab_mu);
    return n != NULL || ino == LAYOUT_ROOT_INO;
}

void kvfs_maybe_purge_locked(kvfs *fs, uint64_t ino)
{
    layout_inode in;
    if (fs->read_only || kvfs_itab_busy(fs, ino))
        return;
    /* _any: an expired file the reaper unlinked is purged too (its record is hidden) */
    if (layout_inode_get_any(fs->lfs, ino, &in) == 0 && in.nlink == 0) {
        int rc = layout_purge(fs->lfs, ino);
        if (rc < 0) /* the 'O' key stays: the next mount retries */
            kvfs_fail("purge", rc);
    }
}

void kvfs_unref_purge(kvfs *fs, uint64_t ino, uint64_t nlookup, uint64_t nopen)
{
    if (!kvfs_itab_unref(fs, ino, nlookup, nopen))
        return;
    pthread_mutex_lock(&fs->wmu);
    kvfs_maybe_purge_locked(fs, ino);
    pthread_mutex_unlock(&fs->wmu);
}

static void itab_free(kvfs *fs)
{
    for (size_t i = 0; fs->itab && i < fs->itab_buckets; i++)
        while (fs->itab[i]) {
            kvfs_inode *n = fs->itab[i];
            fs->itab[i] = n->next;
            free(n);
        }
    free(fs->itab);
}

/* ---------------------------------------------------------------- options ---- */

typedef struct kvfs_opts {
    char *data;
    char *history;
    char *snapdir;
    char *compress;
    char *readahead;
    char *spin;
    int ro;
} kvfs_opts;

enum { KVFS_KEY_RO };

static const struct fuse_opt kvfs_opt_spec[] = {
    {"data=%s", offsetof(kvfs_opts, data), 0},
    {"history=%s", offsetof(kvfs_opts, history), 0},
    {"snapdir=%s", offsetof(kvfs_opts, snapdir), 0},
    {"compress=%s", offsetof(kvfs_opts, compress), 0},
    {"readahead=%s", offsetof(kvfs_opts, readahead), 0},
    {"spin=%s", offsetof(kvfs_opts, spin), 0},
    FUSE_OPT_KEY("ro", KVFS_KEY_RO),
    FUSE_OPT_END,
};

static int kvfs_opt_proc(void *data, const char *arg, int key, struct fuse_args *outargs)
{
    (void)arg;
    (void)outargs;
    if (key == KVFS_KEY_RO)
        ((kvfs_opts *)data)->ro = 1;
    return 1; /* keep it: "ro" also goes to the kernel */
}

static void kvfs_usage(const char *prog)
{
    printf("usage: %s [options] MOUNTPOINT\n\n"
           "Mounts a kvfs store (a durable MVCC key-value store) as a POSIX filesystem.\n\n"
           "kvfs options:\n"
           "    -o data=DIR            data directory of the store (default: /var/lib/kvfs\n"
           "                           for root, else $XDG_DATA_HOME/kvfs, created on use)\n"
           "    -o ro                  mount read-only\n"
           "    -o history=DURATION    keep every version younger than DURATION for time\n"
           "                           travel (.snapshots/@TIME): 30s, 15m, 24h, 7d, 0 = none\n"
           "                           (default 1h)\n"
           "    -o snapdir=visible     list .snapshots in the root (default: hidden, but\n"
           "                           reachable by name)\n"
           "    -o compress=LEVEL      zstd level of blocks the store writes: 1..19, -1..-7\n"
           "                           (zstd's fast levels), 0 = none (default -1)\n"
           "    -o readahead=KIB       kernel readahead of the mount, 4..16384 KiB, 0 = the\n"
           "                           kernel's default (default 1024; needs root)\n"
           "    -f                     stay in the foreground\n"
           "    -d                     debug output (implies -f)\n"
           "    -s                     one request at a time, in one thread\n"
           "    -o max_threads=N       most request threads (default 10); kvfs's own loop\n"
           "                           hands a serial caller's requests to one warm thread\n"
           "                           and so ignores clone_fd and max_idle_threads\n"
           "    -o spin=US             a request thread that answered a chatty caller\n"
           "                           polls for the next request up to US microseconds\n"
           "                           before it sleeps: 0..10000, 0 = never (default 50)\n"
           "    -o allow_other         let every user access the mount (permission checks\n"
           "                           as on a local disk: default_permissions is always on)\n"
           "    --help, -h             this text\n"
           "    --version, -V          versions\n\n"
           "Unmount with: fusermount3 -u MOUNTPOINT (or umount as root).\n\n",
           prog);
    fuse_cmdline_help();
    fuse_lowlevel_help();
}

/* "30s", "15m", "24h", "7d", "500ms", "90" (seconds). OUT: *ms. */
static int parse_duration(const char *s, uint64_t *ms)
{
    char *end;
    if (!s || *s < '0' || *s > '9')
        return -EINVAL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    uint64_t mul;
    if (errno)
        return -EINVAL;
    if (strcmp(end, "ms") == 0)
        mul = 1;
    else if (*end == '\0' || strcmp(end, "s") == 0)
        mul = 1000;
    else if (strcmp(end, "m") == 0)
        mul = 60000;
    else if (strcmp(end, "h") == 0)
        mul = 3600000;
    else if (strcmp(end, "d") == 0)
        mul = 86400000;
    else if (strcmp(end, "w") == 0)
        mul = 604800000;
    else
        return -EINVAL;
    if (v > UINT64_MAX / 2 / mul)
        return -EINVAL;
    *ms = v * mul;
    return 0;
}

/* A zstd level for -o compress: -7..19. OUT: *level. */
static int parse_level(const char *s, int *level)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < -7 || v > 19)
        return -EINVAL;
    *level = (int)v;
    return 0;
}

/* A decimal number 0..max (-o readahead, -o spin). OUT: *out. */
static int parse_unsigned(const char *s, unsigned max, unsigned *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 0 || v > (long)max)
        return -EINVAL;
    *out = (unsigned)v;
    return 0;
}

/* -o readahead: KiB, 0 or 4..16384. OUT: *kib. */
static int parse_readahead(const char *s, unsigned *kib)
{
    unsigned v;
    if (parse_unsigned(s, 16384, &v) < 0 || (v != 0 && v < 4))
        return -EINVAL;
    *kib = v;
    return 0;
}

/* The default data directory (malloc'd). */
static char *default_data_dir(void)
{
    char buf[PATH_MAX];
    const char *xdg = getenv("XDG_DATA_HOME"), *home = getenv("HOME");
    if (geteuid() == 0)
        return strdup("/var/lib/kvfs");
    if (xdg && *xdg == '/')
        snprintf(buf, sizeof(buf), "%s/kvfs", xdg);
    else if (home && *home)
        snprintf(buf, sizeof(buf), "%s/.local/share/kvfs", home);
    else {
        struct passwd *pw = getpwuid(geteuid());
        if (!pw)
            return NULL;
        snprintf(buf, sizeof(buf), "%s/.local/share/kvfs", pw->pw_dir);
    }
    return strdup(buf);
}

/* mkdir -p. */
static int make_dirs(const char *path, mode_t mode)
{
    char buf[PATH_MAX];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof(buf))
        return -ENAMETOOLONG;
    memcpy(buf, path, n + 1);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(buf, mode) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

/* Is path (absolute, resolved) a mount point already? */
static int is_mounted(const char *path)
{
    return mountinfo_find(path, 0, NULL, 0) > 0;
}

static int check_environment(const char *mnt)
{
    struct stat st;
    int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT || errno == ENODEV || errno == ENXIO)
            kvfs_msg("/dev/fuse is missing (load the fuse kernel module: modprobe fuse)");
        else
            kvfs_msg("cannot open /dev/fuse: %s", strerror(errno));
        return -1;
    }
    close(fd);
    if (stat(mnt, &st) < 0) {
        kvfs_msg("mountpoint %s: %s", mnt, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        kvfs_msg("mountpoint %s: not a directory", mnt);
        return -1;
    }
    if (is_mounted(mnt)) {
        kvfs_msg("mountpoint %s is busy: something is already mounted there", mnt);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- daemon ---- */

/* Forks; the parent waits for the child's verdict and exits with it. Returns the pipe the
 * child reports on, or -1 on failure. */
static int daemon_fork(void)
{
    int p[2];
    if (pipe(p) < 0) {
        kvfs_msg("pipe: %s", strerror(errno));
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        kvfs_msg("fork: %s", strerror(errno));
        return -1;
    }
    if (pid > 0) {
        char status = 1;
        close(p[1]);
        while (read(p[0], &status, 1) < 0 && errno == EINTR)
            ;
        _exit(status);
    }
    close(p[0]);
    setsid();
    return p[1];
}

static void daemon_ready(int fd, int status)
{
    char c = (char)status;
    if (fd < 0)
        return;
    if (status == 0) {
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) {
            dup2(null, 0);
            dup2(null, 1);
            dup2(null, 2);
            if (null > 2)
                close(null);
        }
        kvfs_foreground = 0;
        if (chdir("/") < 0)
            syslog(LOG_WARNING, "chdir /: %m");
    }
    if (write(fd, &c, 1) < 0)
        syslog(LOG_WARNING, "cannot tell the parent we are ready: %m");
    close(fd);
}

static int open_store(kvfs *fs)
{
    kv_options o;
    kv_options_init(&o);
    o.read_only = fs->read_only;
    o.create_if_missing = !fs->read_only;
    o.history_ms = fs->read_only ? KV_HISTORY_STORED : fs->history_ms;
    o.compression_level = fs->compress_level;
    o.block_bytes = KVFS_BLOCK_BYTES;
    o.uncompressed_levels = KVFS_UNCOMPRESSED_LEVELS;
    o.partition_prefix_bytes = KVFS_PARTITION_PREFIX_BYTES;
    int rc = kv_open(fs->data_dir, &o, &fs->db);
    if (rc == -EBUSY) {
        kvfs_msg("data directory %s is in use by another process", fs->data_dir);
        return rc;
    }
    if (rc < 0) {
        kvfs_msg("cannot open the store in %s: %s", fs->data_dir, kv_last_error());
        return rc;
    }
    rc = layout_open(fs->db, fs->read_only, (uint32_t)geteuid(), (uint32_t)getegid(), &fs->lfs);
    if (rc == 0 && !fs->read_only) {
        int n = layout_sweep_orphans(fs->lfs);
        rc = n < 0 ? n : 0;
    }
    if (rc < 0) {
        kvfs_msg("cannot open the filesystem in %s: %s", fs->data_dir, layout_last_error());
        kv_close(fs->db);
        fs->db = NULL;
    }
    return rc;
}

static void close_store(kvfs *fs)
{
    if (!fs->db)
        return;
    if (!fs->read_only) {
        if (layout_sweep_orphans(fs->lfs) < 0)
            kvfs_msg("purging unlinked files: %s", layout_last_error());
        if (kv_sync(fs->db) < 0)
            kvfs_msg("final sync: %s", kv_last_error());
    }
    layout_close(fs->lfs);
    if (kv_close(fs->db) < 0)
        kvfs_msg("closing the store: %s", kv_last_error());
    fs->db = NULL;
}

/* -s: libfuse's single-threaded loop in this thread; else kvfs's own (loop.c). -o clone_fd
 * and -o max_idle_threads tune libfuse's multi-threaded loop, which kvfs does not use: its
 * workers share one descriptor and park cheaply, so they are accepted and change nothing. */
static int run_loop(kvfs *fs, const struct fuse_cmdline_opts *opts)
{
    if (!opts->singlethread) {
        unsigned max = opts->max_threads <= 100000 ? opts->max_threads : 0;
        int rc = kvfs_loop_run(fs->se, max, fs->spin_us);
        if (rc < 0)
            kvfs_msg("the request loop failed: %s", strerror(-rc));
        return rc;
    }
    kvfs_unblock_signals();
    int rc = fuse_session_loop(fs->se);
    kvfs_block_signals();
    return rc;
}

/* Everything after the fork: open, mount, serve, tear down. Returns the exit status. */
static int kvfs_serve(kvfs *fs, struct fuse_args *args, const struct fuse_cmdline_opts *opts,
                      int ready_fd)
{
    int status = 1, mounted = 0, handlers = 0;
    /* before any thread starts, so that only the loop's supervisor takes them (loop.c) */
    kvfs_block_signals();
    if (open_store(fs) < 0)
        goto out;
    fs->se = fuse_session_new(args, &kvfs_ops, sizeof(kvfs_ops), fs);
    if (!fs->se)
        goto out;
    if (fuse_set_signal_handlers(fs->se) != 0)
        goto out;
    handlers = 1;
    if (fuse_session_mount(fs->se, opts->mountpoint) != 0)
        goto out;
    mounted = 1;
    if (ctl_server_start(fs) < 0)
        goto out;
    if (kvfs_reaper_start(fs) < 0) {
        kvfs_msg("cannot start the expiry reaper");
        goto out;
    }
    daemon_ready(ready_fd, 0);
    ready_fd = -1;
    int lrc = run_loop(fs, opts);
    /* a signal ends the loop with its number: a requested, clean shutdown */
    status = (lrc == 0 || lrc == SIGTERM || lrc == SIGINT || lrc == SIGHUP) ? 0 : 1;
    ctl_server_stop(fs);
out:
    kvfs_reaper_stop(fs);
    if (mounted)
        fuse_session_unmount(fs->se);
    if (handlers)
        fuse_remove_signal_handlers(fs->se);
    if (fs->se)
        fuse_session_destroy(fs->se);
    kvfs_views_release(fs);
    close_store(fs);
    daemon_ready(ready_fd, status);
    return status;
}

static int kvfs_setup(kvfs *fs, const kvfs_opts *ko)
{
    char *dir = ko->data ? strdup(ko->data) : default_data_dir();
    char real[PATH_MAX];
    if (!dir) {
        kvfs_msg("cannot determine the data directory (use -o data=DIR)");
        return -1;
    }
    int rc = ko->ro ? 0 : make_dirs(dir, 0700);
    if (rc < 0) {
        kvfs_msg("data directory %s: %s", dir, strerror(-rc));
        free(dir);
        return -1;
    }
    if (!realpath(dir, real)) {
        kvfs_msg("data directory %s: %s", dir, strerror(errno));
        free(dir);
        return -1;
    }
    free(dir);
    fs->data_dir = strdup(real);
    fs->read_only = ko->ro;
    fs->history_ms = KVFS_HISTORY_DEFAULT_MS;
    if (ko->history && parse_duration(ko->history, &fs->history_ms) < 0) {
        kvfs_msg("-o history=%s: not a duration (examples: 30s, 15m, 24h, 7d)", ko->history);
        return -1;
    }
    if (ko->snapdir && strcmp(ko->snapdir, "visible") != 0 && strcmp(ko->snapdir, "hidden") != 0) {
        kvfs_msg("-o snapdir=%s: use snapdir=visible or snapdir=hidden", ko->snapdir);
        return -1;
    }
    fs->snapdir_visible = ko->snapdir && strcmp(ko->snapdir, "visible") == 0;
    fs->compress_level = KVFS_COMPRESS_DEFAULT;
    if (ko->compress && parse_level(ko->compress, &fs->compress_level) < 0) {
        kvfs_msg("-o compress=%s: use a zstd level 1..19, -1..-7 (fast) or 0 (none)", ko->compress);
        return -1;
    }
    fs->readahead_kib = KVFS_READAHEAD_KIB;
    if (ko->readahead && parse_readahead(ko->readahead, &fs->readahead_kib) < 0) {
        kvfs_msg("-o readahead=%s: use a size in KiB from 4 to 16384, or 0", ko->readahead);
        return -1;
    }
    unsigned spin;
    fs->spin_us = -1;
    if (ko->spin) {
        if (parse_unsigned(ko->spin, 10000, &spin) < 0) {
            kvfs_msg("-o spin=%s: use microseconds from 0 to 10000", ko->spin);
            return -1;
        }
        fs->spin_us = (int)spin;
    }
    fs->views = calloc(KVFS_VIEW_MAX, sizeof(*fs->views));
    fs->ctl_fd = -1;
    fs->ctl_wake[0] = fs->ctl_wake[1] = -1;
    fs->itab_buckets = KVFS_ITAB_BUCKETS;
    fs->itab = calloc(fs->itab_buckets, sizeof(*fs->itab));
    if (!fs->data_dir || !fs->itab || !fs->views) {
        kvfs_msg("out of memory");
        return -1;
    }
    pthread_mutex_init(&fs->wmu, NULL);
    pthread_mutex_init(&fs->itab_mu, NULL);
    pthread_mutex_init(&fs->view_mu, NULL);
    pthread_mutex_init(&fs->reap_mu, NULL);
    pthread_cond_init(&fs->reap_cv, NULL);
    return 0;
}

int main(int argc, char *argv[])
{
    struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
    struct fuse_cmdline_opts opts;
    kvfs_opts ko = {NULL, NULL, NULL, NULL, NULL, NULL, 0};
    kvfs fs;
    int status = 1;
    memset(&fs, 0, sizeof(fs));
    memset(&opts, 0, sizeof(opts));
    if (fuse_opt_parse(&args, &ko, kvfs_opt_spec, kvfs_opt_proc) != 0 ||
        fuse_parse_cmdline(&args, &opts) != 0)
        goto out;
    if (opts.show_help) {
        kvfs_usage(argv[0]);
        status = 0;
        goto out;
    }
    if (opts.show_version) {
        printf("kvfs %s (libfuse %s)\n", KV_VERSION_STRING, fuse_pkgversion());
        status = 0;
        goto out;
    }
    if (!opts.mountpoint) {
        fprintf(stderr,
                "kvfs: no mountpoint given\nusage: %s [options] MOUNTPOINT "
                "(--help for more)\n",
                argv[0]);
        status = 2;
        goto out;
    }
    fs.mountpoint = opts.mountpoint;
    if (check_environment(opts.mountpoint) < 0 || kvfs_setup(&fs, &ko) < 0)
        goto out;
    fs.debug = opts.debug;
    if (fuse_opt_add_arg(&args, "-odefault_permissions") != 0 ||
        fuse_opt_add_arg(&args, "-ofsname=kvfs") != 0) {
        kvfs_msg("out of memory");
        goto out;
    }
    openlog("kvfs", LOG_PID, LOG_DAEMON);
    kv_set_log(kvfs_engine_notice);
    int ready_fd = -1;
    if (!opts.foreground && (ready_fd = daemon_fork()) < 0)
        goto out;
    status = kvfs_serve(&fs, &args, &opts, ready_fd);
out:
    itab_free(&fs);
    free(fs.data_dir);
    free(ko.data);
    free(ko.history);
    free(ko.snapdir);
    free(ko.compress);
    free(ko.readahead);
    free(ko.spin);
    free(fs.views);
    free(opts.mountpoint);
    fuse_opt_free_args(&args);
    return status;
}
