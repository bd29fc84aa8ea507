/*
 * memtable.c -- the in-memory write buffer: a skiplist of internal keys (dbformat.h) whose
 * nodes, keys and values all live in one arena (arena.h).
 *
 * Node layout (one arena allocation):
 *
 *   mem_node { tag, ulen, vlen, data, next[height] } | user_key | tag:fixed64 | stored_value
 *
 * data points at user_key, so data[0 .. ulen+8) is the internal key and the value follows.
 * tag is also kept decoded in the node so that comparisons (the hot path of every put and get)
 * are one memcmp of the user keys and one integer compare of the tags -- no decoding.
 *
 * Skiplist: maximum height MEM_MAX_HEIGHT, each level kept with probability 1/MEM_BRANCHING.
 * Invariants:
 *   1. Level-0 links visit every node in ikey_cmp order; level i links are a sub-list of
 *      level i-1.
 *   2. A node is fully written (fields, key, value, its own next[] links) before it is linked:
 *      the writer publishes it with a release store into its predecessors' next[] and readers
 *      load every link with acquire, so a reader that reaches a node sees all of it.
 *   3. Nodes are never unlinked or modified after publication; everything is freed together
 *      when the reference count drops to zero.
 * mem_add is serialised by the caller; mem_get and iterators need no lock. The counters
 * (bytes, entries, min/max seq) are atomics written only by the writer.
 */
#include "memtable.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "arena.h"
#include "dbformat.h"

#define MEM_MAX_HEIGHT 12
#define MEM_BRANCHING 4

typedef struct mem_node {
    uint64_t tag;
    uint32_t ulen;
    uint32_t vlen;
    const uint8_t *data; /* user_key | tag:fixed64 | value */
    _Atomic(struct mem_node *) next[];
} mem_node;

struct memtable {
    arena m_arena;        /* writer only, except arena_usage() */
    mem_node *m_head;     /* sentinel of height MEM_MAX_HEIGHT, no key */
    _Atomic int m_height; /* levels in use, 1..MEM_MAX_HEIGHT */
    uint64_t m_rng;       /* writer only: height generator */
    _Atomic int m_refs;
    _Atomic size_t m_entries;
    _Atomic uint64_t m_min_seq; /* 0 while empty */
    _Atomic uint64_t m_max_seq;
    drop_set *m_drops; /* its range deletions (drops.h): writer, then the flush, only */
};

/* A key to search for, in decoded form: no buffer is ever built for a seek. */
typedef struct mem_key {
    const uint8_t *ukey;
    size_t ulen;
    uint64_t tag;
} mem_key;

/* ikey_cmp(node, k) without decoding the node: user key ascending, then tag descending. */
static inline int mem_cmp(const mem_node *n, const mem_key *k)
{
    size_t len = n->ulen < k->ulen ? n->ulen : k->ulen;
    int c = len ? memcmp(n->data, k->ukey, len) : 0;
    if (c != 0)
        return c;
    if (n->ulen != k->ulen)
        return n->ulen < k->ulen ? -1 : 1;
    return n->tag > k->tag ? -1 : n->tag < k->tag ? 1 : 0;
}

static inline mem_node *mem_next(const mem_node *n, int level)
{
    return atomic_load_explicit(&n->next[level], memory_order_acquire);
}

/* Splits an internal key into a search key (the caller guarantees len >= KV_TAG_BYTES). */
static inline mem_key mem_key_of_ikey(kv_slice ikey)
{
    mem_key k = {ikey.data, ikey.len - KV_TAG_BYTES, ikey_tag(ikey)};
    return k;
}

/* ------------------------------------------------------------------ skiplist ---- */

/* First node >= k, or NULL. If prev is given, fills prev[level] with the last node < k on
 * every level (the head where there is none). */
static mem_node *mem_find_ge(const memtable *m, const mem_key *k, mem_node **prev)
{
    mem_node *x = m->m_head;
    int level = atomic_load_explicit(&m->m_height, memory_order_relaxed) - 1;
    for (;;) {
        mem_node *next = mem_next(x, level);
        if (next && mem_cmp(next, k) < 0) {
            x = next;
            continue;
        }
        if (prev)
            prev[level] = x;
        if (level == 0)
            return next;
        level--;
    }
}

