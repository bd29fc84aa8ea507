/*
 * test_memtable.c -- the arena and the skiplist memtable: random inserts (many versions per
 * key, keys that prefix each other) checked against a sorted reference array through mem_get
 * at many sequences and through the iterator (forward, backward, seek, random walks); add's
 * error cases; a 32 MiB value; and one writer racing two lock-free readers that must only
 * ever see fully formed entries in order (run it under -fsanitize=thread too).
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>

#include "arena.h"
#include "dbformat.h"
#include "kv.h"
#include "memtable.h"
#include "testutil.h"

/* ------------------------------------------------------------------ arena ---- */

static void test_arena(void)
{
    arena a;
    arena_init(&a);
    CHECK(arena_usage(&a) == 0);
    CHECK(arena_alloc(&a, 0) == NULL);

    enum { N = 20000 };
    static uint8_t *ptr[N];
    static size_t len[N];
    size_t total = 0;
    for (int i = 0; i < N; i++) {
        len[i] = 1 + tu_rand_below(i % 100 == 0 ? 5000 : 300);
        ptr[i] = arena_alloc(&a, len[i]);
        CHECK(ptr[i] != NULL);
        CHECK(((uintptr_t)ptr[i] & 7) == 0);
        memset(ptr[i], (int)(i & 0xff), len[i]);
        total += len[i];
    }
    for (int i = 0; i < N; i++) /* no two allocations overlap */
        for (size_t j = 0; j < len[i]; j++)
            CHECK(ptr[i][j] == (uint8_t)(i & 0xff));
    size_t used = arena_usage(&a);
    CHECK(used >= total);
    CHECK(used < total + total / 2 + 2 * ARENA_BLOCK_BYTES);

    /* Room left in the current block is used even for a large request. */
    size_t big = ARENA_BLOCK_BYTES / 4 + 1;
    uint8_t *p = arena_alloc(&a, big);
    CHECK(p != NULL && ((uintptr_t)p & 7) == 0);
    memset(p, 0xab, big);
    size_t after_big = arena_usage(&a);
    CHECK(after_big == used || (after_big >= used + big && after_big < used + big + 64));
    /* The value limit of the engine fits. */
    uint8_t *huge = arena_alloc(&a, 32u << 20);
    CHECK(huge != NULL);
    huge[0] = 1;
    huge[(32u << 20) - 1] = 2;
    CHECK(arena_usage(&a) >= after_big + (32u << 20));
    CHECK(arena_alloc(&a, SIZE_MAX) == NULL);
    CHECK(arena_alloc(&a, SIZE_MAX - 7) == NULL);
    arena_destroy(&a);
    CHECK(arena_usage(&a) == 0);

    /* A fresh arena: a large request gets a block of its own, a small one the first (small)
     * shared block, and a request that fits in that block's room comes from there. */
    p = arena_alloc(&a, big);
    CHECK(p != NULL);
    size_t dedicated = arena_usage(&a);
    CHECK(dedicated >= big && dedicated < big + 64);
    CHECK(arena_alloc(&a, 8) != NULL);
    size_t shared = arena_usage(&a) - dedicated;
    CHECK(shared > ARENA_FIRST_BLOCK_BYTES && shared < ARENA_FIRST_BLOCK_BYTES + 64);
    uint8_t *q = arena_alloc(&a, ARENA_FIRST_BLOCK_BYTES / 4);
    CHECK(q != NULL && q != p);
    memset(q, 1, ARENA_FIRST_BLOCK_BYTES / 4);
    CHECK(arena_usage(&a) == dedicated + shared);
    /* Shared blocks double up to ARENA_BLOCK_BYTES: usage never runs more than one block
     * ahead of what was asked for. */
    size_t asked = 8 + ARENA_FIRST_BLOCK_BYTES / 4;
    for (int i = 0; i < 40000; i++) {
        CHECK(arena_alloc(&a, 200) != NULL);
        asked += 200;
        CHECK(arena_usage(&a) - dedicated <= asked + ARENA_BLOCK_BYTES + (64 + 200) * 16);
    }
    arena_destroy(&a);
}

