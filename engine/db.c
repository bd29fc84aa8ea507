/*
 * db.c -- the store itself: open and crash recovery, the group-commit write path, point reads,
 * and the background threads that flush memtables and run compactions.
 *
 * Recovery (kv_open):
 *   1. take LOCK (a second process gets -EBUSY);
 *   2. vset_open: CURRENT -> MANIFEST -> the live tables, named snapshots, time map;
 *   3. replay every WAL segment numbered >= the MANIFEST's log number, in order, checksumming
 *      every record; replay stops at the first bad record (point in time): a torn tail of the
 *      newest segment is the normal end of a crash, anything else is -EUCLEAN unless
 *      opts.salvage, which keeps what precedes the damage;
 *   4. write the replayed memtable to a level-0 table, record it and a fresh log number in the
 *      MANIFEST, retire the replayed segments, start a new segment.
 *
 * WAL segments: a segment is sealed (log_writer_seal) before a newer one starts. Obsolete
 * segments (wholly in tables) are retired by db_delete_old_wals: the newest DB_WAL_POOL wait in
 * db->wal_pool and db_open_new_wal renames one to the new number and writes over it, so that
 * synced writes overwrite blocks instead of appending (format in docs/format.md).
 *
 * Write path (LevelDB's group commit): writers queue under db->mu; the front writer leads,
 * gathers the batches queued behind it (never folding a sync write into a non-sync group),
 * stamps sequence and commit time, and with db->mu released appends one WAL record, fsyncs if
 * any member asked, and inserts the group into the memtable. It then publishes last_seq and
 * wakes the members. While fsyncs come often, an unsynced record's whole pages start their
 * writeback right away (db_expect_sync). A failed WAL append or fsync is sticky: every later
 * write fails with it until the store is reopened (the record may or may not be on disk;
 * retrying would lie).
 *
 * A full disk is not such a failure: a WAL append the disk had no room for is undone (log.c)
 * and only its writers get the error (kv_err_is_no_space); a flush or compaction whose tables
 * do not fit removes them and is tried again every DB_NO_SPACE_RETRY_US, and writes that
 * would have to wait for it are refused with its error meanwhile. So once space is freed,
 * the store goes on without a reopen.
 *
 * Stalls: a writer waits rather than letting memory grow: when the memtable is full and the
 * previous one is still being flushed, or level 0 is VSET_L0_STOP files deep (version.h:
 * l0_depth, the most level-0 files covering one key); at VSET_L0_SLOWDOWN each write is
 * delayed 1 ms once.
 */
#include "db_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dbformat.h"
#include "kvio.h"

#define DB_MAX_GROUP_BYTES (1u << 20)
/* While range deletions wait in the version for the history floor to pass them, the
 * compaction thread looks again this often. */
#define DB_DROP_UPKEEP_US 1000000u
/* How long a flush or compaction that found the disk full waits before it tries again. */
#define DB_NO_SPACE_RETRY_US 1000000u
/* A table's index, filter, props and footer beside its entries, at the most, for a room check
 * (db_write_level0). */
#define DB_TABLE_OVERHEAD_BYTES (1u << 20)
/* Obsolete WAL segments are pooled for reuse only while this many segments' worth is free. */
#define DB_WAL_POOL_MIN_FREE 4u
#define DB_SMALL_BATCH_BYTES (128u << 10)

static void *db_flush_main(void *arg);
static void db_delete_old_wals(kv_db *db, uint64_t keep_from, size_t pool);
static void *db_compact_main(void *arg);

/* vset.compaction_pace: while synced writes are coming in (one within DB_PACE_WINDOW_US), a
 * compaction writes at most DB_PACE_BYTES_PER_S. Each WAL fdatasync ends in a cache flush of
 * the device, which waits for whatever was written before it: hundreds of MiB of compaction
 * output in flight made a synced 4 KiB write several times slower. The pace is far above
 * what a workload of synced writes adds, so compaction keeps up with it. */
static void db_pace_compaction(void *arg)
{
    kv_db *db = arg;
    uint64_t last = atomic_load_explicit(&db->last_sync_us, memory_order_relaxed);
    if (last && kv_mono_us() - last < DB_PACE_WINDOW_US)
        usleep((useconds_t)((uint64_t)VSET_PACE_BYTES * 1000000u / DB_PACE_BYTES_PER_S));
}

void kv_options_init(kv_options *opt)
{
    memset(opt, 0, sizeof *opt);
    opt->memtable_bytes = 64u << 20;
    opt->block_cache_bytes = 64u << 20;
    opt->compression_level = 1;
    opt->sync_writes = 0;
    opt->history_ms = KV_HISTORY_STORED;
    opt->create_if_missing = 1;
    opt->block_bytes = 4096;
    opt->bloom_bits_per_key = 10;
    opt->table_bytes = 8u << 20;
    opt->wal_segment_bytes = 64u << 20;
    opt->background_threads = 1;
}

static void db_sanitize_options(kv_options *o)
{
    if (o->memtable_bytes < (64u << 10))
        o->memtable_bytes = 64u << 10;
    if (o->block_bytes < 256)
        o->block_bytes = 256;
    if (o->block_bytes > (4u << 20))
        o->block_bytes = 4u << 20;
    if (o->table_bytes < (16u << 10))
        o->table_bytes = 16u << 10;
    if (o->wal_segment_bytes < (64u << 10))
        o->wal_segment_bytes = 64u << 10;
    if (o->compression_level < -7)
        o->compression_level = -7;
    if (o->compression_level > 19)
        o->compression_level = 19;
    if (o->uncompressed_levels < 0)
        o->uncompressed_levels = 0;
    if (o->uncompressed_levels > KV_MAX_LEVELS)
        o->uncompressed_levels = KV_MAX_LEVELS;
    if (o->bloom_bits_per_key < 0)
        o->bloom_bits_per_key = 0;
    if (o->background_threads < 1)
        o->background_threads = 1;
    if (o->background_threads > 8)
        o->background_threads = 8;
    if (o->partition_prefix_bytes > KV_PARTITION_PREFIX_MAX)
        o->partition_prefix_bytes = KV_PARTITION_PREFIX_MAX;
}

int db_wal_path(const kv_db *db, uint64_t number, char *out, size_t cap)
{
    return kvio_path(out, cap, "%s/%06llu.log", db->dir, (unsigned long long)number);
}

/* ------------------------------------------------------------------ recovery ---- */

