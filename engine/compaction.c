/*
 * compaction.c -- leveled compaction (which files to merge, and the merge itself) and
 * build_level0, which writes a memtable out as level-0 tables.
 *
 * Picking (LevelDB style): level L >= 1 may hold 10 MiB * 10^(L-1); its score is bytes/target,
 * level 0's is its depth (version.h: l0_depth) / VSET_L0_COMPACT_TRIGGER, or its file count /
 * VSET_L0_FILE_TRIGGER if higher. The highest score >= 1 whose inputs are free wins. Inputs:
 * at L0 the oldest file plus every L0 file overlapping (transitively); at L >= 1 the first
 * file after the level's compact pointer (round robin); then every L+1 file overlapping them.
 * Both input sets are closed under user-key overlap within their level ("boundary inputs",
 * engine-notes.md section 5), so the versions of one user key are never split between a
 * compaction's inputs and what it leaves behind. The last level is never picked for size;
 * vset_compact_range compacts it into itself.
 *
 * Outputs to a level below opts.uncompressed_levels (build_opts_for) are stored uncompressed.
 *
 * Range-deletion upkeep (vset_drop_upkeep): a table whose whole key span lies under a range
 * deletion newer than all its entries is deleted without being read once no reader can see
 * past that deletion; a table that only partly lies under one is flagged (drop_compact) and,
 * when no level needs compacting for size, rewritten into the next level. Every compaction
 * output records the oldest range deletion of its input version that still hides one of its
 * versions (drops_clean_below), so a rewritten table no longer holds a deletion back, and it
 * retires once no table may hold a version it hides. A flagged table of the last level is
 * rewritten into that level.
 *
 * Merging, for each user key newest to oldest (s = a version's seq, s' = the next newer
 * version's seq, or the seq of the oldest range deletion of the input version (drops.h) that
 * covers the key and is newer than s when that comes first; infinity for neither):
 *   keep      iff s' > floor_seq, or a snapshot p has s <= p < s'
 *   TTL       an expired value (expire_at <= expiry_floor_ms) is a DELETE at the same seq
 *   DELETE    DELETEs older than every kept value of their key (the oldest kept versions)
 *             and older than floor_seq are dropped when no level below the output level may
 *             hold the key: nothing older can show through them. (Within the history window
 *             a deletion stays, so the key's history still shows it.)
 * Output files are cut at about opts.table_bytes, only between user keys, so invariant 3 of
 * version.h holds for the output level. Outputs, of compactions and of flushes alike, are
 * also cut where the first opts.partition_prefix_bytes of the user key change (out_add), so a
 * family of keys written in order (a file's chunks) lands in tables of its own, which the
 * next compaction can move down a level without rewriting them (compaction_run).
 */
#include "version.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dbformat.h"
#include "kvio.h"

#define CMP_L1_TARGET_BYTES (10.0 * 1024 * 1024)
#define CMP_DEFAULT_TABLE_BYTES (8u << 20)

typedef struct file_set {
    file_meta **f;
    size_t n, cap;
} file_set;

struct compaction {
    vset *vs;
    version *v; /* pinned for the whole compaction */
    int level, out_level;
    int manual;     /* from vset_compact_range: always rewrite, so retention rules run */
    file_set in[2]; /* in[0]: files of level; in[1]: files of level + 1 */
};

static int snap_between(const retention *r, uint64_t s, uint64_t newer);
static int seen_by_a_reader(const retention *r, const drop_set *drops, kv_slice ukey, uint64_t s,
                            uint64_t newer);

/* ------------------------------------------------------------------ file sets ---- */

static kv_slice f_lo(const file_meta *f)
{
    return ikey_user_key(kv_buf_slice(&f->smallest));
}

static kv_slice f_hi(const file_meta *f)
{
    return ikey_user_key(kv_buf_slice(&f->largest));
}

static int set_has(const file_set *s, const file_meta *f)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->f[i] == f)
            return 1;
    return 0;
}

static int set_add(file_set *s, file_meta *f)
{
    file_meta **p = kv_grow(s->f, &s->cap, s->n + 1, sizeof *p, 8);
    if (!p)
        return -ENOMEM;
    s->f = p;
    s->f[s->n++] = f;
    return 0;
}