/* ------------------------------------------------------------------ reference model ---- */

typedef struct ref_entry {
    kv_buf ikey;
    kv_buf val;
    size_t ukey_idx;
    uint64_t seq;
    unsigned type;
} ref_entry;

#define POOL 64
static uint8_t pool_key[POOL][8];
static size_t pool_len[POOL];

/* Short keys over a 3-letter alphabet: many keys prefix others, some are empty. */
static void make_pool(void)
{
    static const uint8_t alpha[3] = {0x00, 'a', 0xff};
    for (size_t i = 0; i < POOL; i++) {
        for (;;) {
            pool_len[i] = tu_rand_below(6);
            for (size_t j = 0; j < pool_len[i]; j++)
                pool_key[i][j] = alpha[tu_rand_below(3)];
            size_t k;
            for (k = 0; k < i; k++)
                if (pool_len[k] == pool_len[i] && !memcmp(pool_key[k], pool_key[i], pool_len[i]))
                    break;
            if (k == i || i >= 3 * 3 * 3 * 3 * 3 / 2)
                break;
        }
    }
}

static int ref_cmp(const void *a, const void *b)
{
    const ref_entry *x = a, *y = b;
    return ikey_cmp(kv_buf_slice(&x->ikey), kv_buf_slice(&y->ikey));
}

/* Index of the first reference entry >= target (n if none). */
static size_t ref_lower_bound(const ref_entry *r, size_t n, kv_slice target)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ikey_cmp(kv_buf_slice(&r[mid].ikey), target) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static kv_slice pool_slice(size_t i)
{
    return kv_slice_of(pool_key[i], pool_len[i]);
}

/* n entries with distinct seqs 1..n in random order, random keys/types/values. */
static ref_entry *build(memtable *m, size_t n)
{
    ref_entry *r = calloc(n, sizeof *r);
    uint64_t *seqs = malloc(n * sizeof *seqs);
    CHECK(r && seqs);
    for (size_t i = 0; i < n; i++)
        seqs[i] = i + 1;
    for (size_t i = n; i > 1; i--) {
        size_t j = tu_rand_below(i);
        uint64_t t = seqs[i - 1];
        seqs[i - 1] = seqs[j];
        seqs[j] = t;
    }
    size_t payload = 0;
    for (size_t i = 0; i < n; i++) {
        ref_entry *e = &r[i];
        e->ukey_idx = tu_rand_below(POOL);
        e->seq = seqs[i];
        e->type = (unsigned)tu_rand_below(3);
        size_t vlen = e->type == KV_TYPE_DELETE ? 0 : tu_rand_below(64);
        CHECK_OK(kv_buf_reserve(&e->val, vlen + 1));
        for (size_t j = 0; j < vlen; j++)
            e->val.data[j] = (uint8_t)tu_rand();
        e->val.len = vlen;
        CHECK_OK(ikey_append(&e->ikey, pool_slice(e->ukey_idx), e->seq, e->type));
        CHECK_OK(mem_add(m, e->seq, e->type, pool_slice(e->ukey_idx), kv_buf_slice(&e->val)));
        payload += e->ikey.len + vlen;
    }
    qsort(r, n, sizeof *r, ref_cmp);
    CHECK(mem_bytes(m) >= payload);
    free(seqs);
    return r;
}

static void ref_free(ref_entry *r, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        kv_buf_free(&r[i].ikey);
        kv_buf_free(&r[i].val);
    }
    free(r);
}

static int slice_eq(kv_slice a, kv_slice b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0);
}

/* ------------------------------------------------------------------ mem_get ---- */

