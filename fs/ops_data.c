/*
 * ops_data.c -- FUSE handlers for open files: create, open, read, write, fsync,
 * release and fallocate.
 *
 * There is no flush handler: every write is in the store before it is acknowledged, so close(2)
 * has nothing to add, and libfuse's ENOSYS makes the kernel stop sending FLUSH (one round trip
 * less per close). A file handle (fi->fh) holds the open flags; O_APPEND writes go to the size the
 * store holds at that moment, under the write lock, so appenders on the same mount never overwrite
 * each other. Each write is one batch: the chunks it touches (partial chunks read-modify-written)
 * plus the inode record with the new size and mtime, so after a crash a file holds a state
 * it really had. Writes are not synced; fsync syncs the WAL once (kv_sync). A read takes the
 * size and the chunks from one store snapshot, so it never pairs one state's size with
 * another's bytes.
 *
 * One write(2) must reach us as ONE request, or a SIGKILL between two requests leaves a torn
 * write. Through the page cache (write-through) the kernel does split it: when the first page
 * of the range is partial and not cached, that page goes out alone (locked, not uptodate),
 * then the rest -- e.g. pwrite(30000 B at 100) arrives as 3996 B + 26004 B. So handles opened
 * O_WRONLY use direct I/O (FOPEN_DIRECT_IO): the kernel then sends each write(2) as one
 * request up to max_write (1 MiB), and invalidates the range in the page cache of the other
 * handles. They cannot be mmapped or read, so nothing is lost. O_RDWR handles keep the page
 * cache (MAP_SHARED needs it; libfuse 3.14 cannot ask for FUSE_DIRECT_IO_ALLOW_MMAP): their
 * writes that start inside an uncached page may still be split (see set_open_flags).
 *
 * A write or O_TRUNC by anyone but root clears the file's setuid bit, and its setgid bit when
 * it is group-executable, in the same batch (drop_privs): the kernel does this itself only for
 * writes through the page cache (a SETATTR before the write), not for direct-I/O writes nor for
 * a truncation carried by the open.
 */
#include "kvfs.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdlib.h>
#include <string.h>

#define KVFS_FS(req) ((kvfs *)fuse_req_userdata(req))

/* Write-only handles bypass the page cache so that each write(2) is one request, hence one
 * batch (file comment); every other handle keeps the cache across opens (every change
 * reaches the kernel cache or is invalidated). */
static void set_open_flags(struct fuse_file_info *fi)
{
    fi->fh = (uint64_t)(unsigned)fi->flags;
    fi->keep_cache = 1;
    if ((fi->flags & O_ACCMODE) == O_WRONLY)
        fi->direct_io = 1;
}

/* What the kernel's file_remove_privs does for local filesystems when caller, who is taken to
 * lack CAP_FSETID unless root, writes to or truncates in. Returns whether the mode changed:
 * the kernel's cached mode must then be invalidated (forget_cached_mode), since after such a
 * write it refreshes only the size and times. */
static int drop_privs(layout_inode *in, uid_t caller)
{
    uint32_t old = in->mode;
    if (caller == 0 || !S_ISREG(in->mode))
        return 0;
    in->mode &= ~(uint32_t)S_ISUID;
    if (in->mode & S_IXGRP)
        in->mode &= ~(uint32_t)S_ISGID;
    return in->mode != old;
}

/* Drops the kernel's cached attributes of ino (not its page cache). Safe inside a handler of
 * ino and under wmu: with a negative offset the kernel takes no page or inode lock and waits
 * for no request. */
static void forget_cached_mode(kvfs *fs, uint64_t ino)
{
    if (fs->se)
        fuse_lowlevel_notify_inval_inode(fs->se, ino, -1, 0);
}

/* Ends a change of in's data staged in b (wmu held): setuid/setgid dropped for caller
 * (drop_privs; 0 where the kernel has dropped them itself), new mtime and ctime, the inode
 * record in the same batch, one commit. */
static int commit_data_change(kvfs *fs, kv_batch *b, layout_inode *in, uid_t caller)
{
    int privs_dropped = drop_privs(in, caller);
    layout_now(&in->mtime);
    in->ctime = in->mtime;
    int rc = layout_inode_put(b, in);
    if (rc == 0)
        rc = kvfs_commit(fs, b);
    if (rc == 0 && privs_dropped)
        forget_cached_mode(fs, in->ino);
    return rc;
}

