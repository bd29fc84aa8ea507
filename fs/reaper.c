/*
 * reaper.c -- removes expired files and tells the kernel, at the moment of expiry.
 *
 * The engine hides an expired inode record at read time (layout.h I4), so an expired file is
 * gone from lookup, getattr and read at once. This thread then finishes the job: it walks the
 * expiry index 'E' in time order (never the tree), and for each inode whose expiry has passed
 * it deletes its dirents and parent pointers, marks it an orphan with nlink 0 (one batch), and
 * purges its keys once nothing holds it, so compaction frees the space. After the batch it
 * tells the kernel (fuse_lowlevel_notify_delete, falling back to inval_entry) so cached
 * dentries go and inotify watchers see IN_DELETE.
 *
 * The thread sleeps until the earliest pending expiry (at most KVFS_REAP_IDLE_MS);
 * kvfs_reaper_kick wakes it when a sooner one is set. It never holds fs->wmu while talking to
 * the kernel (a notification may wait for a request that needs wmu).
 */
#include "kvfs.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define KVFS_REAP_IDLE_MS 5000u
#define KVFS_REAP_BATCH 256u

static uint64_t reap_now_ms(void)
{
    struct timespec ts;
    layout_now(&ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Removes the names of expired ino (expiry exp) in one batch. OUT: *links, *n for the kernel
 * notifications. Returns 1 when reaped, 0 when not (yet) due, <0 on error. */
static int reap_one(kvfs *fs, uint64_t exp, uint64_t ino, layout_link **links, size_t *n)
{
    uint8_t key[LAYOUT_KEY_MAX];
    layout_inode in, cur;
    kv_batch *b = kv_batch_new();
    *links = NULL;
    *n = 0;
    if (!b)
        return -ENOMEM;
    pthread_mutex_lock(&fs->wmu);
    int rc = layout_inode_get_any(fs->lfs, ino, &in), done = 0;
    if (rc == -ENOENT || (rc == 0 && in.expire_at_ms != exp)) { /* stale index entry */
        rc = kv_batch_delete(b, key, layout_key_expiry(key, exp, ino));
        done = 0;
    } else if (rc == 0 && layout_inode_get(fs->lfs, ino, &cur) == 0) {
        goto out; /* the engine does not see it expired yet (clock granularity) */
    } else if (rc == 0) {
        rc = layout_links(fs->lfs, ino, links, n);
        size_t keep = 0;
        for (size_t i = 0; rc == 0 && i < *n; i++) {
            layout_link *l = &(*links)[i];
            uint64_t named = 0;
            int g = layout_dirent_get(fs->lfs, l->parent, l->name, l->nlen, &named, NULL);
            if (g == 0 && named == ino) {
                rc = layout_dirent_del(b, l->parent, l->name, l->nlen, ino);
                (*links)[keep++] = *l;
            } else { /* the name was reused by a new file: drop only the stale pointer */
                rc = kv_batch_delete(b, key,
                                     layout_key_parent(key, ino, l->parent, l->name, l->nlen));
            }
        }
        *n = keep;
        if (rc == 0)
            rc = kv_batch_delete(b, key, layout_key_expiry(key, exp, ino));
        in.nlink = 0; /* the record stays expired (hidden) until the purge deletes it */
        if (rc == 0)
            rc = layout_inode_put(b, &in);
        if (rc == 0)
            rc = layout_orphan_put(b, ino);
        done = 1;
    }
    if (rc == 0)
        rc = kvfs_commit(fs, b);
    if (rc == 0 && done)
        kvfs_maybe_purge_locked(fs, ino);
out:
    pthread_mutex_unlock(&fs->wmu);
    kv_batch_free(b);
    if (rc < 0) {
        free(*links);
        *links = NULL;
        *n = 0;
        return kvfs_fail("reap", rc);
    }
    return done;
}

static void reap_notify(kvfs *fs, uint64_t ino, const layout_link *links, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int r =
            fuse_lowlevel_notify_delete(fs->se, links[i].parent, ino, links[i].name, links[i].nlen);
        if (r != 0)
            fuse_lowlevel_notify_inval_entry(fs->se, links[i].parent, links[i].name, links[i].nlen);
        fuse_lowlevel_notify_inval_inode(fs->se, links[i].parent, 0, 0);
    }
    if (n)
        fuse_lowlevel_notify_inval_inode(fs->se, ino, 0, 0);
}

/* The due part of the index, up to KVFS_REAP_BATCH entries (layout_expiry_scan callback). */
typedef struct reap_due {
    uint64_t now, next; /* next: the earliest expiry left for a later pass */
    uint64_t exps[KVFS_REAP_BATCH], inos[KVFS_REAP_BATCH];
    size_t cnt;
} reap_due;

static int reap_collect_due(void *arg, uint64_t expire_at_ms, uint64_t ino)
{
    reap_due *d = arg;
    if (expire_at_ms > d->now || d->cnt == KVFS_REAP_BATCH) {
        d->next = expire_at_ms > d->now ? expire_at_ms : d->now;
        return 1;
    }
    d->exps[d->cnt] = expire_at_ms;
    d->inos[d->cnt++] = ino;
    return 0;
}

/* One pass over the due part of the index. OUT: *next = the earliest expiry not yet due
 * (UINT64_MAX if none). */
static int reap_pass(kvfs *fs, uint64_t *next)
{
    reap_due d;
    d.now = reap_now_ms();
    d.next = UINT64_MAX;
    d.cnt = 0;
    *next = UINT64_MAX;
    int rc = layout_expiry_scan(fs->lfs, reap_collect_due, &d);
    if (rc < 0)
        return rc;
    *next = d.next;
    for (size_t i = 0; i < d.cnt; i++) {
        layout_link *links;
        size_t n;
        int r = reap_one(fs, d.exps[i], d.inos[i], &links, &n);
        if (r == 0 && *next > d.now + 20)
            *next = d.now + 20; /* not yet hidden by the engine: retry very soon */
        if (r > 0)
            reap_notify(fs, d.inos[i], links, n);
        free(links);
    }
    return 0;
}

static void *reap_main(void *arg)
{
    kvfs *fs = arg;
    pthread_mutex_lock(&fs->reap_mu);
    while (!fs->reap_stop) {
        pthread_mutex_unlock(&fs->reap_mu);
        uint64_t next;
        if (reap_pass(fs, &next) < 0)
            next = reap_now_ms() + 1000;
        uint64_t now = reap_now_ms();
        if (next > now + KVFS_REAP_IDLE_MS)
            next = now + KVFS_REAP_IDLE_MS;
        pthread_mutex_lock(&fs->reap_mu);
        fs->reap_next_ms = next;
        struct timespec ts = {(time_t)(next / 1000), (long)(next % 1000) * 1000000L};
        while (!fs->reap_stop && fs->reap_next_ms == next && reap_now_ms() < next)
            if (pthread_cond_timedwait(&fs->reap_cv, &fs->reap_mu, &ts) == ETIMEDOUT)
                break;
    }
    pthread_mutex_unlock(&fs->reap_mu);
    return NULL;
}

void kvfs_reaper_kick(kvfs *fs, uint64_t expire_at_ms)
{
    pthread_mutex_lock(&fs->reap_mu);
    if (expire_at_ms < fs->reap_next_ms) {
        fs->reap_next_ms = expire_at_ms;
        pthread_cond_signal(&fs->reap_cv);
    }
    pthread_mutex_unlock(&fs->reap_mu);
}

int kvfs_reaper_start(kvfs *fs)
{
    if (fs->read_only)
        return 0;
    fs->reap_stop = 0;
    fs->reap_next_ms = 0;
    if (pthread_create(&fs->reap_thread, NULL, reap_main, fs) != 0)
        return -EAGAIN;
    fs->reap_running = 1;
    return 0;
}

void kvfs_reaper_stop(kvfs *fs)
{
    if (!fs->reap_running)
        return;
    pthread_mutex_lock(&fs->reap_mu);
    fs->reap_stop = 1;
    pthread_cond_signal(&fs->reap_cv);
    pthread_mutex_unlock(&fs->reap_mu);
    pthread_join(fs->reap_thread, NULL);
    fs->reap_running = 0;
}
