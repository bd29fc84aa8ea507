/*
 * kvio.h -- the engine's only door to the file system.
 *
 * Every read, write, fsync, rename and unlink the engine makes goes through these calls, so
 * that (1) short reads/writes and EINTR are handled once, (2) every failure becomes a negative
 * errno plus a kv_error() message naming the file, and (3) a fault-injection hook can make any
 * call fail for tests (hardening work builds on kvio_set_fault_hook).
 *
 * Invariants: kvio_* never leaves a partially-created file under a final name; callers that
 * need a file to appear atomically write it under a temporary name and use
 * kvio_replace_atomic(), which fsyncs the file, renames it and fsyncs the directory.
 */
#ifndef KV_KVIO_H
#define KV_KVIO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Operations a fault hook can fail. */
typedef enum kvio_op {
    KVIO_OPEN,
    KVIO_READ,
    KVIO_WRITE,
    KVIO_SYNC,
    KVIO_RENAME,
    KVIO_UNLINK,
    KVIO_LINK,
    KVIO_TRUNCATE, /* gives space back: a full disk fails writes, not this */
} kvio_op;

/* Returns 0 to let the call proceed or a negative errno to fail it. path may be NULL for
 * calls on descriptors. */
typedef int (*kvio_fault_fn)(kvio_op op, const char *path, void *arg);
void kvio_set_fault_hook(kvio_fault_fn fn, void *arg);

/* open(2) with O_CLOEXEC added; returns fd or negative errno. */
int kvio_open(const char *path, int flags, mode_t mode);
int kvio_close(int fd);

/* Reads exactly n bytes at off unless EOF comes first. OUT: *got = bytes read. */
int kvio_pread_full(int fd, const char *path, void *buf, size_t n, uint64_t off, size_t *got);
/* Writes all n bytes (at the current offset / at off). */
int kvio_write_full(int fd, const char *path, const void *buf, size_t n);
int kvio_pwrite_full(int fd, const char *path, const void *buf, size_t n, uint64_t off);
int kvio_fsync(int fd, const char *path); /* fdatasync */
/* Incremental writeback of a file written front to back (a WAL segment, a table being built):
 * the writer reports each new end of data, and once KVIO_WRITEBACK_BYTES have piled up since
 * the last report that started writeback, writeback of them starts without waiting
 * (sync_file_range WRITE). Spreads the disk writes over the time the file is written instead
 * of leaving them all to the final fsync, which would stall whoever waits for it (RocksDB's
 * bytes_per_sync). Durability still comes only from kvio_fsync; a file system without the
 * call is not an error (returns 0). */
#define KVIO_WRITEBACK_BYTES (1u << 20)
typedef struct kvio_writeback {
    uint64_t from; /* writeback has been started for [0, from) */
} kvio_writeback;
int kvio_writeback_note(kvio_writeback *wb, int fd, const char *path, uint64_t end);
/* Starts writeback of everything reported up to end now, whatever its size. */
int kvio_writeback_now(kvio_writeback *wb, int fd, const char *path, uint64_t end);
int kvio_file_size(int fd, const char *path, uint64_t *size);
/* Bytes free for unprivileged writers on the filesystem holding path (statvfs f_bavail). */
int kvio_free_bytes(const char *path, uint64_t *bytes);
int kvio_truncate(int fd, const char *path, uint64_t size);
/* Cuts the file to size and puts the file position there: the next kvio_write_full goes on
 * from size (a writer undoing a partial append). */
int kvio_truncate_to(int fd, const char *path, uint64_t size);

int kvio_fsync_dir(const char *dir);
int kvio_rename(const char *from, const char *to);
int kvio_unlink(const char *path);
/* Removes path on an error path: a failure is ignored and the first error's message (for
 * kv_last_error) is kept. */
void kvio_unlink_keep_error(const char *path);
int kvio_link(const char *from, const char *to);
int kvio_mkdir_p(const char *dir, mode_t mode);

/* Reads a whole (small) file. OUT: *data (malloc'd, NUL-terminated for convenience), *len. */
int kvio_read_file(const char *path, uint8_t **data, size_t *len);
/* Writes data to tmp_path, fsyncs, renames to path, fsyncs dir. */
int kvio_replace_atomic(const char *dir, const char *path, const char *tmp_path, const void *data,
                        size_t len);
/* Copies a file (used by checkpoint when a hard link is impossible); fsyncs the copy. */
int kvio_copy_file(const char *from, const char *to);

/* Lists the names in dir (not "." or ".."). OUT: *names (malloc'd array of malloc'd strings). */
int kvio_list_dir(const char *dir, char ***names, size_t *n);
void kvio_free_list(char **names, size_t n);

/* Takes an exclusive advisory lock on path (created if missing). -EBUSY if another process
 * holds it. OUT: *fd, to be closed to release. */
int kvio_lock_file(const char *path, int *fd);

/* snprintf into a path buffer of PATH_MAX; -ENAMETOOLONG if it does not fit. */
int kvio_path(char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif /* KV_KVIO_H */