/* The user-key range [*lo, *hi] covered by s (non-empty). */
static void set_range(const file_set *s, kv_slice *lo, kv_slice *hi)
{
    *lo = f_lo(s->f[0]);
    *hi = f_hi(s->f[0]);
    for (size_t i = 1; i < s->n; i++) {
        if (kv_slice_cmp(f_lo(s->f[i]), *lo) < 0)
            *lo = f_lo(s->f[i]);
        if (kv_slice_cmp(f_hi(s->f[i]), *hi) > 0)
            *hi = f_hi(s->f[i]);
    }
}

/* 1 if f's user range meets [lo, hi] (NULL bounds are open). */
static int f_overlaps(const file_meta *f, const kv_slice *lo, const kv_slice *hi)
{
    return (!lo || kv_slice_cmp(f_hi(f), *lo) >= 0) && (!hi || kv_slice_cmp(f_lo(f), *hi) <= 0);
}

/* Adds to s every file of level meeting [lo, hi], then closes s under overlap in that level
 * (a file meeting the range of s joins it), which also pulls in boundary files. */
static int set_expand(file_set *s, const version *v, int level, const kv_slice *lo,
                      const kv_slice *hi)
{
    for (size_t i = 0; i < v->nfiles[level]; i++) {
        file_meta *f = v->files[level][i];
        if (f_overlaps(f, lo, hi) && !set_has(s, f) && set_add(s, f))
            return -ENOMEM;
    }
    for (int grew = 1; grew && s->n;) {
        kv_slice rlo, rhi;
        set_range(s, &rlo, &rhi);
        grew = 0;
        for (size_t i = 0; i < v->nfiles[level]; i++) {
            file_meta *f = v->files[level][i];
            if (f_overlaps(f, &rlo, &rhi) && !set_has(s, f)) {
                if (set_add(s, f))
                    return -ENOMEM;
                grew = 1;
            }
        }
    }
    return 0;
}

static int set_busy(const file_set *s)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->f[i]->compacting)
            return 1;
    return 0;
}

static void set_mark(const file_set *s, int on)
{
    for (size_t i = 0; i < s->n; i++)
        s->f[i]->compacting = on;
}

/* ------------------------------------------------------------------- picking ---- */

static compaction *cmp_new(vset *vs, version *v, int level)
{
    compaction *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->vs = vs;
    c->v = v;
    c->level = level;
    c->out_level = level < KV_MAX_LEVELS - 1 ? level + 1 : level;
    return c;
}

static void cmp_discard(compaction *c)
{
    free(c->in[0].f);
    free(c->in[1].f);
    free(c);
}

/* Completes c from in[0]: in[1] and the busy check (vs->mu held). 1 = ready, 0 = busy or
 * failed (c left for the caller to discard). */
static int cmp_complete(compaction *c)
{
    if (c->in[0].n == 0 || set_busy(&c->in[0]))
        return 0;
    if (c->out_level != c->level) {
        kv_slice lo, hi;
        set_range(&c->in[0], &lo, &hi);
        if (set_expand(&c->in[1], c->v, c->out_level, &lo, &hi) || set_busy(&c->in[1]))
            return 0;
    }
    return 1;
}

/* Marks c's inputs, remembers the compact pointer, pins the version (vs->mu held). */
static compaction *cmp_start(compaction *c)
{
    set_mark(&c->in[0], 1);
    set_mark(&c->in[1], 1);
    const kv_buf *largest = &c->in[0].f[0]->largest;
    for (size_t i = 1; i < c->in[0].n; i++)
        if (ikey_cmp(kv_buf_slice(&c->in[0].f[i]->largest), kv_buf_slice(largest)) > 0)
            largest = &c->in[0].f[i]->largest;
    (void)kv_buf_set(&c->vs->compact_pointer[c->level], largest->data, largest->len);
    version_ref(c->v);
    return c;
}

/* A compaction at level seeded with file f, or NULL (vs->mu held). */
static compaction *cmp_try(vset *vs, version *v, int level, file_meta *f)
{
    compaction *c = cmp_new(vs, v, level);
    if (!c)
        return NULL;
    kv_slice lo = f_lo(f), hi = f_hi(f);
    if (set_expand(&c->in[0], v, level, &lo, &hi) == 0 && cmp_complete(c))
        return cmp_start(c);
    cmp_discard(c);
    return NULL;
}

