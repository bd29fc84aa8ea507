/*
 * kvio.c -- the engine's file-system calls (contract in kvio.h).
 *
 * Every call
 *   1. asks the fault hook first (kvio_fault below), so a test can fail any call before it
 *      touches the disk; calls are mapped onto the hook's operations as:
 *        KVIO_OPEN   open, mkdir_p, list_dir        KVIO_READ   pread, file_size, free_bytes
 *        KVIO_WRITE  write, pwrite                  KVIO_SYNC   fsync, fsync_dir,
 *                                                               start_writeback
 *        KVIO_RENAME rename   KVIO_UNLINK unlink   KVIO_LINK link
 *        KVIO_TRUNCATE truncate (it gives space back: a full disk fails writes, not this)
 *      (close is never failed by the hook: a "failed" close that kept the descriptor open
 *      would only leak it; nor is truncate_to's seek, which follows a truncate). Composite
 *      calls (read_file, replace_atomic, copy_file, lock_file) are built from the calls above
 *      and see the hook through them;
 *   2. retries EINTR and loops over short reads and writes;
 *   3. turns a failure into a negative errno and a kv_error() message "<call> <path>: <why>",
 *      e.g. "open /x/y: No space left on device".
 *
 * Invariants: no call leaves a partially written file under its final name: replace_atomic and
 * copy_file write a temporary file, fsync it, rename it into place and fsync the directory.
 *
 * The hook is a global (function, argument) pair. Both are atomics; the argument is published
 * before the function, so a thread that sees a new function sees its argument.
 */
#include "kvio.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "util.h"

#define KVIO_COPY_CHUNK (1u << 20)

static _Atomic(kvio_fault_fn) kvio_hook_fn;
static void *_Atomic kvio_hook_arg;

void kvio_set_fault_hook(kvio_fault_fn fn, void *arg)
{
    atomic_store_explicit(&kvio_hook_arg, arg, memory_order_release);
    atomic_store_explicit(&kvio_hook_fn, fn, memory_order_release);
}

static const char *kvio_name(const char *path)
{
    return path ? path : "(descriptor)";
}

/* The error of a failed call, as "<what> <path>: <strerror>"; err is a negative errno. */
static int kvio_fail(int err, const char *what, const char *path)
{
    return kv_error(err, "%s %s: %s", what, kvio_name(path), strerror(-err));
}

static int kvio_fault(kvio_op op, const char *what, const char *path)
{
    kvio_fault_fn fn = atomic_load_explicit(&kvio_hook_fn, memory_order_acquire);
    if (!fn)
        return 0;
    int rc = fn(op, path, atomic_load_explicit(&kvio_hook_arg, memory_order_acquire));
    if (rc >= 0)
        return 0;
    return kvio_fail(rc, what, path);
}

int kvio_open(const char *path, int flags, mode_t mode)
{
    int rc = kvio_fault(KVIO_OPEN, "open", path);
    if (rc)
        return rc;
    int fd;
    do
        fd = open(path, flags | O_CLOEXEC, mode);
    while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return kvio_fail(-errno, "open", path);
    return fd;
}

int kvio_close(int fd)
{
    /* Linux releases the descriptor even when close reports EINTR: never retry. */
    if (close(fd) != 0 && errno != EINTR)
        return kvio_fail(-errno, "close", NULL);
    return 0;
}

int kvio_pread_full(int fd, const char *path, void *buf, size_t n, uint64_t off, size_t *got)
{
    *got = 0;
    int rc = kvio_fault(KVIO_READ, "read", path);
    if (rc)
        return rc;
    uint8_t *p = buf;
    size_t done = 0;
    while (done < n) {
        ssize_t r = pread(fd, p + done, n - done, (off_t)(off + done));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return kvio_fail(-errno, "read", path);
        if (r == 0)
            break;
        done += (size_t)r;
    }
    *got = done;
    return 0;
}

/* Writes all n bytes, at off when positioned, else at the current offset (short writes and
 * EINTR retried; a write that makes no progress is -EIO). */
