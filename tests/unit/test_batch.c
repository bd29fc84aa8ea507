/*
 * test_batch.c -- write batches: building (put, put_ttl, delete, limits and their errors),
 * the header fields, appending batches for group commit, decoding with per-op sequences, early
 * stop, and malformed reps (every truncation, bad types, count mismatch, trailing bytes,
 * random damage): -EUCLEAN before any callback, and never a crash.
 */
#include "batch.h"
#include "dbformat.h"
#include "kv.h"
#include "testutil.h"
#include "util.h"

#define MAXOPS 64

struct op {
    uint64_t seq;
    unsigned type;
    kv_buf key, val;
};

struct sink {
    struct op ops[MAXOPS];
    size_t n;
    size_t stop_at; /* return 99 on this op (index), if nonzero */
};

static int collect(void *arg, uint64_t seq, unsigned type, kv_slice key, kv_slice val)
{
    struct sink *s = arg;
    CHECK(s->n < MAXOPS);
    struct op *o = &s->ops[s->n++];
    o->seq = seq;
    o->type = type;
    CHECK_OK(kv_buf_set(&o->key, key.data, key.len));
    CHECK_OK(kv_buf_set(&o->val, val.data, val.len));
    return s->stop_at && s->n == s->stop_at ? 99 : 0;
}

static void sink_free(struct sink *s)
{
    for (size_t i = 0; i < MAXOPS; i++) {
        kv_buf_free(&s->ops[i].key);
        kv_buf_free(&s->ops[i].val);
    }
    memset(s, 0, sizeof *s);
}

static int op_is(const struct op *o, uint64_t seq, unsigned type, const char *key, const void *val,
                 size_t vlen)
{
    return o->seq == seq && o->type == type && o->key.len == strlen(key) &&
           memcmp(o->key.data, key, o->key.len) == 0 && o->val.len == vlen &&
           (vlen == 0 || memcmp(o->val.data, val, vlen) == 0);
}

static void test_build_decode(void)
{
    kv_batch *b = kv_batch_new();
    CHECK(b);
    CHECK(kv_batch_count(b) == 0 && kv_batch_bytes(b) == BATCH_HEADER_BYTES);
    CHECK_OK(kv_batch_put(b, "alpha", 5, "one", 3));
    CHECK_OK(kv_batch_delete(b, "beta", 4));
    CHECK_OK(kv_batch_put_ttl(b, "gamma", 5, "three", 5, 1700000000123ull));
    CHECK_OK(kv_batch_put_ttl(b, "delta", 5, "four", 4, 0)); /* 0 = plain put */
    CHECK_OK(kv_batch_put(b, "e", 1, NULL, 0));              /* empty value */
    CHECK(kv_batch_count(b) == 5);
    /* 20 + (1+1+5+1+3) + (1+1+4) + (1+1+5+1+8+5) + (1+1+5+1+4) + (1+1+1+1) */
    CHECK(kv_batch_bytes(b) == 20 + 11 + 6 + 21 + 12 + 4);
    batch_set_seq(b, 1000);
    batch_set_time(b, 1234567);
    CHECK(batch_seq(b) == 1000);

    struct sink s;
    memset(&s, 0, sizeof s);
    uint64_t seq = 0, t = 0;
    uint32_t count = 0;
    CHECK_OK(batch_decode(kv_buf_slice(&b->rep), collect, &s, &seq, &t, &count));
    CHECK(seq == 1000 && t == 1234567 && count == 5 && s.n == 5);
    CHECK(op_is(&s.ops[0], 1000, KV_TYPE_VALUE, "alpha", "one", 3));
    CHECK(op_is(&s.ops[1], 1001, KV_TYPE_DELETE, "beta", NULL, 0));
    uint8_t ttlval[13];
    kv_enc64(ttlval, 1700000000123ull);
    memcpy(ttlval + 8, "three", 5);
    CHECK(op_is(&s.ops[2], 1002, KV_TYPE_VALUE_TTL, "gamma", ttlval, 13));
    uint64_t exp;
    kv_slice uv;
    CHECK_OK(kv_value_decode(KV_TYPE_VALUE_TTL, kv_buf_slice(&s.ops[2].val), &exp, &uv));
    CHECK(exp == 1700000000123ull && uv.len == 5 && memcmp(uv.data, "three", 5) == 0);
    CHECK(op_is(&s.ops[3], 1003, KV_TYPE_VALUE, "delta", "four", 4));
    CHECK(op_is(&s.ops[4], 1004, KV_TYPE_VALUE, "e", NULL, 0));
    sink_free(&s);

    /* the header bytes are little-endian fixed-width fields */
    const uint8_t *h = b->rep.data;
    CHECK(kv_dec64(h) == 1000 && kv_dec64(h + 8) == 1234567 && kv_dec32(h + 16) == 5);
    CHECK(h[20] == KV_TYPE_VALUE && h[21] == 5 && memcmp(h + 22, "alpha", 5) == 0);

    /* early stop: the callback's value is returned and nothing after it runs */
    s.stop_at = 2;
    CHECK_RC(batch_decode(kv_buf_slice(&b->rep), collect, &s, NULL, NULL, NULL), 99);
    CHECK(s.n == 2);
    sink_free(&s);
    /* no callback: validation only */
    CHECK_OK(batch_decode(kv_buf_slice(&b->rep), NULL, NULL, NULL, NULL, &count));
    CHECK(count == 5);

    kv_batch_clear(b);
    CHECK(kv_batch_count(b) == 0 && kv_batch_bytes(b) == BATCH_HEADER_BYTES);
    CHECK(batch_seq(b) == 0);
    CHECK_OK(batch_decode(kv_buf_slice(&b->rep), collect, &s, NULL, NULL, &count));
    CHECK(count == 0 && s.n == 0);
    kv_batch_free(b);
    kv_batch_free(NULL);
}