static compaction *cmp_pick_level(vset *vs, version *v, int level)
{
    size_t n = v->nfiles[level];
    if (level == 0)
        return cmp_try(vs, v, 0, v->files[0][n - 1]); /* the oldest file */
    const kv_buf *ptr = &vs->compact_pointer[level];
    size_t start = 0;
    if (ptr->len >= KV_TAG_BYTES)
        while (start < n &&
               ikey_cmp(kv_buf_slice(&v->files[level][start]->largest), kv_buf_slice(ptr)) <= 0)
            start++;
    for (size_t k = 0; k < n; k++) {
        file_meta *f = v->files[level][(start + k) % n];
        if (f->compacting)
            continue;
        compaction *c = cmp_try(vs, v, level, f);
        if (c)
            return c;
    }
    return NULL;
}

static double cmp_score(const version *v, int level)
{
    if (level == 0)
        return KV_MAX((double)v->l0_depth / VSET_L0_COMPACT_TRIGGER,
                      (double)v->nfiles[0] / VSET_L0_FILE_TRIGGER);
    double target = CMP_L1_TARGET_BYTES;
    for (int l = 1; l < level; l++)
        target *= 10;
    return (double)version_level_bytes(v, level) / target;
}

compaction *vset_pick_compaction(vset *vs)
{
    double score[KV_MAX_LEVELS - 1];
    int tried[KV_MAX_LEVELS - 1] = {0};
    compaction *c = NULL;
    pthread_mutex_lock(&vs->mu);
    version *v = vs->current;
    for (int l = 0; l < KV_MAX_LEVELS - 1; l++)
        score[l] = cmp_score(v, l);
    for (int round = 0; round < KV_MAX_LEVELS - 1 && !c; round++) {
        int best = -1;
        for (int l = 0; l < KV_MAX_LEVELS - 1; l++)
            if (!tried[l] && score[l] >= 1.0 && (best < 0 || score[l] > score[best]))
                best = l;
        if (best < 0)
            break;
        tried[best] = 1;
        c = cmp_pick_level(vs, v, best);
    }
    for (int l = 0; l < KV_MAX_LEVELS && !c; l++) /* the last level into itself */
        for (size_t i = 0; i < v->nfiles[l] && !c; i++) {
            file_meta *f = v->files[l][i];
            if (f->drop_compact && !f->compacting && (c = cmp_try(vs, v, l, f)) != NULL)
                c->manual = 1; /* rewritten even when it could move: that drops the entries */
        }
    pthread_mutex_unlock(&vs->mu);
    return c;
}

compaction *vset_compact_range(vset *vs, int level, kv_slice *lo, kv_slice *hi, int *busy)
{
    *busy = 0;
    if (level < 0 || level >= KV_MAX_LEVELS)
        return NULL;
    pthread_mutex_lock(&vs->mu);
    compaction *c = cmp_new(vs, vs->current, level);
    if (c)
        c->manual = 1;
    if (c && set_expand(&c->in[0], c->v, level, lo, hi) == 0 && c->in[0].n) {
        if (cmp_complete(c)) {
            c = cmp_start(c);
            goto out;
        }
        *busy = 1; /* files exist but are taken (or memory ran out: retry later) */
    }
    if (c)
        cmp_discard(c);
    c = NULL;
out:
    pthread_mutex_unlock(&vs->mu);
    return c;
}

int compaction_level(const compaction *c)
{
    return c->level;
}

/* A table moved down a level unchanged (compaction_run). */
static int compaction_is_move(const compaction *c)
{
    return !c->manual && c->in[0].n == 1 && c->in[1].n == 0 && c->out_level != c->level;
}

uint64_t compaction_output_bytes(const compaction *c)
{
    if (compaction_is_move(c))
        return 0;
    uint64_t n = 0;
    for (int i = 0; i < 2; i++)
        for (size_t j = 0; j < c->in[i].n; j++)
            n += c->in[i].f[j]->file_bytes;
    return n;
}

