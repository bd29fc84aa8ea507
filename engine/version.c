/*
 * version.c -- versions (immutable sets of live tables), table file lifetime, point lookups and
 * iterators over a version, named snapshots and the sequence<->time map (contracts in
 * version.h; the MANIFEST side -- edits, open, replay, log_and_apply -- is in manifest.c).
 *
 * Invariants kept here (numbers as in version.h):
 *  (1) vset_version_build never modifies its base: it copies the file arrays, applies the
 *      edit's deletes and adds, sorts (L0 by number descending, deeper levels by smallest key)
 *      and checks that levels >= 1 do not overlap by USER key (invariant 3), so an edit that
 *      would break the read path is refused before anything reaches the MANIFEST.
 *  (4) A file_meta is unlinked (and its blocks dropped from the cache) only when its refcount
 *      reaches zero and an installed edit marked it obsolete.
 *  (5) Snapshots and samples are applied in two steps: vset_meta_prepare allocates everything
 *      before the MANIFEST write, vset_meta_commit cannot fail, so memory never disagrees
 *      with a record that reached the disk.
 *
 * Time map: samples (sec, max_seq) sorted by sec (non-decreasing) and max_seq (strictly
 * increasing). A commit in the same second as the last sample raises that sample if it is not
 * yet persisted; once persisted a sample is frozen and a new sample with the same second is
 * appended instead. Both lookups are binary searches.
 */
#include "version.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dbformat.h"
#include "kvio.h"
#include "version_int.h"

/* ------------------------------------------------------------------ file_meta ---- */

file_meta *vset_file_new(uint64_t number, uint64_t file_bytes, uint64_t entries, uint64_t min_seq,
                         uint64_t max_seq, kv_slice smallest, kv_slice largest)
{
    file_meta *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    if (kv_buf_set(&f->smallest, smallest.data, smallest.len) ||
        kv_buf_set(&f->largest, largest.data, largest.len) ||
        pthread_mutex_init(&f->open_mu, NULL) != 0) {
        kv_buf_free(&f->smallest);
        kv_buf_free(&f->largest);
        free(f);
        return NULL;
    }
    f->number = number;
    f->file_bytes = file_bytes;
    f->entries = entries;
    f->min_seq = min_seq;
    f->max_seq = max_seq;
    atomic_init(&f->refs, 1);
    atomic_init(&f->reader, NULL);
    return f;
}

void file_ref(file_meta *f)
{
    atomic_fetch_add(&f->refs, 1);
}

void file_unref(file_meta *f)
{
    if (!f || atomic_fetch_sub(&f->refs, 1) != 1)
        return;
    sst_reader *r = atomic_load(&f->reader);
    if (r)
        sst_reader_close(r);
    if (f->obsolete && f->vs) {
        char path[PATH_MAX];
        if (vset_table_path(f->vs, f->number, path, sizeof path) == 0)
            (void)kvio_unlink(path); /* a leftover is collected at the next open */
        if (f->vs->block_cache)
            cache_erase_file(f->vs->block_cache, f->number);
    }
    pthread_mutex_destroy(&f->open_mu);
    kv_buf_free(&f->smallest);
    kv_buf_free(&f->largest);
    free(f);
}

int vset_table_path(const vset *vs, uint64_t number, char *out, size_t cap)
{
    return kvio_path(out, cap, "%s/%06llu.sst", vs->dir, (unsigned long long)number);
}

int file_reader(file_meta *f, sst_reader **out)
{
    sst_reader *r = atomic_load_explicit(&f->reader, memory_order_acquire);
    if (r) {
        *out = r;
        return 0;
    }
    char path[PATH_MAX];
    int rc = vset_table_path(f->vs, f->number, path, sizeof path);
    if (rc)
        return rc;
    pthread_mutex_lock(&f->open_mu);
    r = atomic_load_explicit(&f->reader, memory_order_acquire);
    if (!r) {
        rc = sst_reader_open(path, f->number, f->vs->block_cache, &r);
        if (rc == 0)
            atomic_store_explicit(&f->reader, r, memory_order_release);
    }
    pthread_mutex_unlock(&f->open_mu);
    if (rc == 0)
        *out = r;
    return rc;
}

