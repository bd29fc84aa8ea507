/*
 * ops_meta.c -- FUSE handlers for the namespace and metadata: lookup, forget, getattr,
 * setattr, mknod/mkdir/symlink, unlink/rmdir, rename, link, readlink, readdir(plus),
 * statfs and user.* extended attributes.
 *
 * Each kvfs_do_x() returns 0 or a negative errno and does one kv_write batch; kvfs_x() only
 * replies. Every change holds fs->wmu (kvfs.h). Ownership and modes follow ext4: new inodes
 * belong to the caller's uid/gid; a setgid directory passes its group (and, to directories,
 * its setgid bit). With default_permissions the kernel checks access against mode bits.
 *
 * Nodes under .snapshots (KVFS_IS_SNAP, ops_snap.c) are served read-only from their view's
 * read options: every modifying handler answers EROFS for them, except mkdir/rmdir directly
 * in .snapshots (named snapshots). A dirent naming an expired inode is absent (ops_kvx.c).
 */
#include "kvfs.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#define KVFS_FS(req) ((kvfs *)fuse_req_userdata(req))
#define KVFS_MAX_DEPTH 100000 /* bound on parent walks (cycle guard) */

/* The root's ".snapshots" name belongs to the virtual directory. */
static int reserved_name(uint64_t parent, const char *name)
{
    return parent == LAYOUT_ROOT_INO && strcmp(name, KVFS_SNAPDIR_NAME) == 0;
}

static int name_check(const char *name, size_t *nlen)
{
    *nlen = strlen(name);
    return *nlen > LAYOUT_NAME_MAX ? -ENAMETOOLONG : 0;
}

/* A name about to be created in parent: read-only under .snapshots, ".snapshots" itself is
 * taken in the root, and at most LAYOUT_NAME_MAX bytes. OUT: *nlen. */
static int new_name_check(uint64_t parent, const char *name, size_t *nlen)
{
    if (KVFS_IS_SNAP(parent))
        return -EROFS;
    if (reserved_name(parent, name))
        return -EEXIST;
    return name_check(name, nlen);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    layout_now(&ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Reads parent, which must be a live directory. */
static int get_dir(kvfs *fs, uint64_t ino, layout_inode *in)
{
    int rc = layout_inode_get(fs->lfs, ino, in);
    if (rc < 0)
        return rc;
    if (!S_ISDIR(in->mode))
        return -ENOTDIR;
    return in->nlink == 0 ? -ENOENT : 0;
}

/* ------------------------------------------------------------------ lookup/forget ---- */

static int kvfs_do_lookup(kvfs *fs, uint64_t parent, const char *name, struct fuse_entry_param *e)
{
    size_t nlen;
    uint64_t ino;
    layout_inode in;
    if (KVFS_IS_SNAP(parent))
        return kvfs_snap_lookup(fs, parent, name, e);
    if (reserved_name(parent, name))
        return kvfs_snapdir_entry(fs, e);
    int rc = name_check(name, &nlen);
    if (rc == 0)
        rc = layout_dirent_get(fs->lfs, parent, name, nlen, &ino, NULL);
    if (rc == 0)
        rc = layout_inode_get(fs->lfs, ino, &in);
    if (rc == 0)
        rc = kvfs_itab_ref(fs, ino, 1, 0);
    if (rc == 0)
        kvfs_entry_of(&in, e);
    return rc;
}

static void kvfs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct fuse_entry_param e;
    int rc = kvfs_do_lookup(KVFS_FS(req), parent, name, &e);
    if (rc == -ENOENT) { /* negative entry: cached for the timeout like a positive one */
        memset(&e, 0, sizeof(e));
        e.entry_timeout = KVFS_TIMEOUT;
        fuse_reply_entry(req, &e);
    } else if (rc < 0) {
        fuse_reply_err(req, -kvfs_fail("lookup", rc));
    } else {
        fuse_reply_entry(req, &e);
    }
}

static void forget_one(kvfs *fs, uint64_t ino, uint64_t nlookup)
{
    if (KVFS_IS_SNAP(ino))
        kvfs_snap_forget(fs, ino, nlookup);
    else
        kvfs_unref_purge(fs, ino, nlookup, 0);
}

static void kvfs_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
    forget_one(KVFS_FS(req), ino, nlookup);
    fuse_reply_none(req);
}

static void kvfs_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
    for (size_t i = 0; i < count; i++)
        forget_one(KVFS_FS(req), forgets[i].ino, forgets[i].nlookup);
    fuse_reply_none(req);
}

/* ------------------------------------------------------------------ attributes ---- */

static void kvfs_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    kvfs *fs = KVFS_FS(req);
    layout_inode in;
    struct fuse_entry_param e;
    const kv_readopts *ro;
    uint64_t real;
    unsigned view;
    (void)fi;
    int kind = kvfs_node(fs, ino, &real, &ro, &view), rc = kind < 0 ? kind : 0;
    if (kind == 2) {
        if ((rc = kvfs_snapdir_entry(fs, &e)) == 0)
            fuse_reply_attr(req, &e.attr, KVFS_TIMEOUT);
        else
            fuse_reply_err(req, -kvfs_fail("getattr", rc));
        return;
    }
    if (rc == 0)
        rc = layout_inode_get_at(fs->lfs, ro, real, &in);
    if (rc < 0) {
        fuse_reply_err(req, -kvfs_fail("getattr", rc));
        return;
    }
    kvfs_stat_of(&in, &e.attr);
    e.attr.st_ino = (ino_t)ino;
    fuse_reply_attr(req, &e.attr, kind ? 3600.0 : KVFS_TIMEOUT);
}

static void set_time(struct timespec *dst, const struct timespec *src, int now_flag,
                     const struct timespec *now)
{
    *dst = now_flag ? *now : *src;
}