void compaction_free(compaction *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->vs->mu);
    set_mark(&c->in[0], 0);
    set_mark(&c->in[1], 0);
    pthread_mutex_unlock(&c->vs->mu);
    version_unref(c->v);
    cmp_discard(c);
}

/* -------------------------------------------------------- range-deletion upkeep ---- */

static int edit_deletes_file(const version_edit *e, int level, uint64_t number)
{
    for (size_t i = 0; i < e->ndeleted; i++)
        if (e->deleted[i].level == level && e->deleted[i].number == number)
            return 1;
    return 0;
}

/* 1 if f may hold a version that d hides: f has entries older than d, its span meets d's
 * range, and it was not written by a compaction that knew d and kept nothing d hides. */
static int drop_may_hide_in(const file_meta *f, const kv_drop *d)
{
    return f->min_seq < d->seq && d->seq >= f->drops_clean_below &&
           kv_slice_cmp(f_lo(f), d->hi) < 0 && kv_slice_cmp(f_hi(f), d->lo) >= 0;
}

/* 1 if some table of v, other than those e deletes, may hold a version d hides. */
static int drop_still_hides(const version *v, const version_edit *e, const kv_drop *d)
{
    for (int l = 0; l < KV_MAX_LEVELS; l++)
        for (size_t i = 0; i < v->nfiles[l]; i++) {
            const file_meta *f = v->files[l][i];
            if (drop_may_hide_in(f, d) && !edit_deletes_file(e, l, f->number))
                return 1;
        }
    return 0;
}

/* Flags f for a compaction (drop_compact) when it may hold entries that a range deletion no
 * reader can see past hides: they are dropped by rewriting f, not by deleting it. */
static void drop_flag_file(file_meta *f, const drop_set *ds, const retention *r)
{
    for (size_t k = 0; k < drops_count(ds) && !f->drop_compact; k++) {
        const kv_drop *d = drops_at(ds, k);
        f->drop_compact = d->seq <= r->floor_seq && drop_may_hide_in(f, d) &&
                          !snap_between(r, f->min_seq, d->seq);
    }
}

int vset_drop_upkeep(vset *vs, const retention *r, version_edit *e)
{
    int rc = 0, changes = 0;
    pthread_mutex_lock(&vs->mu);
    const version *v = vs->current;
    const drop_set *ds = v->drops;
    for (int l = 0; l < KV_MAX_LEVELS && ds && rc == 0; l++)
        for (size_t i = 0; i < v->nfiles[l] && rc == 0; i++) {
            file_meta *f = v->files[l][i];
            if (f->compacting)
                continue;
            uint64_t sd = drops_cover_span(ds, f_lo(f), f_hi(f), f->max_seq);
            if (sd > r->floor_seq || snap_between(r, f->min_seq, sd))
                continue; /* some reader may still see an entry of f */
            rc = edit_delete_file(e, l, f->number);
            if (rc == 0) {
                f->compacting = 1;
                changes++;
            }
        }
    for (size_t k = 0; k < drops_count(ds) && rc == 0; k++) {
        const kv_drop *d = drops_at(ds, k);
        if (!drop_still_hides(v, e, d) && (rc = edit_delete_drop(e, d->seq)) == 0)
            changes++;
    }
    for (int l = 0; l < KV_MAX_LEVELS && rc == 0; l++)
        for (size_t i = 0; i < v->nfiles[l]; i++)
            if (!edit_deletes_file(e, l, v->files[l][i]->number))
                drop_flag_file(v->files[l][i], ds, r);
    pthread_mutex_unlock(&vs->mu);
    return rc < 0 ? rc : changes;
}

void vset_drop_upkeep_done(vset *vs, const version_edit *e)
{
    pthread_mutex_lock(&vs->mu);
    const version *v = vs->current;
    for (int l = 0; l < KV_MAX_LEVELS; l++)
        for (size_t i = 0; i < v->nfiles[l]; i++)
            if (edit_deletes_file(e, l, v->files[l][i]->number))
                v->files[l][i]->compacting = 0;
    pthread_mutex_unlock(&vs->mu);
}

/* ------------------------------------------------------------------- outputs ---- */

typedef struct cmp_output {
    uint64_t number;
    sst_props props;
    uint64_t clean_below; /* file_meta.drops_clean_below of the table */
} cmp_output;