/* Last node < k, or the head if there is none. */
static mem_node *mem_find_lt(const memtable *m, const mem_key *k)
{
    mem_node *x = m->m_head;
    int level = atomic_load_explicit(&m->m_height, memory_order_relaxed) - 1;
    for (;;) {
        mem_node *next = mem_next(x, level);
        if (next && mem_cmp(next, k) < 0) {
            x = next;
            continue;
        }
        if (level == 0)
            return x;
        level--;
    }
}

/* Last node of the list, or the head if empty. */
static mem_node *mem_find_last(const memtable *m)
{
    mem_node *x = m->m_head;
    int level = atomic_load_explicit(&m->m_height, memory_order_relaxed) - 1;
    for (;;) {
        mem_node *next = mem_next(x, level);
        if (next) {
            x = next;
            continue;
        }
        if (level == 0)
            return x;
        level--;
    }
}

static int mem_random_height(memtable *m)
{
    int h = 1;
    while (h < MEM_MAX_HEIGHT) {
        /* xorshift64* */
        m->m_rng ^= m->m_rng >> 12;
        m->m_rng ^= m->m_rng << 25;
        m->m_rng ^= m->m_rng >> 27;
        if (((m->m_rng * UINT64_C(2685821657736338717)) >> 32) % MEM_BRANCHING != 0)
            break;
        h++;
    }
    return h;
}

static mem_node *mem_node_new(memtable *m, int height, size_t data_len)
{
    size_t head = sizeof(mem_node) + (size_t)height * sizeof(_Atomic(mem_node *));
    if (data_len > SIZE_MAX - head)
        return NULL;
    mem_node *n = arena_alloc(&m->m_arena, head + data_len);
    if (!n)
        return NULL;
    for (int i = 0; i < height; i++)
        atomic_init(&n->next[i], NULL);
    n->data = (const uint8_t *)n + head;
    return n;
}

/* ------------------------------------------------------------------ lifetime ---- */

memtable *mem_new(void)
{
    memtable *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    arena_init(&m->m_arena);
    m->m_head = mem_node_new(m, MEM_MAX_HEIGHT, 0);
    if (!m->m_head) {
        free(m);
        return NULL;
    }
    atomic_init(&m->m_height, 1);
    m->m_rng = (uint64_t)(uintptr_t)m ^ UINT64_C(0x9e3779b97f4a7c15);
    atomic_init(&m->m_refs, 1);
    atomic_init(&m->m_entries, 0);
    atomic_init(&m->m_min_seq, 0);
    atomic_init(&m->m_max_seq, 0);
    return m;
}

void mem_ref(memtable *m)
{
    atomic_fetch_add_explicit(&m->m_refs, 1, memory_order_relaxed);
}

void mem_unref(memtable *m)
{
    if (!m || atomic_fetch_sub_explicit(&m->m_refs, 1, memory_order_acq_rel) != 1)
        return;
    arena_destroy(&m->m_arena);
    drops_unref(m->m_drops);
    free(m);
}

/* ------------------------------------------------------------------ writes ---- */

/* Does the list already hold (k's user key, seq)? Such an entry is adjacent to k's place. */
static int mem_has_seq(const memtable *m, const mem_node *before, const mem_node *at,
                       const mem_key *k)
{
    uint64_t seq = k->tag >> 8;
    const mem_node *cand[2] = {before == m->m_head ? NULL : before, at};
    for (int i = 0; i < 2; i++) {
        const mem_node *n = cand[i];
        if (n && n->ulen == k->ulen && (n->tag >> 8) == seq &&
            (k->ulen == 0 || memcmp(n->data, k->ukey, k->ulen) == 0))
            return 1;
    }
    return 0;
}