static int kvfs_do_setattr(kvfs *fs, uint64_t ino, const struct stat *attr, int to_set,
                           layout_inode *in)
{
    struct timespec now;
    kv_batch *b = NULL;
    int rc = layout_inode_get(fs->lfs, ino, in);
    if (rc < 0)
        return rc;
    layout_now(&now);
    if (!(b = kv_batch_new()))
        return -ENOMEM;
    if (to_set & FUSE_SET_ATTR_MODE)
        in->mode = (in->mode & S_IFMT) | (attr->st_mode & 07777);
    if (to_set & FUSE_SET_ATTR_UID)
        in->uid = attr->st_uid;
    if (to_set & FUSE_SET_ATTR_GID)
        in->gid = attr->st_gid;
    if (to_set & FUSE_SET_ATTR_SIZE) {
        if (S_ISDIR(in->mode))
            rc = -EISDIR;
        else if (!S_ISREG(in->mode))
            rc = -EINVAL;
        else if ((rc = layout_truncate(fs->lfs, b, in, (uint64_t)attr->st_size)) == 0)
            in->mtime = now;
    }
    if (to_set & FUSE_SET_ATTR_ATIME)
        set_time(&in->atime, &attr->st_atim, to_set & FUSE_SET_ATTR_ATIME_NOW, &now);
    if (to_set & FUSE_SET_ATTR_MTIME)
        set_time(&in->mtime, &attr->st_mtim, to_set & FUSE_SET_ATTR_MTIME_NOW, &now);
    in->ctime = (to_set & FUSE_SET_ATTR_CTIME) ? attr->st_ctim : now;
    if (rc == 0)
        rc = layout_inode_put(b, in);
    if (rc == 0)
        rc = kvfs_commit(fs, b);
    kv_batch_free(b);
    return rc;
}

static void kvfs_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                         struct fuse_file_info *fi)
{
    kvfs *fs = KVFS_FS(req);
    layout_inode in;
    struct stat st;
    (void)fi;
    if (KVFS_IS_SNAP(ino)) {
        fuse_reply_err(req, EROFS);
        return;
    }
    pthread_mutex_lock(&fs->wmu);
    int rc = kvfs_do_setattr(fs, ino, attr, to_set, &in);
    pthread_mutex_unlock(&fs->wmu);
    if (rc < 0) {
        fuse_reply_err(req, -kvfs_fail("setattr", rc));
        return;
    }
    kvfs_stat_of(&in, &st);
    fuse_reply_attr(req, &st, KVFS_TIMEOUT);
}

/* ------------------------------------------------------------------- creation ---- */

/* Is gid one of the caller's groups? */
static int in_group(fuse_req_t req, gid_t gid)
{
    gid_t groups[256];
    const struct fuse_ctx *ctx = fuse_req_ctx(req);
    if (ctx->gid == gid)
        return 1;
    int n = fuse_req_getgroups(req, 256, groups);
    for (int i = 0; i < n && i < 256; i++)
        if (groups[i] == gid)
            return 1;
    return 0;
}

/* Fills the new inode's owner and mode per the ext4 rules (see the file comment). */
static void new_owner(fuse_req_t req, const layout_inode *dir, layout_inode *in)
{
    const struct fuse_ctx *ctx = fuse_req_ctx(req);
    in->uid = ctx->uid;
    in->gid = ctx->gid;
    if (!(dir->mode & S_ISGID))
        return;
    in->gid = dir->gid;
    if (S_ISDIR(in->mode))
        in->mode |= S_ISGID;
    else if ((in->mode & (S_ISGID | S_IXGRP)) == (S_ISGID | S_IXGRP) && ctx->uid != 0 &&
             !in_group(req, dir->gid))
        in->mode &= ~(uint32_t)S_ISGID;
}

/* Builds the batch creating in (named name in dir). */
static int mknod_batch(kvfs *fs, kv_batch *b, layout_inode *dir, const char *name, size_t nlen,
                       layout_inode *in, const char *link)
{
    uint8_t key[LAYOUT_KEY_MAX];
    int rc = 0;
    if (link) {
        size_t tl = strlen(link);
        in->size = tl;
        /* no TTL of its own (I4): a later change of the inode's expiry covers it */
        rc = kv_batch_put(b, key, layout_key_symlink(key, in->ino), link, tl);
    }
    dir->mtime = dir->ctime = in->ctime;
    if (S_ISDIR(in->mode))
        dir->nlink++;
    if (rc == 0)
        rc = layout_dirent_put(b, dir->ino, name, nlen, in->ino, in->mode & S_IFMT,
                               in->expire_at_ms);
    if (rc == 0)
        rc = layout_inode_put(b, dir);
    if (rc == 0)
        rc = layout_inode_put(b, in);
    if (rc == 0)
        rc = kvfs_commit(fs, b);
    return rc;
}

/* An existing entry met by create without O_EXCL: open it if it is a regular file. */
static int open_existing(kvfs *fs, uint64_t ino, int nopen, struct fuse_entry_param *e)
{
    layout_inode in;
    int rc = layout_inode_get(fs->lfs, ino, &in);
    if (rc < 0)
        return rc;
    if (S_ISDIR(in.mode))
        return -EISDIR;
    if (!S_ISREG(in.mode))
        return -EEXIST;
    if ((rc = kvfs_itab_ref(fs, ino, 1, (uint64_t)nopen)) < 0)
        return rc;
    kvfs_entry_of(&in, e);
    return 0;
}

int kvfs_do_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev,
                  const char *link, int nopen, int excl, int *existed, struct fuse_entry_param *e)
{
    kvfs *fs = KVFS_FS(req);
    layout_inode dir, in;
    uint64_t ino;
    size_t nlen;
    kv_batch *b = NULL;
    *existed = 0;
    int rc = new_name_check(parent, name, &nlen);
    if (rc == 0)
        rc = kvfs_room_to_grow(fs, link ? strlen(link) : 0);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&fs->wmu);
    rc = get_dir(fs, parent, &dir);
    if (rc == 0) {
        rc = kvfs_dirent_live(fs, parent, name, nlen, &ino, NULL);
        if (rc == 0) {
            rc = excl ? -EEXIST : open_existing(fs, ino, nopen, e);
            *existed = rc == 0;
            goto out;
        }
        rc = rc == -ENOENT ? 0 : rc;
    }
    if (rc == 0 && !(b = kv_batch_new()))
        rc = -ENOMEM;
    if (rc == 0)
        rc = layout_alloc_ino(fs->lfs, b, &ino);
    if (rc < 0)
        goto out;
    layout_inode_init(&in, ino, (uint32_t)mode, 0, 0);
    new_owner(req, &dir, &in);
    in.rdev = (uint64_t)rdev;
    in.parent = parent;
    if (dir.default_ttl_s && !S_ISDIR(mode))
        rc = layout_expiry_set(b, &in, now_ms() + dir.default_ttl_s * 1000u);
    if (rc == 0)
        rc = mknod_batch(fs, b, &dir, name, nlen, &in, link);
    if (rc == 0 && in.expire_at_ms)
        kvfs_reaper_kick(fs, in.expire_at_ms);
    if (rc == 0)
        rc = kvfs_itab_ref(fs, ino, 1, (uint64_t)nopen);
    if (rc == 0)
        kvfs_entry_of(&in, e);
