/*
 * test_iter.c -- the generic iterators: the error iterator, the merging iterator over several
 * memtables (2..20 children, so both the linear scan and the heap are used; equal keys in
 * different children) against a sorted reference, including seeks and random walks that
 * switch direction; error propagation from a failing child (at start, mid-stream, during a
 * direction switch) and from a child yielding a malformed key; and the cleanup wrapper.
 */
#include <errno.h>

#include "dbformat.h"
#include "iter.h"
#include "kv.h"
#include "memtable.h"
#include "testutil.h"

static int slice_eq(kv_slice a, kv_slice b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0);
}

/* ------------------------------------------------------------------ a vector iterator ---- */

/* Walks a fixed sorted array; after fail_after movements (0 = never) it fails with -EIO. */
typedef struct vec_iter {
    iter base;
    const kv_slice *keys;
    size_t n, pos; /* pos == n: not valid */
    int moves, fail_after, err;
    int *destroyed; /* incremented by destroy, may be NULL */
} vec_iter;

static int vec_moved(vec_iter *v)
{
    if (v->err)
        return 0;
    if (v->fail_after && ++v->moves >= v->fail_after) {
        v->err = -EIO;
        v->pos = v->n;
        return 0;
    }
    return 1;
}

static int vec_valid(const iter *it)
{
    const vec_iter *v = (const vec_iter *)it;
    return v->pos < v->n;
}

static void vec_seek_first(iter *it)
{
    vec_iter *v = (vec_iter *)it;
    if (vec_moved(v))
        v->pos = 0;
}

static void vec_seek_last(iter *it)
{
    vec_iter *v = (vec_iter *)it;
    if (vec_moved(v))
        v->pos = v->n ? v->n - 1 : 0;
}

static void vec_seek(iter *it, kv_slice t)
{
    vec_iter *v = (vec_iter *)it;
    if (!vec_moved(v))
        return;
    size_t i = 0;
    while (i < v->n && (v->keys[i].len < KV_TAG_BYTES || ikey_cmp(v->keys[i], t) < 0))
        i++;
    v->pos = i;
}

static void vec_next(iter *it)
{
    vec_iter *v = (vec_iter *)it;
    if (vec_moved(v))
        v->pos++;
}

static void vec_prev(iter *it)
{
    vec_iter *v = (vec_iter *)it;
    if (vec_moved(v))
        v->pos = v->pos == 0 ? v->n : v->pos - 1;
}

static kv_slice vec_key(const iter *it)
{
    const vec_iter *v = (const vec_iter *)it;
    return v->keys[v->pos];
}

static kv_slice vec_value(const iter *it)
{
    return vec_key(it);
}

static int vec_status(const iter *it)
{
    return ((const vec_iter *)it)->err;
}

static void vec_destroy(iter *it)
{
    vec_iter *v = (vec_iter *)it;
    if (v->destroyed)
        (*v->destroyed)++;
    free(v);
}

static const iter_ops vec_ops = {vec_valid, vec_seek_first, vec_seek_last, vec_seek,   vec_next,
                                 vec_prev,  vec_key,        vec_value,     vec_status, vec_destroy};

static iter *vec_new(const kv_slice *keys, size_t n, int fail_after)
{
    vec_iter *v = calloc(1, sizeof *v);
    CHECK(v != NULL);
    v->base.ops = &vec_ops;
    v->keys = keys;
    v->n = n;
    v->pos = n;
    v->fail_after = fail_after;
    return &v->base;
}

/* ------------------------------------------------------------------ reference ---- */

typedef struct ref_entry {
    kv_buf ikey;
    kv_buf val;
    size_t child;
} ref_entry;

static int ref_cmp(const void *a, const void *b)
{
    const ref_entry *x = a, *y = b;
    int c = ikey_cmp(kv_buf_slice(&x->ikey), kv_buf_slice(&y->ikey));
    return c ? c : x->child < y->child ? -1 : x->child > y->child;
}

static size_t ref_lower_bound(const ref_entry *r, size_t n, kv_slice t)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ikey_cmp(kv_buf_slice(&r[mid].ikey), t) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static void check_at(iter *it, const ref_entry *r, size_t n, size_t pos)
{
    if (pos >= n) {
        CHECK(!iter_valid(it));
        CHECK(iter_status(it) == 0);
        return;
    }
    CHECK(iter_valid(it));
    CHECK(slice_eq(iter_key(it), kv_buf_slice(&r[pos].ikey)));
    CHECK(slice_eq(iter_value(it), kv_buf_slice(&r[pos].val)));
}