static void check_get(memtable *m, const ref_entry *r, size_t n, size_t ki, uint64_t max_seq,
                      int brute)
{
    /* expected: the newest entry of the key with seq <= max_seq */
    size_t want = n;
    if (brute) {
        for (size_t i = 0; i < n; i++)
            if (r[i].ukey_idx == ki && r[i].seq <= max_seq && (want == n || r[i].seq > r[want].seq))
                want = i;
    } else {
        kv_buf t = {0};
        uint64_t s = max_seq > KV_MAX_SEQ ? KV_MAX_SEQ : max_seq;
        CHECK_OK(ikey_append(&t, pool_slice(ki), s, KV_TYPE_SEEK));
        size_t lb = ref_lower_bound(r, n, kv_buf_slice(&t));
        if (lb < n && r[lb].ukey_idx == ki)
            want = lb;
        kv_buf_free(&t);
    }
    uint64_t seq = 0;
    unsigned type = 99;
    kv_slice val;
    int found = mem_get(m, pool_slice(ki), max_seq, &seq, &type, &val);
    if (want == n) {
        CHECK(found == 0);
        return;
    }
    CHECK(found == 1);
    CHECK(seq == r[want].seq);
    CHECK(type == r[want].type);
    CHECK(slice_eq(val, kv_buf_slice(&r[want].val)));
}

static void test_get(memtable *m, const ref_entry *r, size_t n)
{
    for (int q = 0; q < 20000; q++)
        check_get(m, r, n, tu_rand_below(POOL), tu_rand_below(n + 10), 0);
    for (int q = 0; q < 300; q++)
        check_get(m, r, n, tu_rand_below(POOL), tu_rand_below(n + 10), 1);
    for (size_t ki = 0; ki < POOL; ki++) {
        check_get(m, r, n, ki, 0, 1);
        check_get(m, r, n, ki, UINT64_MAX, 1);
        check_get(m, r, n, ki, KV_MAX_SEQ, 0);
    }
    /* a key that was never written, and NULL outputs */
    uint8_t other[9] = "zzzzzzzzz";
    CHECK(mem_get(m, kv_slice_of(other, sizeof other), UINT64_MAX, NULL, NULL, NULL) == 0);
    CHECK(mem_get(m, pool_slice(r[0].ukey_idx), UINT64_MAX, NULL, NULL, NULL) == 1);
}

/* ------------------------------------------------------------------ iterator ---- */

static void check_at(iter *it, const ref_entry *r, size_t n, size_t pos)
{
    if (pos >= n) {
        CHECK(!iter_valid(it));
        return;
    }
    CHECK(iter_valid(it));
    CHECK(slice_eq(iter_key(it), kv_buf_slice(&r[pos].ikey)));
    CHECK(slice_eq(iter_value(it), kv_buf_slice(&r[pos].val)));
}

static void test_iter(memtable *m, const ref_entry *r, size_t n)
{
    iter *it = mem_iter_new(m);
    CHECK(it != NULL);
    CHECK(!iter_valid(it));
    size_t i = 0;
    for (iter_seek_first(it); iter_valid(it); iter_next(it))
        check_at(it, r, n, i++);
    CHECK(i == n);
    CHECK(iter_status(it) == 0);
    i = n;
    for (iter_seek_last(it); iter_valid(it); iter_prev(it))
        check_at(it, r, n, --i);
    CHECK(i == 0);

    for (int q = 0; q < 3000; q++) {
        kv_buf t = {0};
        size_t pos;
        if (q % 4 == 0) { /* exactly an existing key */
            pos = tu_rand_below(n);
            CHECK_OK(kv_buf_set(&t, r[pos].ikey.data, r[pos].ikey.len));
        } else {
            unsigned type = q % 4 == 1 ? KV_TYPE_SEEK : (unsigned)tu_rand_below(3);
            CHECK_OK(ikey_append(&t, pool_slice(tu_rand_below(POOL)), tu_rand_below(n + 3), type));
            pos = ref_lower_bound(r, n, kv_buf_slice(&t));
        }
        iter_seek(it, kv_buf_slice(&t));
        check_at(it, r, n, pos);
        for (int step = 0; step < 30 && pos < n; step++) { /* random walk from there */
            if (tu_rand_below(2)) {
                iter_next(it);
                pos++;
            } else {
                iter_prev(it);
                pos = pos == 0 ? n : pos - 1;
            }
            check_at(it, r, n, pos);
        }
        kv_buf_free(&t);
    }
    /* A target shorter than a tag is not an internal key: lands before its versions. */
    kv_buf t = {0};
    CHECK_OK(ikey_append(&t, pool_slice(r[n / 2].ukey_idx), KV_MAX_SEQ, KV_TYPE_SEEK));
    size_t pos = ref_lower_bound(r, n, kv_buf_slice(&t));
    if (pool_len[r[n / 2].ukey_idx] < KV_TAG_BYTES) {
        iter_seek(it, pool_slice(r[n / 2].ukey_idx));
        check_at(it, r, n, pos);
    }
    kv_buf_free(&t);
    iter_destroy(it);
}