/* ------------------------------------------------------------------- versions ---- */

version *vset_version_new(vset *vs)
{
    version *v = calloc(1, sizeof *v);
    if (!v)
        return NULL;
    atomic_init(&v->refs, 1);
    v->vs = vs;
    return v;
}

void version_ref(version *v)
{
    atomic_fetch_add(&v->refs, 1);
}

void version_unref(version *v)
{
    if (!v || atomic_fetch_sub(&v->refs, 1) != 1)
        return;
    for (int l = 0; l < KV_MAX_LEVELS; l++) {
        for (size_t i = 0; i < v->nfiles[l]; i++)
            file_unref(v->files[l][i]);
        free(v->files[l]);
    }
    drops_unref(v->drops);
    free(v);
}

uint64_t version_level_bytes(const version *v, int level)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < v->nfiles[level]; i++)
        sum += v->files[level][i]->file_bytes;
    return sum;
}

static int file_cmp_newest(const void *a, const void *b)
{
    const file_meta *fa = *(file_meta *const *)a, *fb = *(file_meta *const *)b;
    return fa->number > fb->number ? -1 : fa->number < fb->number ? 1 : 0;
}

static int file_cmp_smallest(const void *a, const void *b)
{
    const file_meta *fa = *(file_meta *const *)a, *fb = *(file_meta *const *)b;
    int c = ikey_cmp(kv_buf_slice(&fa->smallest), kv_buf_slice(&fb->smallest));
    if (c)
        return c;
    return fa->number < fb->number ? -1 : fa->number > fb->number;
}

static int edit_deletes(const version_edit *e, int level, uint64_t number, char *found)
{
    for (size_t i = 0; i < e->ndeleted; i++) {
        if (e->deleted[i].level == level && e->deleted[i].number == number) {
            found[i] = 1;
            return 1;
        }
    }
    return 0;
}

/* Checks the shape of one level of a freshly built version (invariant 3). */
static int level_check(const version *v, int level)
{
    file_meta **fs = v->files[level];
    for (size_t i = 0; i < v->nfiles[level]; i++) {
        kv_slice lo = kv_buf_slice(&fs[i]->smallest), hi = kv_buf_slice(&fs[i]->largest);
        if (lo.len < KV_TAG_BYTES || hi.len < KV_TAG_BYTES || ikey_cmp(lo, hi) > 0)
            return kv_error(-EINVAL, "file %06llu has a bad key range",
                            (unsigned long long)fs[i]->number);
        if (i > 0 && fs[i]->number == fs[i - 1]->number)
            return kv_error(-EINVAL, "file %06llu is twice in level %d",
                            (unsigned long long)fs[i]->number, level);
        if (level == 0 || i == 0)
            continue;
        kv_slice prev = ikey_user_key(kv_buf_slice(&fs[i - 1]->largest));
        if (kv_slice_cmp(prev, ikey_user_key(lo)) >= 0)
            return kv_error(-EINVAL, "files %06llu and %06llu overlap in level %d",
                            (unsigned long long)fs[i - 1]->number,
                            (unsigned long long)fs[i]->number, level);
    }
    return 0;
}

static int slice_ptr_cmp(const void *a, const void *b)
{
    return kv_slice_cmp(*(const kv_slice *)a, *(const kv_slice *)b);
}

/* The most L0 files whose user-key ranges [lo, hi] hold one key: sweeping the sorted starts,
 * the files open at start i are the i + 1 started so far less those that ended before it. */
