/*
 * fsbench.c -- a filesystem micro-benchmark that runs on any directory (a kvfs mount, a
 * passthrough_ll mount, a local ext4 directory) and prints one line per phase.
 *
 *   fsbench [-n FILES] [-z BYTES] [-m MIB] [-r OPS] [-f FILES] [-d FILES] [-p PHASES] DIR
 *
 * All work happens in a fresh directory DIR/fsbench.<pid>, removed at the end. Phases, in the
 * order they run (PHASES is a comma-separated subset; default: all but "fdatasync"):
 *   create     create+write+close of FILES small files of BYTES each (default 10000 x 4 KiB),
 *              spread over 10 subdirectories                                        files/s
 *   stat       stat of every small file                                             ops/s
 *   read       open+read+close of every small file                                  files/s
 *   readdir    opendir/readdir walk of the small-file tree (entries returned)       entries/s
 *   rename     rename of every small file to a new name in the same directory       ops/s
 *   unlink     unlink of every small file                                           ops/s
 *   seqwrite   sequential write of MIB MiB (1 MiB writes) followed by one fsync      MB/s
 *   seqread    sequential read of that file after POSIX_FADV_DONTNEED (1 MiB reads) MB/s
 *   randwrite  OPS random 4 KiB-aligned 4 KiB overwrites in that file + one fsync   ops/s
 *   fsynccreate create+write 4 KiB+fsync+close of FILES files (default 1000)        files/s
 *   dirrename  rename of a directory holding FILES files (default 10000)            seconds
 *   bigunlink  unlink of the sequential file, then create+write 4 KiB+fsync of a new
 *              file: how long a small durable write waits behind a large delete     seconds
 *   fdatasync  the disk's own rate: 4 KiB appends each followed by fdatasync         ops/s
 *              (1000 by default; -r, when given, sets the count)
 *
 * Structure: the phases are the rows of fsb_phases, run in that order; a phase that needs the
 * small files (stat .. unlink need create) or the sequential file (seqread, randwrite,
 * bigunlink need seqwrite) is skipped when the phase making them did not run. Per-file loops run
 * one step function per file under fsb_timed.
 *
 * Output: one line per phase: "<phase> <value> <unit> <details>" (one decimal; seconds: six);
 * scripts (tools/compare-fsbench.sh) read the first three fields. Every system call is
 * checked; a failure prints "fsbench: <what>: <strerror>" and exits 1, after trying to remove
 * the work directory. MB = 10^6 bytes.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define FSB_SUBDIRS 10
#define FSB_IO (1u << 20)
#define FSB_PAGE 4096u

typedef struct fsb_opts {
    long files;       /* small files */
    long fsize;       /* bytes per small file */
    long seq_mib;     /* sequential file size */
    long rand_ops;    /* random overwrites */
    long sync_files;  /* fsync'd creates */
    long dir_files;   /* files in the renamed directory */
    int rand_ops_set; /* -r given (used by the fdatasync phase) */
    const char *phases;
    const char *dir;
} fsb_opts;

static char fsb_root[4096];
static char *fsb_buf;

static double fsb_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int fsb_rmtree(const char *path);

static void fsb_die(const char *fmt, ...)
{
    int e = errno;
    va_list ap;
    fputs("fsbench: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, ": %s\n", strerror(e));
    if (fsb_root[0])
        fsb_rmtree(fsb_root);
    exit(1);
}

static void fsb_path(char *out, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, cap, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= cap) {
        errno = ENAMETOOLONG;
        fsb_die("path too long");
    }
}

/* Removes path and everything below it (best effort, used for cleanup). */
static int fsb_rmtree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return -errno;
    if (!S_ISDIR(st.st_mode))
        return unlink(path) ? -errno : 0;
    DIR *d = opendir(path);
    if (!d)
        return -errno;
    struct dirent *de;
    char sub[4096];
    while ((de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if (snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name) < (int)sizeof(sub))
            fsb_rmtree(sub);
    }
    closedir(d);
    return rmdir(path) ? -errno : 0;
}