/* ------------------------------------------------------------------ edge cases ---- */

static void test_errors(void)
{
    memtable *m = mem_new();
    CHECK(m != NULL);
    CHECK(mem_entries(m) == 0 && mem_min_seq(m) == 0 && mem_max_seq(m) == 0);
    CHECK(mem_get(m, kv_slice_of("a", 1), UINT64_MAX, NULL, NULL, NULL) == 0);
    iter *it = mem_iter_new(m);
    iter_seek_first(it);
    CHECK(!iter_valid(it));
    iter_seek_last(it);
    CHECK(!iter_valid(it));
    iter_destroy(it);

    kv_slice k = kv_slice_of("key", 3), v = kv_slice_of("val", 3);
    CHECK_OK(mem_add(m, 10, KV_TYPE_VALUE, k, v));
    CHECK_RC(mem_add(m, 10, KV_TYPE_VALUE, k, v), -EEXIST);
    CHECK_RC(mem_add(m, 10, KV_TYPE_DELETE, k, kv_slice_of(NULL, 0)), -EEXIST);
    CHECK_RC(mem_add(m, 10, KV_TYPE_VALUE_TTL, k, v), -EEXIST);
    CHECK_RC(mem_add(m, 0, KV_TYPE_VALUE, k, v), -EINVAL);
    CHECK_RC(mem_add(m, KV_MAX_SEQ + 1, KV_TYPE_VALUE, k, v), -EINVAL);
    CHECK_RC(mem_add(m, 11, KV_TYPE_SEEK, k, v), -EINVAL);
    CHECK(strlen(kv_last_error()) > 0);
    CHECK(mem_entries(m) == 1);
    CHECK_OK(mem_add(m, 10, KV_TYPE_VALUE, kv_slice_of("kez", 3), v)); /* other key, same seq */
    CHECK_OK(mem_add(m, 5, KV_TYPE_DELETE, k, kv_slice_of(NULL, 0)));
    CHECK_OK(mem_add(m, KV_MAX_SEQ, KV_TYPE_VALUE, kv_slice_of(NULL, 0), v)); /* empty key */
    CHECK(mem_entries(m) == 4);
    CHECK(mem_min_seq(m) == 5 && mem_max_seq(m) == KV_MAX_SEQ);

    uint64_t seq;
    unsigned type;
    kv_slice got;
    CHECK(mem_get(m, k, 9, &seq, &type, &got) == 1);
    CHECK(seq == 5 && type == KV_TYPE_DELETE && got.len == 0);
    CHECK(mem_get(m, k, 4, &seq, &type, &got) == 0);
    CHECK(mem_get(m, kv_slice_of("ke", 2), UINT64_MAX, &seq, &type, &got) == 0);
    CHECK(mem_get(m, kv_slice_of(NULL, 0), UINT64_MAX, &seq, &type, &got) == 1);
    CHECK(seq == KV_MAX_SEQ && slice_eq(got, v));

    /* References: the memtable survives until the last unref (ASan checks the rest). */
    mem_ref(m);
    mem_unref(m);
    CHECK(mem_get(m, k, UINT64_MAX, &seq, NULL, NULL) == 1 && seq == 10);
    mem_unref(m);
    mem_unref(NULL);
}