static void random_ukey(uint8_t *buf, size_t *len)
{
    static const uint8_t alpha[3] = {0x00, 'm', 0xff};
    *len = tu_rand_below(5);
    for (size_t i = 0; i < *len; i++)
        buf[i] = alpha[tu_rand_below(3)];
}

/* Fills nchild memtables with about per_child entries each; some keys appear in two. */
static ref_entry *fill(memtable **mem, size_t nchild, size_t per_child, size_t *nref)
{
    size_t cap = nchild * per_child * 2 + 1, n = 0;
    ref_entry *r = calloc(cap, sizeof *r);
    CHECK(r != NULL);
    uint64_t seq = 1;
    for (size_t i = 0; i < nchild * per_child; i++) {
        uint8_t uk[8];
        size_t ulen;
        random_ukey(uk, &ulen);
        unsigned type = (unsigned)tu_rand_below(3);
        size_t copies = tu_rand_below(20) == 0 ? 2 : 1;
        size_t child = tu_rand_below(nchild);
        for (size_t c = 0; c < copies;
             c++, child = (child + 1 + tu_rand_below(nchild - 1)) % nchild) {
            ref_entry *e = &r[n++];
            e->child = child;
            uint8_t v[16];
            size_t vlen = tu_rand_below(sizeof v);
            for (size_t j = 0; j < vlen; j++)
                v[j] = (uint8_t)tu_rand();
            CHECK_OK(kv_buf_set(&e->val, v, vlen));
            CHECK_OK(ikey_append(&e->ikey, kv_slice_of(uk, ulen), seq, type));
            CHECK_OK(mem_add(mem[child], seq, type, kv_slice_of(uk, ulen), kv_buf_slice(&e->val)));
            if (nchild == 1)
                break;
        }
        seq++;
    }
    qsort(r, n, sizeof *r, ref_cmp);
    *nref = n;
    return r;
}

static iter *merge_of(memtable **mem, size_t nchild)
{
    iter **kids = malloc(nchild * sizeof *kids);
    CHECK(kids != NULL);
    for (size_t i = 0; i < nchild; i++)
        kids[i] = mem_iter_new(mem[i]);
    iter *it = iter_merge_new(kids, nchild);
    CHECK(it != NULL);
    return it;
}

static void walk(iter *it, const ref_entry *r, size_t n, size_t pos, int steps)
{
    for (int s = 0; s < steps && pos < n; s++) {
        if (tu_rand_below(2)) {
            iter_next(it);
            pos++;
        } else {
            iter_prev(it);
            pos = pos == 0 ? n : pos - 1;
        }
        check_at(it, r, n, pos);
    }
}

static void test_merge_memtables(size_t nchild, size_t per_child)
{
    memtable *mem[32];
    for (size_t i = 0; i < nchild; i++)
        CHECK((mem[i] = mem_new()) != NULL);
    size_t n;
    ref_entry *r = fill(mem, nchild, per_child, &n);
    iter *it = merge_of(mem, nchild);
    CHECK(!iter_valid(it));

    size_t i = 0;
    for (iter_seek_first(it); iter_valid(it); iter_next(it))
        check_at(it, r, n, i++);
    CHECK(i == n && iter_status(it) == 0);
    i = n;
    for (iter_seek_last(it); iter_valid(it); iter_prev(it))
        check_at(it, r, n, --i);
    CHECK(i == 0 && iter_status(it) == 0);

    /* alternate strictly: every step switches direction */
    iter_seek_first(it);
    size_t pos = 0;
    for (int s = 0; s < 200 && n > 2; s++) {
        iter_next(it);
        iter_next(it);
        iter_prev(it);
        pos++;
        check_at(it, r, n, pos);
        if (pos + 2 >= n)
            break;
    }

    for (int q = 0; q < 400; q++) {
        kv_buf t = {0};
        if (q % 3 == 0) {
            pos = tu_rand_below(n);
            CHECK_OK(kv_buf_set(&t, r[pos].ikey.data, r[pos].ikey.len));
            pos = ref_lower_bound(r, n, kv_buf_slice(&t));
        } else {
            uint8_t uk[8];
            size_t ulen;
            random_ukey(uk, &ulen);
            unsigned type = q % 3 == 1 ? KV_TYPE_SEEK : (unsigned)tu_rand_below(3);
            CHECK_OK(ikey_append(&t, kv_slice_of(uk, ulen), tu_rand_below(n + 2), type));
            pos = ref_lower_bound(r, n, kv_buf_slice(&t));
        }
        iter_seek(it, kv_buf_slice(&t));
        check_at(it, r, n, pos);
        walk(it, r, n, pos, 40);
        kv_buf_free(&t);
        if (q % 50 == 0) {
            iter_seek_last(it);
            check_at(it, r, n, n - 1);
            walk(it, r, n, n - 1, 40);
            iter_seek_first(it);
            check_at(it, r, n, 0);
            walk(it, r, n, 0, 40);
        }
    }
    iter_destroy(it);
    for (size_t c = 0; c < nchild; c++)
        mem_unref(mem[c]);
    for (size_t e = 0; e < n; e++) {
        kv_buf_free(&r[e].ikey);
        kv_buf_free(&r[e].val);
    }
    free(r);
}