static void fsb_report(const char *phase, double value, const char *unit, const char *fmt, ...)
{
    char detail[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    if (!strcmp(unit, "seconds"))
        printf("%-11s %12.6f %-9s %s\n", phase, value, unit, detail);
    else
        printf("%-11s %12.1f %-9s %s\n", phase, value, unit, detail);
    fflush(stdout);
}

static void fsb_write_all(int fd, const void *buf, size_t len, const char *what)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            fsb_die("write %s", what);
        p += n;
        len -= (size_t)n;
    }
}

static void fsb_small_name(char *out, size_t cap, long i, const char *tag)
{
    fsb_path(out, cap, "%s/small/d%02ld/%s%07ld", fsb_root, i % FSB_SUBDIRS, tag, i);
}

static void fsb_mkdir(const char *p)
{
    if (mkdir(p, 0755))
        fsb_die("mkdir %s", p);
}

/* Closes fd, the file p; fsyncs it first when sync is set. */
static void fsb_close(int fd, const char *p, int sync)
{
    if (sync && fsync(fd))
        fsb_die("fsync %s", p);
    if (close(fd))
        fsb_die("close %s", p);
}

/* Creates the new file p holding the first len bytes of fsb_buf (fsync'd when sync is set). */
static void fsb_create_file(const char *p, size_t len, int sync)
{
    int fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0)
        fsb_die("create %s", p);
    fsb_write_all(fd, fsb_buf, len, p);
    fsb_close(fd, p, sync);
}

/* Reads fd, the file p, to its end in FSB_IO reads; returns the bytes read. */
static long long fsb_read_all(int fd, const char *p)
{
    long long got = 0;
    for (;;) {
        ssize_t n = read(fd, fsb_buf, FSB_IO);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            fsb_die("read %s", p);
        if (n == 0)
            return got;
        got += n;
    }
}

/* State bits (fsb_done): what the phases run so far left behind. */
#define FSB_SMALL 0x1u   /* the small files exist (create ran) */
#define FSB_RENAMED 0x2u /* ... under their "g" names (rename ran) */
#define FSB_SEQ 0x4u     /* the sequential file exists (seqwrite ran) */

static unsigned fsb_done;

/* One step of a timed loop: works on item i; tag is the small-file name tag it uses. */
typedef void (*fsb_step_fn)(const fsb_opts *o, long i, const char *tag);

/* Runs step for i = 0 .. n-1; returns the seconds it took. */
static double fsb_timed(const fsb_opts *o, long n, fsb_step_fn step, const char *tag)
{
    double t0 = fsb_now();
    for (long i = 0; i < n; i++)
        step(o, i, tag);
    return fsb_now() - t0;
}

static void fsb_create_one(const fsb_opts *o, long i, const char *tag)
{
    char p[4096];
    fsb_small_name(p, sizeof(p), i, tag);
    fsb_create_file(p, (size_t)o->fsize, 0);
}

static void fsb_phase_create(const fsb_opts *o)
{
    char p[4096];
    fsb_path(p, sizeof(p), "%s/small", fsb_root);
    fsb_mkdir(p);
    for (int d = 0; d < FSB_SUBDIRS; d++) {
        fsb_path(p, sizeof(p), "%s/small/d%02d", fsb_root, d);
        fsb_mkdir(p);
    }
    double el = fsb_timed(o, o->files, fsb_create_one, "f");
    fsb_report("create", o->files / el, "files/s", "%ld files of %ld B in %.3f s", o->files,
               o->fsize, el);
}

static void fsb_stat_one(const fsb_opts *o, long i, const char *tag)
{
    char p[4096];
    struct stat st;
    fsb_small_name(p, sizeof(p), i, tag);
    if (stat(p, &st))
        fsb_die("stat %s", p);
    if (st.st_size != o->fsize) {
        errno = EIO;
        fsb_die("%s has size %lld, wrote %ld", p, (long long)st.st_size, o->fsize);
    }
}

static void fsb_phase_stat(const fsb_opts *o)
{
    double el = fsb_timed(o, o->files, fsb_stat_one, "f");
    fsb_report("stat", o->files / el, "ops/s", "%ld stats in %.3f s", o->files, el);
}

