/*
 * version.h -- the set of live SSTables (a "version"), the MANIFEST that records how it
 * changes, and the durable store metadata that travels with it: named snapshots and the
 * sequence<->time map.
 *
 * Invariants:
 *  (1) A version is immutable once installed; readers pin one with version_ref and never wait
 *      for compaction. vset_log_and_apply builds a new version from the current one plus an
 *      edit, appends the edit to the MANIFEST and fsyncs it, and only then installs it.
 *  (2) A failed MANIFEST write or fsync is sticky: the version set refuses every later edit
 *      with the same error (the caller makes the whole store read-only). An edit whose
 *      append the disk had no room for (kv_err_is_no_space) is refused alone: the MANIFEST
 *      is as it was (log.c), and the caller removes the tables the edit would have added.
 *  (3) Level 0 files may overlap and are ordered newest first (higher file number = newer
 *      data). In levels >= 1 files are sorted by key and never overlap, and no user key has
 *      versions in two files of one level. For one user key, versions in level L are newer than
 *      those in level L+1, so the first level (and the first L0 file) holding a version at or
 *      below a read sequence holds the one to return.
 *  (4) A file deleted by an edit is unlinked when the last version referencing it is gone
 *      (file_meta refcount), never before.
 *  (5) Named snapshots and time-map samples change only through edits, so they are exactly as
 *      durable as the MANIFEST.
 *  (6) A version's range deletions (drops.h) are those whose memtables were flushed and that
 *      have not retired; one retires only when no table of the version with entries older
 *      than it overlaps its range, so a key it hides can never show again. Compaction decides
 *      from the drops of the version it read, never from unflushed ones (a crash could lose
 *      those, and with them the right to drop anything).
 *
 * Locking: vset->mu protects current, the compacting flags, snapshots and the timemap;
 * apply_mu serialises edits and owns the manifest writer, so vs->mu is not held while an edit
 * is appended and fsynced (readers taking the current version never wait for the disk).
 * version_ref/unref and file refs are atomic. Callers never hold their own locks across
 * vset_log_and_apply (it does I/O).
 */
#ifndef KV_VERSION_H
#define KV_VERSION_H

#include <pthread.h>
#include <stdatomic.h>

#include "cache.h"
#include "drops.h"
#include "iter.h"
#include "kv.h"
#include "log.h"
#include "sst.h"
#include "util.h"

/* Level-0 triggers, in files deep (version.l0_depth). */
#define VSET_L0_COMPACT_TRIGGER 4
#define VSET_L0_SLOWDOWN 8
#define VSET_L0_STOP 12
/* ...and in files: level 0 is also compacted once it holds this many tables, deep or not, so
 * that side-by-side tables that never overlap (keys written in order) do not pile up there. */
#define VSET_L0_FILE_TRIGGER 32

typedef struct file_meta {
    uint64_t number;
    uint64_t file_bytes;
    uint64_t entries;
    uint64_t min_seq, max_seq;
    kv_buf smallest, largest; /* internal keys */
    atomic_int refs;
    int compacting;             /* protected by vset->mu */
    int drop_compact;           /* (vset->mu) holds entries a range deletion hides: rewrite it */
    uint64_t drops_clean_below; /* written by a compaction: no range deletion of its input
                                   version with a smaller seq hides a version here (0: not
                                   known, e.g. a flushed table or one read from the MANIFEST) */
    int obsolete;               /* set once an installed edit deleted it */
    struct vset *vs;            /* for path, cache and unlink on last unref */
    pthread_mutex_t open_mu;    /* serialises the lazy open of reader */
    sst_reader *_Atomic reader;
} file_meta;

typedef struct version {
    file_meta **files[KV_MAX_LEVELS]; /* L0: newest first; others: sorted by smallest */
    size_t nfiles[KV_MAX_LEVELS];
    size_t l0_depth; /* the most L0 files whose user-key ranges hold one key: what a read may
                        have to look at in L0, and what the L0 triggers below count (one
                        flush can write several tables side by side) */
    drop_set *drops; /* range deletions recorded in the MANIFEST (drops.h); NULL: none */
    atomic_int refs;
    struct vset *vs;
} version;

typedef struct timemap_sample {
    uint64_t sec;     /* wall-clock second */
    uint64_t max_seq; /* the last sequence committed at or before the end of sec */
} timemap_sample;

typedef struct vset_snapshot {
    char *name;
    uint64_t seq;
    uint64_t time_ms;
} vset_snapshot;

/* An edit: what one MANIFEST record changes. Build with the edit_* calls. */
typedef struct version_edit {
    int has_log_number, has_next_file, has_last_seq, has_history_ms;
    uint64_t history_ms; /* the store's history window, recorded when it changes */
    uint64_t log_number; /* WAL segments numbered below this are fully in tables */
    uint64_t next_file;
    uint64_t last_seq;
    struct edit_file {
        int level;
        file_meta *f; /* added files: the edit holds one reference */
    } * added;
    size_t nadded, capadded;
    struct edit_del {
        int level;
        uint64_t number;
    } * deleted;
    size_t ndeleted, capdeleted;
    vset_snapshot *snap_add;
    size_t nsnap_add, capsnap_add;
    char **snap_del;
    size_t nsnap_del, capsnap_del;
    timemap_sample *samples; /* appended to the time map */
    size_t nsamples, capsamples;
    drop_set *drop_add; /* range deletions that join the version (NULL: none) */
    uint64_t *drop_del; /* seqs of range deletions that retire */
    size_t ndrop_del, capdrop_del;
} version_edit;