/* Parses "NNNNNN.log"; 1 if name is a WAL segment. */
static int db_parse_wal_name(const char *name, uint64_t *number)
{
    size_t n = strlen(name);
    if (n < 5 || strcmp(name + n - 4, ".log") != 0)
        return 0;
    uint64_t v = 0;
    for (size_t i = 0; i < n - 4; i++) {
        if (name[i] < '0' || name[i] > '9' || v > UINT64_MAX / 10)
            return 0;
        v = v * 10 + (uint64_t)(name[i] - '0');
    }
    *number = v;
    return 1;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The WAL segments in the directory numbered >= min_number, ascending. */
int db_list_wals(kv_db *db, uint64_t min_number, uint64_t **out, size_t *n)
{
    char **names = NULL;
    size_t nnames = 0;
    int rc = kvio_list_dir(db->dir, &names, &nnames);
    if (rc)
        return rc;
    uint64_t *nums = malloc((nnames + 1) * sizeof *nums);
    size_t k = 0;
    if (!nums) {
        kvio_free_list(names, nnames);
        return kv_error(-ENOMEM, "out of memory listing %s", db->dir);
    }
    for (size_t i = 0; i < nnames; i++) {
        uint64_t num;
        if (db_parse_wal_name(names[i], &num) && num >= min_number)
            nums[k++] = num;
    }
    kvio_free_list(names, nnames);
    qsort(nums, k, sizeof *nums, cmp_u64);
    *out = nums;
    *n = k;
    return 0;
}

typedef struct replay_ctx {
    memtable *mem;
    uint64_t max_seq;
} replay_ctx;

/* One decoded batch op into m: a range deletion goes to m's list, the rest to the skiplist. */
static int db_mem_apply(memtable *m, uint64_t seq, unsigned type, kv_slice key, kv_slice val)
{
    if (type == KV_TYPE_RANGE_DELETE)
        return mem_add_drop(m, seq, key, val);
    return mem_add(m, seq, type, key, val);
}

static int db_replay_op(void *arg, uint64_t seq, unsigned type, kv_slice key, kv_slice val)
{
    replay_ctx *ctx = arg;
    if (seq > ctx->max_seq)
        ctx->max_seq = seq;
    return db_mem_apply(ctx->mem, seq, type, key, val);
}

/* Rebuilds db->drops from the current version and the memtables (mu held). Drops already in
 * the version and still in imm (a flush just installed) appear once (drops_make). */
static int db_refresh_drops(kv_db *db)
{
    version *v = vset_current(db->vs);
    drop_set *with_mem = NULL, *all = NULL;
    int rc = drops_merge(v->drops, mem_drops(db->mem), NULL, 0, &with_mem);
    if (rc == 0)
        rc = drops_merge(with_mem, db->imm ? mem_drops(db->imm) : NULL, NULL, 0, &all);
    version_unref(v);
    drops_unref(with_mem);
    if (rc)
        return kv_error(-ENOMEM, "out of memory tracking range deletions");
    drops_unref(db->drops);
    db->drops = all;
    return 0;
}

/* Replays one segment into db->mem. *stop is set when replay must not continue into later
 * segments (damage was salvaged). OUT: *good_end, the end of its last whole record. */
static int db_replay_wal(kv_db *db, uint64_t number, int is_last, int *stop, uint64_t *good_end)
{
    char path[PATH_MAX];
    int rc = db_wal_path(db, number, path, sizeof path);
    if (rc)
        return rc;
    log_reader *r;
    rc = log_reader_open(path, (uint32_t)number, &r);
    if (rc)
        return rc;
    replay_ctx ctx = {db->mem, 0};
    for (;;) {
        const uint8_t *rec;
        size_t len;
        rc = log_reader_next(r, &rec, &len);
        if (rc == 0)
            break;
        uint64_t bseq = 0, btime = 0;
        uint32_t bcount = 0;
        if (rc > 0) {
            rc = batch_decode(kv_slice_of(rec, len), NULL, NULL, &bseq, &btime, &bcount);
            if (rc == -EUCLEAN)
                rc = kv_error(-EUCLEAN, "%s: malformed batch in WAL record ending at offset %llu",
                              path, (unsigned long long)log_reader_good_offset(r));
        }
        if (rc == 0 && bseq <= atomic_load(&db->last_seq) && bcount > 0)
            rc = kv_error(-EUCLEAN, "%s: WAL record at offset %llu repeats sequence %llu", path,
                          (unsigned long long)log_reader_good_offset(r), (unsigned long long)bseq);
        if (rc < 0) {
            if (rc == -EUCLEAN && db->opts.salvage) {
                kv_log("salvage: %s; dropping the rest of the WAL", kv_last_error());
                *stop = 1;
                rc = 0;
                break;
            }
            goto out;
        }
        rc = batch_decode(kv_slice_of(rec, len), db_replay_op, &ctx, NULL, NULL, NULL);
        if (rc)
            goto out;
        if (bcount > 0) {
            uint64_t last = bseq + bcount - 1;
            atomic_store(&db->last_seq, last);
            vset_note_commit(db->vs, last, btime);
            if (btime > db->last_commit_ms)
                db->last_commit_ms = btime;
        }
    }
    /* Segments before the newest were fsynced when the next one was started, so a torn tail
     * there is damage, not an interrupted append. */
    if (!is_last && log_reader_good_offset(r) != 0) {
        uint64_t size = 0;
        int fd = kvio_open(path, O_RDONLY, 0);
        if (fd >= 0) {
            kvio_file_size(fd, path, &size);
            kvio_close(fd);
        }
        if (size > log_reader_good_offset(r)) {
            rc = kv_error(-EUCLEAN,
                          "%s: WAL segment ends in a torn record at offset %llu but a "
                          "newer segment exists",
                          path, (unsigned long long)log_reader_good_offset(r));
            if (db->opts.salvage) {
                kv_log("salvage: %s; dropping the rest of the WAL", kv_last_error());
                *stop = 1;
                rc = 0;
            }
        }
    }
out:
    *good_end = log_reader_good_offset(r);
    log_reader_close(r);
    return rc;
}

/* Cuts the newest replayed segment back to its last whole record and syncs it, before a
 * newer segment exists: should the replayed segments have to stay (db_keep_replayed), a
 * later recovery must not find a torn tail in a segment that is no longer the newest. */
static int db_seal_replayed(kv_db *db, uint64_t number, uint64_t good_end)
{
    char path[PATH_MAX];
    int rc = db_wal_path(db, number, path, sizeof path);
    if (rc)
        return rc;
    int fd = kvio_open(path, O_WRONLY, 0);
    if (fd < 0)
        return fd;
    uint64_t size = 0;
    rc = kvio_file_size(fd, path, &size);
    if (rc == 0 && size > good_end)
        rc = kvio_truncate(fd, path, good_end);
    if (rc == 0)
        rc = kvio_fsync(fd, path);
    int crc = kvio_close(fd);
    return rc ? rc : crc;
}

/* A flush or compaction waits for room (rc, its message in kv_last_error): writes that need
 * it are refused with them, and it is tried again in retry_us. (mu, or the opening thread) */
static void db_note_no_space(kv_db *db, int rc, uint64_t retry_us)
{
    db->no_space = rc;
    snprintf(db->no_space_msg, sizeof db->no_space_msg, "%s", kv_last_error());
    db->no_space_retry_us = kv_mono_us() + retry_us;
}

/* The disk had no room for the replayed memtable's table (refused): the replayed segments
 * stay where they are (the MANIFEST still names the oldest) and the memtable becomes the
 * immutable one, which the flush thread writes once there is room, as after any flush that
 * found the disk full; writes go to a fresh memtable and the new segment. (mu not needed: no
 * thread runs yet.) */
static int db_keep_replayed(kv_db *db, int refused)
{
    kv_log("%s: %s; the replayed WAL stays until there is room for its table", db->dir,
           kv_last_error());
    /* segments older than the replayed ones are obsolete (a pool left by the last run) */
    db_delete_old_wals(db, db->vs->log_number, 0);
    memtable *fresh = mem_new();
    if (!fresh)
        return kv_error(-ENOMEM, "out of memory creating a memtable");
    db->imm = db->mem;
    db->mem = fresh;
    db_note_no_space(db, refused, 0);
    return 0;
}

/* Takes the oldest pooled obsolete segment and renames it to path; 1 when one was renamed. A
 * segment that cannot be renamed is deleted, so it does not linger. (mu) */
static int db_take_pooled_wal(kv_db *db, const char *path)
{
    while (db->wal_pool_n > 0) {
        char old[PATH_MAX];
        uint64_t number = db->wal_pool[0];
        db->wal_pool_n--;
        memmove(db->wal_pool, db->wal_pool + 1, db->wal_pool_n * sizeof db->wal_pool[0]);
        if (db_wal_path(db, number, old, sizeof old) != 0)
            continue; /* cannot be: the new segment's longer name fitted */
        if (kvio_rename(old, path) == 0)
            return 1;
        kv_log("%s", kv_last_error());
        if (kvio_unlink(old) != 0)
            kv_log("%s", kv_last_error());
    }
    return 0;
}

static int db_open_new_wal(kv_db *db)
{
    char path[PATH_MAX];
    uint64_t number = vset_new_file_number(db->vs);
    int rc = db_wal_path(db, number, path, sizeof path);
    if (rc)
        return rc;
    log_writer *w;
    int reused = db_take_pooled_wal(db, path);
    rc = reused ? log_writer_reuse(path, (uint32_t)number, &w)
                : log_writer_create(path, (uint32_t)number, &w);
    if (rc)
        return rc;
    log_writer_prepare_ahead(w, DB_WAL_PREPARE_BYTES);
    rc = kvio_fsync_dir(db->dir);
    if (rc) {
        log_writer_close(w);
        return rc;
    }
    db->wal = w;
    db->wal_number = number;
    return 0;
}

/* Retires the WAL segments numbered below keep_from: the newest pool (at most DB_WAL_POOL) of
 * them wait in the pool for reuse, the rest are deleted. A disk with less free than
 * DB_WAL_POOL_MIN_FREE segments pools none: recycling is not worth its room there. (mu, or
 * the opening thread) */
static void db_delete_old_wals(kv_db *db, uint64_t keep_from, size_t pool)
{
    uint64_t *nums;
    size_t n;
    uint64_t free_bytes = 0;
    if (pool && (kvio_free_bytes(db->dir, &free_bytes) != 0 ||
                 free_bytes < DB_WAL_POOL_MIN_FREE * (uint64_t)db->opts.wal_segment_bytes))
        pool = 0;
    if (db_list_wals(db, 0, &nums, &n) != 0)
        return;
    size_t obsolete = 0;
    while (obsolete < n && nums[obsolete] < keep_from)
        obsolete++;
    db->wal_pool_n = 0;
    for (size_t i = 0; i < obsolete; i++) {
        char path[PATH_MAX];
        if (i + pool >= obsolete) {
            db->wal_pool[db->wal_pool_n++] = nums[i];
            continue;
        }
        if (db_wal_path(db, nums[i], path, sizeof path) == 0 && kvio_unlink(path) != 0)
            kv_log("%s", kv_last_error());
    }
    free(nums);
}

/* The disk is full: the pooled obsolete segments go back to it. Returns whether any did. (mu) */
static int db_release_wal_pool(kv_db *db)
{
    int released = 0;
    for (size_t i = 0; i < db->wal_pool_n; i++) {
        char path[PATH_MAX];
        if (db_wal_path(db, db->wal_pool[i], path, sizeof path) == 0) {
            kvio_unlink_keep_error(path);
            released = 1;
        }
    }
    db->wal_pool_n = 0;
    return released;
}

/* Before a flush or compaction writes about bytes of tables: -ENOSPC (a no-space error, see
 * the top of this file) when the disk has not that much free, so that a job bound to fail
 * does not first fill the disk up, taking the room a small write (a deletion) needs. */
static int db_room_for(kv_db *db, uint64_t bytes, const char *what)
{
    uint64_t free_bytes = 0;
    int rc = kvio_free_bytes(db->dir, &free_bytes);
    if (rc == 0 && free_bytes < bytes)
        rc = kv_error(-ENOSPC, "%s: no room for %s of %llu bytes (%llu free)", db->dir, what,
                      (unsigned long long)bytes, (unsigned long long)free_bytes);
    return rc;
}

/* Writes mem to a level-0 table and records it with log number log_number. */
static int db_write_level0(kv_db *db, memtable *mem, uint64_t log_number)
{
    version_edit e;
    edit_init(&e);
    retention r;
    uint64_t max_seq = mem_max_seq(mem);
    pthread_mutex_lock(&db->mu);
    int rc = db_retention(db, &r);
    pthread_mutex_unlock(&db->mu);
    if (rc)
        return rc;
    if (mem_entries(mem) > 0) {
        iter *it = mem_iter_new(mem);
        if (!it) {
            rc = kv_error(-ENOMEM, "out of memory flushing the memtable");
            goto out;
        }
        /* hide: values no reader can see are left out, unless every version is newer than
         * the floor (the history window reaches back past the memtable): then none is */
        const retention *hide = r.floor_seq > mem_min_seq(mem) ? &r : NULL;
        /* the table is at most about the memtable's size (raw young levels: no compression);
         * when that does not fit, count what it would really hold: on a full disk the newest
         * writes are often the files just deleted to make room */
        rc = db_room_for(db, mem_bytes(mem), "a memtable flush");
        if (kv_err_is_no_space(rc)) {
            uint64_t kept = level0_kept_bytes(it, mem_drops(mem), hide);
            rc = db_room_for(db, kept + kept / 16 + DB_TABLE_OVERHEAD_BYTES, "a memtable flush");
        }
        if (rc == 0)
            rc = build_level0(db->vs, it, mem_drops(mem), hide, &e);
        iter_destroy(it);
        if (rc)
            goto out;
    }
    rc = edit_add_drops(&e, mem_drops(mem));
    if (rc) {
        rc = kv_error(rc, "out of memory flushing the memtable");
        goto out;
    }
    edit_set_log_number(&e, log_number);
    /* Only what the tables now hold: later writes live in WAL segments >= log_number and are
     * replayed with their own sequences. */
    if (max_seq > 0) {
        edit_set_last_seq(&e, max_seq);
        rc = vset_take_samples(db->vs, &e, max_seq);
    }
    if (rc == 0 && (rc = vset_log_and_apply(db->vs, &e)) != 0 && !vset_failed(db->vs))
        vset_discard_added(db->vs, &e);
out:
    edit_free(&e);
    free((void *)r.snap_seqs);
    return rc;
}

/* 1 if the directory holds a table or a non-empty WAL segment. */
static int db_has_data_files(kv_db *db)
{
    char **names = NULL;
    size_t n = 0;
    int found = 0;
    if (kvio_list_dir(db->dir, &names, &n) != 0)
        return 0;
    for (size_t i = 0; i < n && !found; i++) {
        size_t len = strlen(names[i]);
        uint64_t num;
        struct stat st;
        char path[PATH_MAX];
        if (len > 4 && strcmp(names[i] + len - 4, ".sst") == 0)
            found = 1;
        else if (db_parse_wal_name(names[i], &num) &&
                 db_wal_path(db, num, path, sizeof path) == 0 && stat(path, &st) == 0 &&
                 st.st_size > 0)
            found = 1;
    }
    kvio_free_list(names, n);
    return found;
}

/* The MANIFEST always names the WAL segment that holds the oldest unflushed write (the segment
 * is created before it is recorded, and deleted only after a newer log number is recorded).
 * A MANIFEST whose last edits were lost (truncated, zeroed) names an older segment that is
 * gone, or none at all while data files exist: opening it would silently bring back old data.
 * Runs before vset_open rewrites anything, so a refused open changes nothing on disk. */
static int db_check_manifest_log(vset *vs, void *arg)
{
    kv_db *db = arg;
    uint64_t log_number = vs->log_number;
    char msg[PATH_MAX + 200], path[PATH_MAX];
    struct stat st;
    if (log_number == 0 && db_has_data_files(db))
        snprintf(msg, sizeof msg,
                 "%s/MANIFEST-%06llu: records no WAL log number but the directory holds data "
                 "files (MANIFEST truncated or damaged)",
                 db->dir, (unsigned long long)vs->manifest_number);
    else if (log_number != 0 &&
             (db_wal_path(db, log_number, path, sizeof path) != 0 || stat(path, &st) != 0))
        snprintf(msg, sizeof msg,
                 "%s/MANIFEST-%06llu: names WAL segment %06llu.log, which is missing (MANIFEST "
                 "truncated or damaged, or the segment was removed)",
                 db->dir, (unsigned long long)vs->manifest_number, (unsigned long long)log_number);
    else
        return 0;
    if (db->opts.salvage) {
        kv_log("salvage: %s; opening anyway", msg);
        return 0;
    }
    return kv_error(-EUCLEAN, "%s", msg);
}

static int db_recover(kv_db *db)
{
    uint64_t *nums = NULL;
    size_t n = 0;
    int rc = db_list_wals(db, db->vs->log_number, &nums, &n);
    if (rc)
        return rc;
    /* WAL numbers come from the same counter as tables: never hand one out again. */
    pthread_mutex_lock(&db->vs->mu);
    if (n > 0 && db->vs->next_file <= nums[n - 1])
        db->vs->next_file = nums[n - 1] + 1;
    pthread_mutex_unlock(&db->vs->mu);

    int stop = 0;
    size_t replayed = 0;
    uint64_t good_end = 0;
    for (; replayed < n && !stop && rc == 0; replayed++)
        rc = db_replay_wal(db, nums[replayed], replayed + 1 == n, &stop, &good_end);
    uint64_t newest = replayed ? nums[replayed - 1] : 0;
    free(nums);
    if (rc)
        return rc;
    vset_truncate_samples(db->vs, atomic_load(&db->last_seq));
    if (db->opts.read_only)
        return 0;
    if (replayed && !stop && (rc = db_seal_replayed(db, newest, good_end)) != 0)
        return rc;

    rc = db_open_new_wal(db);
    if (rc)
        return rc;
    db->mem_first_wal = db->wal_number;
    rc = db_write_level0(db, db->mem, db->wal_number);
    if (kv_err_is_no_space(rc) && replayed && !stop && !vset_failed(db->vs))
        return db_keep_replayed(db, rc);
    if (rc)
        return rc;
    memtable *fresh = mem_new();
    if (!fresh)
        return kv_error(-ENOMEM, "out of memory creating a memtable");
    mem_unref(db->mem);
    db->mem = fresh;
    db_delete_old_wals(db, db->wal_number, DB_WAL_POOL);
    return 0;
}

/* ------------------------------------------------------------------ open/close ---- */

/* Resolves the history window: the store's recorded one, or the caller's, which is then
 * recorded so that every later opener (kvfsctl, a restarted daemon) keeps the same promise. */
static int db_settle_history(kv_db *db)
{
    uint64_t stored = db->vs->history_ms;
    if (db->opts.history_ms == KV_HISTORY_STORED) {
        db->opts.history_ms = stored;
        return 0;
    }
    if (db->opts.history_ms == stored || db->opts.read_only)
        return 0;
    version_edit e;
    edit_init(&e);
    edit_set_history_ms(&e, db->opts.history_ms);
    int rc = vset_log_and_apply(db->vs, &e);
    edit_free(&e);
    return rc;
}

static void db_free(kv_db *db)
{
    if (db->wal)
        log_writer_close(db->wal);
    if (db->mem)
        mem_unref(db->mem);
    if (db->imm)
        mem_unref(db->imm);
    drops_unref(db->drops);
    if (db->vs)
        vset_close(db->vs);
    if (db->block_cache)
        cache_free(db->block_cache);
    if (db->lock_fd >= 0)
        kvio_close(db->lock_fd);
    kv_buf_free(&db->group.rep);
    free(db->compact_threads);
    pthread_mutex_destroy(&db->mu);
    pthread_mutex_destroy(&db->admin_mu);
    pthread_cond_destroy(&db->bg_cv);
    pthread_cond_destroy(&db->done_cv);
    pthread_cond_destroy(&db->gather_cv);
    free(db->dir);
    free(db);
}

static int db_start_threads(kv_db *db)
{
    int rc = pthread_create(&db->flush_thread, NULL, db_flush_main, db);
    if (rc)
        return kv_error(-rc, "cannot start the flush thread: %s", strerror(rc));
    db->threads_started = 1;
    db->compact_threads = calloc((size_t)db->opts.background_threads, sizeof(pthread_t));
    if (!db->compact_threads)
        return kv_error(-ENOMEM, "out of memory starting compaction threads");
    for (int i = 0; i < db->opts.background_threads; i++) {
        rc = pthread_create(&db->compact_threads[i], NULL, db_compact_main, db);
        if (rc)
            return kv_error(-rc, "cannot start a compaction thread: %s", strerror(rc));
        db->ncompact_threads++;
    }
    return 0;
}

static void db_stop_threads(kv_db *db)
{
    pthread_mutex_lock(&db->mu);
    db->shutting_down = 1;
    pthread_cond_broadcast(&db->bg_cv);
    pthread_cond_broadcast(&db->done_cv);
    pthread_mutex_unlock(&db->mu);
    if (db->threads_started)
        pthread_join(db->flush_thread, NULL);
    for (int i = 0; i < db->ncompact_threads; i++)
        pthread_join(db->compact_threads[i], NULL);
    db->threads_started = 0;
    db->ncompact_threads = 0;
}

int kv_open(const char *dir, const kv_options *opt, kv_db **out)
{
    kv_error_clear();
    *out = NULL;
    kv_db *db = calloc(1, sizeof *db);
    if (!db)
        return kv_error(-ENOMEM, "out of memory opening %s", dir);
    db->lock_fd = -1;
    pthread_mutex_init(&db->mu, NULL);
    pthread_mutex_init(&db->admin_mu, NULL);
    pthread_cond_init(&db->bg_cv, NULL);
    pthread_cond_init(&db->done_cv, NULL);
    pthread_cond_init(&db->gather_cv, NULL);
    db->snapshots.next = db->snapshots.prev = &db->snapshots;
    if (opt)
        db->opts = *opt;
    else
        kv_options_init(&db->opts);
    db_sanitize_options(&db->opts);
    int rc;
    db->dir = strdup(dir);
    if (!db->dir || batch_init(&db->group) != 0) {
        rc = kv_error(-ENOMEM, "out of memory opening %s", dir);
        goto fail;
    }
    if (!db->opts.read_only && db->opts.create_if_missing) {
        rc = kvio_mkdir_p(dir, 0700);
        if (rc)
            goto fail;
    }
    char path[PATH_MAX];
    rc = kvio_path(path, sizeof path, "%s/LOCK", dir);
    if (rc)
        goto fail;
    if (access(dir, F_OK) != 0) {
        rc = kv_error(-ENOENT, "%s: no such data directory", dir);
        goto fail;
    }
    rc = kvio_lock_file(path, &db->lock_fd);
    if (rc)
        goto fail;
    db->block_cache = cache_new(db->opts.block_cache_bytes);
    db->mem = mem_new();
    if (!db->block_cache || !db->mem) {
        rc = kv_error(-ENOMEM, "out of memory opening %s", dir);
        goto fail;
    }
    rc = vset_open_checked(dir, &db->opts, db->block_cache, db_check_manifest_log, db, &db->vs);
    if (rc)
        goto fail;
    db->vs->compaction_pace = db_pace_compaction;
    db->vs->compaction_pace_arg = db;
    atomic_store(&db->last_seq, db->vs->last_seq);
    rc = db_recover(db);
    if (rc == 0)
        rc = db_settle_history(db);
    if (rc == 0) {
        pthread_mutex_lock(&db->mu);
        rc = db_refresh_drops(db);
        pthread_mutex_unlock(&db->mu);
    }
    if (rc)
        goto fail;
    if (!db->opts.read_only) {
        rc = db_start_threads(db);
        if (rc)
            goto fail;
        pthread_mutex_lock(&db->mu);
        pthread_cond_broadcast(&db->bg_cv); /* a compaction may be due already */
        pthread_mutex_unlock(&db->mu);
    }
    *out = db;
    return 0;
fail:
    db_stop_threads(db);
    db_free(db);
    return rc;
}

int kv_close(kv_db *db)
{
    if (!db)
        return 0;
    db_stop_threads(db);
    int rc = db->sticky_error ? db_sticky(db) : 0;
    if (db->wal && rc == 0)
        rc = log_writer_seal(db->wal);
    db_free(db);
    return rc;
}

/* ------------------------------------------------------------------ write path ---- */

/* Makes an I/O failure sticky (mu held): the first one is kept, with its message, and every
 * later write is refused with it (see the top of this file). */
void db_set_sticky(kv_db *db, int rc)
{
    if (db->sticky_error)
        return;
    db->sticky_error = rc;
    snprintf(db->sticky_msg, sizeof db->sticky_msg, "%s", kv_last_error());
    kv_log("%s: writes stopped: %s", db->dir, db->sticky_msg);
}

/* The sticky error, with its message for kv_last_error() (mu held). */
int db_sticky(kv_db *db)
{
    return kv_error(db->sticky_error,
                    "%s: writes stopped after an earlier failure (%s); "
                    "reopen the store",
                    db->dir, db->sticky_msg);
}

/* Makes the current memtable immutable and starts a new WAL segment (leader, mu held). */
static int db_switch_memtable(kv_db *db)
{
    memtable *fresh = mem_new();
    if (!fresh)
        return kv_error(-ENOMEM, "out of memory creating a memtable");
    /* The old segment is complete: make it durable (and cut a reused file's older records off)
     * so that recovery may treat a torn record in any segment but the newest as damage. */
    int rc = log_writer_seal(db->wal);
    if (rc == 0) {
        log_writer *old = db->wal;
        uint64_t old_number = db->wal_number;
        rc = db_open_new_wal(db);
        if (rc == 0) {
            rc = log_writer_close(old);
        } else {
            db->wal = old;
            db->wal_number = old_number;
        }
    }
    if (rc) {
        mem_unref(fresh);
        db_set_sticky(db, rc);
        return rc;
    }
    db->imm = db->mem;
    db->mem = fresh;
    db->mem_first_wal = db->wal_number;
    pthread_cond_broadcast(&db->bg_cv);
    return 0;
}

/* Rotates the WAL segment without switching memtables (leader, mu held). */
static int db_rotate_wal(kv_db *db)
{
    int rc = log_writer_seal(db->wal);
    if (rc == 0) {
        log_writer *old = db->wal;
        rc = db_open_new_wal(db);
        if (rc == 0)
            rc = log_writer_close(old);
    }
    if (rc)
        db_set_sticky(db, rc);
    return rc;
}

static size_t db_level0_depth(kv_db *db)
{
    version *v = vset_current(db->vs);
    size_t n = v->l0_depth;
    version_unref(v);
    return n;
}

/* Waits (leader, mu held) until the write may go on; see the stall rules at the top. */
static int db_make_room(kv_db *db, int force)
{
    int allow_delay = !force;
    for (;;) {
        if (db->sticky_error)
            return db_sticky(db);
        if (db->shutting_down)
            return kv_error(-ESHUTDOWN, "%s: store is closing", db->dir);
        size_t l0 = db_level0_depth(db);
        if (allow_delay && l0 >= VSET_L0_SLOWDOWN) {
            uint64_t t0 = kv_mono_us();
            pthread_mutex_unlock(&db->mu);
            usleep(1000);
            pthread_mutex_lock(&db->mu);
            atomic_fetch_add_explicit(&db->st_stalls, 1, memory_order_relaxed);
            atomic_fetch_add_explicit(&db->st_stall_us, kv_mono_us() - t0, memory_order_relaxed);
            allow_delay = 0;
            continue;
        }
        if (!force && mem_bytes(db->mem) < db->opts.memtable_bytes) {
            if (log_writer_offset(db->wal) >= db->opts.wal_segment_bytes)
                return db_rotate_wal(db);
            return 0;
        }
        if (force && mem_entries(db->mem) == 0)
            return 0;
        if (db->imm || l0 >= VSET_L0_STOP) {
            if (db->no_space) /* what it would wait for cannot be written now */
                return kv_error(db->no_space, "%s: no room for a flush or compaction (%s)", db->dir,
                                db->no_space_msg);
            uint64_t t0 = kv_mono_us();
            pthread_cond_broadcast(&db->bg_cv);
            pthread_cond_wait(&db->done_cv, &db->mu);
            atomic_fetch_add_explicit(&db->st_stalls, 1, memory_order_relaxed);
            atomic_fetch_add_explicit(&db->st_stall_us, kv_mono_us() - t0, memory_order_relaxed);
            continue;
        }
        return db_switch_memtable(db);
    }
}

/* The leader's insert of one op into db->mem. A range deletion joins db->drops under mu
 * before the batch's sequence is published, so every read at or after it sees the drop. */
static int db_insert_op(void *arg, uint64_t seq, unsigned type, kv_slice key, kv_slice val)
{
    kv_db *db = arg;
    if (type != KV_TYPE_RANGE_DELETE)
        return mem_add(db->mem, seq, type, key, val);
    pthread_mutex_lock(&db->mu);
    int rc = mem_add_drop(db->mem, seq, key, val);
    if (rc == 0)
        rc = db_refresh_drops(db);
    pthread_mutex_unlock(&db->mu);
    return rc;
}

/* Builds the group led by leader into db->group (mu held). Returns the last member. */
static db_writer *db_build_group(kv_db *db, db_writer *leader)
{
    db_writer *last = leader;
    size_t size = leader->batch ? kv_batch_bytes(leader->batch) : 0;
    size_t max = size <= DB_SMALL_BATCH_BYTES ? size + DB_SMALL_BATCH_BYTES : DB_MAX_GROUP_BYTES;
    kv_batch_clear(&db->group);
    if (leader->batch)
        batch_append(&db->group, leader->batch);
    for (db_writer *w = leader->next; w; w = w->next) {
        if (w->force_switch || (w->sync && !leader->sync))
            break;
        if (w->batch) {
            size_t bytes = kv_batch_bytes(w->batch);
            if (size + bytes > max)
                break;
            if (batch_append(&db->group, w->batch) != 0)
                break;
            size += bytes;
        }
        last = w;
    }
    return last;
}

/* Whether an fsync is likely to follow an unsynced WAL record: one came within
 * DB_PACE_WINDOW_US, after at most DB_EARLY_WRITEBACK_RECORDS records, as while files are
 * created, written and fsynced one by one, or a database commits. The leader then starts
 * writeback of the record's whole pages at once (log_writer_start_writeback) instead of
 * leaving them all to the fsync: when the caller's fsync comes (a FUSE round trip later) they
 * are on their way, and the fdatasync mostly waits for the cache flush. Measured: 4,350 bytes
 * of records, then fdatasync 15 us later: 84-90 us, 53-61 us with the whole pages written back
 * first. A stream of unsynced writes after an fsync (random overwrites, a copy) stops after
 * DB_EARLY_WRITEBACK_RECORDS: page by page it would be thousands of small disk writes where
 * the writeback as the log grows (kvio_writeback_note) issues a few large ones. (leader) */
#define DB_EARLY_WRITEBACK_RECORDS 8u
static int db_expect_sync(kv_db *db)
{
    uint64_t last = atomic_load_explicit(&db->last_sync_us, memory_order_relaxed);
    return last && db->records_since_sync <= DB_EARLY_WRITEBACK_RECORDS &&
           kv_mono_us() - last < DB_PACE_WINDOW_US;
}

/* Appends the group to the WAL and the memtable (leader, mu NOT held). */
static int db_commit_group(kv_db *db, int sync, uint64_t first_seq, uint64_t time_ms)
{
    int rc = 0;
    if (db->group.count > 0) {
        batch_set_seq(&db->group, first_seq);
        batch_set_time(&db->group, time_ms);
        rc = log_writer_add(db->wal, db->group.rep.data, db->group.rep.len);
        if (rc == 0 && !sync) {
            if (db->records_since_sync < UINT32_MAX)
                db->records_since_sync++;
            if (db_expect_sync(db))
                rc = log_writer_start_writeback(db->wal);
        }
        if (rc)
            return rc;
        atomic_fetch_add_explicit(&db->st_wal_bytes, db->group.rep.len, memory_order_relaxed);
    }
    if (sync) {
        uint64_t t0 = kv_mono_us();
        rc = log_writer_sync(db->wal);
        if (rc)
            return rc;
        /* (leader only) a moving average of the fsync time, for db_gather_sync_group */
        db->fsync_us_avg = (db->fsync_us_avg * 7 + (kv_mono_us() - t0)) / 8;
        db->records_since_sync = 0;
        atomic_store_explicit(&db->last_sync_us, kv_mono_us(), memory_order_relaxed);
        atomic_fetch_add_explicit(&db->st_wal_syncs, 1, memory_order_relaxed);
    }
    if (db->group.count > 0)
        rc = batch_decode(kv_buf_slice(&db->group.rep), db_insert_op, db, NULL, NULL, NULL);
    return rc;
}

static size_t db_queue_length(const kv_db *db)
{
    size_t n = 0;
    for (const db_writer *m = db->queue_head; m; m = m->next)
        n++;
    return n;
}

/* pthread_cond_timedwait for at most us microseconds; returns its result. */
static int db_cond_wait_us(pthread_cond_t *cv, pthread_mutex_t *mu, uint64_t us)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t ns = (uint64_t)ts.tv_nsec + us * 1000u;
    ts.tv_sec += (time_t)(ns / 1000000000u);
    ts.tv_nsec = (long)(ns % 1000000000u);
    return pthread_cond_timedwait(cv, mu, &ts);
}

