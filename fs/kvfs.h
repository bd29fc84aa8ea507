/*
 * kvfs.h -- the daemon's shared state: the open store, the in-memory inode table and the
 * write lock, shared by kvfs.c (main, lifecycle, inode table), ops_meta.c (namespace,
 * attributes, directories, xattrs), ops_data.c (open files and their bytes) and
 * ctl_server.c (the kvfsctl control socket).
 *
 * Concurrency (the whole story):
 *   - fs->wmu serialises every change to the store: each FUSE handler that writes, and each
 *     control-socket write, holds it from reading the records it changes until kv_write
 *     returns. Hence read-modify-write of an inode record or a partial chunk is never lost.
 *   - Reads (lookup, getattr, read, readdir, ...) take no lock: every change is one atomic
 *     batch, so a reader sees each record whole; a read racing a write of the same range may
 *     see part of it, as on ext4.
 *   - fs->itab_mu protects the inode table (kernel lookup counts and open counts). Order:
 *     wmu before itab_mu.
 *   - fs->view_mu protects the time-travel views (ops_snap.c); fs->reap_mu the reaper's
 *     wake-up (reaper.c). Neither is held while calling into the engine for long, nor
 *     while talking to the kernel.
 *   - An inode whose nlink reached 0 is purged (its keys deleted) once the table no longer
 *     holds it (no kernel reference, no open handle); until then its 'O' key marks it, and
 *     orphans left by a crash are swept at mount.
 */
#ifndef KVFS_KVFS_H
#define KVFS_KVFS_H

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/stat.h>

#include "layout.h"

/* Entry and attribute cache timeout given to the kernel (s). The daemon is the only writer of
 * its store and tells the kernel of every change it did not make through a request: kvfsctl
 * put/del (ctl_server.c invalidates every path component before and after), expiry
 * (reaper.c). Inode numbers are never reused. So the timeout only bounds how long a missed
 * invalidation could show; 10 s lets a stat, open, rename or unlink of a file touched in the
 * last seconds skip its LOOKUP/GETATTR round trip. */
#define KVFS_TIMEOUT 10.0

/* FUSE node ids: a live inode's id is its inode number (< 2^40). Nodes under .snapshots
 * have bit 63 set; bits 40..62 hold the view index (0: the .snapshots directory itself) and
 * bits 0..39 the inode number inside the view. */
#define KVFS_SNAP_BIT (1ull << 63)
#define KVFS_VIEW_SHIFT 40
#define KVFS_INO_MASK ((1ull << KVFS_VIEW_SHIFT) - 1)
#define KVFS_VIEW_MAX 4096u
#define KVFS_SNAPDIR_ID KVFS_SNAP_BIT
#define KVFS_SNAPDIR_NAME ".snapshots"
#define KVFS_IS_SNAP(id) (((uint64_t)(id)&KVFS_SNAP_BIT) != 0)
#define KVFS_HISTORY_DEFAULT_MS 3600000ull /* -o history default: 1h */
#define KVFS_COMPRESS_DEFAULT (-1)         /* -o compress default: zstd fast level 1 */
/* Table block size the daemon opens the store with: 8 chunks (LAYOUT_CHUNK) per block, so a
 * sequential read decodes an eighth as many blocks as with the engine's 4 KiB default
 * (measured 256 MiB seqread: 4 KiB blocks ~500 MB/s, 8 KiB ~710-760, 32 KiB ~840-970); a 4 KiB
 * file still reads one block, checksummed in a few microseconds. */
#define KVFS_BLOCK_BYTES (32u * 1024u)
/* Levels 0 and 1 are stored uncompressed (kv_options.uncompressed_levels): file data passes
 * through them within seconds of being written, so compressing it there only costs CPU on
 * the write path (zstd was half the daemon's CPU in a 256 MiB sequential write). */
#define KVFS_UNCOMPRESSED_LEVELS 2
/* Tables are cut where the key's first byte, its kind ('C' chunks, 'D' entries, 'I' inodes...;
 * layout.c), changes (kv_options.partition_prefix_bytes): the chunks of a file written from
 * start to end then sit in tables no other key falls into, which move down the levels without
 * being rewritten, where before the inode record of every write made each level-0 table span
 * 'C'..'I' and every byte was compacted again. */
