/*
 * kv.h -- the one public interface of the kvfs storage engine.
 *
 * The engine is a durable, multi-version (MVCC) LSM-tree key-value store kept in one data
 * directory. Keys and values are arbitrary byte strings. Every committed write gets a sequence
 * number; the engine remembers when each sequence was committed, so "the store as of 10:00"
 * maps to a sequence, and older versions stay readable while a snapshot or the history-retention
 * window needs them.
 *
 * Conventions kept by every call in this header:
 *   - Functions returning int return 0 (or a non-negative count) on success and a negative errno
 *     on failure. kv_last_error() then gives a one-line description of the failure of the
 *     latest failing call in the calling thread (it names the file and offset for corruption).
 *   - The errno values that carry engine meaning:
 *       -ENOENT        key, snapshot or data directory not found
 *       -EEXIST        data directory or named snapshot already exists
 *       -EBUSY         data directory is in use by another process (lock file held)
 *       -EUCLEAN       on-disk data is corrupt (kv_last_error() says where)
 *       -ESTALE        the requested sequence or time is older than the retained history
 *       -EFBIG         value larger than KV_MAX_VALUE_BYTES
 *       -ENAMETOOLONG  key larger than KV_MAX_KEY_BYTES, or snapshot name too long
 *       -EROFS         the database was opened read-only
 *       -EIO and others  an I/O call failed; after a failed WAL or manifest write or fsync the
 *                      error is sticky: every later write fails with it until reopen.
 *   - Every handle is thread-safe unless said otherwise; kv_iter and kv_batch belong to one
 *     thread at a time.
 *   - Memory returned to the caller (values, lists) is allocated with malloc and freed with free.
 */
#ifndef KV_H
#define KV_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KV_VERSION_STRING "0.1.0"

#define KV_MAX_KEY_BYTES (16u * 1024u)
#define KV_MAX_VALUE_BYTES (32u * 1024u * 1024u)
#define KV_SNAPSHOT_NAME_MAX 255
#define KV_MAX_LEVELS 7
#define KV_HISTORY_STORED UINT64_MAX

typedef struct kv_db kv_db;
typedef struct kv_batch kv_batch;
typedef struct kv_iter kv_iter;
typedef struct kv_snapshot kv_snapshot;

/* ---------------------------------------------------------------- options and lifetime ---- */

typedef struct kv_options {
    size_t memtable_bytes;    /* a memtable is flushed at this size (default 64 MiB); at most
                                 two exist (one being flushed): writers wait beyond that */
    size_t block_cache_bytes; /* block cache budget (default 64 MiB) */
    int compression_level;    /* zstd level 1..19, or -1..-7 for zstd's faster levels; 0 stores
                                 blocks uncompressed (default 1) */
    int uncompressed_levels;  /* tables written to levels below this are stored uncompressed
                                 whatever compression_level says: young data is rewritten soon,
                                 so compressing it costs CPU on the write path (default 0) */
    int sync_writes;          /* 1: a write is durable (fsync) before it returns, unless
                                 KV_WRITE_NOSYNC is given; 0: only with KV_WRITE_SYNC (default 0) */
    uint64_t history_ms;      /* keep every version younger than this; recorded in the store
                                 when it changes. KV_HISTORY_STORED (the default) uses the
                                 window the store recorded (0, none, for a new store) */
    int create_if_missing;    /* create the directory and a new store (default 1) */
    int error_if_exists;      /* fail with -EEXIST if a store is already there (default 0) */
    int read_only;            /* open without writing anything; writes fail with -EROFS */
    int salvage;              /* open despite WAL corruption in the middle of a segment: keep
                                 everything before the bad record, drop the rest (default 0) */
    size_t block_bytes;       /* uncompressed data block size (default 4 KiB) */
    int bloom_bits_per_key;   /* bloom filter bits per key, 0 = no filter (default 10) */
    size_t table_bytes;       /* target SSTable size (default 8 MiB) */
    size_t wal_segment_bytes; /* a WAL segment is closed after this many bytes (default 64 MiB) */
    int background_threads;   /* compaction threads besides the flush thread (default 1) */
    size_t partition_prefix_bytes; /* flushes and compactions start a new table where the first
                                      N bytes of the user key change (0, the default: never;
                                      at most KV_PARTITION_PREFIX_MAX). Keeps families of keys
                                      in tables of their own, so that bulk data written in key
                                      order moves down the levels without being rewritten */
} kv_options;

#define KV_PARTITION_PREFIX_MAX 16

void kv_options_init(kv_options *opt);

/* Growable arrays, for the engine and its users alike: returns arr (count of elements in use
 * is the caller's) with room for at least need elements of elem bytes, *cap doubled from
 * min_cap until it fits. NULL when that fails (overflow or no memory): arr and *cap are then
 * unchanged and arr is still the caller's to free. */