static void mem_note_seq(memtable *m, uint64_t seq)
{
    uint64_t lo = atomic_load_explicit(&m->m_min_seq, memory_order_relaxed);
    uint64_t hi = atomic_load_explicit(&m->m_max_seq, memory_order_relaxed);
    if (lo == 0 || seq < lo)
        atomic_store_explicit(&m->m_min_seq, seq, memory_order_relaxed);
    if (seq > hi)
        atomic_store_explicit(&m->m_max_seq, seq, memory_order_relaxed);
    size_t n = atomic_load_explicit(&m->m_entries, memory_order_relaxed);
    atomic_store_explicit(&m->m_entries, n + 1, memory_order_relaxed);
}

int mem_add(memtable *m, uint64_t seq, unsigned type, kv_slice ukey, kv_slice stored_value)
{
    if (seq == 0 || seq > KV_MAX_SEQ || type > KV_TYPE_VALUE_TTL)
        return kv_error(-EINVAL, "memtable: bad entry (seq %llu, type %u)", (unsigned long long)seq,
                        type);
    if (ukey.len > UINT32_MAX - KV_TAG_BYTES || stored_value.len > UINT32_MAX)
        return kv_error(-EFBIG, "memtable: entry too large (key %zu, value %zu bytes)", ukey.len,
                        stored_value.len);
    mem_key k = {ukey.data, ukey.len, kv_tag(seq, type)};
    mem_node *prev[MEM_MAX_HEIGHT];
    mem_node *at = mem_find_ge(m, &k, prev);
    if (mem_has_seq(m, prev[0], at, &k))
        return kv_error(-EEXIST, "memtable: key of %zu bytes already has seq %llu", ukey.len,
                        (unsigned long long)seq);
    int height = mem_random_height(m);
    mem_node *n = mem_node_new(m, height, ukey.len + KV_TAG_BYTES + stored_value.len);
    if (!n)
        return kv_error(-ENOMEM, "memtable: out of memory for a %zu-byte value", stored_value.len);
    uint8_t *d = (uint8_t *)n->data;
    if (ukey.len)
        memcpy(d, ukey.data, ukey.len);
    kv_enc64(d + ukey.len, k.tag);
    if (stored_value.len)
        memcpy(d + ukey.len + KV_TAG_BYTES, stored_value.data, stored_value.len);
    n->tag = k.tag;
    n->ulen = (uint32_t)ukey.len;
    n->vlen = (uint32_t)stored_value.len;

    int cur = atomic_load_explicit(&m->m_height, memory_order_relaxed);
    for (int i = cur; i < height; i++)
        prev[i] = m->m_head;
    if (height > cur) /* readers seeing the new height early just find NULL head links */
        atomic_store_explicit(&m->m_height, height, memory_order_relaxed);
    for (int i = 0; i < height; i++) {
        mem_node *next = atomic_load_explicit(&prev[i]->next[i], memory_order_relaxed);
        atomic_store_explicit(&n->next[i], next, memory_order_relaxed);
        atomic_store_explicit(&prev[i]->next[i], n, memory_order_release);
    }
    mem_note_seq(m, seq);
    return 0;
}

int mem_add_drop(memtable *m, uint64_t seq, kv_slice lo, kv_slice hi)
{
    if (seq == 0 || seq > KV_MAX_SEQ)
        return kv_error(-EINVAL, "memtable: bad range deletion seq %llu", (unsigned long long)seq);
    kv_drop d = {seq, lo, hi};
    drop_set *next;
    if (drops_make(m->m_drops, &d, 1, NULL, 0, &next) != 0)
        return kv_error(-ENOMEM, "memtable: out of memory for a range deletion");
    drops_unref(m->m_drops);
    m->m_drops = next;
    mem_note_seq(m, seq);
    return 0;
}

const drop_set *mem_drops(const memtable *m)
{
    return m->m_drops;
}

/* ------------------------------------------------------------------ reads ---- */

int mem_get(memtable *m, kv_slice ukey, uint64_t max_seq, uint64_t *seq, unsigned *type,
            kv_slice *stored_value)
{
    if (max_seq > KV_MAX_SEQ)
        max_seq = KV_MAX_SEQ;
    mem_key k = {ukey.data, ukey.len, kv_tag(max_seq, KV_TYPE_SEEK)};
    const mem_node *n = mem_find_ge(m, &k, NULL);
    if (!n || n->ulen != ukey.len || (ukey.len && memcmp(n->data, ukey.data, ukey.len) != 0))
        return 0;
    if (seq)
        *seq = n->tag >> 8;
    if (type)
        *type = (unsigned)(n->tag & 0xff);
    if (stored_value)
        *stored_value = kv_slice_of(n->data + n->ulen + KV_TAG_BYTES, n->vlen);
    return 1;
}

