/*
 * ops_snap.c -- the .snapshots directory and its time-travel views.
 *
 * `.snapshots` (node id KVFS_SNAPDIR_ID) is found by name in the root and listed there only
 * with -o snapdir=visible. Its entries are the named snapshots of the store (mkdir creates
 * one, rmdir deletes one; both constant time: the engine just records a sequence). Names of
 * the form @SEQ or @ISO-8601 (UTC "Z" or an offset) open a view of that moment without
 * creating anything; they are not listed.
 *
 * A view is one slot of fs->views: an engine snapshot pinned with kv_snapshot_acquire, so the
 * whole tree reads as of one sequence (stable while read, whatever compaction does), with TTLs
 * judged at the view's time. Node ids inside view v are KVFS_SNAP_BIT | v << 40 | ino (kvfs.h),
 * so they never collide with live inode numbers. The slot counts the kernel's references to
 * all its nodes; when the last is forgotten (or at unmount) the snapshot is released.
 *
 * Invariants: a used slot always holds a valid snapshot; a named slot whose snapshot was
 * rmdir'ed keeps serving the kernel's existing references but is no longer found by name.
 */
#include "kvfs.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

uint64_t kvfs_node_id(unsigned view, uint64_t ino)
{
    return KVFS_SNAP_BIT | ((uint64_t)view << KVFS_VIEW_SHIFT) | (ino & KVFS_INO_MASK);
}

int kvfs_node(kvfs *fs, uint64_t id, uint64_t *ino, const kv_readopts **ro, unsigned *view)
{
    *ro = NULL;
    *view = 0;
    if (!KVFS_IS_SNAP(id)) {
        *ino = id;
        return 0;
    }
    if (id == KVFS_SNAPDIR_ID) {
        *ino = 0;
        return 2;
    }
    unsigned v = (unsigned)((id & ~KVFS_SNAP_BIT) >> KVFS_VIEW_SHIFT);
    if (v == 0 || v >= KVFS_VIEW_MAX)
        return -ENOENT;
    pthread_mutex_lock(&fs->view_mu);
    int used = fs->views[v].used;
    pthread_mutex_unlock(&fs->view_mu);
    if (!used)
        return -ENOENT;
    *ino = id & KVFS_INO_MASK;
    *ro = &fs->views[v].ro; /* stable while the kernel holds a node of the view */
    *view = v;
    return 1;
}

/* ------------------------------------------------------------------ resolving names ---- */

/* Parses "@123" or "@2026-11-21T10:00:00Z". OUT: *seq (and *time_ms, 0 if by seq). */
static int parse_at(kvfs *fs, const char *name, uint64_t *seq, uint64_t *time_ms)
{
    const char *s = name + 1;
    *time_ms = 0;
    if (*s >= '0' && *s <= '9' && strspn(s, "0123456789") == strlen(s)) {
        errno = 0;
        char *end;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno || *end || v == 0)
            return -ENOENT;
        if (v > kv_last_seq(fs->db)) {
            kvfs_log(".snapshots/%s: sequence %llu is in the future (latest is %llu)", name, v,
                     (unsigned long long)kv_last_seq(fs->db));
            return -ENOENT;
        }
        if (v < kv_oldest_readable_seq(fs->db)) {
            kvfs_log(".snapshots/%s: sequence %llu is older than the retained history "
                     "(oldest readable %llu; -o history=%llus)",
                     name, v, (unsigned long long)kv_oldest_readable_seq(fs->db),
                     (unsigned long long)(fs->history_ms / 1000));
            return -ENOENT;
        }
        *seq = v;
        return 0;
    }
    if (layout_parse_iso_time(s, time_ms) < 0)
        return -ENOENT;
    struct timespec now;
    layout_now(&now);
    if (*time_ms / 1000 > (uint64_t)now.tv_sec) {
        kvfs_log(".snapshots/%s: that time is in the future", name);
        return -ENOENT;
    }
    int rc = kv_seq_at_time(fs->db, *time_ms + 999, seq);
    if (rc == -ESTALE) {
        kvfs_log(".snapshots/%s: older than the retained history (-o history=%llus): %s", name,
                 (unsigned long long)(fs->history_ms / 1000), kv_last_error());
        return -ENOENT;
    }
    if (rc < 0) {
        kvfs_log(".snapshots/%s: %s", name, kv_last_error());
        return -ENOENT;
    }
    *time_ms += 999; /* the store as of second T includes every commit made during T */
    return 0;
}

