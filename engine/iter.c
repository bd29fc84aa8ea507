/*
 * iter.c -- generic internal iterators (iter.h): the error/empty iterator, the merging
 * iterator and the cleanup wrapper.
 *
 * Constructors here never return NULL: when memory runs out they release what they were
 * given (children, cleanups) and return a shared static iterator whose status is -ENOMEM.
 *
 * Merging iterator. Entries are ordered by (internal key, child index), so equal keys from
 * different children come out child 0 first going forward and in exactly the reverse order
 * going backward. Invariants between movements (when no error has happened):
 *   - forward (MERGE_FWD): every child is positioned at its first entry >= the current entry
 *     in that order (the current child at the current entry, invalid children have none);
 *   - backward (MERGE_REV): every child is positioned at its last entry <= the current entry;
 *   - mi_cur is the child holding the current entry: the smallest (forward) or largest
 *     (backward) valid child, or NULL.
 * next() in backward mode (and prev() in forward mode) first re-positions every other child
 * around the current key, like LevelDB's MergingIterator. With up to MERGE_HEAP_MIN children
 * the current child is found by a linear scan; with more, a binary heap of the valid children
 * (min-heap forward, max-heap backward) keeps next()/prev() at O(log n) comparisons.
 * The first child that stops with an error ends the merge: the merge becomes invalid for good
 * and status() returns that error. A child yielding a key shorter than a tag is corruption.
 */
#include "iter.h"

#include <errno.h>
#include <stdlib.h>

#include "dbformat.h"

/* ------------------------------------------------------------------ error iterator ---- */

typedef struct err_iter {
    iter base;
    int ei_err;
    int ei_static; /* the shared out-of-memory iterator: never freed */
} err_iter;

static int err_valid(const iter *it)
{
    KV_UNUSED(it);
    return 0;
}

static void err_move(iter *it)
{
    KV_UNUSED(it);
}

static void err_seek(iter *it, kv_slice target)
{
    KV_UNUSED(it);
    KV_UNUSED(target);
}

static kv_slice err_slice(const iter *it)
{
    KV_UNUSED(it);
    return kv_slice_of(NULL, 0);
}

static int err_status(const iter *it)
{
    return ((const err_iter *)it)->ei_err;
}

static void err_destroy(iter *it)
{
    if (!((err_iter *)it)->ei_static)
        free(it);
}

static const iter_ops err_iter_ops = {
    .valid = err_valid,
    .seek_first = err_move,
    .seek_last = err_move,
    .seek = err_seek,
    .next = err_move,
    .prev = err_move,
    .key = err_slice,
    .value = err_slice,
    .status = err_status,
    .destroy = err_destroy,
};

/* Read-only after initialisation, so sharing it between threads is safe. */
static err_iter err_nomem = {{&err_iter_ops}, -ENOMEM, 1};

iter *iter_new_error(int err)
{
    err_iter *ei = malloc(sizeof *ei);
    if (!ei)
        return &err_nomem.base;
    ei->base.ops = &err_iter_ops;
    ei->ei_err = err;
    ei->ei_static = 0;
    return &ei->base;
}

/* ------------------------------------------------------------------ merging iterator ---- */

#define MERGE_HEAP_MIN 8 /* more children than this: keep them in a heap */

enum { MERGE_FWD, MERGE_REV };

typedef struct merge_iter {
    iter base;
    iter **mi_child;
    kv_slice *mi_key; /* each child's current key; len 0 while the child is not valid */
    size_t mi_n;
    size_t *mi_heap; /* child indexes, heap-ordered; NULL when scanning linearly */
    size_t mi_heap_n;
    size_t mi_cur; /* index of the current child; mi_n: none */
    int mi_dir;
    int mi_err;
} merge_iter;

/* Does child a's entry come before child b's in the current direction? */
static inline int merge_before(const merge_iter *m, size_t a, size_t b)
{
    int c = ikey_cmp(m->mi_key[a], m->mi_key[b]);
    if (c == 0)
        c = a < b ? -1 : 1;
    return m->mi_dir == MERGE_FWD ? c < 0 : c > 0;
}

/* After child i moved: caches its key and returns 1 if it is valid, 0 if exhausted; records
 * its error or a bad key. */
static int merge_check(merge_iter *m, size_t i)
{
    iter *c = m->mi_child[i];
    m->mi_key[i] = kv_slice_of(NULL, 0);
    if (iter_valid(c)) {
        kv_slice k = iter_key(c);
        if (k.len >= KV_TAG_BYTES) {
            m->mi_key[i] = k;
            return 1;
        }
        if (!m->mi_err)
            m->mi_err = kv_error(-EUCLEAN,
                                 "merge: child %zu yielded a %zu-byte key, shorter "
                                 "than the %d-byte tag",
                                 i, k.len, KV_TAG_BYTES);
        return 0;
    }
    int st = iter_status(c);
    if (st && !m->mi_err)
        m->mi_err = st;
    return 0;
}