/* A sync leader that finds fewer writers queued than joined the previous sync group waits a
 * little (mu released; at most one recent fsync, and DB_GATHER_MAX_US) for the
 * writers just woken by the previous group, so that they share this fsync instead of each
 * paying for the next one. Every enqueue wakes the waiting leader. */
#define DB_GATHER_MAX_US 500
static void db_gather_sync_group(kv_db *db)
{
    if (db_queue_length(db) >= db->last_sync_group)
        return;
    uint64_t wait_us = KV_MIN(db->fsync_us_avg, (uint64_t)DB_GATHER_MAX_US);
    uint64_t deadline = kv_mono_us() + wait_us, now;
    db->gathering = 1;
    while (db_queue_length(db) < db->last_sync_group && (now = kv_mono_us()) < deadline) {
        if (db_cond_wait_us(&db->gather_cv, &db->mu, deadline - now) != 0)
            break;
    }
    db->gathering = 0;
}

static int db_write(kv_db *db, db_writer *w)
{
    pthread_mutex_lock(&db->mu);
    w->next = NULL;
    if (db->queue_tail)
        db->queue_tail->next = w;
    else
        db->queue_head = w;
    db->queue_tail = w;
    if (db->gathering)
        pthread_cond_signal(&db->gather_cv);
    while (!w->done && db->queue_head != w)
        pthread_cond_wait(&w->cv, &db->mu);
    if (w->done) {
        pthread_mutex_unlock(&db->mu);
        return w->rc;
    }

    /* w leads. */
    int rc = db_make_room(db, w->force_switch);
    if (rc == 0 && w->sync)
        db_gather_sync_group(db);
    db_writer *last = w;
    uint64_t first_seq = atomic_load(&db->last_seq) + 1;
    if (rc == 0) {
        last = db_build_group(db, w);
        int sync = 0;
        for (db_writer *m = w;; m = m->next) {
            sync |= m->sync;
            if (m == last)
                break;
        }
        uint64_t now = kv_now_ms();
        uint64_t time_ms = now > db->last_commit_ms ? now : db->last_commit_ms;
        db->last_commit_ms = time_ms;
        size_t count = db->group.count;
        if (sync) {
            size_t members = 1;
            for (db_writer *m = w; m != last; m = m->next)
                members++;
            db->last_sync_group = members;
        }
        pthread_mutex_unlock(&db->mu);
        rc = db_commit_group(db, sync, first_seq, time_ms);
        pthread_mutex_lock(&db->mu);
        if (kv_err_is_no_space(rc) && !log_writer_failed(db->wal) && db_release_wal_pool(db)) {
            /* nothing was written: once more, with the pooled segments' room */
            pthread_mutex_unlock(&db->mu);
            rc = db_commit_group(db, sync, first_seq, time_ms);
            pthread_mutex_lock(&db->mu);
        }
        if (rc) {
            /* a record the disk had no room for was undone: the store is as it was */
            if (!kv_err_is_no_space(rc) || log_writer_failed(db->wal))
                db_set_sticky(db, rc);
        } else if (count > 0) {
            atomic_store_explicit(&db->last_seq, first_seq + count - 1, memory_order_release);
            vset_note_commit(db->vs, first_seq + count - 1, time_ms);
        }
        if (last != w)
            atomic_fetch_add_explicit(&db->st_group_commits, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&db->st_batches, 1, memory_order_relaxed);
    }

    /* Hand every member its result and its own last sequence. */
    uint64_t next_seq = first_seq;
    for (;;) {
        db_writer *m = db->queue_head;
        size_t n = m->batch ? kv_batch_count(m->batch) : 0;
        next_seq += n;
        m->last_seq = next_seq - 1;
        m->rc = rc;
        m->done = 1;
        db->queue_head = m->next;
        if (!db->queue_head)
            db->queue_tail = NULL;
        if (m != w)
            pthread_cond_signal(&m->cv);
        if (m == last)
            break;
    }
    if (db->queue_head)
        pthread_cond_signal(&db->queue_head->cv);
    pthread_mutex_unlock(&db->mu);
    return rc;
}

