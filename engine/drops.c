/*
 * drops.c -- the immutable, shared set of range deletions (drops.h).
 *
 * Layout: one allocation holds the struct, the drops sorted by (lo, seq), a prefix maximum of
 * their hi bounds, and the key bytes. A query binary-searches the last drop whose lo is <= the
 * key, then walks back while the prefix maximum says an earlier drop can still reach the key:
 * for disjoint ranges (the common case: one per deleted file) that is one step.
 */
#include "drops.h"

#include <errno.h>
#include <stdlib.h>

struct drop_set {
    atomic_int refs;
    size_t n;
    kv_drop *d;     /* n drops, sorted by (lo, seq); slices point into bytes */
    size_t *max_hi; /* max_hi[i]: index of the largest hi among d[0..i] */
};

static int drop_cmp(const void *a, const void *b)
{
    const kv_drop *x = a, *y = b;
    int c = kv_slice_cmp(x->lo, y->lo);
    if (c)
        return c;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int seq_listed(const uint64_t *del, size_t ndel, uint64_t seq)
{
    for (size_t i = 0; i < ndel; i++)
        if (del[i] == seq)
            return 1;
    return 0;
}

/* Copies src's keys behind *bytes into dst. */
static void drop_copy(kv_drop *dst, const kv_drop *src, uint8_t **bytes)
{
    dst->seq = src->seq;
    memcpy(*bytes, src->lo.data, src->lo.len);
    dst->lo = kv_slice_of(*bytes, src->lo.len);
    *bytes += src->lo.len;
    memcpy(*bytes, src->hi.data, src->hi.len);
    dst->hi = kv_slice_of(*bytes, src->hi.len);
    *bytes += src->hi.len;
}

int drops_make(const drop_set *base, const kv_drop *add, size_t nadd, const uint64_t *del,
               size_t ndel, drop_set **out)
{
    size_t n = 0, keys = 0, nbase = drops_count(base);
    *out = NULL;
    for (size_t i = 0; i < nbase; i++)
        if (!seq_listed(del, ndel, base->d[i].seq)) {
            n++;
            keys += base->d[i].lo.len + base->d[i].hi.len;
        }
    for (size_t i = 0; i < nadd; i++)
        keys += add[i].lo.len + add[i].hi.len;
    n += nadd;
    if (n == 0)
        return 0;
    size_t head = sizeof(drop_set) + n * (sizeof(kv_drop) + sizeof(size_t));
    drop_set *s = malloc(head + keys);
    if (!s)
        return -ENOMEM;
    atomic_init(&s->refs, 1);
    s->n = n;
    s->d = (kv_drop *)(s + 1);
    s->max_hi = (size_t *)(s->d + n);
    uint8_t *bytes = (uint8_t *)s + head;
    size_t k = 0;
    for (size_t i = 0; i < nbase; i++)
        if (!seq_listed(del, ndel, base->d[i].seq))
            drop_copy(&s->d[k++], &base->d[i], &bytes);
    for (size_t i = 0; i < nadd; i++)
        drop_copy(&s->d[k++], &add[i], &bytes);
    qsort(s->d, n, sizeof *s->d, drop_cmp);
    size_t kept = 0; /* one drop per seq: the same drop may come from two sources */
    for (size_t i = 0; i < n; i++)
        if (kept == 0 || s->d[kept - 1].seq != s->d[i].seq)
            s->d[kept++] = s->d[i];
    s->n = n = kept;
    for (size_t i = 0; i < n; i++) {
        size_t best = i;
        if (i > 0 && kv_slice_cmp(s->d[s->max_hi[i - 1]].hi, s->d[i].hi) > 0)
            best = s->max_hi[i - 1];
        s->max_hi[i] = best;
    }
    *out = s;
    return 0;
}

int drops_merge(const drop_set *base, const drop_set *add, const uint64_t *del, size_t ndel,
                drop_set **out)
{
    size_t nadd = drops_count(add);
    if (nadd == 0)
        return drops_make(base, NULL, 0, del, ndel, out);
    kv_drop *all = malloc(nadd * sizeof *all);
    if (!all)
        return -ENOMEM;
    memcpy(all, add->d, nadd * sizeof *all);
    int rc = drops_make(base, all, nadd, del, ndel, out);
    free(all);
    return rc;
}

void drops_ref(drop_set *s)
{
    if (s)
        atomic_fetch_add(&s->refs, 1);
}

void drops_unref(drop_set *s)
{
    if (s && atomic_fetch_sub(&s->refs, 1) == 1)
        free(s);
}

size_t drops_count(const drop_set *s)
{
    return s ? s->n : 0;
}

const kv_drop *drops_at(const drop_set *s, size_t i)
{
    return &s->d[i];
}

/* How many drops have lo <= key. */
static size_t drops_upto(const drop_set *s, kv_slice key)
{
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (kv_slice_cmp(s->d[mid].lo, key) <= 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

uint64_t drops_next_above(const drop_set *s, kv_slice key, uint64_t seq)
{
    return drops_cover_span(s, key, key, seq);
}

uint64_t drops_cover_span(const drop_set *s, kv_slice lo, kv_slice hi, uint64_t above)
{
    uint64_t best = UINT64_MAX;
    if (!s)
        return best;
    for (size_t j = drops_upto(s, lo); j-- > 0;) {
        if (kv_slice_cmp(s->d[s->max_hi[j]].hi, hi) <= 0)
            break; /* no drop at or before j reaches past hi */
        const kv_drop *d = &s->d[j];
        if (kv_slice_cmp(d->hi, hi) > 0 && d->seq > above && d->seq < best)
            best = d->seq;
    }
    return best;
}

uint64_t drops_max_seq(const drop_set *s)
{
    uint64_t m = 0;
    for (size_t i = 0; i < drops_count(s); i++)
        if (s->d[i].seq > m)
            m = s->d[i].seq;
    return m;
}