static int l0_depth_of(version *v)
{
    size_t n = v->nfiles[0];
    v->l0_depth = n;
    if (n < 2)
        return 0;
    kv_slice *lo = malloc(2 * n * sizeof *lo);
    if (!lo)
        return -ENOMEM;
    kv_slice *hi = lo + n;
    for (size_t i = 0; i < n; i++) {
        lo[i] = ikey_user_key(kv_buf_slice(&v->files[0][i]->smallest));
        hi[i] = ikey_user_key(kv_buf_slice(&v->files[0][i]->largest));
    }
    qsort(lo, n, sizeof *lo, slice_ptr_cmp);
    qsort(hi, n, sizeof *hi, slice_ptr_cmp);
    size_t depth = 0, ended = 0;
    for (size_t i = 0; i < n; i++) {
        while (ended < n && kv_slice_cmp(hi[ended], lo[i]) < 0)
            ended++;
        if (i + 1 - ended > depth)
            depth = i + 1 - ended;
    }
    free(lo);
    v->l0_depth = depth;
    return 0;
}

static int level_build(vset *vs, version *nv, const version *base, const version_edit *e, int level,
                       char *found)
{
    size_t cap = base->nfiles[level] + e->nadded, n = 0;
    file_meta **fs = cap ? malloc(cap * sizeof *fs) : NULL;
    if (cap && !fs)
        return -ENOMEM;
    for (size_t i = 0; i < base->nfiles[level]; i++) {
        file_meta *f = base->files[level][i];
        if (!edit_deletes(e, level, f->number, found))
            fs[n++] = f;
    }
    for (size_t i = 0; i < e->nadded; i++) {
        if (e->added[i].level == level) {
            e->added[i].f->vs = vs;
            fs[n++] = e->added[i].f;
        }
    }
    for (size_t i = 0; i < n; i++)
        file_ref(fs[i]);
    nv->files[level] = fs;
    nv->nfiles[level] = n;
    if (n > 1)
        qsort(fs, n, sizeof *fs, level == 0 ? file_cmp_newest : file_cmp_smallest);
    int rc = level_check(nv, level);
    return rc == 0 && level == 0 ? l0_depth_of(nv) : rc;
}

/* OUT: *out = base + e (a new version, refcount 1). -EINVAL (with a message) if the edit does
 * not fit base; base is never changed. */
/* The range deletions of the version after e: base's, less e's retired ones (each must be
 * there), plus e's new ones. */
static int drops_build(const drop_set *base, const version_edit *e, drop_set **out)
{
    for (size_t i = 0; i < e->ndrop_del; i++) {
        int known = 0;
        for (size_t j = 0; j < drops_count(base) && !known; j++)
            known = drops_at(base, j)->seq == e->drop_del[i];
        if (!known)
            return kv_error(-EINVAL, "retired range deletion at seq %llu is not in the version",
                            (unsigned long long)e->drop_del[i]);
    }
    return drops_merge(base, e->drop_add, e->drop_del, e->ndrop_del, out);
}

int vset_version_build(vset *vs, const version *base, const version_edit *e, version **out)
{
    int rc = 0;
    char *found = calloc(e->ndeleted + 1, 1);
    version *nv = vset_version_new(vs);
    if (!found || !nv) {
        rc = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < e->nadded; i++) {
        if (e->added[i].level < 0 || e->added[i].level >= KV_MAX_LEVELS) {
            rc = kv_error(-EINVAL, "added file in bad level %d", e->added[i].level);
            goto out;
        }
    }
    for (int l = 0; l < KV_MAX_LEVELS && rc == 0; l++)
        rc = level_build(vs, nv, base, e, l, found);
    for (size_t i = 0; i < e->ndeleted && rc == 0; i++) {
        if (!found[i])
            rc = kv_error(-EINVAL, "deleted file %06llu is not in level %d",
                          (unsigned long long)e->deleted[i].number, e->deleted[i].level);
    }
    if (rc == 0)
        rc = drops_build(base ? base->drops : NULL, e, &nv->drops);
out:
    free(found);
    if (rc) {
        version_unref(nv);
        return rc;
    }
    *out = nv;
    return 0;
}

static int edit_adds(const version_edit *e, uint64_t number)
{
    for (size_t i = 0; i < e->nadded; i++)
        if (e->added[i].f->number == number)
            return 1;
    return 0;
}