/* Equal keys in several children come out child 0 first forward, in exact reverse backward,
 * and stay consistent through direction switches inside a run of equal keys. */
static uint8_t eq_bytes[3][3][9]; /* [child][key] */

/* The expected order: a(0) b(0) b(1) b(2) c(0) -- as (child, key letter). */
static const int eq_child[5] = {0, 0, 1, 2, 0};
static const uint8_t eq_letter[5] = {'a', 'b', 'b', 'b', 'c'};

static void eq_check(iter *it, size_t pos)
{
    if (pos >= 5) {
        CHECK(!iter_valid(it) && iter_status(it) == 0);
        return;
    }
    CHECK(iter_valid(it));
    kv_slice k = iter_key(it);
    CHECK(k.len == 9 && k.data[0] == eq_letter[pos]);
    CHECK(k.data >= eq_bytes[eq_child[pos]][0] && k.data <= eq_bytes[eq_child[pos]][2]);
}

static void test_equal_keys(void)
{
    static kv_slice ks[3][3];
    const char *letters[3] = {"abc", "b", "b"};
    iter **kids = malloc(3 * sizeof *kids);
    CHECK(kids != NULL);
    for (int c = 0; c < 3; c++) {
        size_t n = strlen(letters[c]);
        for (size_t i = 0; i < n; i++) {
            eq_bytes[c][i][0] = (uint8_t)letters[c][i];
            kv_enc64(eq_bytes[c][i] + 1, kv_tag(5, KV_TYPE_VALUE));
            ks[c][i] = kv_slice_of(eq_bytes[c][i], 9);
        }
        kids[c] = vec_new(ks[c], n, 0);
    }
    iter *it = iter_merge_new(kids, 3);
    size_t pos = 0;
    for (iter_seek_first(it); iter_valid(it); iter_next(it))
        eq_check(it, pos++);
    CHECK(pos == 5);
    for (iter_seek_last(it); iter_valid(it); iter_prev(it))
        eq_check(it, --pos);
    CHECK(pos == 0);
    iter_seek(it, ks[1][0]);
    eq_check(it, 1);
    for (int round = 0; round < 300; round++) { /* random walks, reseated when they run off */
        switch (tu_rand_below(3)) {
        case 0:
            iter_seek_first(it);
            pos = 0;
            break;
        case 1:
            iter_seek_last(it);
            pos = 4;
            break;
        default:
            iter_seek(it, ks[0][1]);
            pos = 1;
        }
        eq_check(it, pos);
        for (int s = 0; s < 20 && pos < 5; s++) {
            if (tu_rand_below(2)) {
                iter_next(it);
                pos++;
            } else {
                iter_prev(it);
                pos = pos == 0 ? 5 : pos - 1;
            }
            eq_check(it, pos);
        }
    }
    iter_destroy(it);
}

/* ------------------------------------------------------------------ errors ---- */

static kv_slice err_keys[40];
static uint8_t err_key_bytes[40][9];

static void make_err_keys(void)
{
    for (int i = 0; i < 40; i++) {
        err_key_bytes[i][0] = (uint8_t)('A' + i);
        kv_enc64(err_key_bytes[i] + 1, kv_tag(1, KV_TYPE_VALUE));
        err_keys[i] = kv_slice_of(err_key_bytes[i], 9);
    }
}