#define KVFS_PARTITION_PREFIX_BYTES 1
/* -o readahead default (KiB). The kernel gives a FUSE mount 128 KiB, so a sequential reader
 * costs one round trip per 128 KiB; 1 MiB (one max_write-sized request) cuts that 8-fold
 * (measured 256 MiB seqread: 900-1060 MB/s -> 1190-1250 MB/s). */
#define KVFS_READAHEAD_KIB 1024u

/* One open time-travel view: a pinned engine snapshot and the kernel's references into it. */
typedef struct kvfs_view {
    int used;
    int named;                           /* resolved from a named snapshot */
    char name[KV_SNAPSHOT_NAME_MAX + 2]; /* the .snapshots entry ("" once rmdir'ed) */
    kv_snapshot *snap;
    kv_readopts ro;   /* snapshot + TTL time of the view */
    uint64_t nlookup; /* kernel references to nodes of this view */
} kvfs_view;

typedef struct kvfs_inode {
    uint64_t ino;
    uint64_t nlookup; /* kernel references (lookup count); protected by itab_mu */
    uint64_t nopen;   /* open file handles; protected by itab_mu */
    struct kvfs_inode *next;
} kvfs_inode;

typedef struct kvfs {
    kv_db *db;
    layout_fs *lfs;
    struct fuse_session *se;
    char *data_dir; /* absolute */
    int read_only;
    int debug;
    int compress_level;      /* kv_options.compression_level (-o compress) */
    unsigned readahead_kib;  /* -o readahead: the mount's kernel readahead, 0 = kernel's own */
    int spin_us;             /* -o spin: the request loop's spin before sleeping; -1: default */
    char *mountpoint;        /* absolute (libfuse resolves it) */
    pthread_mutex_t wmu;     /* serialises all writes to the store (see above) */
    pthread_mutex_t itab_mu; /* protects itab */
    kvfs_inode **itab;
    size_t itab_buckets;
    /* control socket (ctl_server.c) */
    int ctl_fd;
    int ctl_wake[2];
    pthread_t ctl_thread;
    int ctl_running;
    /* time travel (ops_snap.c) */
    uint64_t history_ms;
    int snapdir_visible;
    pthread_mutex_t view_mu;
    kvfs_view *views; /* KVFS_VIEW_MAX slots; slot 0 unused */
    /* expiry reaper (reaper.c) */
    pthread_mutex_t reap_mu;
    pthread_cond_t reap_cv;
    pthread_t reap_thread;
    int reap_running, reap_stop;
    uint64_t reap_next_ms; /* earliest expiry the reaper is waiting for */
    /* the reserve (kvfs_room_to_grow, ops_meta.c) */
    _Atomic uint64_t room_unchecked; /* bytes let through since the last look at the disk */
    _Atomic uint64_t room_check_every;
    _Atomic int room_short; /* the last look found less free than the reserve */
} kvfs;

extern const struct fuse_lowlevel_ops kvfs_ops;

/* ---- inode table (kvfs.c) ---- */
int kvfs_itab_ref(kvfs *fs, uint64_t ino, uint64_t nlookup, uint64_t nopen);
/* Drops references; returns 1 when the inode left the table. */
int kvfs_itab_unref(kvfs *fs, uint64_t ino, uint64_t nlookup, uint64_t nopen);
int kvfs_itab_busy(kvfs *fs, uint64_t ino);
/* With wmu held: purges ino if its nlink is 0 and nothing holds it. */
void kvfs_maybe_purge_locked(kvfs *fs, uint64_t ino);
/* Drops references and purges the inode if that was the last one and it is unlinked. */
void kvfs_unref_purge(kvfs *fs, uint64_t ino, uint64_t nlookup, uint64_t nopen);

/* ---- helpers shared by the handlers ---- */
/* Called from the FUSE init handler, before its reply: sets the mount's readahead
 * (fs->readahead_kib) in sysfs and in conn, so that the reply does not lower it again. A
 * failure (not root, no sysfs) keeps the kernel's default and logs one line. */
void kvfs_set_readahead(kvfs *fs, struct fuse_conn_info *conn);
void kvfs_stat_of(const layout_inode *in, struct stat *st);
void kvfs_entry_of(const layout_inode *in, struct fuse_entry_param *e);
/* kv_write of b (no sync); logs unexpected failures. */
int kvfs_commit(kvfs *fs, kv_batch *b);
/* Logs an unexpected error (EIO, EUCLEAN, ENOMEM...) with the layout's message. */
int kvfs_fail(const char *op, int rc);