out:
    pthread_mutex_unlock(&fs->wmu);
    kv_batch_free(b);
    return rc;
}

static void reply_new(fuse_req_t req, const char *op, int rc, struct fuse_entry_param *e)
{
    if (rc < 0)
        fuse_reply_err(req, -kvfs_fail(op, rc));
    else
        fuse_reply_entry(req, e);
}

static void kvfs_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
    struct fuse_entry_param e;
    int existed;
    int rc = -EINVAL;
    if (S_ISREG(mode) || S_ISFIFO(mode) || S_ISSOCK(mode) || S_ISCHR(mode) || S_ISBLK(mode))
        rc = kvfs_do_mknod(req, parent, name, mode, rdev, NULL, 0, 1, &existed, &e);
    reply_new(req, "mknod", rc, &e);
}

static void kvfs_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
    struct fuse_entry_param e;
    int existed;
    if (parent == KVFS_SNAPDIR_ID) {
        reply_new(req, "mkdir", kvfs_snap_mkdir(KVFS_FS(req), name, &e), &e);
        return;
    }
    int rc =
        kvfs_do_mknod(req, parent, name, S_IFDIR | (mode & 07777), 0, NULL, 0, 1, &existed, &e);
    reply_new(req, "mkdir", rc, &e);
}

static void kvfs_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
    struct fuse_entry_param e;
    int existed;
    int rc = strlen(link) >= 4096 ? -ENAMETOOLONG : 0;
    if (rc == 0)
        rc = kvfs_do_mknod(req, parent, name, S_IFLNK | 0777, 0, link, 0, 1, &existed, &e);
    reply_new(req, "symlink", rc, &e);
}

static void kvfs_readlink(fuse_req_t req, fuse_ino_t ino)
{
    uint8_t key[LAYOUT_KEY_MAX];
    void *val = NULL;
    size_t vlen = 0;
    const kv_readopts *ro;
    uint64_t real;
    unsigned view;
    int rc = kvfs_node(KVFS_FS(req), ino, &real, &ro, &view);
    if (rc >= 0)
        rc = rc == 2 ? -EINVAL
                     : kv_get(KVFS_FS(req)->db, ro, key, layout_key_symlink(key, real), &val, &vlen,
                              NULL);
    char *s = rc == 0 ? malloc(vlen + 1) : NULL;
    if (rc == 0 && !s)
        rc = -ENOMEM;
    if (rc == -ENOENT)
        rc = -EINVAL; /* not a symlink */
    if (rc < 0) {
        free(val);
        fuse_reply_err(req, -kvfs_fail("readlink", rc));
        return;
    }
    memcpy(s, val, vlen);
    s[vlen] = '\0';
    fuse_reply_readlink(req, s);
    free(s);
    free(val);
}

/* ------------------------------------------------------------------- removal ---- */

/* Drops one link of child (named name in dir); adds the batch entries. */
static int drop_link(kv_batch *b, layout_inode *dir, const char *name, size_t nlen,
                     layout_inode *child, const struct timespec *now)
{
    int rc = layout_dirent_del(b, dir->ino, name, nlen, child->ino);
    dir->mtime = dir->ctime = *now;
    child->ctime = *now;
    if (S_ISDIR(child->mode)) {
        child->nlink = 0;
        dir->nlink--;
    } else if (child->nlink) {
        child->nlink--;
    }
    if (rc == 0 && child->nlink == 0)
        rc = layout_orphan_put(b, child->ino);
    return rc;
}

static int kvfs_do_remove(kvfs *fs, uint64_t parent, const char *name, int want_dir)
{
    layout_inode dir, child;
    uint64_t ino;
    uint32_t type;
    size_t nlen;
    struct timespec now;
    kv_batch *b = NULL;
    if (KVFS_IS_SNAP(parent))
        return want_dir && parent == KVFS_SNAPDIR_ID ? kvfs_snap_rmdir(fs, name) : -EROFS;
    if (reserved_name(parent, name))
        return -EROFS;
    int rc = name_check(name, &nlen);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&fs->wmu);
    rc = get_dir(fs, parent, &dir);
    if (rc == 0)
        rc = kvfs_dirent_live(fs, parent, name, nlen, &ino, &type);
    if (rc == 0 && want_dir && type != S_IFDIR)
        rc = -ENOTDIR;
    if (rc == 0 && !want_dir && type == S_IFDIR)
        rc = -EISDIR;
    if (rc == 0 && want_dir && (rc = layout_dir_is_empty(fs->lfs, ino)) >= 0)
        rc = rc ? 0 : -ENOTEMPTY;
    if (rc == 0)
        rc = layout_inode_get(fs->lfs, ino, &child);
    if (rc == 0 && !(b = kv_batch_new()))
        rc = -ENOMEM;
    if (rc == 0) {
        layout_now(&now);
        rc = drop_link(b, &dir, name, nlen, &child, &now);
    }
    if (rc == 0 && (rc = layout_inode_put(b, &dir)) == 0 && (rc = layout_inode_put(b, &child)) == 0)
        rc = kvfs_commit(fs, b);
    if (rc == 0 && child.nlink == 0)
        kvfs_maybe_purge_locked(fs, ino);
    pthread_mutex_unlock(&fs->wmu);
    kv_batch_free(b);
    return rc;
}

static void kvfs_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    fuse_reply_err(req, -kvfs_fail("unlink", kvfs_do_remove(KVFS_FS(req), parent, name, 0)));
}

static void kvfs_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    fuse_reply_err(req, -kvfs_fail("rmdir", kvfs_do_remove(KVFS_FS(req), parent, name, 1)));
}

/* ------------------------------------------------------------------- rename ---- */

/* 1 if anc is node or one of node's ancestors. */
static int is_ancestor(kvfs *fs, uint64_t anc, uint64_t node)
{
    for (int i = 0; i < KVFS_MAX_DEPTH; i++) {
        layout_inode in;
        if (node == anc)
            return 1;
        if (node == LAYOUT_ROOT_INO)
            return 0;
        int rc = layout_inode_get(fs->lfs, node, &in);
        if (rc < 0)
            return rc;
        node = in.parent;
    }
    return -ELOOP;
}