/* nchild children take turns holding keys A, B, C...; child `bad` fails after `fail` moves. */
static iter *err_merge(size_t nchild, size_t bad, int fail, kv_slice (*split)[40], size_t *cnt)
{
    iter **kids = malloc(nchild * sizeof *kids);
    CHECK(kids != NULL);
    for (size_t c = 0; c < nchild; c++)
        cnt[c] = 0;
    for (int i = 0; i < 40; i++) {
        size_t c = (size_t)i % nchild;
        split[c][cnt[c]++] = err_keys[i];
    }
    for (size_t c = 0; c < nchild; c++)
        kids[c] = vec_new(split[c], cnt[c], c == bad ? fail : 0);
    return iter_merge_new(kids, nchild);
}

static void test_errors(void)
{
    make_err_keys();
    iter *e = iter_new_error(0);
    CHECK(e != NULL && !iter_valid(e) && iter_status(e) == 0);
    iter_seek_first(e);
    iter_seek_last(e);
    iter_seek(e, err_keys[0]);
    iter_next(e);
    iter_prev(e);
    CHECK(!iter_valid(e) && iter_status(e) == 0 && iter_key(e).len == 0);
    CHECK(iter_value(e).len == 0);
    iter_destroy(e);
    e = iter_new_error(-EUCLEAN);
    iter_seek_first(e);
    CHECK(!iter_valid(e) && iter_status(e) == -EUCLEAN);
    iter_destroy(e);
    iter_destroy(NULL);

    /* n == 0 and n == 1 */
    iter *m = iter_merge_new(malloc(1), 0);
    iter_seek_first(m);
    CHECK(!iter_valid(m) && iter_status(m) == 0);
    iter_destroy(m);
    iter **one = malloc(sizeof *one);
    CHECK(one != NULL);
    one[0] = vec_new(err_keys, 3, 0);
    m = iter_merge_new(one, 1);
    iter_seek_last(m);
    CHECK(iter_valid(m) && slice_eq(iter_key(m), err_keys[2]));
    iter_destroy(m);

    /* An error child from the start ends the merge at once, for good. */
    for (size_t nchild = 2; nchild <= 12; nchild += 10) {
        iter **kids = malloc(nchild * sizeof *kids);
        CHECK(kids != NULL);
        for (size_t c = 0; c < nchild; c++)
            kids[c] = c == 1 ? iter_new_error(-EUCLEAN) : vec_new(err_keys, 40, 0);
        m = iter_merge_new(kids, nchild);
        iter_seek_first(m);
        CHECK(!iter_valid(m) && iter_status(m) == -EUCLEAN);
        iter_seek_last(m);
        CHECK(!iter_valid(m) && iter_status(m) == -EUCLEAN);
        iter_seek(m, err_keys[3]);
        iter_next(m);
        iter_prev(m);
        CHECK(!iter_valid(m) && iter_status(m) == -EUCLEAN);
        iter_destroy(m);
    }

    /* Mid-stream failures, forward and backward, linear (3) and heap (11) merges. */
    static kv_slice split[12][40];
    size_t cnt[12];
    for (size_t nchild = 3; nchild <= 11; nchild += 8) {
        for (int fail = 2; fail < 2 + 40 / (int)nchild; fail++) { /* child 1 moves > 40/n times */
            for (int back = 0; back < 2; back++) {
                m = err_merge(nchild, 1, fail, split, cnt);
                int seen = 0;
                if (!back) {
                    for (iter_seek_first(m); iter_valid(m); iter_next(m))
                        CHECK(slice_eq(iter_key(m), err_keys[seen++]));
                } else {
                    for (iter_seek_last(m); iter_valid(m); iter_prev(m))
                        CHECK(slice_eq(iter_key(m), err_keys[39 - seen++]));
                }
                CHECK(iter_status(m) == -EIO);
                CHECK(seen < 40);
                iter_seek_first(m); /* sticky */
                CHECK(!iter_valid(m) && iter_status(m) == -EIO);
                iter_destroy(m);
            }
        }
        /* failure while switching direction (the re-seek of the other children) */
        m = err_merge(nchild, 1, 3, split, cnt);
        iter_seek(m, err_keys[0]); /* child 1's 1st move; current: child 0 at A */
        iter_next(m);              /* current: child 1 at B */
        iter_next(m);              /* child 1's 2nd move; current: child 2 at C */
        CHECK(iter_valid(m) && slice_eq(iter_key(m), err_keys[2]));
        iter_prev(m); /* turning re-seeks child 1: its 3rd move fails */
        CHECK(!iter_valid(m) && iter_status(m) == -EIO);
        iter_destroy(m);
    }

    /* A child yielding a key shorter than a tag is corruption, not a crash. */
    static const uint8_t shortk[3] = {'x', 'y', 'z'};
    static kv_slice bad[1];
    bad[0] = kv_slice_of(shortk, 3);
    iter **kids = malloc(2 * sizeof *kids);
    CHECK(kids != NULL);
    kids[0] = vec_new(err_keys, 40, 0);
    kids[1] = vec_new(bad, 1, 0);
    m = iter_merge_new(kids, 2);
    iter_seek_first(m);
    CHECK(!iter_valid(m) && iter_status(m) == -EUCLEAN);
    CHECK(strstr(kv_last_error(), "child 1") != NULL);
    iter_destroy(m);
}