/* ---- data handlers (ops_data.c), used by the operation table ---- */
void kvfs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void kvfs_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                 struct fuse_file_info *fi);
void kvfs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi);
void kvfs_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                struct fuse_file_info *fi);
void kvfs_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void kvfs_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi);
void kvfs_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
                    struct fuse_file_info *fi);

/* The reserve: room kept free on the data directory's filesystem for what frees space
 * (unlink, rmdir, truncate, rename: each needs a small WAL record), as ext4 keeps blocks for
 * root. What adds data (write, create, mknod, mkdir, symlink, link, setxattr, kvfsctl put)
 * gets -ENOSPC once the free space is below it; statfs counts it as used. 0 or -ENOSPC
 * (with a message). bytes: what the request adds. */
int kvfs_room_to_grow(kvfs *fs, uint64_t bytes);

/* ---- shared by create (ops_data.c) and mknod/mkdir/symlink (ops_meta.c) ---- */
/* Creates name in parent. link: symlink target or NULL. nopen: 1 to count an open handle.
 * OUT: *e. With excl == 0 an existing regular file is returned instead of -EEXIST (create
 * without O_EXCL); *existed tells. */
int kvfs_do_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev,
                  const char *link, int nopen, int excl, int *existed, struct fuse_entry_param *e);

/* ---- time travel (ops_snap.c) ---- */
/* Where node id lives. Returns 0 for a live inode (*ro = NULL), 1 for a node of a view
 * (*ro = its read options), 2 for the .snapshots directory; -ENOENT for a released view. */
int kvfs_node(kvfs *fs, uint64_t id, uint64_t *ino, const kv_readopts **ro, unsigned *view);
uint64_t kvfs_node_id(unsigned view, uint64_t ino);
/* Lookups that land under .snapshots: parent is the .snapshots dir or a view node. */
int kvfs_snap_lookup(kvfs *fs, uint64_t parent, const char *name, struct fuse_entry_param *e);
/* The entry of .snapshots itself (looked up in the root). */
int kvfs_snapdir_entry(kvfs *fs, struct fuse_entry_param *e);
void kvfs_snap_forget(kvfs *fs, uint64_t id, uint64_t nlookup);
int kvfs_snap_mkdir(kvfs *fs, const char *name, struct fuse_entry_param *e);
int kvfs_snap_rmdir(kvfs *fs, const char *name);
/* Takes one more kernel reference to a node of a view (readdirplus). */
void kvfs_view_ref(kvfs *fs, unsigned view);
void kvfs_views_release(kvfs *fs);
/* A log line (stderr in the foreground, else syslog). */
void kvfs_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- kvfs.* extended attributes and expiry (ops_kvx.c) ---- */
/* 1 if name is one of ours (user.kvfs.*). */
int kvfs_kvx_is(const char *name);
/* OUT: *val (malloc'd), *vlen. */
int kvfs_kvx_get(kvfs *fs, uint64_t ino, const kv_readopts *ro, const char *name, char **val,
                 size_t *vlen);
int kvfs_kvx_set(kvfs *fs, uint64_t ino, const char *name, const char *value, size_t size);
int kvfs_kvx_remove(kvfs *fs, uint64_t ino, const char *name);
/* The dirent (parent, name) if it names a live (not expired) inode. */
int kvfs_dirent_live(kvfs *fs, uint64_t parent, const char *name, size_t nlen, uint64_t *ino,
                     uint32_t *type);
/* Inodes whose expiry has passed but whose keys the reaper has not removed yet
 * (sorted; malloc'd). */
int kvfs_expired_pending(kvfs *fs, uint64_t **inos, size_t *n);

/* ---- expiry reaper (reaper.c) ---- */
int kvfs_reaper_start(kvfs *fs);
void kvfs_reaper_stop(kvfs *fs);
/* Tells the reaper an expiry at expire_at_ms was set (wakes it if that is sooner). */
void kvfs_reaper_kick(kvfs *fs, uint64_t expire_at_ms);

/* ---- control socket (ctl_server.c) ---- */
int ctl_server_start(kvfs *fs);
void ctl_server_stop(kvfs *fs);

#endif /* KVFS_KVFS_H */