void *kv_grow(void *arr, size_t *cap, size_t need, size_t elem, size_t min_cap);

/* Opens (or creates) the store in directory dir. OUT: *db. */
int kv_open(const char *dir, const kv_options *opt, kv_db **db);

/* Flushes nothing extra (the WAL holds unflushed writes), stops background work, releases the
 * lock. Returns the sticky error, if the store had one. */
int kv_close(kv_db *db);

/* One line describing the latest failure in this thread ("" if none). */
const char *kv_last_error(void);

/* Where the store's own notices go: things no call returns, such as a write failure that
 * stopped writes, what a salvage open dropped, a WAL segment that can no longer be written
 * ahead. fn gets one line, no newline. NULL (the default) prints "kvfs: LINE" on stderr; a
 * daemon whose stderr goes nowhere passes its logger. Process-wide; set it before kv_open. */
typedef void (*kv_log_fn)(const char *line);
void kv_set_log(kv_log_fn fn);

/* ------------------------------------------------------------------------------ writes ---- */

#define KV_WRITE_SYNC 1u   /* fsync the WAL before returning */
#define KV_WRITE_NOSYNC 2u /* do not fsync, even when options.sync_writes is set */

kv_batch *kv_batch_new(void);
void kv_batch_free(kv_batch *b);
void kv_batch_clear(kv_batch *b);
/* Appends an operation; the batch is applied atomically by kv_write. */
int kv_batch_put(kv_batch *b, const void *key, size_t klen, const void *val, size_t vlen);
/* expire_at_ms: wall-clock expiry in ms since the epoch; 0 means none. */
int kv_batch_put_ttl(kv_batch *b, const void *key, size_t klen, const void *val, size_t vlen,
                     uint64_t expire_at_ms);
int kv_batch_delete(kv_batch *b, const void *key, size_t klen);
/* Deletes every key k with lo <= k < hi (bytewise) as of this op's sequence number: reads at
 * it or later see none of them, snapshots and history reads from before still do. One
 * record whatever the range holds; compaction removes the covered versions once no reader
 * can see them (whole tables without reading them). -EINVAL unless lo < hi. */
int kv_batch_delete_range(kv_batch *b, const void *lo, size_t lolen, const void *hi, size_t hilen);
size_t kv_batch_count(const kv_batch *b);
size_t kv_batch_bytes(const kv_batch *b);

/* Applies b atomically. OUT: *seq (may be NULL) = the sequence of the batch's last operation;
 * the operations get consecutive sequences in batch order. */
int kv_write(kv_db *db, const kv_batch *b, unsigned flags, uint64_t *seq);

int kv_put(kv_db *db, const void *key, size_t klen, const void *val, size_t vlen, unsigned flags);
int kv_put_ttl(kv_db *db, const void *key, size_t klen, const void *val, size_t vlen,
               uint64_t expire_at_ms, unsigned flags);
int kv_delete(kv_db *db, const void *key, size_t klen, unsigned flags);

/* fsync the WAL: every write acknowledged so far becomes durable. */
int kv_sync(kv_db *db);

/* ------------------------------------------------------------------------------- reads ---- */

/* Where a read looks. Zero-initialised means "latest, expiry judged now". */
typedef struct kv_readopts {
    const kv_snapshot *snapshot; /* read as of this snapshot (overrides seq) */
    uint64_t seq;                /* read as of this sequence; 0 = latest */
    uint64_t time_ms;            /* TTL expiry is judged at this time; 0 = now, or the
                                    snapshot's time when reading a snapshot */
} kv_readopts;

typedef struct kv_entry_info {
    uint64_t seq;          /* sequence of the version returned */
    uint64_t expire_at_ms; /* 0 = no expiry */
    size_t value_len;
} kv_entry_info;

/* OUT: *val (malloc'd, may be NULL when not wanted), *vlen, *info (may be NULL).
 * -ENOENT when the key has no visible version (deleted, expired, never written). */
int kv_get(kv_db *db, const kv_readopts *ro, const void *key, size_t klen, void **val, size_t *vlen,
           kv_entry_info *info);

/* Iterators see one consistent point in time (the read options' sequence) and are bounded to
 * [lower, upper) and/or to keys starting with prefix. */
typedef struct kv_iter_opts {
    kv_readopts ro;
    const void *lower; /* inclusive, NULL = unbounded */
    size_t lower_len;
    const void *upper; /* exclusive, NULL = unbounded */
    size_t upper_len;
    const void *prefix; /* only keys with this prefix, NULL = all */
    size_t prefix_len;
} kv_iter_opts;