static void fsb_read_one(const fsb_opts *o, long i, const char *tag)
{
    char p[4096];
    fsb_small_name(p, sizeof(p), i, tag);
    int fd = open(p, O_RDONLY);
    if (fd < 0)
        fsb_die("open %s", p);
    long long got = fsb_read_all(fd, p);
    fsb_close(fd, p, 0);
    if (got != o->fsize) {
        errno = EIO;
        fsb_die("read %lld bytes of %s, wrote %ld", got, p, o->fsize);
    }
}

static void fsb_phase_read(const fsb_opts *o)
{
    double el = fsb_timed(o, o->files, fsb_read_one, "f");
    fsb_report("read", o->files / el, "files/s", "%ld files in %.3f s", o->files, el);
}

static long fsb_walk(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        fsb_die("opendir %s", path);
    long n = 0;
    struct dirent *de;
    char sub[4096];
    errno = 0;
    while ((de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        n++;
        if (de->d_type == DT_DIR) {
            fsb_path(sub, sizeof(sub), "%s/%s", path, de->d_name);
            n += fsb_walk(sub);
        }
        errno = 0;
    }
    if (errno)
        fsb_die("readdir %s", path);
    closedir(d);
    return n;
}

static void fsb_phase_readdir(const fsb_opts *o)
{
    char p[4096];
    fsb_path(p, sizeof(p), "%s/small", fsb_root);
    long total = 0;
    int rounds = 0;
    double t0 = fsb_now(), el;
    do { /* at least 3 walks and 0.5 s, so small trees still give a stable figure */
        long n = fsb_walk(p);
        if (n != o->files + FSB_SUBDIRS) {
            errno = EIO;
            fsb_die("readdir walk found %ld entries, expected %ld", n, o->files + FSB_SUBDIRS);
        }
        total += n;
        rounds++;
        el = fsb_now() - t0;
    } while (rounds < 3 || el < 0.5);
    fsb_report("readdir", total / el, "entries/s", "%d walks of %ld entries in %.3f s", rounds,
               o->files + FSB_SUBDIRS, el);
}

/* Renames small file i from its "f" name to its tag name. */
static void fsb_rename_one(const fsb_opts *o, long i, const char *tag)
{
    char a[4096], b[4096];
    (void)o;
    fsb_small_name(a, sizeof(a), i, "f");
    fsb_small_name(b, sizeof(b), i, tag);
    if (rename(a, b))
        fsb_die("rename %s", a);
}

static void fsb_phase_rename(const fsb_opts *o)
{
    double el = fsb_timed(o, o->files, fsb_rename_one, "g");
    fsb_report("rename", o->files / el, "ops/s", "%ld renames in %.3f s", o->files, el);
}

static void fsb_unlink_one(const fsb_opts *o, long i, const char *tag)
{
    char p[4096];
    (void)o;
    fsb_small_name(p, sizeof(p), i, tag);
    if (unlink(p))
        fsb_die("unlink %s", p);
}

static void fsb_phase_unlink(const fsb_opts *o)
{
    const char *tag = fsb_done & FSB_RENAMED ? "g" : "f";
    double el = fsb_timed(o, o->files, fsb_unlink_one, tag);
    fsb_report("unlink", o->files / el, "ops/s", "%ld unlinks in %.3f s", o->files, el);
}

static void fsb_seq_path(char *p, size_t cap)
{
    fsb_path(p, cap, "%s/seq", fsb_root);
}

/* Opens the file seqwrite left (path into p) for phase, which needs it. Returns the fd. */
static int fsb_open_seq(char *p, size_t cap, int flags, const char *phase)
{
    fsb_seq_path(p, cap);
    int fd = open(p, flags);
    if (fd < 0)
        fsb_die("open %s (%s needs seqwrite)", p, phase);
    return fd;
}

static void fsb_phase_seqwrite(const fsb_opts *o)
{
    char p[4096];
    fsb_seq_path(p, sizeof(p));
    long long bytes = (long long)o->seq_mib << 20;
    double t0 = fsb_now();
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        fsb_die("create %s", p);
    for (long long done = 0; done < bytes; done += FSB_IO) {
        fsb_buf[0] = (char)done; /* keep blocks distinct */
        fsb_write_all(fd, fsb_buf, FSB_IO, p);
    }
    fsb_close(fd, p, 1);
    double el = fsb_now() - t0;
    fsb_report("seqwrite", bytes / el / 1e6, "MB/s", "%ld MiB + fsync in %.3f s", o->seq_mib, el);
}

static void fsb_phase_seqread(const fsb_opts *o)
{
    char p[4096];
    int fd = fsb_open_seq(p, sizeof(p), O_RDONLY, "seqread");
    (void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED); /* advisory: ignore failure */
    long long want = (long long)o->seq_mib << 20;
    double t0 = fsb_now();
    long long got = fsb_read_all(fd, p);
    double el = fsb_now() - t0;
    fsb_close(fd, p, 0);
    if (got != want) {
        errno = EIO;
        fsb_die("read %lld bytes of %s, wrote %lld", got, p, want);
    }
    fsb_report("seqread", got / el / 1e6, "MB/s", "%ld MiB in %.3f s", o->seq_mib, el);
}

static void fsb_phase_randwrite(const fsb_opts *o)
{
    char p[4096];
    int fd = fsb_open_seq(p, sizeof(p), O_WRONLY, "randwrite");
    uint64_t pages = ((uint64_t)o->seq_mib << 20) / FSB_PAGE, x = 0x9E3779B97F4A7C15ull;
    double t0 = fsb_now();
    for (long i = 0; i < o->rand_ops; i++) {
        x ^= x << 13; /* xorshift64: deterministic offsets, same for every run */
        x ^= x >> 7;
        x ^= x << 17;
        off_t off = (off_t)((x % pages) * FSB_PAGE);
        fsb_buf[0] = (char)i;
        ssize_t n = pwrite(fd, fsb_buf, FSB_PAGE, off);
        if (n != (ssize_t)FSB_PAGE)
            fsb_die("pwrite %s at %lld", p, (long long)off);
    }
    fsb_close(fd, p, 1);
    double el = fsb_now() - t0;
    fsb_report("randwrite", o->rand_ops / el, "ops/s",
               "%ld x 4 KiB in a %ld MiB file + fsync in %.3f s", o->rand_ops, o->seq_mib, el);
}

static void fsb_fsynccreate_one(const fsb_opts *o, long i, const char *tag)
{
    char p[4096];
    (void)o;
    (void)tag;
    fsb_path(p, sizeof(p), "%s/synced/s%07ld", fsb_root, i);
    fsb_create_file(p, FSB_PAGE, 1);
}

static void fsb_phase_fsynccreate(const fsb_opts *o)
{
    char p[4096];
    fsb_path(p, sizeof(p), "%s/synced", fsb_root);
    fsb_mkdir(p);
    double el = fsb_timed(o, o->sync_files, fsb_fsynccreate_one, NULL);
    fsb_report("fsynccreate", o->sync_files / el, "files/s",
               "%ld x (create, 4 KiB, fsync) in %.3f s", o->sync_files, el);
}

static void fsb_phase_dirrename(const fsb_opts *o)
{
    char a[4096], b[4096], p[4096];
    fsb_path(a, sizeof(a), "%s/bigdir", fsb_root);
    fsb_path(b, sizeof(b), "%s/bigdir.renamed", fsb_root);
    fsb_mkdir(a);
    for (long i = 0; i < o->dir_files; i++) {
        fsb_path(p, sizeof(p), "%s/e%07ld", a, i);
        fsb_create_file(p, 16, 0);
    }
    double t0 = fsb_now();
    if (rename(a, b))
        fsb_die("rename %s", a);
    double el = fsb_now() - t0;
    fsb_path(p, sizeof(p), "%s/e%07ld", b, o->dir_files - 1);
    struct stat st;
    if (o->dir_files > 0 && stat(p, &st))
        fsb_die("stat %s after the directory rename", p);
    fsb_report("dirrename", el, "seconds", "rename of a directory of %ld files", o->dir_files);
}

static void fsb_phase_bigunlink(const fsb_opts *o)
{
    char p[4096], q[4096];
    fsb_seq_path(p, sizeof(p));
    fsb_path(q, sizeof(q), "%s/after-unlink", fsb_root);
    double t0 = fsb_now();
    if (unlink(p))
        fsb_die("unlink %s (bigunlink needs seqwrite)", p);
    fsb_create_file(q, FSB_PAGE, 1);
    double el = fsb_now() - t0;
    fsb_report("bigunlink", el, "seconds",
               "unlink of the %ld MiB file, then create+write 4 KiB+fsync", o->seq_mib);
}

static void fsb_phase_fdatasync(const fsb_opts *o)
{
    char p[4096];
    long n = o->rand_ops_set ? o->rand_ops : 1000;
    fsb_path(p, sizeof(p), "%s/fdatasync", fsb_root);
    int fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0)
        fsb_die("create %s", p);
    double t0 = fsb_now();
    for (long i = 0; i < n; i++) {
        fsb_write_all(fd, fsb_buf, FSB_PAGE, p);
        if (fdatasync(fd))
            fsb_die("fdatasync %s", p);
    }
    double el = fsb_now() - t0;
    fsb_close(fd, p, 0);
    fsb_report("fdatasync", n / el, "ops/s", "%ld x (4 KiB append, fdatasync) in %.3f s", n, el);
}