static void test_large_value(void)
{
    memtable *m = mem_new();
    CHECK(m != NULL);
    size_t n = 32u << 20;
    uint8_t *big = malloc(n);
    CHECK(big != NULL);
    for (size_t i = 0; i < n; i += 4096)
        big[i] = (uint8_t)(i >> 12);
    big[n - 1] = 0x5a;
    size_t before = mem_bytes(m);
    CHECK_OK(mem_add(m, 1, KV_TYPE_VALUE, kv_slice_of("big", 3), kv_slice_of(big, n)));
    CHECK_OK(mem_add(m, 2, KV_TYPE_VALUE, kv_slice_of("small", 5), kv_slice_of("x", 1)));
    CHECK(mem_bytes(m) >= before + n);
    kv_slice got;
    CHECK(mem_get(m, kv_slice_of("big", 3), 5, NULL, NULL, &got) == 1);
    CHECK(got.len == n && memcmp(got.data, big, n) == 0);
    CHECK(mem_get(m, kv_slice_of("small", 5), 5, NULL, NULL, &got) == 1);
    CHECK(slice_eq(got, kv_slice_of("x", 1)));
    free(big);
    mem_unref(m);
}

/* ------------------------------------------------------------------ concurrency ---- */

#define CC_KEYS 997
#define CC_WRITES 60000

typedef struct cc_state {
    memtable *m;
    _Atomic uint64_t published; /* entries 1..published are in the memtable */
    _Atomic int done;
    _Atomic int failures;
} cc_state;

static size_t cc_key(uint64_t seq, uint8_t *buf)
{
    return (size_t)snprintf((char *)buf, 16, "k%05u", (unsigned)((seq * 7919) % CC_KEYS));
}

/* value := seq:fixed64 | filler derived from (key, seq), length depends on seq */
static size_t cc_value(kv_slice key, uint64_t seq, uint8_t *buf)
{
    size_t len = 8 + seq % 41;
    kv_enc64(buf, seq);
    uint32_t h = kv_checksum32(key.data, key.len, (uint32_t)seq);
    for (size_t i = 8; i < len; i++)
        buf[i] = (uint8_t)(h + i * 31);
    return len;
}

static int cc_entry_ok(kv_slice ukey, uint64_t seq, unsigned type, kv_slice val)
{
    uint8_t kb[16], vb[64];
    size_t kl = cc_key(seq, kb);
    size_t vl = cc_value(ukey, seq, vb);
    return type == KV_TYPE_VALUE && slice_eq(ukey, kv_slice_of(kb, kl)) &&
           slice_eq(val, kv_slice_of(vb, vl));
}

static void *cc_writer(void *arg)
{
    cc_state *st = arg;
    for (uint64_t seq = 1; seq <= CC_WRITES; seq++) {
        uint8_t kb[16], vb[64];
        kv_slice key = kv_slice_of(kb, cc_key(seq, kb));
        size_t vl = cc_value(key, seq, vb);
        if (mem_add(st->m, seq, KV_TYPE_VALUE, key, kv_slice_of(vb, vl)) != 0)
            atomic_fetch_add(&st->failures, 1);
        atomic_store_explicit(&st->published, seq, memory_order_release);
    }
    atomic_store(&st->done, 1);
    return NULL;
}

/* One mem_get round: a published entry must be found, exactly and as the newest. */
static int cc_get_round(cc_state *st, uint64_t *rng)
{
    uint64_t p = atomic_load_explicit(&st->published, memory_order_acquire);
    if (p == 0)
        return 0;
    *rng = *rng * 6364136223846793005ULL + 1442695040888963407ULL;
    uint64_t s = 1 + (*rng >> 33) % p;
    uint8_t kb[16];
    kv_slice key = kv_slice_of(kb, cc_key(s, kb));
    uint64_t seq;
    unsigned type;
    kv_slice val;
    int bad = 0;
    if (mem_get(st->m, key, s, &seq, &type, &val) != 1 || seq != s ||
        !cc_entry_ok(key, seq, type, val))
        bad++;
    if (mem_get(st->m, key, UINT64_MAX, &seq, &type, &val) != 1 || seq < s ||
        !cc_entry_ok(key, seq, type, val))
        bad++;
    if (mem_get(st->m, key, s - 1, &seq, &type, &val) == 1 &&
        (seq >= s || !cc_entry_ok(key, seq, type, val)))
        bad++;
    return bad;
}