int kv_iter_new(kv_db *db, const kv_iter_opts *opts, kv_iter **it);
void kv_iter_free(kv_iter *it);
void kv_iter_seek_first(kv_iter *it);
void kv_iter_seek_last(kv_iter *it);
void kv_iter_seek(kv_iter *it, const void *key, size_t klen); /* first key >= key */
void kv_iter_next(kv_iter *it);
void kv_iter_prev(kv_iter *it);
int kv_iter_valid(const kv_iter *it);
const void *kv_iter_key(const kv_iter *it, size_t *klen);
const void *kv_iter_value(const kv_iter *it, size_t *vlen);
void kv_iter_info(const kv_iter *it, kv_entry_info *info);
int kv_iter_status(const kv_iter *it); /* 0, or the error that ended iteration */

/* ---------------------------------------------------------- snapshots and history ---- */

/* An in-memory snapshot pins a sequence until released. seq 0 = latest; an older seq must
 * still be retained (history window or named snapshot), else -ESTALE. */
int kv_snapshot_acquire(kv_db *db, uint64_t seq, kv_snapshot **snap);
void kv_snapshot_release(kv_db *db, kv_snapshot *snap);
uint64_t kv_snapshot_seq(const kv_snapshot *snap);
uint64_t kv_snapshot_time_ms(const kv_snapshot *snap);

typedef struct kv_snapinfo {
    char name[KV_SNAPSHOT_NAME_MAX + 1];
    uint64_t seq;
    uint64_t time_ms; /* when it was created */
} kv_snapinfo;

/* Named snapshots are recorded in the manifest and survive restart. */
int kv_named_snapshot_create(kv_db *db, const char *name, kv_snapinfo *info);
int kv_named_snapshot_delete(kv_db *db, const char *name);
int kv_named_snapshot_get(kv_db *db, const char *name, kv_snapinfo *info);
/* OUT: *list (malloc'd array sorted by name), *n. */
int kv_named_snapshot_list(kv_db *db, kv_snapinfo **list, size_t *n);

/* The sequence that was the latest at wall-clock time time_ms (resolution: one second; the
 * store as of second T includes every commit made during T). -ESTALE if older than the
 * retained history. OUT: *seq. */
int kv_seq_at_time(kv_db *db, uint64_t time_ms, uint64_t *seq);
/* The commit time (ms, at one-second resolution) of seq. */
int kv_time_of_seq(kv_db *db, uint64_t seq, uint64_t *time_ms);
/* The oldest sequence that reads may still ask for (history window floor). */
uint64_t kv_oldest_readable_seq(kv_db *db);
uint64_t kv_last_seq(kv_db *db);

typedef struct kv_version {
    uint64_t seq;
    uint64_t time_ms; /* commit time */
    uint64_t size;    /* value length; 0 for a deletion */
    uint64_t expire_at_ms;
    int deleted; /* 1: this version removed the key */
} kv_version;

/* Every retained version of key, newest first. OUT: *list (malloc'd), *n. */
int kv_history(kv_db *db, const void *key, size_t klen, kv_version **list, size_t *n);

/* ------------------------------------------------------------------ maintenance ---- */

int kv_flush(kv_db *db); /* write the memtable to an SSTable and wait */
/* Compact every table overlapping [lo, hi] (NULL = unbounded) down the levels; waits. */
int kv_compact_range(kv_db *db, const void *lo, size_t lolen, const void *hi, size_t hilen);
/* A consistent copy of the store in the new directory dir (hard links where possible); dir
 * opens as a store of its own. */
int kv_checkpoint(kv_db *db, const char *dir);

typedef struct kv_stats {
    uint64_t last_seq;
    uint64_t puts, deletes, gets, batches;
    uint64_t wal_bytes, wal_syncs, wal_group_commits;
    uint64_t flushes, compactions, compaction_bytes_read, compaction_bytes_written;
    uint64_t write_stalls, write_stall_us;
    uint64_t cache_hits, cache_misses, cache_bytes;
    uint64_t bloom_useful; /* table reads skipped because the bloom filter said no */
    uint64_t memtable_bytes, imm_memtable_bytes;
    uint64_t level_files[KV_MAX_LEVELS];
    uint64_t level_bytes[KV_MAX_LEVELS];
    uint64_t named_snapshots, live_snapshots;
    uint64_t oldest_readable_seq;
    int sticky_error;         /* 0 or the negative errno that stopped writes */
    int no_space;             /* 0 or the no-space error a flush or compaction waits out: writes
                                 that need it are refused until the disk has room again */
    uint64_t range_deletions; /* live range deletions (kv_batch_delete_range) not retired yet */
} kv_stats;

int kv_get_stats(kv_db *db, kv_stats *st);

/* Verifies every checksum of every live file (manifest, WAL, SSTables). report is called once
 * per problem with a line naming the file and offset. Returns the number of problems found
 * (0 = clean) or a negative errno if the check itself could not run. */
typedef void (*kv_report_fn)(void *arg, const char *line);
int kv_verify(kv_db *db, kv_report_fn report, void *arg);

#ifdef __cplusplus
}
#endif
#endif /* KV_H */