/* The phases in the order they run. A phase runs when -p names it (default: all but
 * fdatasync) and every state bit it needs was made by an earlier phase. */
typedef struct fsb_phase {
    const char *name;
    void (*run)(const fsb_opts *o);
    unsigned needs; /* FSB_* bits it needs */
    unsigned makes; /* FSB_* bits it sets */
} fsb_phase;

static const fsb_phase fsb_phases[] = {
    {"create", fsb_phase_create, 0, FSB_SMALL},
    {"stat", fsb_phase_stat, FSB_SMALL, 0},
    {"read", fsb_phase_read, FSB_SMALL, 0},
    {"readdir", fsb_phase_readdir, FSB_SMALL, 0},
    {"rename", fsb_phase_rename, FSB_SMALL, FSB_RENAMED},
    {"unlink", fsb_phase_unlink, FSB_SMALL, 0},
    {"seqwrite", fsb_phase_seqwrite, 0, FSB_SEQ},
    {"seqread", fsb_phase_seqread, FSB_SEQ, 0},
    {"randwrite", fsb_phase_randwrite, FSB_SEQ, 0},
    {"fsynccreate", fsb_phase_fsynccreate, 0, 0},
    {"dirrename", fsb_phase_dirrename, 0, 0},
    {"bigunlink", fsb_phase_bigunlink, FSB_SEQ, 0},
    {"fdatasync", fsb_phase_fdatasync, 0, 0},
    {NULL, NULL, 0, 0},
};