/* The table being written and those finished, shared by compaction and build_level0. */
typedef struct out_writer {
    vset *vs;
    int level; /* the level the outputs go to */
    sst_builder *b;
    uint64_t number;                         /* of b */
    uint8_t prefix[KV_PARTITION_PREFIX_MAX]; /* the partition prefix of b's keys */
    size_t prefix_len;
    uint64_t paced;        /* bytes of b already reported to vs->compaction_pace */
    const drop_set *drops; /* compactions: the input version's range deletions */
    uint64_t clean_below;  /* of b: see file_meta.drops_clean_below */
    cmp_output *outs;
    size_t nouts, capouts;
} out_writer;

/* The build options of a table written to level: opts.uncompressed_levels keeps the young,
 * soon-rewritten levels out of zstd (flush and L0->L1 are on the write path's critical path). */
static sst_build_opts build_opts_for(const vset *vs, int level)
{
    int zlevel = level < vs->opts.uncompressed_levels ? 0 : vs->opts.compression_level;
    sst_build_opts o = {vs->opts.block_bytes, zlevel, vs->opts.bloom_bits_per_key};
    return o;
}

static int out_open(out_writer *w)
{
    char path[PATH_MAX];
    sst_build_opts o = build_opts_for(w->vs, w->level);
    w->number = vset_new_file_number(w->vs);
    int rc = vset_table_path(w->vs, w->number, path, sizeof path);
    return rc ? rc : sst_builder_open(path, &o, &w->b);
}

static int out_finish(out_writer *w);

/* 1 if ukey belongs to another partition than the table being written. */
static int out_new_partition(const out_writer *w, kv_slice ukey)
{
    size_t n = KV_MIN(w->vs->opts.partition_prefix_bytes, ukey.len);
    return n != w->prefix_len || memcmp(ukey.data, w->prefix, n) != 0;
}

/* Adds an entry; starts a new table first when the entry's partition prefix differs from the
 * current table's (a prefix change is always a user-key boundary). */
static int out_add(out_writer *w, kv_slice ikey, kv_slice value)
{
    kv_slice ukey = ikey_user_key(ikey);
    int rc = 0;
    if (w->b && w->vs->opts.partition_prefix_bytes && out_new_partition(w, ukey))
        rc = out_finish(w);
    if (rc == 0 && !w->b) {
        rc = out_open(w);
        w->clean_below = w->drops ? drops_max_seq(w->drops) + 1 : 0;
        w->prefix_len = KV_MIN(w->vs->opts.partition_prefix_bytes, ukey.len);
        memcpy(w->prefix, ukey.data, w->prefix_len);
        w->paced = 0;
    }
    if (rc == 0)
        rc = sst_builder_add(w->b, ikey, value);
    if (rc == 0 && w->drops) { /* a kept version a range deletion still hides */
        uint64_t hider = drops_next_above(w->drops, ukey, ikey_tag(ikey) >> 8);
        if (hider < w->clean_below)
            w->clean_below = hider;
    }
    /* a compaction (not a flush, which frees memory writers may wait for) lets the store
     * slow it down every VSET_PACE_BYTES */
    if (rc == 0 && w->level > 0 && w->vs->compaction_pace &&
        sst_builder_file_bytes(w->b) >= w->paced + VSET_PACE_BYTES) {
        w->paced += VSET_PACE_BYTES;
        w->vs->compaction_pace(w->vs->compaction_pace_arg);
    }
    return rc;
}

static int out_finish(out_writer *w)
{
    if (!w->b)
        return 0;
    cmp_output *p = kv_grow(w->outs, &w->capouts, w->nouts + 1, sizeof *p, 4);
    if (!p)
        return -ENOMEM;
    w->outs = p;
    cmp_output *o = &w->outs[w->nouts];
    memset(o, 0, sizeof *o);
    o->number = w->number;
    o->clean_below = w->clean_below;
    sst_builder *b = w->b;
    w->b = NULL;
    int rc = sst_builder_finish(b, &o->props);
    if (rc == 0)
        w->nouts++;
    return rc;
}

/* Finishes the last table and fsyncs the directory (once for all outputs). */
static int out_close(out_writer *w)
{
    int rc = out_finish(w);
    if (rc == 0 && w->nouts)
        rc = kvio_fsync_dir(w->vs->dir);
    return rc;
}