static void merge_sift_down(merge_iter *m, size_t pos)
{
    size_t *h = m->mi_heap, n = m->mi_heap_n;
    for (;;) {
        size_t best = pos, l = 2 * pos + 1, r = l + 1;
        if (l < n && merge_before(m, h[l], h[best]))
            best = l;
        if (r < n && merge_before(m, h[r], h[best]))
            best = r;
        if (best == pos)
            return;
        size_t t = h[pos];
        h[pos] = h[best];
        h[best] = t;
        pos = best;
    }
}

/* Sets mi_cur from scratch: every child was just positioned (checks them all). */
static void merge_rebuild(merge_iter *m)
{
    size_t cur = m->mi_n;
    m->mi_heap_n = 0;
    for (size_t i = 0; i < m->mi_n; i++) {
        if (!merge_check(m, i))
            continue;
        if (m->mi_heap)
            m->mi_heap[m->mi_heap_n++] = i;
        else if (cur == m->mi_n || merge_before(m, i, cur))
            cur = i;
    }
    if (m->mi_err) {
        m->mi_cur = m->mi_n;
        return;
    }
    if (m->mi_heap) {
        for (size_t pos = m->mi_heap_n / 2; pos-- > 0;)
            merge_sift_down(m, pos);
        cur = m->mi_heap_n ? m->mi_heap[0] : m->mi_n;
    }
    m->mi_cur = cur;
}

/* Sets mi_cur after only the current child moved (the others kept their place). */
static void merge_advanced(merge_iter *m)
{
    size_t moved = m->mi_cur;
    int ok = merge_check(m, moved);
    if (m->mi_err) {
        m->mi_cur = m->mi_n;
        return;
    }
    if (m->mi_heap) {
        if (!ok)
            m->mi_heap[0] = m->mi_heap[--m->mi_heap_n];
        merge_sift_down(m, 0);
        m->mi_cur = m->mi_heap_n ? m->mi_heap[0] : m->mi_n;
        return;
    }
    size_t cur = ok ? moved : m->mi_n;
    for (size_t i = 0; i < m->mi_n; i++) {
        if (i != moved && m->mi_key[i].len && (cur == m->mi_n || merge_before(m, i, cur)))
            cur = i;
    }
    m->mi_cur = cur;
}

static int merge_valid(const iter *it)
{
    const merge_iter *m = (const merge_iter *)it;
    return m->mi_cur < m->mi_n;
}

static void merge_seek_first(iter *it)
{
    merge_iter *m = (merge_iter *)it;
    if (m->mi_err)
        return;
    for (size_t i = 0; i < m->mi_n; i++)
        iter_seek_first(m->mi_child[i]);
    m->mi_dir = MERGE_FWD;
    merge_rebuild(m);
}

static void merge_seek_last(iter *it)
{
    merge_iter *m = (merge_iter *)it;
    if (m->mi_err)
        return;
    for (size_t i = 0; i < m->mi_n; i++)
        iter_seek_last(m->mi_child[i]);
    m->mi_dir = MERGE_REV;
    merge_rebuild(m);
}

static void merge_seek(iter *it, kv_slice target)
{
    merge_iter *m = (merge_iter *)it;
    if (m->mi_err)
        return;
    for (size_t i = 0; i < m->mi_n; i++)
        iter_seek(m->mi_child[i], target);
    m->mi_dir = MERGE_FWD;
    merge_rebuild(m);
}

/* Is child c valid and positioned exactly at key? */
static int merge_child_at(iter *c, kv_slice key)
{
    if (!iter_valid(c))
        return 0;
    kv_slice k = iter_key(c);
    return k.len >= KV_TAG_BYTES && ikey_cmp(k, key) == 0;
}

/* Backward -> forward: put every other child at its first entry after (key, cur). */
static void merge_turn_forward(merge_iter *m, kv_slice key)
{
    for (size_t i = 0; i < m->mi_n; i++) {
        if (i == m->mi_cur)
            continue;
        iter *c = m->mi_child[i];
        iter_seek(c, key);
        if (i < m->mi_cur && merge_child_at(c, key))
            iter_next(c);
    }
}

/* Forward -> backward: put every other child at its last entry before (key, cur). */
static void merge_turn_backward(merge_iter *m, kv_slice key)
{
    for (size_t i = 0; i < m->mi_n; i++) {
        if (i == m->mi_cur)
            continue;
        iter *c = m->mi_child[i];
        iter_seek(c, key);
        if (!iter_valid(c)) {
            if (iter_status(c) == 0)
                iter_seek_last(c);
        } else if (i > m->mi_cur || !merge_child_at(c, key)) {
            iter_prev(c);
        }
    }
}

/* Moves the current child one step and re-establishes the invariants for direction dir. */
static void merge_step(merge_iter *m, int dir)
{
    if (m->mi_cur >= m->mi_n)
        return;
    iter *cur = m->mi_child[m->mi_cur];
    int turned = m->mi_dir != dir;
    if (turned) {
        if (dir == MERGE_FWD)
            merge_turn_forward(m, m->mi_key[m->mi_cur]);
        else
            merge_turn_backward(m, m->mi_key[m->mi_cur]);
        m->mi_dir = dir;
    }
    if (dir == MERGE_FWD)
        iter_next(cur);
    else
        iter_prev(cur);
    if (turned)
        merge_rebuild(m);
    else
        merge_advanced(m);
}