static int db_write_checked(kv_db *db, db_writer *w)
{
    if (db->opts.read_only)
        return kv_error(-EROFS, "%s: store is open read-only", db->dir);
    pthread_cond_init(&w->cv, NULL);
    int rc = db_write(db, w);
    pthread_cond_destroy(&w->cv);
    return rc;
}

int db_write_control(kv_db *db, int sync, int force_switch)
{
    db_writer w;
    memset(&w, 0, sizeof w);
    w.sync = sync;
    w.force_switch = force_switch;
    return db_write_checked(db, &w);
}

int kv_write(kv_db *db, const kv_batch *b, unsigned flags, uint64_t *seq)
{
    kv_error_clear();
    db_writer w;
    memset(&w, 0, sizeof w);
    w.batch = b;
    w.sync = (flags & KV_WRITE_SYNC) || (db->opts.sync_writes && !(flags & KV_WRITE_NOSYNC));
    if (kv_batch_count(b) == 0 && !w.sync) {
        if (seq)
            *seq = atomic_load(&db->last_seq);
        return db->opts.read_only ? kv_error(-EROFS, "%s: store is open read-only", db->dir) : 0;
    }
    int rc = db_write_checked(db, &w);
    if (rc == 0) {
        atomic_fetch_add_explicit(&db->st_puts, b->count - b->ndeletes, memory_order_relaxed);
        atomic_fetch_add_explicit(&db->st_deletes, b->ndeletes, memory_order_relaxed);
        if (seq)
            *seq = w.last_seq;
    }
    return rc;
}