/* Releases w; with discard, removes every table it wrote. */
static void out_release(out_writer *w, int discard)
{
    if (w->b)
        sst_builder_abandon(w->b);
    for (size_t i = 0; i < w->nouts; i++) {
        char path[PATH_MAX];
        if (discard && vset_table_path(w->vs, w->outs[i].number, path, sizeof path) == 0)
            kvio_unlink_keep_error(path);
        sst_props_free(&w->outs[i].props);
    }
    free(w->outs);
    memset(w, 0, sizeof *w);
}

/* ------------------------------------------------------------------- merging ---- */

typedef struct cmp_job {
    compaction *c;
    const retention *r;
    out_writer w;
    size_t table_bytes;
    kv_buf ukey; /* the user key being walked */
    int have_key;
    uint64_t newer;    /* s': seq of the next newer version of ukey (UINT64_MAX: none) */
    uint64_t *pending; /* kept DELETEs (seqs, newest first) with no kept version after */
    size_t npending, cappending;
    kv_buf scratch; /* internal keys being built */
} cmp_job;

/* 1 if some snapshot p has s <= p < newer. */
static int snap_between(const retention *r, uint64_t s, uint64_t newer)
{
    size_t lo = 0, hi = r->nsnaps;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (r->snap_seqs[mid] < s)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < r->nsnaps && r->snap_seqs[lo] < newer;
}

/* Whether a reader may still see the version of ukey at s, whose next newer version is at
 * newer (UINT64_MAX: none): a range deletion of drops (may be NULL) between them counts as
 * the next newer version; the version is seen when that is above the retention floor or a
 * snapshot lies between. The one rule compaction and flush drop versions by. */
static int seen_by_a_reader(const retention *r, const drop_set *drops, kv_slice ukey, uint64_t s,
                            uint64_t newer)
{
    uint64_t dropped_at = drops_next_above(drops, ukey, s); /* UINT64_MAX for NULL drops */
    if (dropped_at < newer)
        newer = dropped_at; /* a range deletion is the next newer version */
    return newer > r->floor_seq || snap_between(r, s, newer);
}

/* 1 if no level below the output level may hold ukey (LevelDB IsBaseLevelForKey). */
static int base_level_for(const compaction *c, kv_slice ukey)
{
    for (int l = c->out_level + 1; l < KV_MAX_LEVELS; l++) {
        file_meta **fs = c->v->files[l];
        size_t lo = 0, hi = c->v->nfiles[l];
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (kv_slice_cmp(f_hi(fs[mid]), ukey) < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo < c->v->nfiles[l] && kv_slice_cmp(f_lo(fs[lo]), ukey) <= 0)
            return 0;
    }
    return 1;
}

static int job_emit(cmp_job *j, uint64_t seq, unsigned type, kv_slice value)
{
    j->scratch.len = 0;
    int rc = ikey_append(&j->scratch, kv_buf_slice(&j->ukey), seq, type);
    return rc ? rc : out_add(&j->w, kv_buf_slice(&j->scratch), value);
}

static int job_flush_pending(cmp_job *j)
{
    int rc = 0;
    for (size_t i = 0; i < j->npending && rc == 0; i++)
        rc = job_emit(j, j->pending[i], KV_TYPE_DELETE, kv_slice_of(NULL, 0));
    j->npending = 0;
    return rc;
}

static int job_add_pending(cmp_job *j, uint64_t seq)
{
    uint64_t *p = kv_grow(j->pending, &j->cappending, j->npending + 1, sizeof *p, 8);
    if (!p)
        return -ENOMEM;
    j->pending = p;
    j->pending[j->npending++] = seq;
    return 0;
}

/* The key's walk is over: pending DELETEs are its oldest kept versions and hide nothing
 * unless a deeper level may hold the key. Those older than floor_seq go; a newer one is part
 * of the history readers may still list (kv_history) and stays. */
static int job_end_key(cmp_job *j)
{
    if (j->npending && base_level_for(j->c, kv_buf_slice(&j->ukey)))
        while (j->npending && j->pending[j->npending - 1] < j->r->floor_seq)
            j->npending--; /* newest first: the old ones are the tail */
    int rc = job_flush_pending(j);
    if (rc == 0 && j->w.b && sst_builder_file_bytes(j->w.b) >= j->table_bytes)
        rc = out_finish(&j->w); /* a user-key boundary: the only place to cut */
    return rc;
}