/* ------------------------------------------------------------------ cleanup wrapper ---- */

static int g_destroyed, g_cleaned, g_order_ok;

static void on_cleanup(void *arg1, void *arg2)
{
    g_cleaned++;
    g_order_ok = g_destroyed == 1; /* the child was destroyed first */
    CHECK(arg1 == (void *)&g_destroyed && arg2 == (void *)&g_cleaned);
}

static void unref_mem(void *arg1, void *arg2)
{
    KV_UNUSED(arg2);
    mem_unref(arg1);
}

static void test_cleanup(void)
{
    make_err_keys();
    iter *v = vec_new(err_keys, 10, 0);
    ((vec_iter *)v)->destroyed = &g_destroyed;
    iter *w = iter_with_cleanup(v, on_cleanup, &g_destroyed, &g_cleaned);
    CHECK(w != NULL && w != v);
    CHECK(!iter_valid(w));
    iter_seek_first(w);
    CHECK(iter_valid(w) && slice_eq(iter_key(w), err_keys[0]));
    iter_next(w);
    CHECK(slice_eq(iter_key(w), err_keys[1]) && slice_eq(iter_value(w), err_keys[1]));
    iter_prev(w);
    CHECK(slice_eq(iter_key(w), err_keys[0]));
    iter_seek_last(w);
    CHECK(slice_eq(iter_key(w), err_keys[9]));
    iter_seek(w, err_keys[4]);
    CHECK(slice_eq(iter_key(w), err_keys[4]));
    CHECK(iter_status(w) == 0);
    CHECK(g_cleaned == 0 && g_destroyed == 0);
    iter_destroy(w);
    CHECK(g_cleaned == 1 && g_destroyed == 1 && g_order_ok);

    /* status passes through */
    iter *f = iter_with_cleanup(iter_new_error(-EIO), unref_mem, NULL, NULL);
    CHECK(iter_status(f) == -EIO && !iter_valid(f));
    iter_destroy(f);

    /* The usual use: the iterator holds the memtable reference; two cleanups chained. */
    memtable *mem = mem_new();
    CHECK(mem != NULL);
    CHECK_OK(mem_add(mem, 7, KV_TYPE_VALUE, kv_slice_of("k", 1), kv_slice_of("v", 1)));
    mem_ref(mem);
    g_destroyed = g_cleaned = 0;
    iter *inner = iter_with_cleanup(mem_iter_new(mem), unref_mem, mem, NULL);
    v = vec_new(err_keys, 0, 0); /* unused child only to count destruction order */
    iter_destroy(v);
    w = iter_with_cleanup(inner, on_cleanup, &g_destroyed, &g_cleaned);
    g_destroyed = 1; /* the order check in on_cleanup holds: inner goes first */
    mem_unref(mem);  /* only the iterator's reference is left */
    iter_seek_first(w);
    CHECK(iter_valid(w) && slice_eq(iter_value(w), kv_slice_of("v", 1)));
    kv_parsed_key pk;
    CHECK_OK(ikey_parse(iter_key(w), &pk));
    CHECK(pk.seq == 7 && pk.type == KV_TYPE_VALUE && slice_eq(pk.user_key, kv_slice_of("k", 1)));
    iter_destroy(w); /* frees the memtable: ASan reports a leak otherwise */
    CHECK(g_cleaned == 1);
}

int main(void)
{
    tu_seed_init();
    test_errors();
    test_equal_keys();
    test_cleanup();
    static const size_t sizes[] = {1, 2, 3, 5, 8, 9, 12, 20};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        test_merge_memtables(sizes[i], 4000 / sizes[i]);
    TU_DONE("test_iter");
}