static int db_write_one(kv_db *db, unsigned type, const void *key, size_t klen, const void *val,
                        size_t vlen, uint64_t expire_at_ms, unsigned flags)
{
    kv_batch b;
    int rc = batch_init(&b);
    if (rc)
        return kv_error(rc, "out of memory");
    if (type == KV_TYPE_DELETE)
        rc = kv_batch_delete(&b, key, klen);
    else
        rc = kv_batch_put_ttl(&b, key, klen, val, vlen, expire_at_ms);
    if (rc == 0)
        rc = kv_write(db, &b, flags, NULL);
    kv_buf_free(&b.rep);
    return rc;
}

int kv_put(kv_db *db, const void *key, size_t klen, const void *val, size_t vlen, unsigned flags)
{
    return db_write_one(db, KV_TYPE_VALUE, key, klen, val, vlen, 0, flags);
}

int kv_put_ttl(kv_db *db, const void *key, size_t klen, const void *val, size_t vlen,
               uint64_t expire_at_ms, unsigned flags)
{
    return db_write_one(db, KV_TYPE_VALUE, key, klen, val, vlen, expire_at_ms, flags);
}

int kv_delete(kv_db *db, const void *key, size_t klen, unsigned flags)
{
    return db_write_one(db, KV_TYPE_DELETE, key, klen, NULL, 0, 0, flags);
}