typedef struct rn_state {
    uint64_t sino, dino;
    uint32_t stype, dtype;
    int dexists;
    layout_inode pdir[2], *op, *np; /* old and new parent (the same record when equal) */
    layout_inode src, dst;
} rn_state;

static int rn_load(kvfs *fs, rn_state *s, uint64_t parent, const char *name, size_t nlen,
                   uint64_t newparent, const char *newname, size_t newlen)
{
    int rc = get_dir(fs, parent, &s->pdir[0]);
    s->op = &s->pdir[0];
    s->np = parent == newparent ? s->op : &s->pdir[1];
    if (rc == 0 && parent != newparent)
        rc = get_dir(fs, newparent, s->np);
    if (rc == 0)
        rc = kvfs_dirent_live(fs, parent, name, nlen, &s->sino, &s->stype);
    if (rc == 0)
        rc = layout_inode_get(fs->lfs, s->sino, &s->src);
    if (rc < 0)
        return rc;
    rc = kvfs_dirent_live(fs, newparent, newname, newlen, &s->dino, &s->dtype);
    s->dexists = rc == 0;
    if (rc == -ENOENT)
        return 0;
    if (rc == 0)
        rc = layout_inode_get(fs->lfs, s->dino, &s->dst);
    return rc;
}

/* Refuses to move a directory under itself. */
static int rn_loops(kvfs *fs, rn_state *s, uint64_t parent, uint64_t newparent, int exchange)
{
    int rc = 0;
    if (S_ISDIR(s->src.mode) && parent != newparent)
        rc = is_ancestor(fs, s->sino, newparent);
    if (rc == 0 && exchange && S_ISDIR(s->dst.mode) && parent != newparent)
        rc = is_ancestor(fs, s->dino, parent);
    return rc > 0 ? -EINVAL : rc;
}

static int rn_check(kvfs *fs, rn_state *s, unsigned flags)
{
    if (s->dexists && (flags & RENAME_NOREPLACE))
        return -EEXIST;
    if (!s->dexists && (flags & RENAME_EXCHANGE))
        return -ENOENT;
    if (!s->dexists || (flags & RENAME_EXCHANGE))
        return 0;
    if (S_ISDIR(s->src.mode) && !S_ISDIR(s->dst.mode))
        return -ENOTDIR;
    if (!S_ISDIR(s->src.mode) && S_ISDIR(s->dst.mode))
        return -EISDIR;
    if (S_ISDIR(s->dst.mode)) {
        int rc = layout_dir_is_empty(fs->lfs, s->dino);
        return rc < 0 ? rc : rc ? 0 : -ENOTEMPTY;
    }
    return 0;
}

/* Moves a directory's ".." accounting from one parent to another. */
static void rn_move_dir(layout_inode *dir, layout_inode *from, layout_inode *to)
{
    if (!S_ISDIR(dir->mode) || from == to)
        return;
    from->nlink--;
    to->nlink++;
    dir->parent = to->ino;
}

static int rn_batch(kv_batch *b, rn_state *s, const char *name, size_t nlen, const char *newname,
                    size_t newlen, unsigned flags)
{
    struct timespec now;
    int rc;
    layout_now(&now);
    if (flags & RENAME_EXCHANGE) {
        uint8_t pk[LAYOUT_KEY_MAX]; /* both names change inode: drop both parent pointers */
        rc = kv_batch_delete(b, pk, layout_key_parent(pk, s->sino, s->op->ino, name, nlen));
        if (rc == 0)
            rc =
                kv_batch_delete(b, pk, layout_key_parent(pk, s->dino, s->np->ino, newname, newlen));
        if (rc == 0)
            rc = layout_dirent_put(b, s->op->ino, name, nlen, s->dino, s->dst.mode & S_IFMT,
                                   s->dst.expire_at_ms);
        rn_move_dir(&s->dst, s->np, s->op);
        s->dst.ctime = now;
    } else {
        rc = layout_dirent_del(b, s->op->ino, name, nlen, s->sino);
        if (rc == 0 && s->dexists) {
            uint8_t pk[LAYOUT_KEY_MAX]; /* the replaced name no longer points to dst */
            rc =
                kv_batch_delete(b, pk, layout_key_parent(pk, s->dino, s->np->ino, newname, newlen));
            s->dst.ctime = now;
            if (S_ISDIR(s->dst.mode)) {
                s->dst.nlink = 0;
                s->np->nlink--;
            } else if (s->dst.nlink) {
                s->dst.nlink--;
            }
            if (s->dst.nlink == 0)
                rc = layout_orphan_put(b, s->dino);
        }
    }
    rn_move_dir(&s->src, s->op, s->np);
    s->src.ctime = now;
    s->op->mtime = s->op->ctime = s->np->mtime = s->np->ctime = now;
    if (rc == 0)
        rc = layout_dirent_put(b, s->np->ino, newname, newlen, s->sino, s->src.mode & S_IFMT,
                               s->src.expire_at_ms);
    if (rc == 0)
        rc = layout_inode_put(b, s->op);
    if (rc == 0 && s->np != s->op)
        rc = layout_inode_put(b, s->np);
    if (rc == 0)
        rc = layout_inode_put(b, &s->src);
    if (rc == 0 && s->dexists)
        rc = layout_inode_put(b, &s->dst);
    return rc;
}