size_t mem_bytes(const memtable *m)
{
    return arena_usage(&m->m_arena);
}

size_t mem_entries(const memtable *m)
{
    return atomic_load_explicit(&m->m_entries, memory_order_relaxed);
}

uint64_t mem_min_seq(const memtable *m)
{
    return atomic_load_explicit(&m->m_min_seq, memory_order_relaxed);
}

uint64_t mem_max_seq(const memtable *m)
{
    return atomic_load_explicit(&m->m_max_seq, memory_order_relaxed);
}

/* ------------------------------------------------------------------ iterator ---- */

typedef struct mem_iter {
    iter base;
    memtable *mi_mem;
    const mem_node *mi_node; /* NULL: not valid */
} mem_iter;

static int mem_it_valid(const iter *it)
{
    return ((const mem_iter *)it)->mi_node != NULL;
}

static void mem_it_seek_first(iter *it)
{
    mem_iter *mi = (mem_iter *)it;
    mi->mi_node = mem_next(mi->mi_mem->m_head, 0);
}

static void mem_it_seek_last(iter *it)
{
    mem_iter *mi = (mem_iter *)it;
    const mem_node *n = mem_find_last(mi->mi_mem);
    mi->mi_node = n == mi->mi_mem->m_head ? NULL : n;
}

static void mem_it_seek(iter *it, kv_slice target)
{
    mem_iter *mi = (mem_iter *)it;
    if (target.len < KV_TAG_BYTES) { /* not an internal key: seek before all of its versions */
        mem_key k = {target.data, target.len, UINT64_MAX};
        mi->mi_node = mem_find_ge(mi->mi_mem, &k, NULL);
        return;
    }
    mem_key k = mem_key_of_ikey(target);
    mi->mi_node = mem_find_ge(mi->mi_mem, &k, NULL);
}

static void mem_it_next(iter *it)
{
    mem_iter *mi = (mem_iter *)it;
    mi->mi_node = mem_next(mi->mi_node, 0);
}

static void mem_it_prev(iter *it)
{
    mem_iter *mi = (mem_iter *)it;
    const mem_node *cur = mi->mi_node;
    mem_key k = {cur->data, cur->ulen, cur->tag};
    const mem_node *n = mem_find_lt(mi->mi_mem, &k);
    mi->mi_node = n == mi->mi_mem->m_head ? NULL : n;
}

static kv_slice mem_it_key(const iter *it)
{
    const mem_node *n = ((const mem_iter *)it)->mi_node;
    return kv_slice_of(n->data, (size_t)n->ulen + KV_TAG_BYTES);
}

static kv_slice mem_it_value(const iter *it)
{
    const mem_node *n = ((const mem_iter *)it)->mi_node;
    return kv_slice_of(n->data + n->ulen + KV_TAG_BYTES, n->vlen);
}

static int mem_it_status(const iter *it)
{
    KV_UNUSED(it);
    return 0;
}

static void mem_it_destroy(iter *it)
{
    free(it);
}

static const iter_ops mem_iter_ops = {
    .valid = mem_it_valid,
    .seek_first = mem_it_seek_first,
    .seek_last = mem_it_seek_last,
    .seek = mem_it_seek,
    .next = mem_it_next,
    .prev = mem_it_prev,
    .key = mem_it_key,
    .value = mem_it_value,
    .status = mem_it_status,
    .destroy = mem_it_destroy,
};

iter *mem_iter_new(memtable *m)
{
    mem_iter *mi = malloc(sizeof *mi);
    if (!mi)
        return iter_new_error(kv_error(-ENOMEM, "memtable: out of memory for an iterator"));
    mi->base.ops = &mem_iter_ops;
    mi->mi_mem = m;
    mi->mi_node = NULL;
    return &mi->base;
}