static void test_limits(void)
{
    kv_batch *b = kv_batch_new();
    CHECK(b);
    CHECK_OK(kv_batch_put(b, "k", 1, "v", 1));
    size_t bytes = kv_batch_bytes(b);
    CHECK_RC(kv_batch_put(b, "", 0, "v", 1), -EINVAL);
    CHECK(strstr(kv_last_error(), "empty key") != NULL);
    CHECK_RC(kv_batch_delete(b, "", 0), -EINVAL);
    CHECK_RC(kv_batch_put_ttl(b, NULL, 0, "v", 1, 5), -EINVAL);
    size_t big = KV_MAX_VALUE_BYTES + 1;
    uint8_t *buf = malloc(big);
    CHECK(buf);
    memset(buf, 'k', big);
    CHECK_RC(kv_batch_put(b, buf, KV_MAX_KEY_BYTES + 1, "v", 1), -ENAMETOOLONG);
    CHECK(strstr(kv_last_error(), "16384") != NULL);
    CHECK_RC(kv_batch_delete(b, buf, KV_MAX_KEY_BYTES + 1), -ENAMETOOLONG);
    CHECK_RC(kv_batch_put(b, "k", 1, buf, big), -EFBIG);
    CHECK(strstr(kv_last_error(), "exceeds") != NULL);
    CHECK_RC(kv_batch_put_ttl(b, "k", 1, buf, big, 77), -EFBIG);
    CHECK(kv_batch_count(b) == 1 && kv_batch_bytes(b) == bytes); /* failures changed nothing */

    /* the limits themselves are allowed and decode */
    CHECK_OK(kv_batch_put(b, buf, KV_MAX_KEY_BYTES, "v", 1));
    CHECK_OK(kv_batch_put_ttl(b, "big", 3, buf, KV_MAX_VALUE_BYTES, 123));
    batch_set_seq(b, 5);
    uint32_t count;
    CHECK_OK(batch_decode(kv_buf_slice(&b->rep), NULL, NULL, NULL, NULL, &count));
    CHECK(count == 3);
    free(buf);
    kv_batch_free(b);
}

static void test_append(void)
{
    kv_batch group, *a = kv_batch_new(), *c = kv_batch_new();
    CHECK(a && c);
    CHECK_OK(batch_init(&group));
    CHECK_OK(kv_batch_put(a, "a1", 2, "x", 1));
    CHECK_OK(kv_batch_delete(a, "a2", 2));
    CHECK_OK(kv_batch_put_ttl(c, "c1", 2, "y", 1, 9));
    CHECK_OK(batch_append(&group, a));
    CHECK_OK(batch_append(&group, c));
    CHECK(kv_batch_count(&group) == 3);
    CHECK(kv_batch_bytes(&group) ==
          BATCH_HEADER_BYTES + kv_batch_bytes(a) + kv_batch_bytes(c) - 2 * BATCH_HEADER_BYTES);
    batch_set_seq(&group, 50);
    struct sink s;
    memset(&s, 0, sizeof s);
    uint32_t count;
    CHECK_OK(batch_decode(kv_buf_slice(&group.rep), collect, &s, NULL, NULL, &count));
    CHECK(count == 3 && s.n == 3);
    CHECK(op_is(&s.ops[0], 50, KV_TYPE_VALUE, "a1", "x", 1));
    CHECK(op_is(&s.ops[1], 51, KV_TYPE_DELETE, "a2", NULL, 0));
    CHECK(s.ops[2].seq == 52 && s.ops[2].type == KV_TYPE_VALUE_TTL);
    sink_free(&s);
    kv_buf_free(&group.rep);
    kv_batch_free(a);
    kv_batch_free(c);
}