static int kvfs_do_rename(kvfs *fs, uint64_t parent, const char *name, uint64_t newparent,
                          const char *newname, unsigned flags)
{
    rn_state s;
    size_t nlen, newlen;
    kv_batch *b = NULL;
    if ((flags & ~(unsigned)(RENAME_NOREPLACE | RENAME_EXCHANGE)) ||
        (flags & RENAME_NOREPLACE && flags & RENAME_EXCHANGE))
        return -EINVAL;
    if (KVFS_IS_SNAP(parent) || KVFS_IS_SNAP(newparent) || reserved_name(parent, name))
        return -EROFS;
    if (reserved_name(newparent, newname))
        return -EEXIST;
    int rc = name_check(name, &nlen);
    if (rc == 0)
        rc = name_check(newname, &newlen);
    if (rc < 0)
        return rc;
    memset(&s, 0, sizeof(s));
    pthread_mutex_lock(&fs->wmu);
    rc = rn_load(fs, &s, parent, name, nlen, newparent, newname, newlen);
    if (rc == 0 && s.dexists && s.dino == s.sino)
        goto out; /* two links to one inode: POSIX says do nothing */
    if (rc == 0)
        rc = rn_check(fs, &s, flags);
    if (rc == 0)
        rc = rn_loops(fs, &s, parent, newparent, flags & RENAME_EXCHANGE);
    if (rc == 0 && !(b = kv_batch_new()))
        rc = -ENOMEM;
    if (rc == 0)
        rc = rn_batch(b, &s, name, nlen, newname, newlen, flags);
    if (rc == 0)
        rc = kvfs_commit(fs, b);
    if (rc == 0 && s.dexists && !(flags & RENAME_EXCHANGE) && s.dst.nlink == 0)
        kvfs_maybe_purge_locked(fs, s.dino);
out:
    pthread_mutex_unlock(&fs->wmu);
    kv_batch_free(b);
    return rc;
}

static void kvfs_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                        const char *newname, unsigned int flags)
{
    int rc = kvfs_do_rename(KVFS_FS(req), parent, name, newparent, newname, flags);
    fuse_reply_err(req, -kvfs_fail("rename", rc));
}

/* ------------------------------------------------------------------- hard links ---- */

static int kvfs_do_link(kvfs *fs, uint64_t ino, uint64_t newparent, const char *newname,
                        struct fuse_entry_param *e)
{
    layout_inode dir, in;
    size_t nlen;
    struct timespec now;
    kv_batch *b = NULL;
    if (KVFS_IS_SNAP(ino))
        return -EROFS;
    int rc = new_name_check(newparent, newname, &nlen);
    if (rc == 0)
        rc = kvfs_room_to_grow(fs, 0);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&fs->wmu);
    rc = get_dir(fs, newparent, &dir);
    if (rc == 0)
        rc = layout_inode_get(fs->lfs, ino, &in);
    if (rc == 0 && S_ISDIR(in.mode))
        rc = -EPERM;
    if (rc == 0 && in.nlink == 0)
        rc = -ENOENT;
    if (rc == 0) {
        rc = kvfs_dirent_live(fs, newparent, newname, nlen, NULL, NULL);
        rc = rc == 0 ? -EEXIST : rc == -ENOENT ? 0 : rc;
    }
    if (rc == 0 && !(b = kv_batch_new()))
        rc = -ENOMEM;
    if (rc == 0) {
        layout_now(&now);
        in.nlink++;
        in.ctime = now;
        dir.mtime = dir.ctime = now;
        rc = layout_dirent_put(b, newparent, newname, nlen, ino, in.mode & S_IFMT, in.expire_at_ms);
    }
    if (rc == 0 && (rc = layout_inode_put(b, &in)) == 0 && (rc = layout_inode_put(b, &dir)) == 0)
        rc = kvfs_commit(fs, b);
    if (rc == 0)
        rc = kvfs_itab_ref(fs, ino, 1, 0);
    if (rc == 0)
        kvfs_entry_of(&in, e);
    pthread_mutex_unlock(&fs->wmu);
    kv_batch_free(b);
    return rc;
}

static void kvfs_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
    struct fuse_entry_param e;
    int rc = kvfs_do_link(KVFS_FS(req), ino, newparent, newname, &e);
    reply_new(req, "link", rc, &e);
}

/* ------------------------------------------------------------------- directories ---- */

typedef struct kvfs_dent {
    uint64_t ino;  /* node id */
    uint64_t real; /* inode number inside the view (= ino for live entries), 0 = virtual */
    uint32_t type;
    char *name;
} kvfs_dent;

/* An open directory: its listing, taken at the first readdir (offset 0) so that offsets
 * stay stable while entries are removed (rm -r reads, unlinks, reads on). */
typedef struct kvfs_dirh {
    uint64_t ino;          /* node id */
    uint64_t real;         /* inode number (inside the view) */
    const kv_readopts *ro; /* NULL: live */
    unsigned view;         /* 0: live */
    int kind;              /* kvfs_node: 0 live, 1 view, 2 .snapshots */
    kvfs_dent *ents;
    size_t n, cap;
    int loaded;
} kvfs_dirh;

static void dirh_clear(kvfs_dirh *d)
{
    for (size_t i = 0; i < d->n; i++)
        free(d->ents[i].name);
    d->n = 0;
    d->loaded = 0;
}

static int dirh_add_real(kvfs_dirh *d, uint64_t ino, uint64_t real, uint32_t type, const char *name,
                         size_t nlen);

static int dirh_add(kvfs_dirh *d, uint64_t ino, uint32_t type, const char *name, size_t nlen)
{
    return dirh_add_real(d, ino, 0, type, name, nlen);
}

static int dirh_add_real(kvfs_dirh *d, uint64_t ino, uint64_t real, uint32_t type, const char *name,
                         size_t nlen)
{
    kvfs_dent *ne = kv_grow(d->ents, &d->cap, d->n + 1, sizeof(*ne), 64);
    if (!ne)
        return -ENOMEM;
    d->ents = ne;
    char *s = malloc(nlen + 1);
    if (!s)
        return -ENOMEM;
    memcpy(s, name, nlen);
    s[nlen] = '\0';
    d->ents[d->n++] = (kvfs_dent){ino, real, type, s};
    return 0;
}

/* The .snapshots listing: the named snapshots. */
static int dirh_load_snapdir(kvfs *fs, kvfs_dirh *d)
{
    kv_snapinfo *list = NULL;
    size_t n = 0;
    int rc = dirh_add(d, KVFS_SNAPDIR_ID, S_IFDIR, ".", 1);
    if (rc == 0)
        rc = dirh_add(d, LAYOUT_ROOT_INO, S_IFDIR, "..", 2);
    if (rc == 0 && (rc = kv_named_snapshot_list(fs->db, &list, &n)) < 0)
        return rc;
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = dirh_add(d, KVFS_SNAPDIR_ID + 1 + i, S_IFDIR, list[i].name, strlen(list[i].name));
    free(list);
    return rc;
}

static int is_pending(const uint64_t *v, size_t n, uint64_t ino)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (v[mid] == ino)
            return 1;
        if (v[mid] < ino)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