/* Marks the files e deletes from old (unless e adds the same number back elsewhere). */
void vset_mark_obsolete(const version *old, const version_edit *e)
{
    for (size_t d = 0; d < e->ndeleted; d++) {
        int l = e->deleted[d].level;
        if (l < 0 || l >= KV_MAX_LEVELS || edit_adds(e, e->deleted[d].number))
            continue;
        for (size_t i = 0; i < old->nfiles[l]; i++)
            if (old->files[l][i]->number == e->deleted[d].number)
                old->files[l][i]->obsolete = 1;
    }
}

version *vset_current(vset *vs)
{
    pthread_mutex_lock(&vs->mu);
    version *v = vs->current;
    version_ref(v);
    pthread_mutex_unlock(&vs->mu);
    return v;
}

/* ------------------------------------------------------------------ point reads ---- */

static int file_has_ukey(const file_meta *f, kv_slice ukey)
{
    return kv_slice_cmp(ukey, ikey_user_key(kv_buf_slice(&f->smallest))) >= 0 &&
           kv_slice_cmp(ukey, ikey_user_key(kv_buf_slice(&f->largest))) <= 0;
}

/* Index of the first file of a sorted level whose largest user key is >= ukey. */
static size_t level_find_ukey(file_meta **fs, size_t n, kv_slice ukey)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (kv_slice_cmp(ikey_user_key(kv_buf_slice(&fs[mid]->largest)), ukey) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int file_get(version *v, file_meta *f, kv_slice ukey, uint64_t max_seq, uint64_t *seq,
                    unsigned *type, kv_buf *value)
{
    if (f->min_seq > max_seq)
        return 0; /* everything in it is newer than the read */
    sst_reader *r;
    int rc = file_reader(f, &r);
    if (rc)
        return rc;
    if (!sst_reader_may_contain(r, ukey)) {
        atomic_fetch_add_explicit(&v->vs->filter_skips, 1, memory_order_relaxed);
        return 0;
    }
    return sst_reader_get(r, ukey, max_seq, seq, type, value);
}

int version_get(version *v, kv_slice ukey, uint64_t max_seq, uint64_t *seq, unsigned *type,
                kv_buf *value)
{
    for (size_t i = 0; i < v->nfiles[0]; i++) {
        file_meta *f = v->files[0][i];
        if (!file_has_ukey(f, ukey))
            continue;
        int rc = file_get(v, f, ukey, max_seq, seq, type, value);
        if (rc)
            return rc;
    }
    for (int l = 1; l < KV_MAX_LEVELS; l++) {
        size_t i = level_find_ukey(v->files[l], v->nfiles[l], ukey);
        if (i >= v->nfiles[l] || !file_has_ukey(v->files[l][i], ukey))
            continue;
        int rc = file_get(v, v->files[l][i], ukey, max_seq, seq, type, value);
        if (rc)
            return rc;
    }
    return 0;
}

/* ------------------------------------------------------------ level iterator ---- */

/* Concatenates the sorted, disjoint files of one level >= 1, opening each file's iterator only
 * when the walk reaches it. Invariant: cur is NULL or the iterator of files[idx]. */
typedef struct level_iter {
    iter base;
    file_meta **files;
    size_t n;
    size_t idx;
    iter *cur;
    int status;
} level_iter;

static void lvl_close_cur(level_iter *li)
{
    iter_destroy(li->cur);
    li->cur = NULL;
}

/* Makes cur the iterator of file idx; 0 or sets status. */
static int lvl_open(level_iter *li, size_t idx)
{
    lvl_close_cur(li);
    li->idx = idx;
    sst_reader *r;
    int rc = file_reader(li->files[idx], &r);
    if (rc == 0) {
        li->cur = sst_reader_iter(r);
        if (!li->cur)
            rc = kv_error(-ENOMEM, "out of memory opening a table iterator");
    }
    li->status = rc;
    return rc;
}

/* Moves past exhausted files in direction dir (+1 / -1) until cur is valid or none is left. */
static void lvl_settle(level_iter *li, int dir)
{
    while (li->cur && !iter_valid(li->cur)) {
        int st = iter_status(li->cur);
        if (st) {
            li->status = st;
            lvl_close_cur(li);
            return;
        }
        if ((dir > 0 && li->idx + 1 >= li->n) || (dir < 0 && li->idx == 0)) {
            lvl_close_cur(li);
            return;
        }
        if (lvl_open(li, dir > 0 ? li->idx + 1 : li->idx - 1))
            return;
        if (dir > 0)
            iter_seek_first(li->cur);
        else
            iter_seek_last(li->cur);
    }
}

static int lvl_valid(const iter *it)
{
    const level_iter *li = (const level_iter *)it;
    return li->status == 0 && li->cur && iter_valid(li->cur);
}

static void lvl_seek_first(iter *it)
{
    level_iter *li = (level_iter *)it;
    li->status = 0;
    if (li->n == 0 || lvl_open(li, 0))
        return;
    iter_seek_first(li->cur);
    lvl_settle(li, 1);
}

static void lvl_seek_last(iter *it)
{
    level_iter *li = (level_iter *)it;
    li->status = 0;
    if (li->n == 0 || lvl_open(li, li->n - 1))
        return;
    iter_seek_last(li->cur);
    lvl_settle(li, -1);
}

static void lvl_seek(iter *it, kv_slice target)
{
    level_iter *li = (level_iter *)it;
    li->status = 0;
    size_t lo = 0, hi = li->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ikey_cmp(kv_buf_slice(&li->files[mid]->largest), target) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo >= li->n) {
        lvl_close_cur(li);
        return;
    }
    if (lvl_open(li, lo))
        return;
    iter_seek(li->cur, target);
    lvl_settle(li, 1);
}