int kv_sync(kv_db *db)
{
    kv_error_clear();
    return db_write_control(db, 1, 0);
}

/* ------------------------------------------------------------------ reads ---- */

int db_seq_is_retained(kv_db *db, uint64_t seq)
{
    if (seq >= kv_oldest_readable_seq(db))
        return 1;
    int found = 0;
    pthread_mutex_lock(&db->mu);
    for (struct kv_snapshot *s = db->snapshots.next; s != &db->snapshots; s = s->next)
        if (s->seq == seq)
            found = 1;
    pthread_mutex_unlock(&db->mu);
    if (found)
        return 1;
    uint64_t *seqs = NULL;
    size_t n = 0;
    if (vset_snapshot_seqs(db->vs, &seqs, &n) == 0) {
        for (size_t i = 0; i < n; i++)
            if (seqs[i] == seq)
                found = 1;
        free(seqs);
    }
    return found;
}

int db_readview_acquire(kv_db *db, const kv_readopts *ro, db_readview *rv)
{
    static const kv_readopts latest;
    if (!ro)
        ro = &latest;
    uint64_t last = atomic_load_explicit(&db->last_seq, memory_order_acquire);
    uint64_t seq = last, time_ms = ro->time_ms;
    if (ro->snapshot) {
        seq = ro->snapshot->seq;
        if (!time_ms)
            time_ms = ro->snapshot->time_ms;
    } else if (ro->seq && ro->seq < last) {
        if (!db_seq_is_retained(db, ro->seq))
            return kv_error(-ESTALE, "%s: sequence %llu is older than the retained history",
                            db->dir, (unsigned long long)ro->seq);
        seq = ro->seq;
    }
    if (!time_ms)
        time_ms = kv_now_ms();
    pthread_mutex_lock(&db->mu);
    rv->mem = db->mem;
    mem_ref(rv->mem);
    rv->imm = db->imm;
    if (rv->imm)
        mem_ref(rv->imm);
    rv->v = vset_current(db->vs);
    rv->drops = db->drops;
    drops_ref(rv->drops);
    pthread_mutex_unlock(&db->mu);
    rv->seq = seq;
    rv->time_ms = time_ms;
    return 0;
}