static int dirh_load(kvfs *fs, kvfs_dirh *d)
{
    layout_inode dir;
    uint8_t pfx[LAYOUT_KEY_MAX];
    kv_iter_opts o;
    kv_iter *it = NULL;
    uint64_t *gone = NULL;
    size_t ngone = 0;
    dirh_clear(d);
    if (d->kind == 2)
        return (d->loaded = dirh_load_snapdir(fs, d) == 0) ? 0 : -ENOMEM;
    int rc = layout_inode_get_at(fs->lfs, d->ro, d->real, &dir);
    uint64_t up = rc == 0 && dir.parent ? dir.parent : d->real;
    if (rc == 0)
        rc = dirh_add(d, d->ino, S_IFDIR, ".", 1);
    if (rc == 0)
        rc = dirh_add(d, d->view ? kvfs_node_id(d->view, up) : up, S_IFDIR, "..", 2);
    if (rc == 0 && d->kind == 0 && d->real == LAYOUT_ROOT_INO && fs->snapdir_visible)
        rc = dirh_add(d, KVFS_SNAPDIR_ID, S_IFDIR, KVFS_SNAPDIR_NAME, strlen(KVFS_SNAPDIR_NAME));
    if (rc == 0 && d->kind == 0) /* expired, not yet reaped: hidden at once */
        rc = kvfs_expired_pending(fs, &gone, &ngone);
    if (rc < 0)
        return rc;
    memset(&o, 0, sizeof(o));
    if (d->ro)
        o.ro = *d->ro;
    o.prefix = pfx;
    o.prefix_len = layout_key_dirent(pfx, d->real, "", 0);
    if ((rc = kv_iter_new(fs->db, &o, &it)) < 0) {
        free(gone);
        return rc;
    }
    for (kv_iter_seek_first(it); kv_iter_valid(it) && rc == 0; kv_iter_next(it)) {
        size_t kl, vl;
        const uint8_t *k = kv_iter_key(it, &kl), *v = kv_iter_value(it, &vl);
        if (kl <= 9 || vl < 9)
            continue;
        uint64_t child = 0;
        for (int i = 7; i >= 0; i--)
            child = (child << 8) | v[i];
        if (ngone && is_pending(gone, ngone, child))
            continue;
        if (d->kind == 0 && d->real == LAYOUT_ROOT_INO && kl - 9 == 10 &&
            memcmp(k + 9, KVFS_SNAPDIR_NAME, 10) == 0)
            continue; /* a real entry shadowed by the virtual .snapshots */
        rc = dirh_add_real(d, d->view ? kvfs_node_id(d->view, child) : child, child,
                           (uint32_t)v[8] << 12, (const char *)k + 9, kl - 9);
    }
    if (rc == 0)
        rc = kv_iter_status(it);
    kv_iter_free(it);
    free(gone);
    d->loaded = rc == 0;
    return rc;
}

static void kvfs_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    kvfs_dirh *d = calloc(1, sizeof(*d));
    if (!d) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    d->ino = ino;
    d->kind = kvfs_node(KVFS_FS(req), ino, &d->real, &d->ro, &d->view);
    if (d->kind < 0) {
        free(d);
        fuse_reply_err(req, ENOENT);
        return;
    }
    fi->fh = (uint64_t)(uintptr_t)d;
    fi->cache_readdir = 0;
    if (fuse_reply_open(req, fi) == -ENOENT) { /* interrupted: nobody will release it */
        free(d);
    }
}

/* Adds entry i to buf. Returns its size, or 0 when it does not fit (nothing counted). */
static size_t readdir_one(fuse_req_t req, kvfs *fs, kvfs_dirh *d, kvfs_dent *de, char *buf,
                          size_t room, off_t next, int plus)
{
    if (!plus) {
        struct stat st;
        memset(&st, 0, sizeof(st));
        st.st_ino = de->ino;
        st.st_mode = de->type;
        size_t sz = fuse_add_direntry(req, buf, room, de->name, &st, next);
        return sz > room ? 0 : sz;
    }
    struct fuse_entry_param e;
    layout_inode in;
    int dot = de->real == 0; /* ".", "..", .snapshots and its names: no lookup reference */
    memset(&e, 0, sizeof(e));
    if (dot || layout_inode_get_at(fs->lfs, d->ro, de->real, &in) < 0) {
        e.attr.st_ino = de->ino;
        e.attr.st_mode = de->type;
        dot = 1; /* an entry removed since the listing: no lookup reference either */
    } else {
        kvfs_entry_of(&in, &e);
        e.ino = de->ino;
        e.attr.st_ino = (ino_t)de->ino;
        if (d->view)
            e.entry_timeout = e.attr_timeout = 3600.0;
    }
    size_t sz = fuse_add_direntry_plus(req, buf, room, de->name, &e, next);
    if (sz > room)
        return 0;
    if (!dot && d->view)
        kvfs_view_ref(fs, d->view);
    else if (!dot && kvfs_itab_ref(fs, de->ino, 1, 0) < 0)
        return 0;
    return sz;
}

static void kvfs_readdir_common(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                                struct fuse_file_info *fi, int plus)
{
    kvfs *fs = KVFS_FS(req);
    kvfs_dirh *d = (kvfs_dirh *)(uintptr_t)fi->fh;
    char *buf = malloc(size ? size : 1);
    size_t pos = 0;
    int rc = buf ? 0 : -ENOMEM;
    (void)ino;
    if (rc == 0 && (off == 0 || !d->loaded))
        rc = dirh_load(fs, d);
    for (size_t i = (size_t)off; rc == 0 && i < d->n; i++) {
        size_t sz = readdir_one(req, fs, d, &d->ents[i], buf + pos, size - pos, (off_t)i + 1, plus);
        if (sz == 0)
            break;
        pos += sz;
    }
    if (rc < 0)
        fuse_reply_err(req, -kvfs_fail("readdir", rc));
    else
        fuse_reply_buf(req, buf, pos);
    free(buf);
}

static void kvfs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                         struct fuse_file_info *fi)
{
    kvfs_readdir_common(req, ino, size, off, fi, 0);
}

static void kvfs_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                             struct fuse_file_info *fi)
{
    kvfs_readdir_common(req, ino, size, off, fi, 1);
}

static void kvfs_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    kvfs_dirh *d = (kvfs_dirh *)(uintptr_t)fi->fh;
    (void)ino;
    dirh_clear(d);
    free(d->ents);
    free(d);
    fuse_reply_err(req, 0);
}

