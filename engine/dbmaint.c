/*
 * dbmaint.c -- snapshots (in-memory and named), version history, time<->sequence queries,
 * checkpoints, verification and statistics.
 *
 * Named snapshots are recorded in the MANIFEST only after the WAL is synced up to their
 * sequence, so a snapshot can never name writes that a crash could take back.
 *
 * A checkpoint is taken with db->mu, vs->apply_mu and vs->mu held while the MANIFEST (up to its
 * current end) is copied and the live tables are hard-linked, so the copy names exactly the files
 * it has; the WAL segments that follow are then copied while db->mu keeps them from being deleted.
 * A record being appended while the segment is copied is a torn tail in the copy, which recovery
 * treats as the end of the log.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "db_impl.h"
#include "dbformat.h"
#include "kvio.h"

/* ------------------------------------------------------------ in-memory snapshots ---- */

int kv_snapshot_acquire(kv_db *db, uint64_t seq, kv_snapshot **out)
{
    kv_error_clear();
    *out = NULL;
    uint64_t last = kv_last_seq(db);
    uint64_t now = kv_now_ms();
    uint64_t time_ms = now;
    if (seq == 0 || seq >= last) {
        seq = last;
    } else {
        if (!db_seq_is_retained(db, seq))
            return kv_error(-ESTALE, "%s: sequence %llu is older than the retained history",
                            db->dir, (unsigned long long)seq);
        if (kv_time_of_seq(db, seq, &time_ms) == 0) {
            time_ms += 999; /* the end of its commit second */
            if (time_ms > now)
                time_ms = now;
        }
    }
    kv_snapshot *s = calloc(1, sizeof *s);
    if (!s)
        return kv_error(-ENOMEM, "out of memory creating a snapshot");
    s->seq = seq;
    s->time_ms = time_ms;
    pthread_mutex_lock(&db->mu);
    s->next = &db->snapshots;
    s->prev = db->snapshots.prev;
    s->prev->next = s;
    db->snapshots.prev = s;
    db->nsnapshots++;
    pthread_mutex_unlock(&db->mu);
    *out = s;
    return 0;
}

void kv_snapshot_release(kv_db *db, kv_snapshot *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&db->mu);
    s->prev->next = s->next;
    s->next->prev = s->prev;
    db->nsnapshots--;
    pthread_cond_broadcast(&db->bg_cv);
    pthread_mutex_unlock(&db->mu);
    free(s);
}

uint64_t kv_snapshot_seq(const kv_snapshot *s)
{
    return s->seq;
}

uint64_t kv_snapshot_time_ms(const kv_snapshot *s)
{
    return s->time_ms;
}

/* ------------------------------------------------------------ named snapshots ---- */

static int db_check_snapshot_name(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > KV_SNAPSHOT_NAME_MAX)
        return kv_error(n ? -ENAMETOOLONG : -EINVAL, "snapshot name must be 1..%d bytes",
                        KV_SNAPSHOT_NAME_MAX);
    if (strchr(name, '/') || name[0] == '@' || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return kv_error(-EINVAL, "snapshot name '%s' is not allowed (no '/', no leading '@')",
                        name);
    return 0;
}

int kv_named_snapshot_create(kv_db *db, const char *name, kv_snapinfo *info)
{
    kv_error_clear();
    int rc = db_check_snapshot_name(name);
    if (rc)
        return rc;
    if (db->opts.read_only)
        return kv_error(-EROFS, "%s: store is open read-only", db->dir);
    pthread_mutex_lock(&db->admin_mu);
    vset_snapshot existing;
    if (vset_snapshot_find(db->vs, name, &existing) == 0) {
        rc = kv_error(-EEXIST, "snapshot '%s' already exists", name);
        goto out;
    }
    uint64_t seq = kv_last_seq(db);
    uint64_t time_ms = kv_now_ms();
    rc = db_write_control(db, 1, 0); /* everything up to seq is durable first */
    if (rc)
        goto out;
    version_edit e;
    edit_init(&e);
    rc = edit_add_snapshot(&e, name, seq, time_ms);
    if (rc == 0)
        rc = vset_log_and_apply(db->vs, &e);
    edit_free(&e);
    if (rc == 0 && info) {
        memset(info, 0, sizeof *info);
        snprintf(info->name, sizeof info->name, "%s", name);
        info->seq = seq;
        info->time_ms = time_ms;
    }
out:
    pthread_mutex_unlock(&db->admin_mu);
    return rc;
}