static void lvl_next(iter *it)
{
    level_iter *li = (level_iter *)it;
    iter_next(li->cur);
    lvl_settle(li, 1);
}

static void lvl_prev(iter *it)
{
    level_iter *li = (level_iter *)it;
    iter_prev(li->cur);
    lvl_settle(li, -1);
}

static kv_slice lvl_key(const iter *it)
{
    return iter_key(((const level_iter *)it)->cur);
}

static kv_slice lvl_value(const iter *it)
{
    return iter_value(((const level_iter *)it)->cur);
}

static int lvl_status(const iter *it)
{
    const level_iter *li = (const level_iter *)it;
    if (li->status)
        return li->status;
    return li->cur ? iter_status(li->cur) : 0;
}

static void lvl_destroy(iter *it)
{
    level_iter *li = (level_iter *)it;
    lvl_close_cur(li);
    free(li);
}

static const iter_ops lvl_ops = {lvl_valid, lvl_seek_first, lvl_seek_last, lvl_seek,   lvl_next,
                                 lvl_prev,  lvl_key,        lvl_value,     lvl_status, lvl_destroy};

static iter *level_iter_new(file_meta **files, size_t n)
{
    level_iter *li = calloc(1, sizeof *li);
    if (!li)
        return NULL;
    li->base.ops = &lvl_ops;
    li->files = files;
    li->n = n;
    return &li->base;
}

static int iters_push(iter ***its, size_t *n, size_t *cap, iter *it)
{
    if (!it)
        return kv_error(-ENOMEM, "out of memory creating an iterator");
    iter **p = kv_grow(*its, cap, *n + 1, sizeof *p, 8);
    if (!p) {
        iter_destroy(it);
        return kv_error(-ENOMEM, "out of memory creating an iterator");
    }
    *its = p;
    (*its)[(*n)++] = it;
    return 0;
}

