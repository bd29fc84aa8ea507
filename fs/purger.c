/*
 * purger.c -- deletes the keys of large unlinked files in the background, away from the
 * write mutex.
 *
 * The last close of an unlinked file (or the unlink of a file nothing holds) purges it at
 * once, under wmu, when its keys fit one batch (layout_purge_quick: small files, the common
 * case). A larger file's chunk and xattr keys are found by prefix scans that read all of its
 * data: for a 10 GiB file that is seconds of disk reads, during which every writer of the
 * mount would wait on wmu. Such inodes are queued here instead, and one thread purges them.
 *
 * Invariants:
 *   - Only inodes nothing can reach are purged here: nlink 0, no name, not in the inode
 *     table. No other thread writes their keys, so the purge runs without wmu (layout.h).
 *     Orphans found by the sweep are checked under wmu first (layout_orphan_settle), since a
 *     file unlinked while open in this mount has an 'O' key too; those stay until their last
 *     release queues them.
 *   - An inode's 'O' key (layout.h I3) is deleted with its last keys, so a purge cut short by
 *     a crash or by kvfs_purger_stop (which cancels between batches) is finished by the
 *     sweep, the purger's first job after the next mount.
 *   - A queue entry that cannot be allocated is only late: its 'O' key stays for that sweep.
 */
#include "kvfs.h"

#include <errno.h>
#include <stdlib.h>

/* With purge_mu held. Returns 1 when the queue had an inode (OUT: *ino). */
static int purge_pop(kvfs *fs, uint64_t *ino)
{
    if (fs->purge_n == 0)
        return 0;
    *ino = fs->purge_q[0];
    fs->purge_n--;
    for (size_t i = 0; i < fs->purge_n; i++)
        fs->purge_q[i] = fs->purge_q[i + 1];
    return 1;
}

/* Purges one inode that the kernel no longer holds. settle: it came from the sweep, so it may
 * still be held or linked (checked under wmu first). */
static void purge_one(kvfs *fs, uint64_t ino, int settle)
{
    if (settle) {
        pthread_mutex_lock(&fs->wmu);
        int rc = kvfs_itab_busy(fs, ino) ? 1 : layout_orphan_settle(fs->lfs, ino);
        pthread_mutex_unlock(&fs->wmu);
        if (rc != 0) {
            if (rc < 0)
                kvfs_fail("purge", rc);
            return;
        }
    }
    int rc = layout_purge(fs->lfs, ino, &fs->purge_stop);
    if (rc < 0 && rc != -ECANCELED)
        kvfs_fail("purge", rc);
}

/* The orphans of earlier mounts, each settled or purged. */
static void purge_sweep(kvfs *fs)
{
    uint64_t *inos;
    size_t n;
    int rc = layout_list_orphans(fs->lfs, &inos, &n);
    if (rc < 0) {
        kvfs_fail("list unlinked files", rc);
        return;
    }
    for (size_t i = 0; i < n && !atomic_load(&fs->purge_stop); i++)
        purge_one(fs, inos[i], 1);
    free(inos);
}

static void *purge_main(void *arg)
{
    kvfs *fs = arg;
    pthread_mutex_lock(&fs->purge_mu);
    while (!atomic_load(&fs->purge_stop)) {
        uint64_t ino = 0;
        int sweep = fs->purge_sweep, have = !sweep && purge_pop(fs, &ino);
        if (!sweep && !have) {
            pthread_cond_wait(&fs->purge_cv, &fs->purge_mu);
            continue;
        }
        fs->purge_sweep = 0;
        pthread_mutex_unlock(&fs->purge_mu);
        if (sweep)
            purge_sweep(fs);
        else
            purge_one(fs, ino, 0);
        pthread_mutex_lock(&fs->purge_mu);
    }
    pthread_mutex_unlock(&fs->purge_mu);
    return NULL;
}

void kvfs_purger_queue(kvfs *fs, uint64_t ino)
{
    pthread_mutex_lock(&fs->purge_mu);
    int known = 0;
    for (size_t i = 0; i < fs->purge_n && !known; i++)
        known = fs->purge_q[i] == ino;
    if (!known && fs->purge_running && !atomic_load(&fs->purge_stop)) {
        if (fs->purge_n == fs->purge_cap) {
            size_t nc = fs->purge_cap ? fs->purge_cap * 2 : 16;
            uint64_t *nq = realloc(fs->purge_q, nc * sizeof(*nq));
            if (nq) {
                fs->purge_q = nq;
                fs->purge_cap = nc;
            }
        }
        if (fs->purge_n < fs->purge_cap) {
            fs->purge_q[fs->purge_n++] = ino;
            pthread_cond_signal(&fs->purge_cv);
        } else {
            kvfs_log("out of memory queueing inode %llu for purging: the next mount purges it",
                     (unsigned long long)ino);
        }
    }
    pthread_mutex_unlock(&fs->purge_mu);
}

int kvfs_purger_start(kvfs *fs)
{
    if (fs->read_only)
        return 0;
    atomic_store(&fs->purge_stop, 0);
    fs->purge_sweep = 1;
    fs->purge_running = 1;
    if (pthread_create(&fs->purge_thread, NULL, purge_main, fs) != 0) {
        fs->purge_running = 0;
        return -EAGAIN;
    }
    return 0;
}

void kvfs_purger_stop(kvfs *fs)
{
    pthread_mutex_lock(&fs->purge_mu);
    int running = fs->purge_running;
    atomic_store(&fs->purge_stop, 1);
    pthread_cond_signal(&fs->purge_cv);
    pthread_mutex_unlock(&fs->purge_mu);
    if (running)
        pthread_join(fs->purge_thread, NULL);
    pthread_mutex_lock(&fs->purge_mu);
    fs->purge_running = 0;
    free(fs->purge_q);
    fs->purge_q = NULL;
    fs->purge_n = fs->purge_cap = 0;
    pthread_mutex_unlock(&fs->purge_mu);
}