/* Splits the next item off the comma-separated list at *p: sets *item to it, advances *p
 * past it and its comma, returns its length. */
static size_t fsb_list_next(const char **p, const char **item)
{
    const char *e = strchr(*p, ',');
    size_t n = e ? (size_t)(e - *p) : strlen(*p);
    *item = *p;
    *p += n + (e ? 1 : 0);
    return n;
}

/* 1 if the n bytes at item spell name. */
static int fsb_item_is(const char *item, size_t n, const char *name)
{
    return strlen(name) == n && !strncmp(item, name, n);
}

static int fsb_wants(const char *phases, const char *name)
{
    if (!phases)
        return strcmp(name, "fdatasync") != 0;
    for (const char *p = phases; *p;) {
        const char *item;
        size_t n = fsb_list_next(&p, &item);
        if (fsb_item_is(item, n, name))
            return 1;
    }
    return 0;
}

static void fsb_usage(FILE *f)
{
    fprintf(f,
            "Usage: fsbench [-n FILES] [-z BYTES] [-m MIB] [-r OPS] [-f FILES] [-d FILES]\n"
            "               [-p PHASE,...] DIR\n"
            "  -n FILES  small files for create/stat/read/readdir/rename/unlink (10000)\n"
            "  -z BYTES  size of each small file (4096)\n"
            "  -m MIB    sequential file size for seqwrite/seqread/randwrite (256)\n"
            "  -r OPS    random 4 KiB overwrites (20000); fdatasync count (1000)\n"
            "  -f FILES  fsync'd creates (1000)\n"
            "  -d FILES  files in the directory renamed by dirrename (10000)\n"
            "  -p LIST   phases to run: create stat read readdir rename unlink seqwrite\n"
            "            seqread randwrite fsynccreate dirrename bigunlink fdatasync\n"
            "            (default: all but fdatasync; stat/read/readdir/rename need create,\n"
            "            seqread/randwrite/bigunlink need seqwrite)\n"
            "Works in DIR/fsbench.PID, removed at the end. Prints \"phase value unit details\".\n");
}

