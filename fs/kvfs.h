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
 *   - An inode whose nlink reached 0 is purged (its keys deleted) once the table no longer
 *     holds it (no kernel reference, no open handle); until then its 'O' key marks it, and
 *     orphans left by a crash are swept at mount.
 */
#ifndef KVFS_KVFS_H
#define KVFS_KVFS_H

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/stat.h>

#include "layout.h"

#define KVFS_TIMEOUT 1.0 /* entry and attribute cache timeout given to the kernel (s) */

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
    pthread_mutex_t wmu;     /* serialises all writes to the store (see above) */
    pthread_mutex_t itab_mu; /* protects itab */
    kvfs_inode **itab;
    size_t itab_buckets;
    /* control socket (ctl_server.c) */
    int ctl_fd;
    int ctl_wake[2];
    pthread_t ctl_thread;
    int ctl_running;
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
void kvfs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
               struct fuse_file_info *fi);
void kvfs_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                struct fuse_file_info *fi);
void kvfs_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void kvfs_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void kvfs_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi);
void kvfs_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
                    struct fuse_file_info *fi);

/* ---- shared by create (ops_data.c) and mknod/mkdir/symlink (ops_meta.c) ---- */
/* Creates name in parent. link: symlink target or NULL. nopen: 1 to count an open handle.
 * OUT: *e. With excl == 0 an existing regular file is returned instead of -EEXIST (create
 * without O_EXCL); *existed tells. */
int kvfs_do_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev,
                  const char *link, int nopen, int excl, int *existed,
                  struct fuse_entry_param *e);

/* ---- control socket (ctl_server.c) ---- */
int ctl_server_start(kvfs *fs);
void ctl_server_stop(kvfs *fs);

#endif /* KVFS_KVFS_H */