void db_readview_release(db_readview *rv)
{
    mem_unref(rv->mem);
    if (rv->imm)
        mem_unref(rv->imm);
    version_unref(rv->v);
    drops_unref(rv->drops);
}

int kv_get(kv_db *db, const kv_readopts *ro, const void *key, size_t klen, void **val, size_t *vlen,
           kv_entry_info *info)
{
    kv_error_clear();
    if (val)
        *val = NULL;
    if (klen == 0 || klen > KV_MAX_KEY_BYTES)
        return kv_error(klen ? -ENAMETOOLONG : -EINVAL, "key length %zu is not 1..%u", klen,
                        KV_MAX_KEY_BYTES);
    atomic_fetch_add_explicit(&db->st_gets, 1, memory_order_relaxed);
    db_readview rv;
    int rc = db_readview_acquire(db, ro, &rv);
    if (rc)
        return rc;
    kv_slice ukey = kv_slice_of(key, klen);
    uint64_t seq = 0;
    unsigned type = 0;
    kv_slice stored;
    kv_buf owned = {0};
    int found = mem_get(rv.mem, ukey, rv.seq, &seq, &type, &stored);
    if (!found && rv.imm)
        found = mem_get(rv.imm, ukey, rv.seq, &seq, &type, &stored);
    if (!found) {
        found = version_get(rv.v, ukey, rv.seq, &seq, &type, &owned);
        stored = kv_buf_slice(&owned);
    }
    if (found < 0) {
        rc = found;
        goto out;
    }
    if (found && rv.drops && drops_next_above(rv.drops, ukey, seq) <= rv.seq)
        found = 0; /* a range deletion newer than this version hides it */
    uint64_t expire_at = 0;
    kv_slice user_val;
    if (!found || type == KV_TYPE_DELETE) {
        rc = -ENOENT;
        goto out;
    }
    rc = kv_value_decode(type, stored, &expire_at, &user_val);
    if (rc) {
        rc = kv_error(rc, "%s: malformed TTL value", db->dir);
        goto out;
    }
    if (expire_at && expire_at <= rv.time_ms) {
        rc = -ENOENT;
        goto out;
    }
    if (info) {
        info->seq = seq;
        info->expire_at_ms = expire_at;
        info->value_len = user_val.len;
    }
    if (vlen)
        *vlen = user_val.len;
    if (val) {
        void *copy = malloc(user_val.len ? user_val.len : 1);
        if (!copy) {
            rc = kv_error(-ENOMEM, "out of memory reading a %zu-byte value", user_val.len);
            goto out;
        }
        if (user_val.len)
            memcpy(copy, user_val.data, user_val.len);
        *val = copy;
    }
out:
    kv_buf_free(&owned);
    db_readview_release(&rv);
    return rc;
}

uint64_t kv_last_seq(kv_db *db)
{
    return atomic_load_explicit(&db->last_seq, memory_order_acquire);
}

uint64_t kv_oldest_readable_seq(kv_db *db)
{
    uint64_t last = kv_last_seq(db);
    if (db->opts.history_ms == 0)
        return last;
    uint64_t now = kv_now_ms();
    if (now <= db->opts.history_ms)
        return 0;
    uint64_t seq = 0;
    if (vset_seq_at_time(db->vs, now - db->opts.history_ms, &seq) != 0)
        return last;
    return seq;
}

/* ------------------------------------------------------------ background work ---- */

int db_retention(kv_db *db, retention *r)
{
    memset(r, 0, sizeof *r);
    uint64_t now = kv_now_ms();
    r->floor_seq = kv_oldest_readable_seq(db);
    r->expiry_floor_ms = db->opts.history_ms < now ? now - db->opts.history_ms : 0;
    uint64_t *named = NULL;
    size_t nnamed = 0;
    int rc = vset_snapshot_seqs(db->vs, &named, &nnamed);
    if (rc)
        return rc;
    size_t cap = nnamed + db->nsnapshots + 1;
    uint64_t *seqs = malloc(cap * sizeof *seqs);
    if (!seqs) {
        free(named);
        return kv_error(-ENOMEM, "out of memory computing retention");
    }
    size_t n = 0;
    for (size_t i = 0; i < nnamed; i++)
        seqs[n++] = named[i];
    free(named);
    for (struct kv_snapshot *s = db->snapshots.next; s != &db->snapshots; s = s->next) {
        seqs[n++] = s->seq;
        if (s->time_ms < r->expiry_floor_ms)
            r->expiry_floor_ms = s->time_ms;
    }
    kv_snapinfo *list = NULL;
    size_t nlist = 0;
    if (vset_snapshot_list(db->vs, &list, &nlist) == 0) {
        for (size_t i = 0; i < nlist; i++)
            if (list[i].time_ms < r->expiry_floor_ms)
                r->expiry_floor_ms = list[i].time_ms;
        free(list);
    }
    qsort(seqs, n, sizeof *seqs, cmp_u64);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (seqs[i] < r->floor_seq && (k == 0 || seqs[k - 1] != seqs[i]))
            seqs[k++] = seqs[i];
    r->snap_seqs = seqs;
    r->nsnaps = k;
    return 0;
}

/* A background job failed (mu held). A want of space with the version set intact leaves
 * nothing changed (the job removed its tables): it is tried again after DB_NO_SPACE_RETRY_US
 * (see the top of this file). Anything else is sticky. */
static void db_set_bg_error(kv_db *db, int rc)
{
    if (kv_err_is_no_space(rc) && !vset_failed(db->vs)) {
        if (!db->no_space)
            kv_log("%s: %s; trying again every %u ms", db->dir, kv_last_error(),
                   DB_NO_SPACE_RETRY_US / 1000u);
        /* with the pool's room, at once */
        db_note_no_space(db, rc, db_release_wal_pool(db) ? 0 : DB_NO_SPACE_RETRY_US);
        return;
    }
    db_set_sticky(db, rc);
}