static int job_entry(cmp_job *j, const kv_parsed_key *pk, kv_slice value)
{
    int rc = 0;
    if (!j->have_key || kv_slice_cmp(pk->user_key, kv_buf_slice(&j->ukey)) != 0) {
        if (j->have_key && (rc = job_end_key(j)) != 0)
            return rc;
        if ((rc = kv_buf_set(&j->ukey, pk->user_key.data, pk->user_key.len)) != 0)
            return rc;
        j->have_key = 1;
        j->newer = UINT64_MAX;
    } else if (pk->seq >= j->newer) {
        return 0; /* the same version twice (two inputs): keep the first */
    }
    uint64_t s = pk->seq, newer = j->newer;
    unsigned type = pk->type;
    j->newer = s;
    if (!seen_by_a_reader(j->r, j->c->v->drops, pk->user_key, s, newer))
        return 0;
    if (type == KV_TYPE_VALUE_TTL) {
        uint64_t exp;
        kv_slice uv;
        if (kv_value_decode(type, value, &exp, &uv))
            return kv_error(-EUCLEAN, "compaction: short TTL value in input tables of level %d",
                            j->c->level);
        if (exp != 0 && exp <= j->r->expiry_floor_ms)
            type = KV_TYPE_DELETE;
    }
    if (type == KV_TYPE_DELETE)
        return job_add_pending(j, s);
    /* an older value is kept: the DELETEs above it must stay to hide it */
    rc = job_flush_pending(j);
    return rc ? rc : job_emit(j, s, type, value);
}

/* The merged iterator over every input (children owned by the result). */
static int job_input(compaction *c, iter **out)
{
    size_t n = c->in[0].n + c->in[1].n, k = 0;
    iter **kids = calloc(n ? n : 1, sizeof *kids);
    if (!kids)
        return -ENOMEM;
    int rc = 0;
    for (int s = 0; s < 2 && rc == 0; s++) {
        for (size_t i = 0; i < c->in[s].n && rc == 0; i++) {
            sst_reader *r;
            rc = file_reader(c->in[s].f[i], &r);
            if (rc == 0 && !(kids[k++] = sst_reader_scan_iter(r)))
                rc = -ENOMEM;
        }
    }
    if (rc) {
        for (size_t i = 0; i < k; i++)
            iter_destroy(kids[i]);
        free(kids);
        return rc;
    }
    *out = iter_merge_new(kids, k);
    return 0;
}

static int job_run(cmp_job *j)
{
    iter *it = NULL;
    int rc = job_input(j->c, &it);
    if (rc)
        return rc;
    for (iter_seek_first(it); iter_valid(it) && rc == 0; iter_next(it)) {
        kv_parsed_key pk;
        if (ikey_parse(iter_key(it), &pk)) {
            rc = kv_error(-EUCLEAN, "compaction: bad internal key in input tables of level %d",
                          j->c->level);
            break;
        }
        rc = job_entry(j, &pk, iter_value(it));
    }
    if (rc == 0)
        rc = iter_status(it);
    if (rc == 0 && j->have_key)
        rc = job_end_key(j);
    iter_destroy(it);
    return rc;
}

static int job_fill_edit(cmp_job *j, version_edit *e)
{
    compaction *c = j->c;
    int rc = 0;
    for (int s = 0; s < 2; s++)
        for (size_t i = 0; i < c->in[s].n && rc == 0; i++)
            rc = edit_delete_file(e, c->level + s, c->in[s].f[i]->number);
    for (size_t i = 0; i < j->w.nouts && rc == 0; i++) {
        rc = edit_add_file(e, c->out_level, j->w.outs[i].number, &j->w.outs[i].props);
        if (rc == 0)
            e->added[e->nadded - 1].f->drops_clean_below = j->w.outs[i].clean_below;
    }
    return rc;
}