int kv_named_snapshot_delete(kv_db *db, const char *name)
{
    kv_error_clear();
    if (db->opts.read_only)
        return kv_error(-EROFS, "%s: store is open read-only", db->dir);
    pthread_mutex_lock(&db->admin_mu);
    vset_snapshot existing;
    int rc = vset_snapshot_find(db->vs, name, &existing);
    if (rc) {
        rc = kv_error(-ENOENT, "no snapshot named '%s'", name);
        goto out;
    }
    version_edit e;
    edit_init(&e);
    rc = edit_delete_snapshot(&e, name);
    if (rc == 0)
        rc = vset_log_and_apply(db->vs, &e);
    edit_free(&e);
    pthread_mutex_lock(&db->mu);
    pthread_cond_broadcast(&db->bg_cv); /* what it kept may now be compacted away */
    pthread_mutex_unlock(&db->mu);
out:
    pthread_mutex_unlock(&db->admin_mu);
    return rc;
}

int kv_named_snapshot_get(kv_db *db, const char *name, kv_snapinfo *info)
{
    kv_error_clear();
    vset_snapshot s;
    if (vset_snapshot_find(db->vs, name, &s) != 0)
        return kv_error(-ENOENT, "no snapshot named '%s'", name);
    memset(info, 0, sizeof *info);
    snprintf(info->name, sizeof info->name, "%s", name);
    info->seq = s.seq;
    info->time_ms = s.time_ms;
    return 0;
}

int kv_named_snapshot_list(kv_db *db, kv_snapinfo **list, size_t *n)
{
    kv_error_clear();
    return vset_snapshot_list(db->vs, list, n);
}

/* ------------------------------------------------------------ time and history ---- */

int kv_seq_at_time(kv_db *db, uint64_t time_ms, uint64_t *seq)
{
    kv_error_clear();
    uint64_t now = kv_now_ms();
    uint64_t last = kv_last_seq(db);
    if (time_ms / 1000 >= now / 1000) {
        *seq = last;
        return 0;
    }
    uint64_t window_start = now > db->opts.history_ms ? now - db->opts.history_ms : 0;
    if (time_ms / 1000 < window_start / 1000)
        return kv_error(-ESTALE, "%s: time %llu ms is older than the retained history (%llu s)",
                        db->dir, (unsigned long long)time_ms,
                        (unsigned long long)(db->opts.history_ms / 1000));
    int rc = vset_seq_at_time(db->vs, time_ms, seq);
    if (rc == 0 && *seq > last)
        *seq = last;
    return rc;
}

int kv_time_of_seq(kv_db *db, uint64_t seq, uint64_t *time_ms)
{
    kv_error_clear();
    return vset_time_of_seq(db->vs, seq, time_ms);
}

/* Is the version (seq s, next newer version s_next or 0 for none) readable at a retained
 * point? */
static int db_version_retained(const retention *r, uint64_t s, uint64_t s_next)
{
    if (s_next == 0 || s_next > r->floor_seq)
        return 1;
    for (size_t i = 0; i < r->nsnaps; i++)
        if (r->snap_seqs[i] >= s && r->snap_seqs[i] < s_next)
            return 1;
    return 0;
}

static int db_history_append(kv_db *db, kv_version **list, size_t *n, size_t *cap,
                             const kv_parsed_key *pk, kv_slice stored)
{
    kv_version *p = kv_grow(*list, cap, *n + 1, sizeof *p, 16);
    if (!p)
        return kv_error(-ENOMEM, "out of memory listing history");
    *list = p;
    kv_version *v = &(*list)[(*n)++];
    memset(v, 0, sizeof *v);
    v->seq = pk->seq;
    v->deleted = pk->type == KV_TYPE_DELETE;
    if (!v->deleted) {
        kv_slice user_val;
        if (kv_value_decode(pk->type, stored, &v->expire_at_ms, &user_val) != 0)
            return kv_error(-EUCLEAN, "%s: malformed TTL value", db->dir);
        v->size = user_val.len;
    }
    if (vset_time_of_seq(db->vs, pk->seq, &v->time_ms) != 0)
        v->time_ms = 0;
    return 0;
}