/* One full scan each way: ordered, well formed, and nothing published before is missing. */
static int cc_scan_round(cc_state *st, iter *it)
{
    uint64_t p = atomic_load_explicit(&st->published, memory_order_acquire);
    int bad = 0;
    kv_buf last = {0};
    uint64_t seen = 0;
    for (iter_seek_first(it); iter_valid(it); iter_next(it)) {
        kv_slice k = iter_key(it);
        kv_parsed_key pk;
        if (ikey_parse(k, &pk) != 0 || !cc_entry_ok(pk.user_key, pk.seq, pk.type, iter_value(it)))
            bad++;
        else if (pk.seq <= p)
            seen++;
        if (last.len && ikey_cmp(kv_buf_slice(&last), k) >= 0)
            bad++;
        if (kv_buf_set(&last, k.data, k.len) != 0)
            bad++;
    }
    if (seen != p)
        bad++;
    last.len = 0;
    int steps = 0;
    for (iter_seek_last(it); iter_valid(it) && steps < 5000; iter_prev(it), steps++) {
        kv_slice k = iter_key(it);
        if (last.len && ikey_cmp(kv_buf_slice(&last), k) <= 0)
            bad++;
        if (kv_buf_set(&last, k.data, k.len) != 0)
            bad++;
    }
    kv_buf_free(&last);
    return bad;
}

static void *cc_reader(void *arg)
{
    cc_state *st = arg;
    mem_ref(st->m);
    iter *it = mem_iter_new(st->m);
    uint64_t rng = (uint64_t)(uintptr_t)&rng;
    int bad = 0, rounds = 0;
    for (int last_round = 0; !last_round; rounds++) {
        last_round = atomic_load(&st->done);
        for (int i = 0; i < 200; i++)
            bad += cc_get_round(st, &rng);
        if (rounds % 4 == 0 || last_round)
            bad += cc_scan_round(st, it);
    }
    iter_destroy(it);
    mem_unref(st->m);
    atomic_fetch_add(&st->failures, bad);
    return NULL;
}

static void test_concurrency(void)
{
    cc_state st;
    st.m = mem_new();
    CHECK(st.m != NULL);
    atomic_init(&st.published, 0);
    atomic_init(&st.done, 0);
    atomic_init(&st.failures, 0);
    pthread_t w, r[2];
    CHECK_OK(pthread_create(&r[0], NULL, cc_reader, &st));
    CHECK_OK(pthread_create(&r[1], NULL, cc_reader, &st));
    CHECK_OK(pthread_create(&w, NULL, cc_writer, &st));
    CHECK_OK(pthread_join(w, NULL));
    CHECK_OK(pthread_join(r[0], NULL));
    CHECK_OK(pthread_join(r[1], NULL));
    CHECK(atomic_load(&st.failures) == 0);
    CHECK(mem_entries(st.m) == CC_WRITES);
    CHECK(mem_min_seq(st.m) == 1 && mem_max_seq(st.m) == CC_WRITES);
    mem_unref(st.m);
}

int main(void)
{
    tu_seed_init();
    test_arena();
    make_pool();
    test_errors();
    for (int round = 0; round < 3; round++) {
        size_t n = round == 0 ? 50 : round == 1 ? 3000 : 30000;
        memtable *m = mem_new();
        CHECK(m != NULL);
        ref_entry *r = build(m, n);
        CHECK(mem_entries(m) == n);
        CHECK(mem_min_seq(m) == 1 && mem_max_seq(m) == n);
        test_get(m, r, n);
        test_iter(m, r, n);
        ref_free(r, n);
        mem_unref(m);
    }
    test_large_value();
    test_concurrency();
    TU_DONE("test_memtable");
}