int compaction_run(compaction *c, const retention *r, version_edit *e, uint64_t *bytes_read,
                   uint64_t *bytes_written)
{
    if (compaction_is_move(c)) {
        /* Nothing to merge with: sequential writes (file data) reach deep levels unrewritten. */
        if (bytes_read)
            *bytes_read = 0;
        if (bytes_written)
            *bytes_written = 0;
        return edit_move_file(e, c->level, c->out_level, c->in[0].f[0]);
    }
    cmp_job j;
    memset(&j, 0, sizeof j);
    j.c = c;
    j.r = r;
    j.w.vs = c->vs;
    j.w.level = c->out_level;
    j.w.drops = c->v->drops;
    j.table_bytes = c->vs->opts.table_bytes ? c->vs->opts.table_bytes : CMP_DEFAULT_TABLE_BYTES;
    int rc = job_run(&j);
    if (rc == 0)
        rc = out_close(&j.w);
    if (rc == 0)
        rc = job_fill_edit(&j, e);
    uint64_t in_bytes = 0, out_bytes = 0;
    for (int s = 0; s < 2; s++)
        for (size_t i = 0; i < c->in[s].n; i++)
            in_bytes += c->in[s].f[i]->file_bytes;
    for (size_t i = 0; i < j.w.nouts; i++)
        out_bytes += j.w.outs[i].props.file_bytes;
    if (bytes_read)
        *bytes_read = in_bytes;
    if (bytes_written)
        *bytes_written = rc ? 0 : out_bytes;
    out_release(&j.w, rc != 0);
    kv_buf_free(&j.ukey);
    kv_buf_free(&j.scratch);
    free(j.pending);
    return rc;
}

/* --------------------------------------------------------------- build_level0 ---- */

/* A walk over a memtable's entries for build_level0 (l0_keep): the user key and sequence of
 * the entry before, kept or not. */
typedef struct l0_walk {
    kv_buf ukey;
    int have_key;
    uint64_t newer; /* seq of the previous (newer) version of ukey; UINT64_MAX: none */
} l0_walk;

static int l0_keep(l0_walk *w, iter *it, const drop_set *drops, const retention *r, int *keep)
{
    kv_parsed_key pk;
    *keep = 1;
    if (!r)
        return 0;
    if (ikey_parse(iter_key(it), &pk))
        return kv_error(-EUCLEAN, "flush: bad internal key in the memtable");
    if (!w->have_key || kv_slice_cmp(pk.user_key, kv_buf_slice(&w->ukey)) != 0) {
        int rc = kv_buf_set(&w->ukey, pk.user_key.data, pk.user_key.len);
        if (rc)
            return rc;
        w->have_key = 1;
        w->newer = UINT64_MAX;
    }
    uint64_t newer = w->newer;
    w->newer = pk.seq;
    if (pk.type != KV_TYPE_DELETE)
        *keep = seen_by_a_reader(r, drops, pk.user_key, pk.seq, newer);
    return 0;
}

uint64_t level0_kept_bytes(iter *it, const drop_set *drops, const retention *r)
{
    l0_walk w;
    memset(&w, 0, sizeof w);
    uint64_t n = 0;
    int keep;
    for (iter_seek_first(it); iter_valid(it); iter_next(it))
        if (l0_keep(&w, it, drops, r, &keep) != 0 || keep)
            n += iter_key(it).len + iter_value(it).len;
    kv_buf_free(&w.ukey);
    return n;
}

int build_level0(vset *vs, iter *it, const drop_set *drops, const retention *r, version_edit *e)
{
    out_writer w;
    memset(&w, 0, sizeof w);
    w.vs = vs;
    w.level = 0;
    l0_walk walk;
    memset(&walk, 0, sizeof walk);
    int rc = 0, keep;
    for (iter_seek_first(it); rc == 0 && iter_valid(it); iter_next(it))
        if ((rc = l0_keep(&walk, it, drops, r, &keep)) == 0 && keep)
            rc = out_add(&w, iter_key(it), iter_value(it));
    kv_buf_free(&walk.ukey);
    if (rc == 0)
        rc = iter_status(it);
    if (rc == 0)
        rc = out_close(&w);
    for (size_t i = 0; i < w.nouts && rc == 0; i++)
        rc = edit_add_file(e, 0, w.outs[i].number, &w.outs[i].props);
    out_release(&w, rc != 0);
    return rc;
}