void edit_init(version_edit *e);
void edit_free(version_edit *e);
void edit_set_log_number(version_edit *e, uint64_t n);
void edit_set_next_file(version_edit *e, uint64_t n);
void edit_set_last_seq(version_edit *e, uint64_t s);
void edit_set_history_ms(version_edit *e, uint64_t ms);
/* Creates a file_meta from props (copied) and adds it. */
int edit_add_file(version_edit *e, int level, uint64_t number, const sst_props *props);
int edit_delete_file(version_edit *e, int level, uint64_t number);
/* Moves an existing table to another level without rewriting it (a trivial move). */
int edit_move_file(version_edit *e, int from_level, int to_level, file_meta *f);
int edit_add_snapshot(version_edit *e, const char *name, uint64_t seq, uint64_t time_ms);
int edit_delete_snapshot(version_edit *e, const char *name);
int edit_add_sample(version_edit *e, uint64_t sec, uint64_t max_seq);
/* Adds the range deletions of set (copied; NULL adds nothing). */
int edit_add_drops(version_edit *e, const drop_set *set);
int edit_add_drop(version_edit *e, uint64_t seq, kv_slice lo, kv_slice hi);
int edit_delete_drop(version_edit *e, uint64_t seq);

typedef struct vset {
    char *dir;
    kv_options opts;
    cache *block_cache;
    pthread_mutex_t mu;
    pthread_mutex_t apply_mu; /* serialises vset_log_and_apply (held across its I/O) */
    version *current;
    uint64_t next_file;
    uint64_t last_seq; /* as recorded in the MANIFEST (the db keeps the live one) */
    uint64_t log_number;
    uint64_t history_ms; /* as recorded in the MANIFEST (0 for a store that never set it) */
    uint64_t manifest_number;
    log_writer *manifest;
    int sticky_error;
    vset_snapshot *snaps; /* sorted by name */
    size_t nsnaps;
    timemap_sample *samples; /* sorted by sec and by max_seq, both increasing */
    size_t nsamples, capsamples;
    size_t npersisted_samples;             /* samples[0..n) are in the MANIFEST */
    kv_buf compact_pointer[KV_MAX_LEVELS]; /* largest key of the last compaction per level */
    atomic_uint_fast64_t filter_skips;
    int (*open_check)(struct vset *vs, void *arg); /* see vset_open_checked */
    void *open_check_arg;
    /* Called by a compaction after each VSET_PACE_BYTES it writes; may sleep to yield the
     * disk to the foreground (NULL: never paces). Set before any compaction runs. */
    void (*compaction_pace)(void *arg);
    void *compaction_pace_arg;
} vset;

#define VSET_PACE_BYTES (1u << 20)

typedef int (*vset_check_fn)(vset *vs, void *arg);

/* Reads CURRENT and replays the MANIFEST it names, or, for a new store (no CURRENT and
 * opts->create_if_missing), starts an empty one. Unless read_only, writes a fresh MANIFEST
 * holding the whole state and points CURRENT at it. Missing or damaged CURRENT/MANIFEST, or a
 * live table file that is missing, is -EUCLEAN naming the file. OUT: *vs. */
int vset_open(const char *dir, const kv_options *opts, cache *bc, vset **vs);
/* As vset_open, but after an existing MANIFEST is replayed and before anything is written,
 * check(vs, arg) may refuse the state it describes (its error is returned). */
int vset_open_checked(const char *dir, const kv_options *opts, cache *bc, vset_check_fn check,
                      void *check_arg, vset **vs);
void vset_close(vset *vs); /* releases the current version; deletes nothing */

/* Applies e (see invariant 1). Fills in next_file and keeps the edit's own log number and
 * last_seq when given. Consumes nothing: the caller still frees e. */
int vset_log_and_apply(vset *vs, version_edit *e);
/* The sticky MANIFEST error (invariant 2), or 0. */
int vset_failed(vset *vs);
/* Removes the tables e would have added, after vset_log_and_apply refused it while the
 * version set is not failed: they are in no version. */
void vset_discard_added(vset *vs, const version_edit *e);

uint64_t vset_new_file_number(vset *vs);
version *vset_current(vset *vs); /* referenced; release with version_unref */

void version_ref(version *v);
void version_unref(version *v);
void file_ref(file_meta *f);
void file_unref(file_meta *f);
/* The reader of f, opened on first use (thread-safe). */
int file_reader(file_meta *f, sst_reader **r);
int vset_table_path(const vset *vs, uint64_t number, char *out, size_t cap);

/* The newest version of ukey with seq <= max_seq in v (see invariant 3). Returns 1 with the
 * outputs filled (value owned by the caller), 0 if no table holds one, negative errno. */