static int never(void *arg, uint64_t seq, unsigned type, kv_slice key, kv_slice val)
{
    KV_UNUSED(arg);
    KV_UNUSED(seq);
    KV_UNUSED(type);
    KV_UNUSED(key);
    KV_UNUSED(val);
    CHECK(!"callback called on a malformed batch");
    return 0;
}

/* Decodes a private exact-size copy so that ASan sees any read past the end. */
static int decode_copy(const uint8_t *p, size_t n, batch_op_fn fn, void *arg)
{
    uint8_t *copy = malloc(n ? n : 1);
    CHECK(copy);
    if (n)
        memcpy(copy, p, n);
    int rc = batch_decode(kv_slice_of(copy, n), fn, arg, NULL, NULL, NULL);
    free(copy);
    return rc;
}

static int count_ops(void *arg, uint64_t seq, unsigned type, kv_slice key, kv_slice val)
{
    KV_UNUSED(seq);
    CHECK(type <= KV_TYPE_RANGE_DELETE && key.len >= 1 && key.len <= KV_MAX_KEY_BYTES);
    CHECK(type != KV_TYPE_DELETE || val.len == 0);
    CHECK(type != KV_TYPE_VALUE_TTL || val.len >= 8);
    CHECK(type != KV_TYPE_RANGE_DELETE || kv_slice_cmp(key, val) < 0);
    (*(size_t *)arg)++;
    return 0;
}