int version_add_iters(version *v, iter ***its, size_t *n, size_t *cap)
{
    size_t start = *n;
    int rc = 0;
    for (size_t i = 0; i < v->nfiles[0] && rc == 0; i++) {
        sst_reader *r;
        rc = file_reader(v->files[0][i], &r);
        if (rc == 0)
            rc = iters_push(its, n, cap, sst_reader_iter(r));
    }
    for (int l = 1; l < KV_MAX_LEVELS && rc == 0; l++) {
        if (v->nfiles[l])
            rc = iters_push(its, n, cap, level_iter_new(v->files[l], v->nfiles[l]));
    }
    if (rc) {
        while (*n > start)
            iter_destroy((*its)[--*n]);
    }
    return rc;
}

/* ------------------------------------------------------------ named snapshots ---- */

/* Index of name in vs->snaps, or where it would go (*hit = 0). */
static size_t snap_find(const vset *vs, const char *name, int *hit)
{
    size_t lo = 0, hi = vs->nsnaps;
    *hit = 0;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(vs->snaps[mid].name, name);
        if (c == 0) {
            *hit = 1;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int vset_snapshot_find(vset *vs, const char *name, vset_snapshot *out)
{
    int hit;
    pthread_mutex_lock(&vs->mu);
    size_t i = snap_find(vs, name, &hit);
    if (hit) {
        out->name = (char *)name;
        out->seq = vs->snaps[i].seq;
        out->time_ms = vs->snaps[i].time_ms;
    }
    pthread_mutex_unlock(&vs->mu);
    return hit ? 0 : -ENOENT;
}

static int u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int vset_snapshot_seqs(vset *vs, uint64_t **seqs, size_t *n)
{
    int rc = 0;
    *seqs = NULL;
    *n = 0;
    pthread_mutex_lock(&vs->mu);
    if (vs->nsnaps) {
        *seqs = malloc(vs->nsnaps * sizeof **seqs);
        if (!*seqs) {
            rc = -ENOMEM;
            goto out;
        }
        for (size_t i = 0; i < vs->nsnaps; i++)
            (*seqs)[i] = vs->snaps[i].seq;
        *n = vs->nsnaps;
        qsort(*seqs, *n, sizeof **seqs, u64_cmp);
    }
out:
    pthread_mutex_unlock(&vs->mu);
    return rc;
}

int vset_snapshot_list(vset *vs, kv_snapinfo **list, size_t *n)
{
    int rc = 0;
    *list = NULL;
    *n = 0;
    pthread_mutex_lock(&vs->mu);
    if (vs->nsnaps) {
        *list = calloc(vs->nsnaps, sizeof **list);
        if (!*list) {
            rc = -ENOMEM;
            goto out;
        }
        for (size_t i = 0; i < vs->nsnaps; i++) {
            snprintf((*list)[i].name, sizeof(*list)[i].name, "%s", vs->snaps[i].name);
            (*list)[i].seq = vs->snaps[i].seq;
            (*list)[i].time_ms = vs->snaps[i].time_ms;
        }
        *n = vs->nsnaps;
    }
out:
    pthread_mutex_unlock(&vs->mu);
    return rc;
}

/* ------------------------------------------------------------------- time map ---- */

static int samples_reserve(vset *vs, size_t extra)
{
    if (extra == 0)
        return 0;
    timemap_sample *p = kv_grow(vs->samples, &vs->capsamples, vs->nsamples + extra, sizeof *p, 64);
    if (!p)
        return -ENOMEM;
    vs->samples = p;
    return 0;
}

static void samples_insert_at(vset *vs, size_t pos, timemap_sample s)
{
    memmove(vs->samples + pos + 1, vs->samples + pos, (vs->nsamples - pos) * sizeof *vs->samples);
    vs->samples[pos] = s;
    vs->nsamples++;
}

/* Index of the first sample with max_seq >= seq (nsamples if none). */
static size_t samples_lower_seq(const vset *vs, uint64_t seq)
{
    size_t lo = 0, hi = vs->nsamples;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (vs->samples[mid].max_seq < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static void samples_truncate_locked(vset *vs, uint64_t seq)
{
    size_t i = samples_lower_seq(vs, seq + 1); /* first sample above seq */
    if (i >= vs->nsamples)
        return;
    uint64_t prev = i ? vs->samples[i - 1].max_seq : 0;
    size_t keep = i;
    if (seq > prev) {
        vs->samples[i].max_seq = seq; /* the commits up to seq of that second remain */
        keep = i + 1;
    }
    vs->nsamples = keep;
    /* a clamped sample differs from the MANIFEST: let it be persisted again */
    if (vs->npersisted_samples > i)
        vs->npersisted_samples = i;
}

/* A MANIFEST sample replayed in order: later records are authoritative, so what a sample
 * contradicts (anything at or above its max_seq, or in a later second) is truncated first. */
static void samples_replay(vset *vs, timemap_sample s)
{
    if (s.max_seq == 0)
        return;
    samples_truncate_locked(vs, s.max_seq - 1);
    while (vs->nsamples && vs->samples[vs->nsamples - 1].sec > s.sec)
        vs->nsamples--;
    timemap_sample *last = vs->nsamples ? &vs->samples[vs->nsamples - 1] : NULL;
    if (last && last->sec == s.sec)
        last->max_seq = s.max_seq;
    else
        vs->samples[vs->nsamples++] = s;
    vs->npersisted_samples = vs->nsamples;
}

/* A sample of a live edit: usually one vset_take_samples copied from memory. It is merged where
 * it belongs; dropped if it contradicts memory (memory wins). */
static void samples_merge(vset *vs, timemap_sample s)
{
    size_t pos = samples_lower_seq(vs, s.max_seq);
    int inserted = 0;
    if (pos < vs->nsamples && vs->samples[pos].max_seq == s.max_seq) {
        if (vs->samples[pos].sec != s.sec)
            return;
    } else {
        if ((pos > 0 && vs->samples[pos - 1].sec > s.sec) ||
            (pos < vs->nsamples && vs->samples[pos].sec < s.sec))
            return;
        samples_insert_at(vs, pos, s);
        inserted = 1;
    }
    if (pos == vs->npersisted_samples || (inserted && pos < vs->npersisted_samples))
        vs->npersisted_samples++;
}

void vset_note_commit(vset *vs, uint64_t max_seq, uint64_t time_ms)
{
    uint64_t sec = time_ms / 1000;
    pthread_mutex_lock(&vs->mu);
    timemap_sample *last = vs->nsamples ? &vs->samples[vs->nsamples - 1] : NULL;
    if (last && sec < last->sec)
        sec = last->sec; /* the clock went back */
    if (last && max_seq <= last->max_seq)
        goto out;
    if (last && last->sec == sec && vs->nsamples > vs->npersisted_samples) {
        last->max_seq = max_seq;
        goto out;
    }
    if (samples_reserve(vs, 1) == 0) /* on ENOMEM the map only loses resolution */
        vs->samples[vs->nsamples++] = (timemap_sample){sec, max_seq};
out:
    pthread_mutex_unlock(&vs->mu);
}

int vset_take_samples(vset *vs, version_edit *e, uint64_t upto_seq)
{
    int rc = 0;
    pthread_mutex_lock(&vs->mu);
    for (size_t i = vs->npersisted_samples; i < vs->nsamples && rc == 0; i++) {
        if (vs->samples[i].max_seq > upto_seq)
            break;
        rc = edit_add_sample(e, vs->samples[i].sec, vs->samples[i].max_seq);
    }
    pthread_mutex_unlock(&vs->mu);
    return rc;
}

void vset_truncate_samples(vset *vs, uint64_t seq)
{
    pthread_mutex_lock(&vs->mu);
    samples_truncate_locked(vs, seq);
    pthread_mutex_unlock(&vs->mu);
}

int vset_seq_at_time(vset *vs, uint64_t time_ms, uint64_t *seq)
{
    uint64_t sec = time_ms / 1000;
    pthread_mutex_lock(&vs->mu);
    size_t lo = 0, hi = vs->nsamples; /* first sample with sec > T */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (vs->samples[mid].sec <= sec)
            lo = mid + 1;
        else
            hi = mid;
    }
    *seq = lo ? vs->samples[lo - 1].max_seq : 0;
    pthread_mutex_unlock(&vs->mu);
    return 0;
}

int vset_time_of_seq(vset *vs, uint64_t seq, uint64_t *time_ms)
{
    pthread_mutex_lock(&vs->mu);
    size_t i = samples_lower_seq(vs, seq);
    *time_ms = i < vs->nsamples ? vs->samples[i].sec * 1000 : kv_now_ms();
    pthread_mutex_unlock(&vs->mu);
    return 0;
}

void vset_prune_samples(vset *vs, uint64_t floor_sec)
{
    pthread_mutex_lock(&vs->mu);
    size_t lo = 0, hi = vs->nsamples; /* first sample with sec >= floor_sec */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (vs->samples[mid].sec < floor_sec)
            lo = mid + 1;
        else
            hi = mid;
    }
    size_t drop = lo ? lo - 1 : 0; /* keep the last sample before the floor */
    if (drop) {
        memmove(vs->samples, vs->samples + drop, (vs->nsamples - drop) * sizeof *vs->samples);
        vs->nsamples -= drop;
        vs->npersisted_samples -= KV_MIN(drop, vs->npersisted_samples);
    }
    pthread_mutex_unlock(&vs->mu);
}

/* ------------------------------------------------- applying an edit's metadata ---- */

/* Allocates what vset_meta_commit needs (vs->mu held). OUT: *names, copies of the added
 * snapshot names (owned by the caller until commit). */
int vset_meta_prepare(vset *vs, const version_edit *e, char ***names)
{
    *names = NULL;
    if (samples_reserve(vs, e->nsamples))
        return -ENOMEM;
    if (e->nsnap_add == 0)
        return 0;
    vset_snapshot *p = realloc(vs->snaps, (vs->nsnaps + e->nsnap_add) * sizeof *p);
    if (!p)
        return -ENOMEM;
    vs->snaps = p;
    char **nm = calloc(e->nsnap_add, sizeof *nm);
    if (!nm)
        return -ENOMEM;
    for (size_t i = 0; i < e->nsnap_add; i++) {
        nm[i] = strdup(e->snap_add[i].name);
        if (!nm[i]) {
            while (i--)
                free(nm[i]);
            free(nm);
            return -ENOMEM;
        }
    }
    *names = nm;
    return 0;
}

static void snap_put(vset *vs, char *name, uint64_t seq, uint64_t time_ms)
{
    int hit;
    size_t i = snap_find(vs, name, &hit);
    if (hit) {
        free(vs->snaps[i].name);
    } else {
        memmove(vs->snaps + i + 1, vs->snaps + i, (vs->nsnaps - i) * sizeof *vs->snaps);
        vs->nsnaps++;
    }
    vs->snaps[i] = (vset_snapshot){name, seq, time_ms};
}

static void snap_remove(vset *vs, const char *name)
{
    int hit;
    size_t i = snap_find(vs, name, &hit);
    if (!hit)
        return;
    free(vs->snaps[i].name);
    memmove(vs->snaps + i, vs->snaps + i + 1, (vs->nsnaps - i - 1) * sizeof *vs->snaps);
    vs->nsnaps--;
}

/* Applies the snapshot and time-map parts of e (vs->mu held); cannot fail after prepare.
 * Deletes go first, so an edit may delete and re-add one name. Consumes names. */
void vset_meta_commit(vset *vs, const version_edit *e, char **names, int replay)
{
    for (size_t i = 0; i < e->nsnap_del; i++)
        snap_remove(vs, e->snap_del[i]);
    for (size_t i = 0; i < e->nsnap_add; i++)
        snap_put(vs, names[i], e->snap_add[i].seq, e->snap_add[i].time_ms);
    free(names);
    for (size_t i = 0; i < e->nsamples; i++) {
        if (replay)
            samples_replay(vs, e->samples[i]);
        else
            samples_merge(vs, e->samples[i]);
    }
}