/* Finds or opens the view named name. OUT: *view. */
static int view_open(kvfs *fs, const char *name, unsigned *view)
{
    uint64_t seq = 0, time_ms = 0;
    int named = name[0] != '@', rc;
    if (strlen(name) > KV_SNAPSHOT_NAME_MAX)
        return -ENAMETOOLONG;
    pthread_mutex_lock(&fs->view_mu);
    for (unsigned v = 1; v < KVFS_VIEW_MAX; v++)
        if (fs->views[v].used && strcmp(fs->views[v].name, name) == 0) {
            fs->views[v].nlookup++;
            *view = v;
            pthread_mutex_unlock(&fs->view_mu);
            return 0;
        }
    pthread_mutex_unlock(&fs->view_mu);
    if (named) {
        kv_snapinfo info;
        rc = kv_named_snapshot_get(fs->db, name, &info);
        if (rc < 0)
            return rc == -ENOENT || rc == -EINVAL ? -ENOENT : rc;
        seq = info.seq;
        time_ms = info.time_ms;
    } else if ((rc = parse_at(fs, name, &seq, &time_ms)) < 0) {
        return rc;
    }
    kv_snapshot *snap;
    rc = kv_snapshot_acquire(fs->db, seq, &snap);
    if (rc == -ESTALE) {
        kvfs_log(".snapshots/%s: %s", name, kv_last_error());
        return -ENOENT;
    }
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&fs->view_mu);
    unsigned v = 1;
    while (v < KVFS_VIEW_MAX && fs->views[v].used)
        v++;
    if (v == KVFS_VIEW_MAX) {
        pthread_mutex_unlock(&fs->view_mu);
        kv_snapshot_release(fs->db, snap);
        kvfs_log(".snapshots/%s: too many open views (%u)", name, KVFS_VIEW_MAX - 1);
        return -EMFILE;
    }
    kvfs_view *w = &fs->views[v];
    memset(w, 0, sizeof(*w));
    w->used = 1;
    w->named = named;
    snprintf(w->name, sizeof(w->name), "%s", name);
    w->snap = snap;
    w->ro.snapshot = snap;
    w->ro.time_ms = time_ms ? time_ms : kv_snapshot_time_ms(snap);
    w->nlookup = 1;
    *view = v;
    pthread_mutex_unlock(&fs->view_mu);
    return 0;
}

static void view_unref(kvfs *fs, unsigned v, uint64_t n)
{
    kv_snapshot *rel = NULL;
    pthread_mutex_lock(&fs->view_mu);
    kvfs_view *w = &fs->views[v];
    if (w->used) {
        w->nlookup -= n < w->nlookup ? n : w->nlookup;
        if (w->nlookup == 0) {
            rel = w->snap;
            memset(w, 0, sizeof(*w));
        }
    }
    pthread_mutex_unlock(&fs->view_mu);
    if (rel)
        kv_snapshot_release(fs->db, rel);
}

void kvfs_view_ref(kvfs *fs, unsigned view)
{
    pthread_mutex_lock(&fs->view_mu);
    if (fs->views[view].used)
        fs->views[view].nlookup++;
    pthread_mutex_unlock(&fs->view_mu);
}

void kvfs_snap_forget(kvfs *fs, uint64_t id, uint64_t nlookup)
{
    unsigned v = (unsigned)((id & ~KVFS_SNAP_BIT) >> KVFS_VIEW_SHIFT);
    if (id != KVFS_SNAPDIR_ID && v > 0 && v < KVFS_VIEW_MAX)
        view_unref(fs, v, nlookup);
}

void kvfs_views_release(kvfs *fs)
{
    for (unsigned v = 1; fs->views && v < KVFS_VIEW_MAX; v++)
        if (fs->views[v].used) {
            kv_snapshot_release(fs->db, fs->views[v].snap);
            memset(&fs->views[v], 0, sizeof(fs->views[v]));
        }
}