static void kvfs_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
    (void)ino;
    (void)datasync;
    (void)fi;
    int rc = kv_sync(KVFS_FS(req)->db);
    fuse_reply_err(req, -kvfs_fail("fsyncdir", rc));
}

/* ------------------------------------------------------------------- statfs ---- */

/* The reserve's size (kvfs.h): 1% of the filesystem, within these bounds. */
#define KVFS_RESERVE_MIN (4ull << 20)
#define KVFS_RESERVE_MAX (1ull << 30)

static uint64_t reserve_bytes(const struct statvfs *st)
{
    uint64_t r = (uint64_t)st->f_blocks * st->f_frsize / 100;
    return r < KVFS_RESERVE_MIN ? KVFS_RESERVE_MIN : r > KVFS_RESERVE_MAX ? KVFS_RESERVE_MAX : r;
}

/* Looks at the disk (a statvfs, about a microsecond) again once an eighth of the reserve has
 * been let through since the last look, so a fast writer cannot run far past it, and at every
 * request while short, so room freed by anyone is seen at once. */
int kvfs_room_to_grow(kvfs *fs, uint64_t bytes)
{
    uint64_t seen = atomic_fetch_add(&fs->room_unchecked, bytes + 1) + bytes + 1;
    if (atomic_load(&fs->room_short) || seen >= atomic_load(&fs->room_check_every)) {
        struct statvfs st;
        if (statvfs(fs->data_dir, &st) == 0) {
            uint64_t reserve = reserve_bytes(&st);
            atomic_store(&fs->room_short, (uint64_t)st.f_bavail * st.f_frsize < reserve + bytes);
            atomic_store(&fs->room_check_every, reserve / 8);
        }
        atomic_store(&fs->room_unchecked, 0);
    }
    if (!atomic_load(&fs->room_short))
        return 0;
    return layout_error(-ENOSPC, "%s: free space is below the reserve kept for deletions",
                        fs->data_dir);
}

static void kvfs_statfs(fuse_req_t req, fuse_ino_t ino)
{
    kvfs *fs = KVFS_FS(req);
    struct statvfs host, st;
    (void)ino;
    if (statvfs(fs->data_dir, &host) < 0) {
        fuse_reply_err(req, errno);
        return;
    }
    memset(&st, 0, sizeof(st));
    st.f_bsize = host.f_bsize;
    st.f_frsize = host.f_frsize;
    st.f_blocks = host.f_blocks;
    st.f_bfree = host.f_bfree;
    /* what writes may use: the reserve is not theirs */
    uint64_t reserve = (reserve_bytes(&host) + host.f_frsize - 1) / host.f_frsize;
    st.f_bavail = host.f_bavail > reserve ? host.f_bavail - reserve : 0;
    /* inodes: those handed out so far (an upper bound) plus room for one per free block */
    uint64_t used = fs->lfs->next_ino > 1 ? fs->lfs->next_ino - 1 : 1;
    st.f_ffree = st.f_favail = host.f_bavail;
    st.f_files = used + st.f_ffree;
    st.f_namemax = LAYOUT_NAME_MAX;
    fuse_reply_statfs(req, &st);
}

/* ------------------------------------------------------------------- xattrs ---- */

/* user.* names are stored; security.* reads answer ENODATA at once; others are unsupported. */
static int xattr_class(const char *name, int for_set)
{
    if (strncmp(name, "user.", 5) == 0)
        return 0;
    if (strncmp(name, "security.", 9) == 0)
        return for_set ? -ENOTSUP : -ENODATA;
    return -ENOTSUP;
}

static int kvfs_do_setxattr(kvfs *fs, uint64_t ino, const char *name, const char *value,
                            size_t size, int flags)
{
    uint8_t key[LAYOUT_KEY_MAX];
    layout_inode in;
    size_t nlen = strlen(name);
    kv_batch *b = NULL;
    if (KVFS_IS_SNAP(ino))
        return -EROFS;
    int rc = xattr_class(name, 1);
    if (rc == 0 && nlen > LAYOUT_NAME_MAX)
        rc = -ERANGE;
    if (rc == 0)
        rc = kvfs_room_to_grow(fs, size);
    if (rc < 0)
        return rc;
    if (kvfs_kvx_is(name))
        return kvfs_kvx_set(fs, ino, name, value, size);
    size_t klen = layout_key_xattr(key, ino, name, nlen);
    pthread_mutex_lock(&fs->wmu);
    rc = layout_inode_get(fs->lfs, ino, &in);
    if (rc == 0 && (flags & (XATTR_CREATE | XATTR_REPLACE))) {
        int g = kv_get(fs->db, NULL, key, klen, NULL, NULL, NULL);
        if (g == 0 && (flags & XATTR_CREATE))
            rc = -EEXIST;
        else if (g == -ENOENT && (flags & XATTR_REPLACE))
            rc = -ENODATA;
        else if (g < 0 && g != -ENOENT)
            rc = g;
    }
    if (rc == 0 && !(b = kv_batch_new()))
        rc = -ENOMEM;
    if (rc == 0) {
        layout_now(&in.ctime);
        in.flags |= LAYOUT_IF_XATTRS;                 /* layout_purge then scans for 'X' keys */
        rc = kv_batch_put(b, key, klen, value, size); /* no TTL of its own (I4) */
    }
    if (rc == 0 && (rc = layout_inode_put(b, &in)) == 0)
        rc = kvfs_commit(fs, b);
    pthread_mutex_unlock(&fs->wmu);
    kv_batch_free(b);
    return rc;
}

static void kvfs_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
                          size_t size, int flags)
{
    int rc = kvfs_do_setxattr(KVFS_FS(req), ino, name, value, size, flags);
    fuse_reply_err(req, -kvfs_fail("setxattr", rc));
}

/* The getxattr/listxattr reply: the length when size is 0 (the caller asks how much room to
 * give), ERANGE when the bytes do not fit in size, else the bytes. */
static void reply_xattr_bytes(fuse_req_t req, const char *what, int rc, const void *buf, size_t len,
                              size_t size)
{
    if (rc == 0 && size && len > size)
        rc = -ERANGE;
    if (rc < 0)
        fuse_reply_err(req, -kvfs_fail(what, rc));
    else if (size == 0)
        fuse_reply_xattr(req, len);
    else
        fuse_reply_buf(req, buf, len);
}