static long fsb_num(const char *s, const char *opt, long min)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < min) {
        fprintf(stderr, "fsbench: %s needs a number >= %ld, not '%s'\n", opt, min, s);
        exit(2);
    }
    return v;
}

/* Exits 2 unless every item of the -p list names a phase. */
static void fsb_check_phases(const char *phases)
{
    for (const char *p = phases; p && *p;) {
        const char *item;
        size_t n = fsb_list_next(&p, &item);
        int found = 0;
        for (const fsb_phase *ph = fsb_phases; ph->name; ph++)
            found |= fsb_item_is(item, n, ph->name);
        if (!found) {
            fprintf(stderr, "fsbench: unknown phase '%.*s'\n", (int)n, item);
            exit(2);
        }
    }
}

static void fsb_parse(int argc, char **argv, fsb_opts *o)
{
    int c;
    while ((c = getopt(argc, argv, "n:z:m:r:f:d:p:h")) != -1) {
        switch (c) {
        case 'n':
            o->files = fsb_num(optarg, "-n", 1);
            break;
        case 'z':
            o->fsize = fsb_num(optarg, "-z", 0);
            break;
        case 'm':
            o->seq_mib = fsb_num(optarg, "-m", 1);
            break;
        case 'r':
            o->rand_ops = fsb_num(optarg, "-r", 1);
            o->rand_ops_set = 1;
            break;
        case 'f':
            o->sync_files = fsb_num(optarg, "-f", 1);
            break;
        case 'd':
            o->dir_files = fsb_num(optarg, "-d", 0);
            break;
        case 'p':
            o->phases = optarg;
            break;
        case 'h':
            fsb_usage(stdout);
            exit(0);
        default:
            fsb_usage(stderr);
            exit(2);
        }
    }
    if (optind != argc - 1) {
        fsb_usage(stderr);
        exit(2);
    }
    o->dir = argv[optind];
    fsb_check_phases(o->phases);
}

/* Fills fsb_buf and creates the work directory fsb_root. */
static void fsb_setup(const fsb_opts *o)
{
    size_t bufsz = FSB_IO > (size_t)o->fsize ? FSB_IO : (size_t)o->fsize;
    /* Page-aligned, as dd's and cp's buffers are: from an unaligned buffer the kernel sends a
     * 1 MiB write to any FUSE filesystem as two requests (1 MiB less the buffer's offset in
     * its page, then the rest), which is not what the phases mean to measure. */
    void *p = NULL;
    int rc = posix_memalign(&p, FSB_PAGE, bufsz);
    if (rc) {
        errno = rc;
        fsb_die("buffer of %zu bytes", bufsz);
    }
    fsb_buf = p;
    for (size_t i = 0; i < bufsz; i++) /* incompressible-ish, deterministic */
        fsb_buf[i] = (char)((i * 2654435761u) >> 13);
    fsb_path(fsb_root, sizeof(fsb_root), "%s/fsbench.%ld", o->dir, (long)getpid());
    if (mkdir(fsb_root, 0755)) {
        int e = errno;
        fsb_root[0] = 0;
        errno = e;
        fsb_die("mkdir %s/fsbench.%ld", o->dir, (long)getpid());
    }
}

int main(int argc, char **argv)
{
    fsb_opts o = {.files = 10000,
                  .fsize = 4096,
                  .seq_mib = 256,
                  .rand_ops = 20000,
                  .sync_files = 1000,
                  .dir_files = 10000};
    fsb_parse(argc, argv, &o);
    fsb_setup(&o);
    for (const fsb_phase *ph = fsb_phases; ph->name; ph++) {
        if ((fsb_done & ph->needs) == ph->needs && fsb_wants(o.phases, ph->name)) {
            ph->run(&o);
            fsb_done |= ph->makes;
        }
    }
    int rc = fsb_rmtree(fsb_root);
    if (rc) {
        char root[sizeof(fsb_root)];
        memcpy(root, fsb_root, sizeof(root));
        fsb_root[0] = 0;
        errno = -rc;
        fsb_die("removing %s", root);
    }
    free(fsb_buf);
    return 0;
}