int version_get(version *v, kv_slice ukey, uint64_t max_seq, uint64_t *seq, unsigned *type,
                kv_buf *value);
/* Appends to *its one iterator per L0 file and one concatenating iterator per non-empty
 * deeper level. The iterators do not pin v; the caller does. */
int version_add_iters(version *v, iter ***its, size_t *n, size_t *cap);
uint64_t version_level_bytes(const version *v, int level);

/* ---- named snapshots and the time map (all take vs->mu) ---- */
int vset_snapshot_find(vset *vs, const char *name, vset_snapshot *out); /* name not copied */
/* OUT: *seqs, malloc'd ascending list of every named snapshot's sequence. */
int vset_snapshot_seqs(vset *vs, uint64_t **seqs, size_t *n);
int vset_snapshot_list(vset *vs, kv_snapinfo **list, size_t *n);
/* Records in memory that sequences up to max_seq were committed by time_ms (monotone: a
 * clock that went back is clamped to the last sample). Persisted by a later edit that
 * carries the unpersisted samples (vset_take_samples). */
void vset_note_commit(vset *vs, uint64_t max_seq, uint64_t time_ms);
/* Adds to e every in-memory sample not yet in the MANIFEST with max_seq <= upto_seq. */
int vset_take_samples(vset *vs, version_edit *e, uint64_t upto_seq);
/* Forgets samples above seq (after recovery found the WAL ended before them). */
void vset_truncate_samples(vset *vs, uint64_t seq);
int vset_seq_at_time(vset *vs, uint64_t time_ms, uint64_t *seq);
int vset_time_of_seq(vset *vs, uint64_t seq, uint64_t *time_ms);
/* Drops samples wholly older than floor_sec, keeping the last one before it. */
void vset_prune_samples(vset *vs, uint64_t floor_sec);

/* ---- compaction ---- */

/* What compaction must keep: every version visible at a sequence >= floor_seq or at one of
 * the snapshot sequences, with TTL expiry judged at expiry_floor_ms or later. */
typedef struct retention {
    uint64_t floor_seq;        /* reads at any seq >= this are allowed */
    const uint64_t *snap_seqs; /* ascending; named and in-memory snapshots below floor */
    size_t nsnaps;
    uint64_t expiry_floor_ms; /* every reader judges expiry at this time or later */
} retention;

typedef struct compaction compaction;

/* Picks the most urgent compaction of the current version (L0 file count, then level size
 * against its target), marks its inputs compacting. NULL if none is needed or possible. */
compaction *vset_pick_compaction(vset *vs);
/* A compaction of every file of level overlapping [lo, hi] (NULL = unbounded) into level+1,
 * or NULL if there is nothing (or the files are busy: then *busy is set). */
compaction *vset_compact_range(vset *vs, int level, kv_slice *lo, kv_slice *hi, int *busy);
/* Merges the inputs applying the retention rules, writes output tables of about
 * opts.table_bytes (cut only between user keys), and fills e with the deleted inputs and
 * added outputs. On error the outputs written so far are removed. A picked (not manual)
 * compaction of one table that overlaps nothing in the next level moves it there unchanged;
 * its old versions are dropped when it is next merged, or by kv_compact_range. */
int compaction_run(compaction *c, const retention *r, version_edit *e, uint64_t *bytes_read,
                   uint64_t *bytes_written);
int compaction_level(const compaction *c); /* input level */
/* The most bytes of tables c may write: its inputs' (0 for a table moved unchanged). */
uint64_t compaction_output_bytes(const compaction *c);
/* Clears the compacting marks and frees c. */
void compaction_free(compaction *c);

/* Range-deletion upkeep of the current version (drops.h): adds to e the deletion of every
 * table lying wholly under a range deletion that is newer than all of its entries, when no
 * reader can see past it (its seq <= r->floor_seq, no snapshot from the table's oldest entry
 * up to it), and the retirement of every range deletion that no table with older entries
 * overlaps. Tables it deletes are marked compacting until vset_drop_upkeep_done. Returns
 * the number of changes in e (0: nothing to do) or <0. */
int vset_drop_upkeep(vset *vs, const retention *r, version_edit *e);
/* Clears the marks of e's deleted tables that are still in the current version. */
void vset_drop_upkeep_done(vset *vs, const version_edit *e);

/* Writes the entries of it (a memtable) into new level-0 tables (one table per partition, see
 * kv_options.partition_prefix_bytes), fsyncs the directory and adds them to e. With r, a
 * value no reader can see is left out: the memtable's next newer version of its key, or a
 * range deletion of its own drops, hides it below r's floor and no snapshot lies between (the
 * compaction's rule; deletions are all kept). Nothing is written for an empty iterator. On
 * failure no table is left behind. */
int build_level0(vset *vs, iter *it, const drop_set *drops, const retention *r, version_edit *e);
/* The bytes of entries build_level0 would write from it with drops and r (keys and values). */
uint64_t level0_kept_bytes(iter *it, const drop_set *drops, const retention *r);

#endif /* KV_VERSION_H */
