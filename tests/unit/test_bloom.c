/*
 * test_bloom.c -- bloom filter: no false negatives, measured false-positive rate (< 2% at 10
 * bits/key over 100k keys), k derivation and clamping, empty filters, malformed filters.
 */
#include "bloom.h"
#include "kv.h"
#include "testutil.h"

static size_t key_of(char *buf, const char *prefix, uint64_t i)
{
    return (size_t)snprintf(buf, 64, "%s%016llx", prefix, (unsigned long long)(i * 2654435761u));
}

/* Builds a filter over n keys; OUT: *out. Returns the measured FP rate over 100k absent keys. */
static double fp_rate(int bits_per_key, size_t n, kv_buf *out)
{
    bloom_builder b;
    char k[64];
    bloom_builder_init(&b, bits_per_key);
    for (size_t i = 0; i < n; i++)
        CHECK_OK(bloom_builder_add(&b, kv_slice_of(k, key_of(k, "present/", i))));
    out->len = 0;
    CHECK_OK(bloom_builder_finish(&b, out));
    CHECK(out->len == bloom_builder_bytes(&b));
    kv_slice f = kv_buf_slice(out);
    CHECK_OK(bloom_check(f));
    for (size_t i = 0; i < n; i++) /* no false negatives, ever */
        CHECK(bloom_may_contain(f, kv_slice_of(k, key_of(k, "present/", i))) == 1);
    size_t fp = 0, probes = 100000;
    for (size_t i = 0; i < probes; i++)
        fp += (size_t)bloom_may_contain(f, kv_slice_of(k, key_of(k, "absent/", i)));
    bloom_builder_free(&b);
    return (double)fp / (double)probes;
}

int main(void)
{
    tu_seed_init();
    kv_buf f = {0};
    double r10 = fp_rate(10, 100000, &f);
    printf("bloom: 10 bits/key, 100k keys: %.3f%% false positives, %zu bytes, k=%u\n", r10 * 100,
           f.len, f.data[f.len - 1]);
    CHECK(r10 < 0.02);
    CHECK(r10 > 0.001);            /* a filter that says "no" to everything would pass above */
    CHECK(f.data[f.len - 1] == 6); /* k = 10 * 0.69 */
    CHECK(f.len == 100000 * 10 / 8 + 1); /* bit array | k */
    double r5 = fp_rate(5, 20000, &f);
    double r20 = fp_rate(20, 20000, &f);
    CHECK(f.data[f.len - 1] == 13);
    CHECK(r5 > r20);
    CHECK(r20 < 0.002);
    fp_rate(1, 1000, &f);
    CHECK(f.data[f.len - 1] == 1); /* k clamped up to 1 */
    fp_rate(100, 100, &f);
    CHECK(f.data[f.len - 1] == BLOOM_MAX_K); /* and down to 30 */

    /* an empty filter: 64 zero bits, says absent for everything */
    bloom_builder b;
    bloom_builder_init(&b, 10);
    f.len = 0;
    CHECK_OK(bloom_builder_finish(&b, &f));
    CHECK(f.len == 9);
    CHECK(bloom_may_contain(kv_buf_slice(&f), kv_slice_of("x", 1)) == 0);
    /* add_hash agrees with add */
    CHECK_OK(bloom_builder_add_hash(&b, bloom_hash(kv_slice_of("hello", 5))));
    f.len = 0;
    CHECK_OK(bloom_builder_finish(&b, &f));
    CHECK(bloom_may_contain(kv_buf_slice(&f), kv_slice_of("hello", 5)) == 1);
    bloom_builder_reset(&b);
    CHECK(b.n == 0);
    bloom_builder_free(&b);

    /* malformed filters are rejected by bloom_check and answer "maybe" */
    uint8_t bad[4] = {0xff, 0xff, 0xff, 0};
    CHECK_RC(bloom_check(kv_slice_of(bad, 4)), -EUCLEAN); /* k = 0 */
    bad[3] = 31;
    CHECK_RC(bloom_check(kv_slice_of(bad, 4)), -EUCLEAN); /* k > 30 */
    CHECK_RC(bloom_check(kv_slice_of(bad, 1)), -EUCLEAN); /* no bits */
    CHECK_RC(bloom_check(kv_slice_of(bad, 0)), -EUCLEAN);
    CHECK(bloom_may_contain(kv_slice_of(bad, 1), kv_slice_of("x", 1)) == 1);
    bad[3] = 3;
    CHECK_OK(bloom_check(kv_slice_of(bad, 4)));
    kv_buf_free(&f);
    TU_DONE("test_bloom");
}