static int kvio_write_all(int fd, const char *path, const void *buf, size_t n, int positioned,
                          uint64_t off)
{
    int rc = kvio_fault(KVIO_WRITE, "write", path);
    if (rc)
        return rc;
    const uint8_t *p = buf;
    while (n > 0) {
        ssize_t w = positioned ? pwrite(fd, p, n, (off_t)off) : write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return kvio_fail(-errno, "write", path);
        if (w == 0)
            return kvio_fail(-EIO, "write", path);
        p += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

int kvio_write_full(int fd, const char *path, const void *buf, size_t n)
{
    return kvio_write_all(fd, path, buf, n, 0, 0);
}

int kvio_pwrite_full(int fd, const char *path, const void *buf, size_t n, uint64_t off)
{
    return kvio_write_all(fd, path, buf, n, 1, off);
}

int kvio_fsync(int fd, const char *path)
{
    int rc = kvio_fault(KVIO_SYNC, "fsync", path);
    if (rc)
        return rc;
    while (fdatasync(fd) != 0) {
        if (errno != EINTR)
            return kvio_fail(-errno, "fsync", path);
    }
    return 0;
}

/* Starts writeback of [off, off + n) without waiting. */
static int kvio_start_writeback(int fd, const char *path, uint64_t off, uint64_t n)
{
    int rc = kvio_fault(KVIO_SYNC, "start writeback", path);
    if (rc)
        return rc;
    while (sync_file_range(fd, (off_t)off, (off_t)n, SYNC_FILE_RANGE_WRITE) != 0) {
        if (errno == ENOSYS || errno == EINVAL || errno == ESPIPE || errno == EOPNOTSUPP)
            return 0;
        if (errno != EINTR)
            return kvio_fail(-errno, "start writeback", path);
    }
    return 0;
}

int kvio_writeback_now(kvio_writeback *wb, int fd, const char *path, uint64_t end)
{
    if (end <= wb->from)
        return 0;
    int rc = kvio_start_writeback(fd, path, wb->from, end - wb->from);
    wb->from = end;
    return rc;
}

int kvio_writeback_note(kvio_writeback *wb, int fd, const char *path, uint64_t end)
{
    if (end < wb->from || end - wb->from < KVIO_WRITEBACK_BYTES)
        return 0;
    return kvio_writeback_now(wb, fd, path, end);
}

int kvio_file_size(int fd, const char *path, uint64_t *size)
{
    int rc = kvio_fault(KVIO_READ, "stat", path);
    if (rc)
        return rc;
    struct stat st;
    if (fstat(fd, &st) != 0)
        return kvio_fail(-errno, "stat", path);
    *size = (uint64_t)st.st_size;
    return 0;
}

int kvio_free_bytes(const char *path, uint64_t *bytes)
{
    int rc = kvio_fault(KVIO_READ, "statvfs", path);
    if (rc)
        return rc;
    struct statvfs st;
    if (statvfs(path, &st) != 0)
        return kvio_fail(-errno, "statvfs", path);
    *bytes = (uint64_t)st.f_bavail * st.f_frsize;
    return 0;
}

int kvio_truncate(int fd, const char *path, uint64_t size)
{
    int rc = kvio_fault(KVIO_TRUNCATE, "truncate", path);
    if (rc)
        return rc;
    while (ftruncate(fd, (off_t)size) != 0) {
        if (errno != EINTR)
            return kvio_fail(-errno, "truncate", path);
    }
    return 0;
}

int kvio_truncate_to(int fd, const char *path, uint64_t size)
{
    int rc = kvio_truncate(fd, path, size);
    if (rc == 0 && lseek(fd, (off_t)size, SEEK_SET) < 0)
        rc = kvio_fail(-errno, "seek", path);
    return rc;
}

int kvio_fsync_dir(const char *dir)
{
    int fd = kvio_open(dir, O_RDONLY | O_DIRECTORY, 0);
    if (fd < 0)
        return fd;
    int rc = kvio_fault(KVIO_SYNC, "fsync", dir);
    while (rc == 0 && fsync(fd) != 0) {
        if (errno != EINTR)
            rc = kvio_fail(-errno, "fsync", dir);
    }
    close(fd);
    return rc;
}

/* A call on two paths (rename, link), with the fault hook and a message naming both. */
static int kvio_two_paths(kvio_op op, const char *what, int (*call)(const char *, const char *),
                          const char *from, const char *to)
{
    int rc = kvio_fault(op, what, from);
    if (rc)
        return rc;
    if (call(from, to) != 0) {
        int err = -errno;
        return kv_error(err, "%s %s -> %s: %s", what, from, to, strerror(-err));
    }
    return 0;
}

int kvio_rename(const char *from, const char *to)
{
    return kvio_two_paths(KVIO_RENAME, "rename", rename, from, to);
}

int kvio_unlink(const char *path)
{
    int rc = kvio_fault(KVIO_UNLINK, "unlink", path);
    if (rc)
        return rc;
    if (unlink(path) != 0)
        return kvio_fail(-errno, "unlink", path);
    return 0;
}

void kvio_unlink_keep_error(const char *path)
{
    char saved[512];
    snprintf(saved, sizeof saved, "%s", kv_last_error());
    (void)kvio_unlink(path);
    kv_error(0, "%s", saved);
}

int kvio_link(const char *from, const char *to)
{
    return kvio_two_paths(KVIO_LINK, "link", link, from, to);
}

/* mkdir that accepts an existing directory (but not an existing non-directory). */
static int kvio_mkdir_one(const char *dir, mode_t mode)
{
    if (mkdir(dir, mode) == 0)
        return 0;
    int err = -errno;
    struct stat st;
    if (err == -EEXIST && stat(dir, &st) == 0)
        return S_ISDIR(st.st_mode) ? 0 : kvio_fail(-ENOTDIR, "mkdir", dir);
    return kvio_fail(err, "mkdir", dir);
}

int kvio_mkdir_p(const char *dir, mode_t mode)
{
    int rc = kvio_fault(KVIO_OPEN, "mkdir", dir);
    if (rc)
        return rc;
    char buf[PATH_MAX];
    size_t n = strlen(dir);
    if (n == 0)
        return kv_error(-EINVAL, "mkdir: empty path");
    if (n >= sizeof buf)
        return kvio_fail(-ENAMETOOLONG, "mkdir", dir);
    memcpy(buf, dir, n + 1);
    for (size_t i = 1; i < n && rc == 0; i++) {
        if (buf[i] != '/' || buf[i - 1] == '/')
            continue;
        buf[i] = '\0';
        rc = kvio_mkdir_one(buf, mode);
        buf[i] = '/';
    }
    return rc ? rc : kvio_mkdir_one(buf, mode);
}

int kvio_read_file(const char *path, uint8_t **data, size_t *len)
{
    *data = NULL;
    *len = 0;
    uint8_t *buf = NULL;
    uint64_t size = 0;
    size_t got = 0;
    int fd = kvio_open(path, O_RDONLY, 0);
    if (fd < 0)
        return fd;
    int rc = kvio_file_size(fd, path, &size);
    if (rc)
        goto out;
    if (size >= SIZE_MAX) {
        rc = kvio_fail(-EFBIG, "read", path);
        goto out;
    }
    buf = malloc((size_t)size + 1);
    if (!buf) {
        rc = kvio_fail(-ENOMEM, "read", path);
        goto out;
    }
    rc = kvio_pread_full(fd, path, buf, (size_t)size, 0, &got);
    if (rc)
        goto out;
    buf[got] = '\0';
    *data = buf;
    *len = got;
    buf = NULL;
out:
    free(buf);
    close(fd);
    return rc;
}

/* Best-effort removal of a temporary file on an error path (keeps the first error's message). */
static void kvio_discard(const char *path)
{
    unlink(path);
}

/* Finishes a temporary file written through fd (rc: how the writing went): fsync, close,
 * rename over path, fsync dir. On any failure the temporary file is removed. */
static int kvio_install_tmp(int fd, int rc, const char *tmp, const char *path, const char *dir)
{
    if (rc == 0)
        rc = kvio_fsync(fd, tmp);
    int crc = kvio_close(fd);
    if (rc == 0)
        rc = crc;
    if (rc == 0)
        rc = kvio_rename(tmp, path);
    if (rc) {
        kvio_discard(tmp);
        return rc;
    }
    return kvio_fsync_dir(dir);
}

int kvio_replace_atomic(const char *dir, const char *path, const char *tmp_path, const void *data,
                        size_t len)
{
    int fd = kvio_open(tmp_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return fd;
    return kvio_install_tmp(fd, kvio_write_full(fd, tmp_path, data, len), tmp_path, path, dir);
}

/* Copies every byte of in to out. */
static int kvio_copy_fd(int in, const char *from, int out, const char *tmp)
{
    uint8_t *buf = malloc(KVIO_COPY_CHUNK);
    if (!buf)
        return kvio_fail(-ENOMEM, "copy", from);
    int rc = 0;
    uint64_t off = 0;
    for (;;) {
        size_t got;
        rc = kvio_pread_full(in, from, buf, KVIO_COPY_CHUNK, off, &got);
        if (rc || got == 0)
            break;
        rc = kvio_write_full(out, tmp, buf, got);
        if (rc)
            break;
        off += got;
    }
    free(buf);
    return rc;
}

/* The directory part of path ("." if none) into out[PATH_MAX]. */
static int kvio_dirname(const char *path, char *out)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return kvio_path(out, PATH_MAX, ".");
    if (slash == path)
        return kvio_path(out, PATH_MAX, "/");
    return kvio_path(out, PATH_MAX, "%.*s", (int)(slash - path), path);
}

int kvio_copy_file(const char *from, const char *to)
{
    char tmp[PATH_MAX], dir[PATH_MAX];
    int rc = kvio_path(tmp, sizeof tmp, "%s.tmp", to);
    if (rc == 0)
        rc = kvio_dirname(to, dir);
    if (rc)
        return rc;
    int in = kvio_open(from, O_RDONLY, 0);
    if (in < 0)
        return in;
    int out = kvio_open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (out < 0) {
        close(in);
        return out;
    }
    rc = kvio_copy_fd(in, from, out, tmp);
    close(in);
    return kvio_install_tmp(out, rc, tmp, to, dir);
}

void kvio_free_list(char **names, size_t n)
{
    if (!names)
        return;
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* Appends a copy of name to the list. */
static int kvio_list_push(char ***names, size_t *n, size_t *cap, const char *name)
{
    char **p = kv_grow(*names, cap, *n + 1, sizeof *p, 16);
    if (!p)
        return -ENOMEM;
    *names = p;
    char *copy = strdup(name);
    if (!copy)
        return -ENOMEM;
    (*names)[(*n)++] = copy;
    return 0;
}

int kvio_list_dir(const char *dir, char ***names, size_t *n)
{
    *names = NULL;
    *n = 0;
    int rc = kvio_fault(KVIO_OPEN, "opendir", dir);
    if (rc)
        return rc;
    DIR *d = opendir(dir);
    if (!d)
        return kvio_fail(-errno, "opendir", dir);
    char **list = NULL;
    size_t count = 0, cap = 0;
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (!de) {
            if (errno)
                rc = kvio_fail(-errno, "readdir", dir);
            break;
        }
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (kvio_list_push(&list, &count, &cap, de->d_name) != 0) {
            rc = kvio_fail(-ENOMEM, "readdir", dir);
            break;
        }
    }
    closedir(d);
    if (rc) {
        kvio_free_list(list, count);
        return rc;
    }
    *names = list;
    *n = count;
    return 0;
}

int kvio_lock_file(const char *path, int *fd)
{
    *fd = -1;
    int lfd = kvio_open(path, O_RDWR | O_CREAT, 0644);
    if (lfd < 0)
        return lfd;
    int rc;
    while ((rc = flock(lfd, LOCK_EX | LOCK_NB)) != 0 && errno == EINTR)
        ;
    if (rc != 0) {
        int err = errno;
        close(lfd);
        if (err == EWOULDBLOCK)
            return kv_error(-EBUSY, "%s: data directory is in use by another process", path);
        return kvio_fail(-err, "lock", path);
    }
    *fd = lfd;
    return 0;
}

int kvio_path(char *out, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, cap, fmt, ap);
    va_end(ap);
    if (n < 0)
        return kv_error(-EINVAL, "path: bad format \"%s\"", fmt);
    if ((size_t)n >= cap) {
        if (cap)
            out[0] = '\0';
        return kv_error(-ENAMETOOLONG, "path too long (%d bytes, limit %zu)", n, cap - 1);
    }
    return 0;
}