static void test_malformed(void)
{
    kv_batch *b = kv_batch_new();
    CHECK(b);
    uint8_t val[300];
    for (int i = 0; i < 12; i++) {
        char key[32];
        int klen = snprintf(key, sizeof key, "key-%d-%d", i, (int)tu_rand_below(1000));
        size_t vlen = (size_t)tu_rand_below(sizeof val);
        for (size_t j = 0; j < vlen; j++)
            val[j] = (uint8_t)tu_rand();
        if (i % 3 == 0)
            CHECK_OK(kv_batch_delete(b, key, (size_t)klen));
        else if (i % 3 == 1)
            CHECK_OK(kv_batch_put(b, key, (size_t)klen, val, vlen));
        else
            CHECK_OK(kv_batch_put_ttl(b, key, (size_t)klen, val, vlen, 1 + tu_rand_below(1000)));
    }
    batch_set_seq(b, 7);
    const uint8_t *rep = b->rep.data;
    size_t n = b->rep.len;
    CHECK_OK(decode_copy(rep, n, NULL, NULL));

    /* every truncation */
    for (size_t len = 0; len < n; len++) {
        CHECK_RC(decode_copy(rep, len, never, NULL), -EUCLEAN);
        CHECK(strstr(kv_last_error(), "batch") != NULL);
    }
    uint8_t *m = malloc(n + 1);
    CHECK(m);
    /* count one too many / too few */
    memcpy(m, rep, n);
    kv_enc32(m + 16, 13);
    CHECK_RC(decode_copy(m, n, never, NULL), -EUCLEAN);
    kv_enc32(m + 16, 11);
    CHECK_RC(decode_copy(m, n, never, NULL), -EUCLEAN);
    /* trailing byte */
    memcpy(m, rep, n);
    m[n] = 0;
    CHECK_RC(decode_copy(m, n + 1, never, NULL), -EUCLEAN);
    /* unknown type in the first op */
    m[20] = KV_TYPE_RANGE_DELETE + 1;
    CHECK_RC(decode_copy(m, n, never, NULL), -EUCLEAN);
    m[20] = KV_TYPE_SEEK;
    CHECK_RC(decode_copy(m, n, never, NULL), -EUCLEAN);
    /* sequence overflow */
    memcpy(m, rep, n);
    kv_enc64(m, KV_MAX_SEQ - 5);
    CHECK_RC(decode_copy(m, n, never, NULL), -EUCLEAN);
    kv_enc64(m, KV_MAX_SEQ - 11);
    CHECK_OK(decode_copy(m, n, NULL, NULL));

    /* hand-built bad ops: empty key, TTL value shorter than its expiry, overlong varint */
    uint8_t hdr[20] = {0};
    kv_enc64(hdr, 1);
    kv_enc32(hdr + 16, 1);
    const uint8_t bad_ops[][16] = {
        {KV_TYPE_DELETE, 0},
        {KV_TYPE_VALUE_TTL, 1, 'k', 7, 1, 2, 3, 4, 5, 6, 7},
        {KV_TYPE_VALUE, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
        {KV_TYPE_VALUE, 1, 'k', 0x85, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01},
    };
    const size_t bad_len[] = {2, 11, 12, 12};
    for (size_t i = 0; i < sizeof bad_len / sizeof bad_len[0]; i++) {
        memcpy(m, hdr, 20);
        memcpy(m + 20, bad_ops[i], bad_len[i]);
        CHECK_RC(decode_copy(m, 20 + bad_len[i], never, NULL), -EUCLEAN);
    }

    /* random damage: either a clean -EUCLEAN with no callback, or a consistent decode */
    for (int iter = 0; iter < 20000; iter++) {
        memcpy(m, rep, n);
        int flips = 1 + (int)tu_rand_below(4);
        for (int f = 0; f < flips; f++)
            m[tu_rand_below(n)] ^= (uint8_t)(1u << tu_rand_below(8));
        size_t ops = 0;
        int rc = decode_copy(m, n, NULL, NULL);
        CHECK(rc == 0 || rc == -EUCLEAN);
        if (rc == 0) {
            CHECK_OK(decode_copy(m, n, count_ops, &ops));
            CHECK(ops == kv_dec32(m + 16));
        } else {
            CHECK_RC(decode_copy(m, n, never, NULL), -EUCLEAN);
        }
    }
    free(m);
    kv_batch_free(b);
}

/* kv_batch_delete_range: op type 3, lo as the key, hi as the value; lo < hi always. */
static void test_range_delete(void)
{
    kv_batch *b = kv_batch_new();
    CHECK(b);
    CHECK_OK(kv_batch_delete_range(b, "a/", 2, "a0", 2));
    CHECK_RC(kv_batch_delete_range(b, "b", 1, "b", 1), -EINVAL);
    CHECK_RC(kv_batch_delete_range(b, "c", 1, "b", 1), -EINVAL);
    CHECK_RC(kv_batch_delete_range(b, "", 0, "b", 1), -EINVAL);
    CHECK(kv_batch_count(b) == 1 && kv_batch_bytes(b) == 20 + 1 + 1 + 2 + 1 + 2);
    batch_set_seq(b, 9);
    const uint8_t *h = b->rep.data;
    CHECK(h[20] == KV_TYPE_RANGE_DELETE && h[21] == 2 && memcmp(h + 22, "a/", 2) == 0);
    CHECK(h[24] == 2 && memcmp(h + 25, "a0", 2) == 0);
    struct sink s;
    memset(&s, 0, sizeof s);
    CHECK_OK(batch_decode(kv_buf_slice(&b->rep), collect, &s, NULL, NULL, NULL));
    CHECK(s.n == 1 && op_is(&s.ops[0], 9, KV_TYPE_RANGE_DELETE, "a/", "a0", 2));
    sink_free(&s);
    /* an empty or inverted range on disk is malformed */
    uint8_t *m = malloc(b->rep.len);
    CHECK(m);
    memcpy(m, b->rep.data, b->rep.len);
    memcpy(m + 25, "a/", 2); /* hi == lo */
    CHECK_RC(decode_copy(m, b->rep.len, never, NULL), -EUCLEAN);
    CHECK(strstr(kv_last_error(), "bad range") != NULL);
    memcpy(m + 25, "a.", 2); /* hi < lo */
    CHECK_RC(decode_copy(m, b->rep.len, never, NULL), -EUCLEAN);
    free(m);
    kv_batch_free(b);
}

int main(void)
{
    tu_seed_init();
    test_build_decode();
    test_range_delete();
    test_limits();
    test_append();
    test_malformed();
    TU_DONE("test_batch");
}