/* A background job succeeded (mu held): the disk had room again. */
static void db_clear_no_space(kv_db *db)
{
    if (db->no_space)
        kv_log("%s: room on the disk again", db->dir);
    db->no_space = 0;
}

/* While a job waits to be tried again after a full disk (mu held): waits until then (or a
 * signal of bg_cv) and returns 1; else 0. */
static int db_no_space_backoff(kv_db *db)
{
    uint64_t now = kv_mono_us();
    if (!db->no_space || now >= db->no_space_retry_us)
        return 0;
    db_cond_wait_us(&db->bg_cv, &db->mu, db->no_space_retry_us - now);
    return 1;
}

static void *db_flush_main(void *arg)
{
    kv_db *db = arg;
    pthread_mutex_lock(&db->mu);
    while (!db->shutting_down) {
        if (!db->imm || db->sticky_error) {
            pthread_cond_wait(&db->bg_cv, &db->mu);
            continue;
        }
        if (db_no_space_backoff(db))
            continue;
        memtable *imm = db->imm;
        uint64_t log_number = db->mem_first_wal;
        pthread_mutex_unlock(&db->mu);
        int rc = db_write_level0(db, imm, log_number);
        pthread_mutex_lock(&db->mu);
        if (rc) {
            db_set_bg_error(db, rc);
        } else {
            /* after a full disk, the segments go back to it instead of into the pool */
            size_t pool = db->no_space ? 0 : DB_WAL_POOL;
            db_clear_no_space(db);
            db->imm = NULL;
            mem_unref(imm);
            if ((rc = db_refresh_drops(db)) != 0) /* imm's drops are the version's now */
                db_set_bg_error(db, rc);
            db->flush_count++;
            atomic_fetch_add_explicit(&db->st_flushes, 1, memory_order_relaxed);
            db_delete_old_wals(db, log_number, pool);
        }
        pthread_cond_broadcast(&db->done_cv);
        pthread_cond_broadcast(&db->bg_cv); /* compaction may now be due */
    }
    pthread_mutex_unlock(&db->mu);
    return NULL;
}

/* Runs one compaction c (mu NOT held). */
static int db_run_compaction(kv_db *db, compaction *c)
{
    retention r;
    pthread_mutex_lock(&db->mu);
    int rc = db_retention(db, &r);
    pthread_mutex_unlock(&db->mu);
    if (rc)
        return rc;
    version_edit e;
    edit_init(&e);
    uint64_t bytes_read = 0, bytes_written = 0;
    rc = db_room_for(db, compaction_output_bytes(c), "a compaction");
    if (rc == 0)
        rc = compaction_run(c, &r, &e, &bytes_read, &bytes_written);
    if (rc == 0 && (rc = vset_log_and_apply(db->vs, &e)) != 0 && !vset_failed(db->vs))
        vset_discard_added(db->vs, &e);
    edit_free(&e);
    free((void *)r.snap_seqs);
    if (rc == 0) {
        atomic_fetch_add_explicit(&db->st_compactions, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&db->st_comp_read, bytes_read, memory_order_relaxed);
        atomic_fetch_add_explicit(&db->st_comp_written, bytes_written, memory_order_relaxed);
        uint64_t now = kv_now_ms();
        if (db->opts.history_ms < now)
            vset_prune_samples(db->vs, (now - db->opts.history_ms) / 1000);
    }
    return rc;
}

/* Range-deletion upkeep (vset_drop_upkeep), by one thread at a time (mu held; released
 * during the work). Returns 1 while range deletions remain in the version: they wait for
 * the history floor to pass them, so the caller comes back on a timer. */
static int db_drop_upkeep(kv_db *db)
{
    version *v = vset_current(db->vs);
    int pending = v->drops != NULL;
    version_unref(v);
    if (!pending || db->drop_upkeep_running || db->sticky_error)
        return pending;
    retention r;
    int rc = db_retention(db, &r);
    if (rc) {
        db_set_bg_error(db, rc);
        return pending;
    }
    db->drop_upkeep_running = 1;
    pthread_mutex_unlock(&db->mu);
    version_edit e;
    edit_init(&e);
    rc = vset_drop_upkeep(db->vs, &r, &e);
    if (rc > 0)
        rc = vset_log_and_apply(db->vs, &e);
    vset_drop_upkeep_done(db->vs, &e);
    edit_free(&e);
    free((void *)r.snap_seqs);
    pthread_mutex_lock(&db->mu);
    db->drop_upkeep_running = 0;
    if (rc == 0)
        rc = db_refresh_drops(db);
    if (rc < 0)
        db_set_bg_error(db, rc);
    v = vset_current(db->vs);
    pending = v->drops != NULL;
    version_unref(v);
    return pending;
}

static void *db_compact_main(void *arg)
{
    kv_db *db = arg;
    pthread_mutex_lock(&db->mu);
    while (!db->shutting_down) {
        int drops_pending = db_drop_upkeep(db); /* may release mu */
        if (db->shutting_down)
            break;
        if (db_no_space_backoff(db))
            continue;
        compaction *c = db->sticky_error ? NULL : vset_pick_compaction(db->vs);
        if (!c) {
            if (drops_pending)
                db_cond_wait_us(&db->bg_cv, &db->mu, DB_DROP_UPKEEP_US);
            else
                pthread_cond_wait(&db->bg_cv, &db->mu);
            continue;
        }
        db->bg_compactions++;
        pthread_mutex_unlock(&db->mu);
        int rc = db_run_compaction(db, c);
        compaction_free(c);
        pthread_mutex_lock(&db->mu);
        db->bg_compactions--;
        if (rc)
            db_set_bg_error(db, rc);
        else
            db_clear_no_space(db);
        pthread_cond_broadcast(&db->done_cv);
    }
    pthread_mutex_unlock(&db->mu);
    return NULL;
}

int kv_flush(kv_db *db)
{
    kv_error_clear();
    int rc = db_write_control(db, 0, 1);
    if (rc)
        return rc;
    pthread_mutex_lock(&db->mu);
    while (db->imm && !db->sticky_error && !db->no_space && !db->shutting_down)
        pthread_cond_wait(&db->done_cv, &db->mu);
    rc = db->sticky_error ? db_sticky(db) : 0;
    if (rc == 0 && db->imm && db->no_space)
        rc = kv_error(db->no_space, "%s: no room to flush (%s)", db->dir, db->no_space_msg);
    pthread_mutex_unlock(&db->mu);
    return rc;
}

int kv_compact_range(kv_db *db, const void *lo, size_t lolen, const void *hi, size_t hilen)
{
    int rc = kv_flush(db);
    if (rc)
        return rc;
    kv_slice los = kv_slice_of(lo, lolen), his = kv_slice_of(hi, hilen);
    version *v = vset_current(db->vs);
    int deepest = 0;
    for (int l = 0; l < KV_MAX_LEVELS; l++)
        if (v->nfiles[l])
            deepest = l;
    version_unref(v);
    for (int level = 0; level < KV_MAX_LEVELS - 1 && level <= deepest; level++) {
        for (;;) {
            int busy = 0;
            compaction *c =
                vset_compact_range(db->vs, level, lo ? &los : NULL, hi ? &his : NULL, &busy);
            if (!c && busy) {
                /* A background compaction holds some inputs: wait for it and try again. */
                pthread_mutex_lock(&db->mu);
                if (db->bg_compactions > 0 && !db->sticky_error)
                    pthread_cond_wait(&db->done_cv, &db->mu);
                rc = db->sticky_error ? db_sticky(db) : 0;
                pthread_mutex_unlock(&db->mu);
                if (rc)
                    return rc;
                continue;
            }
            if (!c)
                break;
            rc = db_run_compaction(db, c);
            compaction_free(c);
            pthread_mutex_lock(&db->mu);
            if (rc)
                db_set_bg_error(db, rc);
            pthread_cond_broadcast(&db->bg_cv);
            pthread_mutex_unlock(&db->mu);
            if (rc)
                return rc;
            break;
        }
    }
    return 0;
}