static int u64_desc(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* The seqs (<= max_seq, newest first) of the range deletions whose range holds key. OUT:
 * *seqs (malloc'd, may be NULL when *n is 0). */
static int db_history_drops(const drop_set *ds, kv_slice key, uint64_t max_seq, uint64_t **seqs,
                            size_t *n)
{
    *seqs = NULL;
    *n = 0;
    size_t total = drops_count(ds);
    if (total == 0)
        return 0;
    uint64_t *out = malloc(total * sizeof *out);
    if (!out)
        return kv_error(-ENOMEM, "out of memory listing history");
    for (size_t i = 0; i < total; i++) {
        const kv_drop *d = drops_at(ds, i);
        if (d->seq <= max_seq && kv_slice_cmp(d->lo, key) <= 0 && kv_slice_cmp(key, d->hi) < 0)
            out[(*n)++] = d->seq;
    }
    qsort(out, *n, sizeof *out, u64_desc);
    *seqs = out;
    return 0;
}

int kv_history(kv_db *db, const void *key, size_t klen, kv_version **list, size_t *n)
{
    kv_error_clear();
    *list = NULL;
    *n = 0;
    if (klen == 0 || klen > KV_MAX_KEY_BYTES)
        return kv_error(klen ? -ENAMETOOLONG : -EINVAL, "key length %zu is not 1..%u", klen,
                        KV_MAX_KEY_BYTES);
    kv_iter_opts o;
    memset(&o, 0, sizeof o);
    db_readview rv;
    int rc = db_readview_acquire(db, &o.ro, &rv);
    if (rc)
        return rc;
    retention r;
    pthread_mutex_lock(&db->mu);
    rc = db_retention(db, &r);
    pthread_mutex_unlock(&db->mu);
    if (rc) {
        db_readview_release(&rv);
        return rc;
    }
    iter **children = malloc(4 * sizeof *children);
    size_t nchildren = 0, cap = 4, listcap = 0, ndseqs = 0;
    uint64_t *dseqs = NULL;
    iter *merged = NULL;
    kv_buf seek = {0};
    if (!children) {
        rc = kv_error(-ENOMEM, "out of memory listing history");
        goto out;
    }
    children[nchildren++] = mem_iter_new(rv.mem);
    if (rv.imm)
        children[nchildren++] = mem_iter_new(rv.imm);
    rc = version_add_iters(rv.v, &children, &nchildren, &cap);
    if (rc) {
        for (size_t i = 0; i < nchildren; i++)
            iter_destroy(children[i]);
        free(children);
        goto out;
    }
    merged = iter_merge_new(children, nchildren);
    if (!merged || ikey_append(&seek, kv_slice_of(key, klen), KV_MAX_SEQ, KV_TYPE_SEEK) != 0) {
        rc = kv_error(-ENOMEM, "out of memory listing history");
        goto out;
    }
    rc = db_history_drops(rv.drops, kv_slice_of(key, klen), rv.seq, &dseqs, &ndseqs);
    if (rc)
        goto out;
    uint64_t newer = 0;
    size_t di = 0;
    for (iter_seek(merged, kv_buf_slice(&seek)); iter_valid(merged); iter_next(merged)) {
        kv_parsed_key pk;
        if (ikey_parse(iter_key(merged), &pk) != 0) {
            rc = kv_error(-EUCLEAN, "%s: malformed internal key", db->dir);
            goto out;
        }
        if (kv_slice_cmp(pk.user_key, kv_slice_of(key, klen)) != 0)
            break;
        if (pk.seq > rv.seq)
            continue;
        /* range deletions newer than this version are deletions of the key */
        for (; di < ndseqs && dseqs[di] > pk.seq; di++) {
            kv_parsed_key dk = {pk.user_key, dseqs[di], KV_TYPE_DELETE};
            if (db_version_retained(&r, dk.seq, newer) &&
                (rc = db_history_append(db, list, n, &listcap, &dk, kv_slice_of(NULL, 0))) != 0)
                goto out;
            newer = dk.seq;
        }
        if (db_version_retained(&r, pk.seq, newer)) {
            rc = db_history_append(db, list, n, &listcap, &pk, iter_value(merged));
            if (rc)
                goto out;
        }
        newer = pk.seq;
    }
    rc = iter_status(merged);
out:
    if (rc) {
        free(*list);
        *list = NULL;
        *n = 0;
    }
    iter_destroy(merged);
    kv_buf_free(&seek);
    free(dseqs);
    free((void *)r.snap_seqs);
    db_readview_release(&rv);
    return rc;
}

/* ------------------------------------------------------------ checkpoint ---- */

static int db_copy_prefix(const char *from, const char *to, uint64_t len)
{
    int in = kvio_open(from, O_RDONLY, 0);
    if (in < 0)
        return in;
    int out = kvio_open(to, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (out < 0) {
        kvio_close(in);
        return out;
    }
    int rc = 0;
    uint8_t *buf = malloc(1u << 20);
    if (!buf)
        rc = kv_error(-ENOMEM, "out of memory copying %s", from);
    for (uint64_t off = 0; rc == 0 && off < len;) {
        size_t want = (size_t)KV_MIN(len - off, (uint64_t)(1u << 20)), got = 0;
        rc = kvio_pread_full(in, from, buf, want, off, &got);
        if (rc == 0 && got == 0)
            break;
        if (rc == 0)
            rc = kvio_write_full(out, to, buf, got);
        off += got;
    }
    if (rc == 0)
        rc = kvio_fsync(out, to);
    free(buf);
    kvio_close(in);
    int crc = kvio_close(out);
    return rc ? rc : crc;
}

static int db_link_or_copy(const char *from, const char *to)
{
    int rc = kvio_link(from, to);
    if (rc == -EXDEV || rc == -EPERM || rc == -EMLINK || rc == -ENOTSUP)
        rc = kvio_copy_file(from, to);
    return rc;
}

static int db_checkpoint_files(kv_db *db, const char *dir, uint64_t *manifest_number)
{
    vset *vs = db->vs;
    char from[PATH_MAX], to[PATH_MAX];
    int rc = 0;
    pthread_mutex_lock(&vs->apply_mu); /* no edit is appended while the MANIFEST is copied */
    pthread_mutex_lock(&vs->mu);
    *manifest_number = vs->manifest_number;
    rc = kvio_path(from, sizeof from, "%s/MANIFEST-%06llu", db->dir,
                   (unsigned long long)vs->manifest_number);
    if (rc == 0)
        rc = kvio_path(to, sizeof to, "%s/MANIFEST-%06llu", dir,
                       (unsigned long long)vs->manifest_number);
    if (rc == 0)
        rc = db_copy_prefix(from, to, log_writer_offset(vs->manifest));
    version *v = vs->current;
    for (int l = 0; rc == 0 && l < KV_MAX_LEVELS; l++) {
        for (size_t i = 0; rc == 0 && i < v->nfiles[l]; i++) {
            uint64_t num = v->files[l][i]->number;
            rc = vset_table_path(vs, num, from, sizeof from);
            if (rc == 0)
                rc = kvio_path(to, sizeof to, "%s/%06llu.sst", dir, (unsigned long long)num);
            if (rc == 0)
                rc = db_link_or_copy(from, to);
        }
    }
    uint64_t log_number = vs->log_number;
    pthread_mutex_unlock(&vs->mu);
    pthread_mutex_unlock(&vs->apply_mu);
    if (rc)
        return rc;
    uint64_t *wals;
    size_t n;
    rc = db_list_wals(db, log_number, &wals, &n);
    if (rc)
        return rc;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        rc = db_wal_path(db, wals[i], from, sizeof from);
        if (rc == 0)
            rc = kvio_path(to, sizeof to, "%s/%06llu.log", dir, (unsigned long long)wals[i]);
        if (rc == 0)
            rc = db_copy_prefix(from, to, UINT64_MAX);
    }
    free(wals);
    return rc;
}

int kv_checkpoint(kv_db *db, const char *dir)
{
    kv_error_clear();
    if (mkdir(dir, 0700) != 0)
        return kv_error(-errno, "checkpoint %s: %s", dir, strerror(errno));
    pthread_mutex_lock(&db->admin_mu);
    int rc = db->opts.read_only ? 0 : db_write_control(db, 1, 0);
    uint64_t manifest_number = 0;
    if (rc == 0) {
        pthread_mutex_lock(&db->mu);
        rc = db_checkpoint_files(db, dir, &manifest_number);
        pthread_mutex_unlock(&db->mu);
    }
    if (rc == 0) {
        char current[64], path[PATH_MAX], tmp[PATH_MAX];
        int len = snprintf(current, sizeof current, "MANIFEST-%06llu\n",
                           (unsigned long long)manifest_number);
        rc = kvio_path(path, sizeof path, "%s/CURRENT", dir);
        if (rc == 0)
            rc = kvio_path(tmp, sizeof tmp, "%s/CURRENT.tmp", dir);
        if (rc == 0)
            rc = kvio_replace_atomic(dir, path, tmp, current, (size_t)len);
    }
    pthread_mutex_unlock(&db->admin_mu);
    return rc;
}

/* ------------------------------------------------------------ verification ---- */

typedef struct verify_ctx {
    kv_report_fn report;
    void *arg;
    int problems;
} verify_ctx;

static void verify_report(void *arg, const char *line)
{
    verify_ctx *v = arg;
    v->problems++;
    if (v->report)
        v->report(v->arg, line);
}

/* Reads every record of a log file; each record must pass check (if given). */
static void verify_log(verify_ctx *v, const char *path, uint32_t lognum, int is_wal)
{
    log_reader *r;
    int rc = log_reader_open(path, lognum, &r);
    if (rc) {
        verify_report(v, kv_last_error());
        return;
    }
    for (;;) {
        const uint8_t *rec;
        size_t len;
        rc = log_reader_next(r, &rec, &len);
        if (rc == 0)
            break;
        if (rc < 0) {
            verify_report(v, kv_last_error());
            break;
        }
        if (is_wal && batch_decode(kv_slice_of(rec, len), NULL, NULL, NULL, NULL, NULL) != 0) {
            char line[PATH_MAX + 96];
            snprintf(line, sizeof line, "%s: malformed batch in WAL record ending at offset %llu",
                     path, (unsigned long long)log_reader_good_offset(r));
            verify_report(v, line);
        }
    }
    log_reader_close(r);
}

int kv_verify(kv_db *db, kv_report_fn report, void *arg)
{
    kv_error_clear();
    verify_ctx v = {report, arg, 0};
    char path[PATH_MAX];
    version *cur = vset_current(db->vs);
    for (int l = 0; l < KV_MAX_LEVELS; l++) {
        for (size_t i = 0; i < cur->nfiles[l]; i++) {
            if (vset_table_path(db->vs, cur->files[l][i]->number, path, sizeof path) != 0)
                continue;
            int rc = sst_verify(path, verify_report, &v);
            if (rc < 0)
                verify_report(&v, kv_last_error());
        }
    }
    version_unref(cur);
    pthread_mutex_lock(&db->vs->mu);
    uint64_t manifest_number = db->vs->manifest_number, log_number = db->vs->log_number;
    pthread_mutex_unlock(&db->vs->mu);
    if (kvio_path(path, sizeof path, "%s/MANIFEST-%06llu", db->dir,
                  (unsigned long long)manifest_number) == 0)
        verify_log(&v, path, (uint32_t)manifest_number, 0);
    uint64_t *wals;
    size_t n;
    pthread_mutex_lock(&db->mu); /* keeps the segments from being deleted meanwhile */
    if (db_list_wals(db, log_number, &wals, &n) == 0) {
        for (size_t i = 0; i < n; i++)
            if (db_wal_path(db, wals[i], path, sizeof path) == 0)
                verify_log(&v, path, (uint32_t)wals[i], 1);
        free(wals);
    }
    pthread_mutex_unlock(&db->mu);
    return v.problems;
}

/* ------------------------------------------------------------ statistics ---- */

#define LOAD(x) atomic_load_explicit(&(x), memory_order_relaxed)

int kv_get_stats(kv_db *db, kv_stats *st)
{
    memset(st, 0, sizeof *st);
    st->last_seq = kv_last_seq(db);
    st->puts = LOAD(db->st_puts);
    st->deletes = LOAD(db->st_deletes);
    st->gets = LOAD(db->st_gets);
    st->batches = LOAD(db->st_batches);
    st->wal_bytes = LOAD(db->st_wal_bytes);
    st->wal_syncs = LOAD(db->st_wal_syncs);
    st->wal_group_commits = LOAD(db->st_group_commits);
    st->flushes = LOAD(db->st_flushes);
    st->compactions = LOAD(db->st_compactions);
    st->compaction_bytes_read = LOAD(db->st_comp_read);
    st->compaction_bytes_written = LOAD(db->st_comp_written);
    st->write_stalls = LOAD(db->st_stalls);
    st->write_stall_us = LOAD(db->st_stall_us);
    st->cache_hits = cache_hits(db->block_cache);
    st->cache_misses = cache_misses(db->block_cache);
    st->cache_bytes = cache_usage(db->block_cache);
    st->bloom_useful = atomic_load(&db->vs->filter_skips);
    version *v = vset_current(db->vs);
    for (int l = 0; l < KV_MAX_LEVELS; l++) {
        st->level_files[l] = v->nfiles[l];
        st->level_bytes[l] = version_level_bytes(v, l);
    }
    version_unref(v);
    pthread_mutex_lock(&db->mu);
    st->memtable_bytes = mem_bytes(db->mem);
    st->imm_memtable_bytes = db->imm ? mem_bytes(db->imm) : 0;
    st->live_snapshots = db->nsnapshots;
    st->sticky_error = db->sticky_error;
    st->no_space = db->no_space;
    st->range_deletions = drops_count(db->drops);
    pthread_mutex_unlock(&db->mu);
    pthread_mutex_lock(&db->vs->mu);
    st->named_snapshots = db->vs->nsnaps;
    pthread_mutex_unlock(&db->vs->mu);
    st->oldest_readable_seq = kv_oldest_readable_seq(db);
    return 0;
}