/* O_TRUNC arriving with the open (atomic_o_trunc), by caller: as on ext4, an empty file too
 * gets new times (and loses its setuid bit). */
static int truncate_zero(kvfs *fs, uint64_t ino, uid_t caller)
{
    layout_inode in;
    kv_batch *b = NULL;
    pthread_mutex_lock(&fs->wmu);
    int rc = layout_inode_get(fs->lfs, ino, &in);
    if (rc == 0 && !(b = kv_batch_new()))
        rc = -ENOMEM;
    if (rc == 0 && in.size)
        rc = layout_truncate(fs->lfs, b, &in, 0);
    if (rc == 0)
        rc = commit_data_change(fs, b, &in, caller);
    pthread_mutex_unlock(&fs->wmu);
    kv_batch_free(b);
    return rc;
}

static int kvfs_do_open(kvfs *fs, uint64_t ino, uid_t caller, struct fuse_file_info *fi)
{
    layout_inode in;
    const kv_readopts *ro;
    uint64_t real;
    unsigned view;
    int kind = kvfs_node(fs, ino, &real, &ro, &view);
    if (kind < 0)
        return kind;
    if (kind == 2)
        return -EISDIR;
    int rc = layout_inode_get_at(fs->lfs, ro, real, &in);
    if (rc < 0)
        return rc;
    if (S_ISDIR(in.mode))
        return -EISDIR;
    if (kind == 1) { /* a view: read-only, never changing, no table reference */
        if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC))
            return -EROFS;
        fi->fh = (uint64_t)(unsigned)fi->flags;
        fi->keep_cache = 1;
        return 0;
    }
    /* O_RDONLY|O_TRUNC truncates too, as on ext4 (the kernel has checked write permission) */
    if ((fi->flags & O_TRUNC) && S_ISREG(in.mode) && (rc = truncate_zero(fs, ino, caller)) < 0)
        return rc;
    set_open_flags(fi);
    return kvfs_itab_ref(fs, ino, 0, 1);
}

void kvfs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    kvfs *fs = KVFS_FS(req);
    int rc = kvfs_do_open(fs, ino, fuse_req_ctx(req)->uid, fi);
    if (rc < 0)
        fuse_reply_err(req, -kvfs_fail("open", rc));
    else if (fuse_reply_open(req, fi) == -ENOENT && !KVFS_IS_SNAP(ino)) /* interrupted */
        kvfs_unref_purge(fs, ino, 0, 1);
}

void kvfs_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                 struct fuse_file_info *fi)
{
    kvfs *fs = KVFS_FS(req);
    struct fuse_entry_param e;
    int existed = 0;
    int rc = kvfs_do_mknod(req, parent, name, S_IFREG | (mode & 07777), 0, NULL, 1,
                           (fi->flags & O_EXCL) != 0, &existed, &e);
    if (rc == 0 && existed && (fi->flags & O_TRUNC))
        rc = truncate_zero(fs, e.ino, fuse_req_ctx(req)->uid);
    if (rc < 0) {
        if (existed)
            kvfs_unref_purge(fs, e.ino, 1, 1);
        fuse_reply_err(req, -kvfs_fail("create", rc));
        return;
    }
    set_open_flags(fi);
    if (fuse_reply_create(req, &e, fi) == -ENOENT)
        kvfs_unref_purge(fs, e.ino, 1, 1);
}

void kvfs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
    kvfs *fs = KVFS_FS(req);
    layout_inode in;
    size_t got = 0;
    char *buf = NULL;
    const kv_readopts *ro;
    uint64_t real;
    unsigned view;
    kv_snapshot *snap = NULL;
    kv_readopts live;
    (void)fi;
    int rc = kvfs_node(fs, ino, &real, &ro, &view);
    rc = rc < 0 ? rc : rc == 2 ? -EISDIR : 0;
    if (rc == 0 && !ro) { /* the size and the chunks as of one moment, never a mix */
        rc = kv_snapshot_acquire(fs->db, 0, &snap);
        memset(&live, 0, sizeof live);
        live.snapshot = snap;
        ro = &live;
    }
    if (rc == 0)
        rc = off < 0 ? -EINVAL : layout_inode_get_at(fs->lfs, ro, real, &in);
    if (rc == 0 && !(buf = malloc(size ? size : 1)))
        rc = -ENOMEM;
    if (rc == 0)
        rc = layout_read_at(fs->lfs, ro, &in, buf, size, (uint64_t)off, &got);
    if (snap)
        kv_snapshot_release(fs->db, snap);
    if (rc < 0)
        fuse_reply_err(req, -kvfs_fail("read", rc));
    else
        fuse_reply_buf(req, buf, got);
    free(buf);
}