static void merge_next(iter *it)
{
    merge_step((merge_iter *)it, MERGE_FWD);
}

static void merge_prev(iter *it)
{
    merge_step((merge_iter *)it, MERGE_REV);
}

static kv_slice merge_key(const iter *it)
{
    const merge_iter *m = (const merge_iter *)it;
    return m->mi_key[m->mi_cur];
}

static kv_slice merge_value(const iter *it)
{
    const merge_iter *m = (const merge_iter *)it;
    return iter_value(m->mi_child[m->mi_cur]);
}

static int merge_status(const iter *it)
{
    return ((const merge_iter *)it)->mi_err;
}

static void merge_free_children(iter **children, size_t n)
{
    for (size_t i = 0; i < n; i++)
        iter_destroy(children[i]);
    free(children);
}

static void merge_destroy(iter *it)
{
    merge_iter *m = (merge_iter *)it;
    merge_free_children(m->mi_child, m->mi_n);
    free(m->mi_key);
    free(m->mi_heap);
    free(m);
}

static const iter_ops merge_iter_ops = {
    .valid = merge_valid,
    .seek_first = merge_seek_first,
    .seek_last = merge_seek_last,
    .seek = merge_seek,
    .next = merge_next,
    .prev = merge_prev,
    .key = merge_key,
    .value = merge_value,
    .status = merge_status,
    .destroy = merge_destroy,
};

iter *iter_merge_new(iter **children, size_t n)
{
    if (n == 0) {
        free(children);
        return iter_new_error(0);
    }
    if (n == 1) {
        iter *only = children[0];
        free(children);
        return only;
    }
    merge_iter *m = calloc(1, sizeof *m);
    if (m) {
        m->mi_key = calloc(n, sizeof *m->mi_key);
        if (n > MERGE_HEAP_MIN)
            m->mi_heap = malloc(n * sizeof *m->mi_heap);
        if (!m->mi_key || (n > MERGE_HEAP_MIN && !m->mi_heap)) {
            free(m->mi_key);
            free(m->mi_heap);
            free(m);
            m = NULL;
        }
    }
    if (!m) {
        merge_free_children(children, n);
        return iter_new_error(kv_error(-ENOMEM, "merge: out of memory for %zu children", n));
    }
    m->base.ops = &merge_iter_ops;
    m->mi_child = children;
    m->mi_n = n;
    m->mi_cur = n;
    m->mi_dir = MERGE_FWD;
    return &m->base;
}

/* ------------------------------------------------------------------ cleanup wrapper ---- */

typedef struct cleanup_iter {
    iter base;
    iter *ci_child;
    iter_cleanup_fn ci_fn;
    void *ci_arg1;
    void *ci_arg2;
} cleanup_iter;

#define CI_CHILD(it) (((const cleanup_iter *)(it))->ci_child)

static int ci_valid(const iter *it)
{
    return iter_valid(CI_CHILD(it));
}

static void ci_seek_first(iter *it)
{
    iter_seek_first(CI_CHILD(it));
}

static void ci_seek_last(iter *it)
{
    iter_seek_last(CI_CHILD(it));
}

static void ci_seek(iter *it, kv_slice target)
{
    iter_seek(CI_CHILD(it), target);
}

static void ci_next(iter *it)
{
    iter_next(CI_CHILD(it));
}

static void ci_prev(iter *it)
{
    iter_prev(CI_CHILD(it));
}

static kv_slice ci_key(const iter *it)
{
    return iter_key(CI_CHILD(it));
}

static kv_slice ci_value(const iter *it)
{
    return iter_value(CI_CHILD(it));
}

static int ci_status(const iter *it)
{
    return iter_status(CI_CHILD(it));
}

static void ci_destroy(iter *it)
{
    cleanup_iter *ci = (cleanup_iter *)it;
    iter_destroy(ci->ci_child);
    ci->ci_fn(ci->ci_arg1, ci->ci_arg2);
    free(ci);
}

static const iter_ops cleanup_iter_ops = {
    .valid = ci_valid,
    .seek_first = ci_seek_first,
    .seek_last = ci_seek_last,
    .seek = ci_seek,
    .next = ci_next,
    .prev = ci_prev,
    .key = ci_key,
    .value = ci_value,
    .status = ci_status,
    .destroy = ci_destroy,
};

iter *iter_with_cleanup(iter *child, iter_cleanup_fn fn, void *arg1, void *arg2)
{
    cleanup_iter *ci = malloc(sizeof *ci);
    if (!ci) {
        iter_destroy(child);
        fn(arg1, arg2);
        return iter_new_error(kv_error(-ENOMEM, "iterator: out of memory for a cleanup"));
    }
    ci->base.ops = &cleanup_iter_ops;
    ci->ci_child = child;
    ci->ci_fn = fn;
    ci->ci_arg1 = arg1;
    ci->ci_arg2 = arg2;
    return &ci->base;
}