/* ------------------------------------------------------------------ entries ---- */

int kvfs_snapdir_entry(kvfs *fs, struct fuse_entry_param *e)
{
    layout_inode root;
    int rc = layout_inode_get(fs->lfs, LAYOUT_ROOT_INO, &root);
    if (rc < 0)
        return rc;
    root.ino = KVFS_SNAPDIR_ID;
    root.mode = S_IFDIR | 0755;
    root.nlink = 2;
    root.size = 0;
    kvfs_entry_of(&root, e);
    return 0;
}

/* The entry of inode ino as of view v (one more reference to the view taken by the caller). */
static int view_entry(kvfs *fs, unsigned v, uint64_t ino, struct fuse_entry_param *e)
{
    layout_inode in;
    int rc = layout_inode_get_at(fs->lfs, &fs->views[v].ro, ino, &in);
    if (rc < 0)
        return rc;
    if (ino > KVFS_INO_MASK)
        return -EOVERFLOW;
    kvfs_entry_of(&in, e);
    e->ino = kvfs_node_id(v, ino);
    e->attr.st_ino = (ino_t)e->ino;
    e->entry_timeout = e->attr_timeout = 3600.0; /* a view never changes */
    return 0;
}

int kvfs_snap_lookup(kvfs *fs, uint64_t parent, const char *name, struct fuse_entry_param *e)
{
    uint64_t ino, child;
    const kv_readopts *ro;
    unsigned v;
    uint32_t type;
    int kind = kvfs_node(fs, parent, &ino, &ro, &v), rc;
    if (kind < 0)
        return kind;
    if (kind == 2) {
        if ((rc = view_open(fs, name, &v)) < 0)
            return rc;
        if ((rc = view_entry(fs, v, LAYOUT_ROOT_INO, e)) < 0)
            view_unref(fs, v, 1);
        if (rc == 0 && !fs->views[v].named)
            e->entry_timeout = 1.0; /* @names are not listed: do not pin their dentries */
        return rc == -ENOENT ? -ENOENT : rc;
    }
    size_t nlen = strlen(name);
    if (nlen > LAYOUT_NAME_MAX)
        return -ENAMETOOLONG;
    rc = layout_dirent_get_at(fs->lfs, ro, ino, name, nlen, &child, &type);
    if (rc < 0)
        return rc;
    kvfs_view_ref(fs, v);
    if ((rc = view_entry(fs, v, child, e)) < 0)
        view_unref(fs, v, 1);
    return rc;
}

/* ------------------------------------------------------------------ named snapshots ---- */

int kvfs_snap_mkdir(kvfs *fs, const char *name, struct fuse_entry_param *e)
{
    kv_snapinfo info;
    if (fs->read_only)
        return -EROFS;
    if (name[0] == '@')
        return -EINVAL; /* reserved for time-travel names */
    if (strlen(name) > KV_SNAPSHOT_NAME_MAX)
        return -ENAMETOOLONG;
    int rc = kv_named_snapshot_create(fs->db, name, &info);
    if (rc < 0)
        return rc == -EEXIST || rc == -EINVAL || rc == -ENAMETOOLONG ? rc
                                                                     : kvfs_fail("snapshot", rc);
    if (kv_sync(fs->db) < 0)
        kvfs_log("snapshot %s: sync: %s", name, kv_last_error());
    return kvfs_snap_lookup(fs, KVFS_SNAPDIR_ID, name, e);
}

int kvfs_snap_rmdir(kvfs *fs, const char *name)
{
    if (fs->read_only)
        return -EROFS;
    if (name[0] == '@')
        return -EROFS;
    int rc = kv_named_snapshot_delete(fs->db, name);
    if (rc < 0)
        return rc == -EINVAL ? -ENOENT : rc;
    pthread_mutex_lock(&fs->view_mu);
    for (unsigned v = 1; v < KVFS_VIEW_MAX; v++)
        if (fs->views[v].used && fs->views[v].named && strcmp(fs->views[v].name, name) == 0)
            fs->views[v].name[0] = '\0'; /* existing references keep working; no new ones */
    pthread_mutex_unlock(&fs->view_mu);
    return 0;
}