static int kvfs_do_write(kvfs *fs, uint64_t ino, const char *buf, size_t size, off_t off, int flags,
                         uid_t caller)
{
    layout_inode in;
    kv_batch *b = NULL;
    if (KVFS_IS_SNAP(ino))
        return -EROFS;
    if (off < 0)
        return -EINVAL;
    int rc = kvfs_room_to_grow(fs, size);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&fs->wmu);
    rc = layout_inode_get(fs->lfs, ino, &in);
    if (rc == 0 && !S_ISREG(in.mode))
        rc = -EINVAL;
    if (rc == 0 && !(b = kv_batch_new()))
        rc = -ENOMEM;
    if (rc == 0) {
        uint64_t pos = (flags & O_APPEND) ? in.size : (uint64_t)off;
        rc = layout_write(fs->lfs, b, &in, buf, size, pos);
    }
    if (rc == 0)
        rc = commit_data_change(fs, b, &in, caller);
    pthread_mutex_unlock(&fs->wmu);
    kv_batch_free(b);
    return rc;
}

void kvfs_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                struct fuse_file_info *fi)
{
    int rc = kvfs_do_write(KVFS_FS(req), ino, buf, size, off, (int)fi->fh, fuse_req_ctx(req)->uid);
    if (rc < 0)
        fuse_reply_err(req, -kvfs_fail("write", rc));
    else
        fuse_reply_write(req, size);
}

void kvfs_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)fi;
    if (!KVFS_IS_SNAP(ino))
        kvfs_unref_purge(KVFS_FS(req), ino, 0, 1);
    fuse_reply_err(req, 0);
}

void kvfs_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
    (void)ino;
    (void)datasync;
    (void)fi;
    int rc = kv_sync(KVFS_FS(req)->db);
    fuse_reply_err(req, -kvfs_fail("fsync", rc));
}

static int kvfs_do_fallocate(kvfs *fs, uint64_t ino, int mode, off_t off, off_t len)
{
    layout_inode in;
    kv_batch *b = NULL;
    const int known = FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE;
    if (KVFS_IS_SNAP(ino))
        return -EROFS;
    if (off < 0 || len <= 0)
        return -EINVAL;
    if ((mode & ~known) || ((mode & FALLOC_FL_PUNCH_HOLE) && !(mode & FALLOC_FL_KEEP_SIZE)) ||
        ((mode & FALLOC_FL_PUNCH_HOLE) && (mode & FALLOC_FL_ZERO_RANGE)))
        return -EOPNOTSUPP;
    if ((uint64_t)off + (uint64_t)len < (uint64_t)off || off + len < off)
        return -EFBIG;
    pthread_mutex_lock(&fs->wmu);
    int rc = layout_inode_get(fs->lfs, ino, &in);
    if (rc == 0 && !S_ISREG(in.mode))
        rc = S_ISDIR(in.mode) ? -EISDIR : -ENODEV;
    if (rc == 0 && !(b = kv_batch_new()))
        rc = -ENOMEM;
    if (rc == 0 && (mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)))
        rc = layout_punch(fs->lfs, b, &in, (uint64_t)off, (uint64_t)len);
    if (rc == 0) {
        uint64_t end = (uint64_t)off + (uint64_t)len;
        if (!(mode & FALLOC_FL_KEEP_SIZE) && end > in.size)
            in.size = end;                      /* space is not reserved: the new range is a hole */
        rc = commit_data_change(fs, b, &in, 0); /* the kernel has dropped setuid (SETATTR) */
    }
    pthread_mutex_unlock(&fs->wmu);
    kv_batch_free(b);
    return rc;
}

void kvfs_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
                    struct fuse_file_info *fi)
{
    (void)fi;
    int rc = kvfs_do_fallocate(KVFS_FS(req), ino, mode, off, len);
    fuse_reply_err(req, -kvfs_fail("fallocate", rc));
}
