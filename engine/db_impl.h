/*
 * db_impl.h -- the kv_db handle shared by db.c (open, recovery, writes, reads, background
 * work), dbiter.c (user iterators) and dbmaint.c (snapshots, checkpoint, verify, stats).
 *
 * Locking: db->mu protects every field marked (mu). The commit leader (the writer at the front
 * of the writer queue) is the only thread that appends to the WAL or inserts into db->mem, and
 * it does both without holding db->mu; only the leader switches memtables or WAL segments, so
 * the two never race. last_seq is published (release) only after a whole group is in the
 * memtable, so readers never see half a batch.
 *
 * Lock order: db->mu, then db->vs->apply_mu, then db->vs->mu (admin_mu comes before all).
 */
#ifndef KV_DB_IMPL_H
#define KV_DB_IMPL_H

#include <pthread.h>
#include <stdatomic.h>

#include "batch.h"
#include "cache.h"
#include "kv.h"
#include "log.h"
#include "memtable.h"
#include "version.h"

struct kv_snapshot {
    uint64_t seq;
    uint64_t time_ms;
    struct kv_snapshot *prev, *next; /* (mu) the db's list of live snapshots */
};

/* One caller of kv_write waiting in the writer queue. */
typedef struct db_writer {
    const kv_batch *batch; /* NULL: no data, only sync and/or force_switch */
    int sync;
    int force_switch; /* kv_flush: make the memtable immutable even if not full */
    int done;
    int rc;
    uint64_t last_seq; /* OUT: sequence of the batch's last op */
    pthread_cond_t cv;
    struct db_writer *next;
} db_writer;

/* Obsolete WAL segments kept to be renamed and overwritten by new ones (db_open_new_wal):
 * an fdatasync of overwritten blocks skips the journal commit an append needs (measured on
 * ext4: 6500-7700 vs 3300-3800 4 KiB write+fdatasync per second). */
#define DB_WAL_POOL 2
/* A new segment (none pooled), and a reused one outgrowing its old size, is kept zero-filled
 * this far past its last record for the same reason (log_writer_prepare_ahead). */
#define DB_WAL_PREPARE_BYTES (1u << 20)
/* Compaction pacing (db_pace_compaction): within this long of a synced write, compactions
 * write at most DB_PACE_BYTES_PER_S. */
#define DB_PACE_WINDOW_US 200000u
#define DB_PACE_BYTES_PER_S (32u << 20)

struct kv_db {
    char *dir;
    kv_options opts;
    int lock_fd;
    cache *block_cache;
    vset *vs;

    pthread_mutex_t mu;
    pthread_mutex_t admin_mu;           /* serialises named-snapshot changes and checkpoints */
    pthread_cond_t bg_cv;               /* wakes background threads */
    pthread_cond_t done_cv;             /* background progress (a flush or compaction finished) */
    memtable *mem;                      /* (mu) written by the leader only */
    memtable *imm;                      /* (mu) being flushed, or NULL */
    drop_set *drops;                    /* (mu) live range deletions: version, imm, mem */
    uint64_t mem_first_wal;             /* (mu) first WAL segment holding mem's writes */
    log_writer *wal;                    /* (mu to swap; leader to write) */
    uint64_t wal_number;                /* (mu) */
    uint64_t wal_pool[DB_WAL_POOL];     /* (mu) obsolete segments kept for reuse, oldest first */
    size_t wal_pool_n;                  /* (mu) */
    db_writer *queue_head, *queue_tail; /* (mu) */
    kv_batch group;                     /* leader's scratch batch */
    uint64_t last_commit_ms;            /* (leader) commit times never go back */
    size_t last_sync_group;             /* (mu) writers in the latest sync group */
    uint64_t fsync_us_avg;              /* (leader) recent WAL fsync time */
    uint32_t records_since_sync;        /* (leader) unsynced WAL records since the last fsync */
    _Atomic uint64_t last_sync_us;      /* kv_mono_us() of the last WAL fsync (0: none yet) */
    int gathering;                      /* (mu) a sync leader waits on gather_cv for its group */
    pthread_cond_t gather_cv;
    _Atomic uint64_t last_seq;
    struct kv_snapshot snapshots; /* (mu) list head (circular, sentinel) */
    size_t nsnapshots;            /* (mu) */
    int sticky_error;             /* (mu) */
    char sticky_msg[512];         /* (mu) what failed, for later refusals */
    int no_space;                 /* (mu) a flush or compaction found no room on the disk */
    char no_space_msg[512];       /* (mu) its message */
    uint64_t no_space_retry_us;   /* (mu) kv_mono_us() when it is tried again */
    int shutting_down;            /* (mu) */
    int bg_compactions;           /* (mu) compactions running */
    int drop_upkeep_running;      /* (mu) a thread is in db_drop_upkeep */
    uint64_t flush_count;         /* (mu) flushes completed */
    pthread_t flush_thread;
    pthread_t *compact_threads;
    int ncompact_threads;
    int threads_started;

    /* statistics (relaxed atomics) */
    _Atomic uint64_t st_puts, st_deletes, st_gets, st_batches;
    _Atomic uint64_t st_wal_bytes, st_wal_syncs, st_group_commits;
    _Atomic uint64_t st_flushes, st_compactions, st_comp_read, st_comp_written;
    _Atomic uint64_t st_stalls, st_stall_us;
};

/* db.c */
/* Pins what a read at one point in time needs: the memtables and the current version.
 * Takes db->mu briefly. */
typedef struct db_readview {
    memtable *mem, *imm;
    version *v;
    drop_set *drops; /* the live range deletions when the view was taken */
    uint64_t seq;
    uint64_t time_ms;
} db_readview;
int db_readview_acquire(kv_db *db, const kv_readopts *ro, db_readview *rv);
void db_readview_release(db_readview *rv);
/* Computes what compaction must keep now (mu held). OUT: *r with snap_seqs malloc'd. */
int db_retention(kv_db *db, retention *r);
/* 1 if reads at seq are guaranteed complete (history window, a named or live snapshot). */
int db_seq_is_retained(kv_db *db, uint64_t seq);
/* Queues a no-data writer (sync and/or force_switch) and waits for the leader to do it. */
int db_write_control(kv_db *db, int sync, int force_switch);
void db_set_sticky(kv_db *db, int rc); /* mu held */
int db_sticky(kv_db *db);              /* mu held: the sticky error, message set */
/* The WAL segment numbers >= min_number in the directory, ascending (malloc'd). */
int db_list_wals(kv_db *db, uint64_t min_number, uint64_t **out, size_t *n);
int db_wal_path(const kv_db *db, uint64_t number, char *out, size_t cap);

#endif /* KV_DB_IMPL_H */