static void kvfs_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
    uint8_t key[LAYOUT_KEY_MAX];
    void *val = NULL;
    size_t vlen = 0;
    const kv_readopts *ro;
    uint64_t real;
    unsigned view;
    kvfs *fs = KVFS_FS(req);
    int kind = kvfs_node(fs, ino, &real, &ro, &view);
    int rc = kind < 0 ? kind : kind == 2 ? -ENODATA : xattr_class(name, 0);
    if (rc == 0 && strlen(name) > LAYOUT_NAME_MAX)
        rc = -ENODATA;
    if (rc == 0 && kvfs_kvx_is(name))
        rc = kvfs_kvx_get(fs, real, ro, name, (char **)&val, &vlen);
    else if (rc == 0)
        rc = kv_get(fs->db, ro, key, layout_key_xattr(key, real, name, strlen(name)), &val, &vlen,
                    NULL);
    if (rc == -ENOENT)
        rc = -ENODATA;
    reply_xattr_bytes(req, "getxattr", rc, val, vlen, size);
    free(val);
}

static int list_xattrs(kvfs *fs, uint64_t id, char **out, size_t *len)
{
    uint8_t pfx[LAYOUT_KEY_MAX];
    kv_iter_opts o;
    kv_iter *it = NULL;
    char *buf = NULL;
    size_t n = 0, cap = 0;
    const kv_readopts *ro;
    uint64_t ino;
    unsigned view;
    int kind = kvfs_node(fs, id, &ino, &ro, &view);
    *out = NULL;
    *len = 0;
    if (kind < 0 || kind == 2)
        return kind < 0 ? kind : 0;
    memset(&o, 0, sizeof(o));
    if (ro)
        o.ro = *ro;
    o.prefix = pfx;
    o.prefix_len = layout_key_xattr(pfx, ino, "", 0);
    int rc = kv_iter_new(fs->db, &o, &it);
    if (rc < 0)
        return rc;
    for (kv_iter_seek_first(it); kv_iter_valid(it); kv_iter_next(it)) {
        size_t kl;
        const uint8_t *k = kv_iter_key(it, &kl);
        char *nb = kv_grow(buf, &cap, n + kl - 9 + 1, 1, 256);
        if (!nb) {
            rc = -ENOMEM;
            break;
        }
        buf = nb;
        memcpy(buf + n, k + 9, kl - 9);
        n += kl - 9;
        buf[n++] = '\0';
    }
    if (rc == 0)
        rc = kv_iter_status(it);
    kv_iter_free(it);
    *out = buf;
    *len = n;
    return rc;
}

static void kvfs_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
    char *buf = NULL;
    size_t len = 0;
    int rc = list_xattrs(KVFS_FS(req), ino, &buf, &len);
    reply_xattr_bytes(req, "listxattr", rc, buf, len, size);
    free(buf);
}

static int kvfs_do_removexattr(kvfs *fs, uint64_t ino, const char *name)
{
    uint8_t key[LAYOUT_KEY_MAX];
    layout_inode in;
    kv_batch *b = NULL;
    if (KVFS_IS_SNAP(ino))
        return -EROFS;
    int rc = xattr_class(name, 1);
    if (rc == -ENOTSUP && strncmp(name, "security.", 9) == 0)
        rc = -ENODATA;
    if (rc == 0 && strlen(name) > LAYOUT_NAME_MAX)
        rc = -ENODATA;
    if (rc < 0)
        return rc;
    if (kvfs_kvx_is(name))
        return kvfs_kvx_remove(fs, ino, name);
    size_t klen = layout_key_xattr(key, ino, name, strlen(name));
    pthread_mutex_lock(&fs->wmu);
    rc = layout_inode_get(fs->lfs, ino, &in);
    if (rc == 0) {
        rc = kv_get(fs->db, NULL, key, klen, NULL, NULL, NULL);
        rc = rc == -ENOENT ? -ENODATA : rc;
    }
    if (rc == 0 && !(b = kv_batch_new()))
        rc = -ENOMEM;
    if (rc == 0) {
        layout_now(&in.ctime);
        rc = kv_batch_delete(b, key, klen);
    }
    if (rc == 0 && (rc = layout_inode_put(b, &in)) == 0)
        rc = kvfs_commit(fs, b);
    pthread_mutex_unlock(&fs->wmu);
    kv_batch_free(b);
    return rc;
}

static void kvfs_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
    fuse_reply_err(req, -kvfs_fail("removexattr", kvfs_do_removexattr(KVFS_FS(req), ino, name)));
}

/* ------------------------------------------------------------------- lifecycle ---- */

static void kvfs_init(void *userdata, struct fuse_conn_info *conn)
{
    kvfs_set_readahead(userdata, conn);
    /* Writeback caching stays off: every write reaches the store before write() returns,
     * which keeps close-to-open and the kvfsctl view exact. */
    conn->want &= ~(unsigned)FUSE_CAP_WRITEBACK_CACHE;
    if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
        conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
}

const struct fuse_lowlevel_ops kvfs_ops = {
    .init = kvfs_init,
    .lookup = kvfs_lookup,
    .forget = kvfs_forget,
    .forget_multi = kvfs_forget_multi,
    .getattr = kvfs_getattr,
    .setattr = kvfs_setattr,
    .readlink = kvfs_readlink,
    .mknod = kvfs_mknod,
    .mkdir = kvfs_mkdir,
    .unlink = kvfs_unlink,
    .rmdir = kvfs_rmdir,
    .symlink = kvfs_symlink,
    .rename = kvfs_rename,
    .link = kvfs_link,
    .open = kvfs_open,
    .read = kvfs_read,
    .write = kvfs_write,
    .release = kvfs_release,
    .fsync = kvfs_fsync,
    .opendir = kvfs_opendir,
    .readdir = kvfs_readdir,
    .readdirplus = kvfs_readdirplus,
    .releasedir = kvfs_releasedir,
    .fsyncdir = kvfs_fsyncdir,
    .statfs = kvfs_statfs,
    .setxattr = kvfs_setxattr,
    .getxattr = kvfs_getxattr,
    .listxattr = kvfs_listxattr,
    .removexattr = kvfs_removexattr,
    .create = kvfs_create,
    .fallocate = kvfs_fallocate,
};
