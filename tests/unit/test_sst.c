/*
 * test_sst.c -- SSTables end to end: build ~100k entries with many versions per key (two hot
 * keys whose versions span dozens of blocks), then check props, gets at many sequences against
 * a reference, iteration both ways, seeks and random next/prev walks, with zstd on and off,
 * with and without a block cache, and from several threads at once. Corruption: flipped
 * bytes, truncations, zeroed ranges and foreign files must give -EUCLEAN with a message naming
 * the file (or correct answers), never a crash (run under ASan); sst_verify must notice every
 * single-byte change.
 */
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>

#include "dbformat.h"
#include "kv.h"
#include "kvio.h"
#include "sst.h"
#include "testutil.h"

/* ---- the reference data set ---- */

typedef struct ref_ent {
    kv_buf ikey, val;
    uint64_t seq;
    unsigned type;
} ref_ent;

typedef struct ref_key {
    size_t first, n; /* entries [first, first + n), newest first */
} ref_key;

typedef struct ref {
    ref_ent *e;
    size_t n, cap;
    ref_key *k;
    size_t nk;
} ref;

static void ukey_of(char *buf, size_t u)
{
    snprintf(buf, 32, "k%08zu", u * 2); /* odd numbers are absent keys */
}

static void ref_add(ref *r, const char *uk, uint64_t seq, unsigned type, size_t vlen)
{
    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 1024;
        r->e = realloc(r->e, r->cap * sizeof *r->e);
        CHECK(r->e);
    }
    ref_ent *e = &r->e[r->n++];
    memset(e, 0, sizeof *e);
    e->seq = seq;
    e->type = type;
    CHECK_OK(ikey_append(&e->ikey, kv_slice_of(uk, strlen(uk)), seq, type));
    if (type == KV_TYPE_DELETE)
        return;
    if (type == KV_TYPE_VALUE_TTL)
        CHECK_OK(kv_buf_put64(&e->val, 1700000000000ull + seq));
    char chunk[64];
    while (e->val.len < vlen) {
        int m = snprintf(chunk, sizeof chunk, "value of %s at %llu;", uk, (unsigned long long)seq);
        CHECK_OK(kv_buf_append(&e->val, chunk, KV_MIN((size_t)m, vlen - e->val.len)));
    }
}

static ref *ref_make(size_t nkeys, size_t hot_versions)
{
    ref *r = calloc(1, sizeof *r);
    CHECK(r);
    r->k = calloc(nkeys, sizeof *r->k);
    CHECK(r->k);
    r->nk = nkeys;
    char uk[32];
    for (size_t u = 0; u < nkeys; u++) {
        ukey_of(uk, u);
        size_t nv = 1 + tu_rand_below(9);
        if (u == 7 || u == nkeys / 2)
            nv = hot_versions;
        uint64_t seq = 10 + tu_rand_below(1000000) + nv * 4;
        r->k[u].first = r->n;
        r->k[u].n = nv;
        for (size_t v = 0; v < nv; v++) {
            unsigned t = tu_rand_below(10) == 0   ? KV_TYPE_DELETE
                         : tu_rand_below(10) == 0 ? KV_TYPE_VALUE_TTL
                                                  : KV_TYPE_VALUE;
            ref_add(r, uk, seq, t, tu_rand_below(120));
            seq -= 1 + tu_rand_below(4);
        }
    }
    return r;
}

static void ref_free(ref *r)
{
    for (size_t i = 0; i < r->n; i++) {
        kv_buf_free(&r->e[i].ikey);
        kv_buf_free(&r->e[i].val);
    }
    free(r->e);
    free(r->k);
    free(r);
}

static int eq(kv_slice a, kv_slice b)
{
    return kv_slice_cmp(a, b) == 0;
}

static int file_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

static uint64_t file_size(const char *p)
{
    struct stat st;
    CHECK(stat(p, &st) == 0);
    return (uint64_t)st.st_size;
}

static void build(const char *path, ref *r, int level, int bloom, size_t block, sst_props *p)
{
    sst_build_opts o = {block, level, bloom};
    sst_builder *b;
    char tmp[700];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    CHECK_OK(sst_builder_open(path, &o, &b));
    CHECK(file_exists(tmp));
    for (size_t i = 0; i < r->n; i++) {
        CHECK_OK(sst_builder_add(b, kv_buf_slice(&r->e[i].ikey), kv_buf_slice(&r->e[i].val)));
        if (i == r->n / 2)
            CHECK(sst_builder_entries(b) == i + 1 && sst_builder_file_bytes(b) > 0);
    }
    CHECK_OK(sst_builder_finish(b, p));
    CHECK(!file_exists(tmp));
    CHECK(p->file_bytes == file_size(path));
}

/* ---- checks against the reference ---- */

/* Reference answer for get(ukey u, S): index of the entry, or -1. */
static long ref_get(const ref *r, size_t u, uint64_t S)
{
    for (size_t i = 0; i < r->k[u].n; i++)
        if (r->e[r->k[u].first + i].seq <= S)
            return (long)(r->k[u].first + i);
    return -1;
}

static uint64_t pick_seq(const ref *r, size_t u)
{
    const ref_key *k = &r->k[u];
    switch (tu_rand_below(5)) {
    case 0:
        return KV_MAX_SEQ;
    case 1:
        return r->e[k->first + k->n - 1].seq - 1; /* below every version */
    case 2:
        return r->e[k->first + tu_rand_below(k->n)].seq;
    default:
        return r->e[k->first + tu_rand_below(k->n)].seq + tu_rand_below(3);
    }
}

static void check_gets(sst_reader *rd, const ref *r, size_t count)
{
    kv_buf v = {0};
    char uk[32];
    for (size_t q = 0; q < count; q++) {
        size_t u = q < 400 ? (q % 2 ? 7 : r->nk / 2) : tu_rand_below(r->nk); /* hot keys too */
        uint64_t S = pick_seq(r, u), seq = 0;
        unsigned type = 99;
        ukey_of(uk, u);
        int rc = sst_reader_get(rd, kv_slice_of(uk, strlen(uk)), S, &seq, &type, &v);
        long want = ref_get(r, u, S);
        if (want < 0) {
            CHECK_RC(rc, 0);
        } else {
            CHECK_RC(rc, 1);
            CHECK(seq == r->e[want].seq && type == r->e[want].type);
            CHECK(eq(kv_buf_slice(&v), kv_buf_slice(&r->e[want].val)));
        }
    }
    /* absent keys: between, before and after */
    uint64_t skips = sst_reader_filter_skips(rd);
    for (size_t q = 0; q < 2000; q++) {
        snprintf(uk, sizeof uk, "k%08zu", 2 * tu_rand_below(r->nk) + 1);
        CHECK_RC(sst_reader_get(rd, kv_slice_of(uk, strlen(uk)), KV_MAX_SEQ, &(uint64_t){0},
                                &(unsigned){0}, &v),
                 0);
    }
    CHECK_RC(sst_reader_get(rd, kv_slice_of("", 0), KV_MAX_SEQ, &(uint64_t){0}, &(unsigned){0}, &v),
             0);
    CHECK_RC(
        sst_reader_get(rd, kv_slice_of("zzz", 3), KV_MAX_SEQ, &(uint64_t){0}, &(unsigned){0}, &v),
        0);
    CHECK(sst_reader_filter_skips(rd) > skips + 1900); /* ~1% false positives */
    kv_buf_free(&v);
}

static void check_iter(sst_reader *rd, const ref *r)
{
    iter *it = sst_reader_iter(rd);
    size_t i = 0;
    for (iter_seek_first(it); iter_valid(it); iter_next(it), i++) {
        CHECK(i < r->n);
        CHECK(eq(iter_key(it), kv_buf_slice(&r->e[i].ikey)));
        CHECK(eq(iter_value(it), kv_buf_slice(&r->e[i].val)));
    }
    CHECK(i == r->n);
    CHECK_OK(iter_status(it));
    for (iter_seek_last(it); iter_valid(it); iter_prev(it)) {
        CHECK(i > 0);
        i--;
        CHECK(eq(iter_key(it), kv_buf_slice(&r->e[i].ikey)));
        CHECK(eq(iter_value(it), kv_buf_slice(&r->e[i].val)));
    }
    CHECK(i == 0);
    CHECK_OK(iter_status(it));
    /* seeks to (ukey, S): first entry of ukey with seq <= S, or the next key; then a walk */
    kv_buf t = {0};
    char uk[32];
    for (int q = 0; q < 3000; q++) {
        size_t u = tu_rand_below(r->nk);
        int absent = tu_rand_below(4) == 0;
        snprintf(uk, sizeof uk, "k%08zu", 2 * u + (size_t)absent);
        uint64_t S = pick_seq(r, u);
        t.len = 0;
        CHECK_OK(ikey_append(&t, kv_slice_of(uk, strlen(uk)), S, KV_TYPE_SEEK));
        long want = absent ? (long)(u + 1 < r->nk ? r->k[u + 1].first : r->n) : ref_get(r, u, S);
        if (want < 0)
            want = (long)(u + 1 < r->nk ? r->k[u + 1].first : r->n);
        iter_seek(it, kv_buf_slice(&t));
        long pos = want;
        for (int step = 0; step < 40; step++) {
            if (pos < 0 || pos >= (long)r->n) {
                CHECK(!iter_valid(it));
                break;
            }
            CHECK(iter_valid(it));
            CHECK(eq(iter_key(it), kv_buf_slice(&r->e[pos].ikey)));
            if (tu_rand_below(3) == 0) {
                iter_prev(it);
                pos--;
            } else {
                iter_next(it);
                pos++;
            }
        }
        CHECK_OK(iter_status(it));
    }
    iter_destroy(it);
    kv_buf_free(&t);
}

static void check_props(const sst_props *p, const ref *r)
{
    uint64_t mn = UINT64_MAX, mx = 0;
    for (size_t i = 0; i < r->n; i++) {
        mn = KV_MIN(mn, r->e[i].seq);
        mx = KV_MAX(mx, r->e[i].seq);
    }
    CHECK(p->entries == r->n && p->min_seq == mn && p->max_seq == mx);
    CHECK(eq(kv_buf_slice(&p->smallest), kv_buf_slice(&r->e[0].ikey)));
    CHECK(eq(kv_buf_slice(&p->largest), kv_buf_slice(&r->e[r->n - 1].ikey)));
}

typedef struct thr_arg {
    sst_reader *rd;
    const ref *r;
    int bad;
} thr_arg;

static void *get_thread(void *p)
{
    thr_arg *a = p;
    kv_buf v = {0};
    char uk[32];
    uint64_t s = (uint64_t)(uintptr_t)p;
    for (int q = 0; q < 20000; q++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        size_t u = (size_t)(s >> 33) % a->r->nk;
        const ref_key *k = &a->r->k[u];
        uint64_t S = a->r->e[k->first + (s >> 20) % k->n].seq, seq;
        unsigned type;
        ukey_of(uk, u);
        long want = ref_get(a->r, u, S);
        int rc = sst_reader_get(a->rd, kv_slice_of(uk, strlen(uk)), S, &seq, &type, &v);
        if (rc != 1 || seq != a->r->e[want].seq ||
            !eq(kv_buf_slice(&v), kv_buf_slice(&a->r->e[want].val)))
            a->bad++;
    }
    kv_buf_free(&v);
    return NULL;
}

static void test_big(const char *dir)
{
    ref *r = ref_make(19000, 2500);
    printf("test_sst: %zu entries over %zu user keys\n", r->n, r->nk);
    CHECK(r->n >= 95000);
    char pz[600], pn[600];
    sst_props propz, propn;
    snprintf(pz, sizeof pz, "%s/000001.sst", dir);
    snprintf(pn, sizeof pn, "%s/000002.sst", dir);
    build(pz, r, 1, 10, 4096, &propz);
    build(pn, r, 0, 10, 4096, &propn);
    printf("test_sst: zstd %llu bytes, uncompressed %llu bytes\n",
           (unsigned long long)propz.file_bytes, (unsigned long long)propn.file_bytes);
    CHECK(propz.file_bytes < propn.file_bytes * 3 / 4);
    check_props(&propz, r);
    check_props(&propn, r);
    CHECK_RC(sst_verify(pz, NULL, NULL), 0);
    CHECK_RC(sst_verify(pn, NULL, NULL), 0);

    cache *bc = cache_new(4 << 20);
    CHECK(bc);
    sst_reader *rz, *rn;
    CHECK_OK(sst_reader_open(pz, 1, bc, &rz));
    CHECK_OK(sst_reader_open(pn, 2, NULL, &rn));
    check_props(sst_reader_props(rz), r);
    CHECK(sst_reader_props(rz)->file_bytes == propz.file_bytes);
    check_gets(rz, r, 20000);
    check_gets(rn, r, 20000);
    uint64_t hits = cache_hits(bc);
    check_gets(rz, r, 5000);
    CHECK(cache_hits(bc) > hits);
    CHECK(cache_usage(bc) <= (4 << 20) && cache_usage(bc) > 0);
    check_iter(rz, r);
    check_iter(rn, r);

    /* two iterators and gets interleaved on one reader */
    iter *a = sst_reader_iter(rz), *b = sst_reader_iter(rz);
    iter_seek_first(a);
    iter_seek_last(b);
    for (size_t i = 0; i < 5000; i++) {
        CHECK(eq(iter_key(a), kv_buf_slice(&r->e[i].ikey)));
        CHECK(eq(iter_key(b), kv_buf_slice(&r->e[r->n - 1 - i].ikey)));
        iter_next(a);
        iter_prev(b);
    }
    iter_destroy(a);
    iter_destroy(b);

    /* concurrent gets through the shared cache (thread-local zstd contexts) */
    pthread_t t[4];
    thr_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (thr_arg){rz, r, 0};
        CHECK(pthread_create(&t[i], NULL, get_thread, &args[i]) == 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        CHECK(args[i].bad == 0);
    }
    sst_reader_close(rz);
    sst_reader_close(rn);
    cache_erase_file(bc, 1);
    CHECK(cache_usage(bc) == 0);
    cache_free(bc);
    sst_props_free(&propz);
    sst_props_free(&propn);
    ref_free(r);
}

static void test_edge(const char *dir)
{
    char p[600];
    sst_props props;
    sst_builder *b;
    sst_build_opts o = {4096, 3, 10};
    snprintf(p, sizeof p, "%s/empty.sst", dir);
    /* an empty table */
    CHECK_OK(sst_builder_open(p, &o, &b));
    CHECK_OK(sst_builder_finish(b, &props));
    CHECK(props.entries == 0 && props.file_bytes == file_size(p));
    sst_props_free(&props);
    sst_reader *rd;
    CHECK_OK(sst_reader_open(p, 50, NULL, &rd));
    iter *it = sst_reader_iter(rd);
    iter_seek_first(it);
    CHECK(!iter_valid(it));
    iter_seek_last(it);
    CHECK(!iter_valid(it));
    CHECK_OK(iter_status(it));
    iter_destroy(it);
    kv_buf v = {0};
    CHECK_RC(sst_reader_get(rd, kv_slice_of("a", 1), 5, &(uint64_t){0}, &(unsigned){0}, &v), 0);
    sst_reader_close(rd);
    CHECK_RC(sst_verify(p, NULL, NULL), 0);

    /* order and key checks; abandon removes the temporary file */
    snprintf(p, sizeof p, "%s/bad.sst", dir);
    CHECK_OK(sst_builder_open(p, &o, &b));
    kv_buf k1 = {0}, k2 = {0};
    CHECK_OK(ikey_append(&k1, kv_slice_of("b", 1), 5, KV_TYPE_VALUE));
    CHECK_OK(ikey_append(&k2, kv_slice_of("b", 1), 6, KV_TYPE_VALUE)); /* newer sorts first */
    CHECK_OK(sst_builder_add(b, kv_buf_slice(&k1), kv_slice_of("x", 1)));
    CHECK_RC(sst_builder_add(b, kv_buf_slice(&k2), kv_slice_of("x", 1)), -EINVAL);
    CHECK_RC(sst_builder_add(b, kv_buf_slice(&k1), kv_slice_of("x", 1)), -EINVAL);
    CHECK_RC(sst_builder_add(b, kv_slice_of("short", 5), kv_slice_of("x", 1)), -EINVAL);
    sst_builder_abandon(b);
    CHECK(!file_exists(p));
    char tmp[700];
    snprintf(tmp, sizeof tmp, "%s.tmp", p);
    CHECK(!file_exists(tmp));

    /* a single huge value, one key with versions in many blocks, tiny blocks */
    snprintf(p, sizeof p, "%s/huge.sst", dir);
    o.block_bytes = 64;
    CHECK_OK(sst_builder_open(p, &o, &b));
    size_t hl = 3 << 20;
    uint8_t *hv = malloc(hl);
    CHECK(hv);
    for (size_t i = 0; i < hl; i++)
        hv[i] = (uint8_t)(i * 7 / 1000);
    for (uint64_t s = 300; s >= 1; s--) {
        k1.len = 0;
        CHECK_OK(ikey_append(&k1, kv_slice_of("hot", 3), s, KV_TYPE_VALUE));
        CHECK_OK(sst_builder_add(b, kv_buf_slice(&k1),
                                 s == 150 ? kv_slice_of(hv, hl) : kv_slice_of(&s, 8)));
    }
    CHECK_OK(sst_builder_finish(b, &props));
    sst_props_free(&props);
    CHECK_OK(sst_reader_open(p, 51, NULL, &rd));
    for (uint64_t s = 0; s <= 305; s++) {
        uint64_t seq = 0;
        unsigned type;
        int rc = sst_reader_get(rd, kv_slice_of("hot", 3), s, &seq, &type, &v);
        if (s == 0) {
            CHECK_RC(rc, 0);
            continue;
        }
        CHECK_RC(rc, 1);
        CHECK(seq == KV_MIN(s, 300));
        CHECK(seq == 150 ? (v.len == hl && memcmp(v.data, hv, hl) == 0)
                         : (v.len == 8 && memcmp(v.data, &seq, 8) == 0));
    }
    CHECK_RC(sst_reader_get(rd, kv_slice_of("hos", 3), 9, &(uint64_t){0}, &(unsigned){0}, &v), 0);
    CHECK_RC(sst_reader_get(rd, kv_slice_of("hou", 3), 9, &(uint64_t){0}, &(unsigned){0}, &v), 0);
    sst_reader_close(rd);
    CHECK_RC(sst_verify(p, NULL, NULL), 0);
    free(hv);
    kv_buf_free(&v);
    kv_buf_free(&k1);
    kv_buf_free(&k2);

    /* no filter */
    o.bloom_bits_per_key = 0;
    o.block_bytes = 4096;
    snprintf(p, sizeof p, "%s/nofilter.sst", dir);
    ref *r = ref_make(300, 50);
    sst_props pr;
    build(p, r, 0, 0, 512, &pr);
    CHECK_OK(sst_reader_open(p, 52, NULL, &rd));
    CHECK(sst_reader_may_contain(rd, kv_slice_of("nothing", 7)) == 1);
    check_iter(rd, r);
    sst_reader_close(rd);
    sst_props_free(&pr);
    ref_free(r);
}

/* ---- corruption ---- */

static uint8_t *orig;
static size_t orig_len;
static ref *cref;

static void write_file(const char *p, const uint8_t *d, size_t n)
{
    FILE *f = fopen(p, "wb");
    CHECK(f);
    CHECK(n == 0 || fwrite(d, 1, n, f) == n);
    CHECK(fclose(f) == 0);
}

static void count_line(void *arg, const char *line)
{
    const char *path = ((const char **)arg)[0];
    CHECK(strstr(line, path) != NULL);
    ((int *)((const char **)arg)[1])[0]++;
}

/* Opens and reads the (possibly damaged) file at p. Every answer must be right or -EUCLEAN.
 * Returns 1 if corruption was reported somewhere. */
static int read_damaged(const char *p)
{
    sst_reader *rd;
    cache *bc = cache_new(1 << 20);
    CHECK(bc);
    int rc = sst_reader_open(p, 0, bc, &rd);
    if (rc) {
        CHECK_RC(rc, -EUCLEAN);
        CHECK(strstr(kv_last_error(), p) != NULL);
        cache_free(bc);
        return 1;
    }
    int seen = 0;
    iter *it = sst_reader_iter(rd);
    size_t i = 0;
    for (iter_seek_first(it); iter_valid(it); iter_next(it), i++) {
        CHECK(i < cref->n && eq(iter_key(it), kv_buf_slice(&cref->e[i].ikey)));
        CHECK(eq(iter_value(it), kv_buf_slice(&cref->e[i].val)));
    }
    if (iter_status(it)) {
        CHECK_RC(iter_status(it), -EUCLEAN);
        CHECK(strstr(kv_last_error(), p) != NULL);
        seen = 1;
    } else {
        CHECK(i == cref->n);
    }
    for (iter_seek_last(it); iter_valid(it); iter_prev(it))
        ;
    CHECK(iter_status(it) == 0 || iter_status(it) == -EUCLEAN);
    iter_destroy(it);
    kv_buf v = {0};
    char uk[32];
    for (size_t u = 0; u < cref->nk; u += 3) {
        uint64_t seq;
        unsigned type;
        ukey_of(uk, u);
        rc = sst_reader_get(rd, kv_slice_of(uk, strlen(uk)), KV_MAX_SEQ, &seq, &type, &v);
        if (rc < 0) {
            CHECK_RC(rc, -EUCLEAN);
            seen = 1;
        } else {
            long want = ref_get(cref, u, KV_MAX_SEQ);
            CHECK(rc == 1 && seq == cref->e[want].seq);
            CHECK(eq(kv_buf_slice(&v), kv_buf_slice(&cref->e[want].val)));
        }
    }
    kv_buf_free(&v);
    sst_reader_close(rd);
    cache_free(bc);
    return seen;
}

static void damaged(const char *p, const uint8_t *d, size_t n, int must_detect)
{
    int lines = 0;
    const void *arg[2] = {p, &lines};
    write_file(p, d, n);
    int problems = sst_verify(p, count_line, arg);
    CHECK(problems >= 0 && problems == lines);
    if (must_detect)
        CHECK(problems > 0);
    int seen = read_damaged(p);
    if (seen)
        CHECK(problems > 0);
}

static void test_corruption(const char *dir, int level)
{
    char p[600], good[600];
    sst_props props;
    cref = ref_make(400, 30);
    snprintf(good, sizeof good, "%s/good%d.sst", dir, level);
    snprintf(p, sizeof p, "%s/damaged.sst", dir);
    build(good, cref, level, 10, 1024, &props);
    sst_props_free(&props);
    uint8_t *d = NULL;
    CHECK_OK(kvio_read_file(good, &orig, &orig_len));
    d = malloc(orig_len);
    CHECK(d);
    CHECK(read_damaged(good) == 0);

    /* single flipped bytes: a random sample plus every byte of the tail (meta + footer) */
    size_t samples = 1500;
    for (size_t s = 0; s < samples + 400 && s < orig_len + samples; s++) {
        size_t pos = s < samples ? tu_rand_below(orig_len) : orig_len - 1 - (s - samples);
        memcpy(d, orig, orig_len);
        d[pos] ^= (uint8_t)(1u << tu_rand_below(8));
        damaged(p, d, orig_len, 1);
    }
    /* a flipped data byte names the block checksum and its offset */
    memcpy(d, orig, orig_len);
    d[10] ^= 0x40;
    write_file(p, d, orig_len);
    sst_reader *rd;
    CHECK_OK(sst_reader_open(p, 0, NULL, &rd));
    iter *it = sst_reader_iter(rd);
    iter_seek_first(it);
    CHECK(!iter_valid(it));
    CHECK_RC(iter_status(it), -EUCLEAN);
    char want[800];
    snprintf(want, sizeof want, "%s: bad block checksum at offset 0", p);
    CHECK(strstr(kv_last_error(), want) != NULL);
    iter_destroy(it);
    sst_reader_close(rd);

    /* truncations: open fails */
    for (size_t len = 0; len < orig_len; len += (len + 100 < orig_len ? 61 : 1)) {
        write_file(p, orig, len);
        CHECK_RC(sst_reader_open(p, 0, NULL, &rd), -EUCLEAN);
        CHECK(strstr(kv_last_error(), p) != NULL);
        damaged(p, orig, len, 1);
    }
    /* extra bytes appended */
    memcpy(d, orig, orig_len);
    uint8_t *longer = malloc(orig_len + 10);
    CHECK(longer);
    memcpy(longer, orig, orig_len);
    memset(longer + orig_len, 0, 10);
    damaged(p, longer, orig_len + 10, 1);
    free(longer);
    /* zeroed ranges */
    for (int z = 0; z < 300; z++) {
        memcpy(d, orig, orig_len);
        size_t at = tu_rand_below(orig_len), zl = 1 + tu_rand_below(400);
        zl = KV_MIN(zl, orig_len - at);
        memset(d + at, 0, zl);
        damaged(p, d, orig_len, memcmp(d, orig, orig_len) != 0);
    }
    /* a block moved: swap two halves of the data area */
    memcpy(d, orig, orig_len);
    memcpy(d, orig + 300, 300);
    memcpy(d + 300, orig, 300);
    damaged(p, d, orig_len, 1);
    free(d);
    free(orig);
    ref_free(cref);
}

static void test_foreign(const char *dir)
{
    char p[600];
    sst_reader *rd;
    snprintf(p, sizeof p, "%s/foreign.sst", dir);
    uint8_t buf[8192];
    size_t sizes[] = {0, 1, 47, 48, 49, 100, 4096, 8192};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        for (int kind = 0; kind < 3; kind++) {
            for (size_t j = 0; j < sizes[i]; j++)
                buf[j] = kind == 0   ? 0
                         : kind == 1 ? (uint8_t)tu_rand()
                                     : (uint8_t) "hello, world\n"[j % 13];
            write_file(p, buf, sizes[i]);
            CHECK_RC(sst_reader_open(p, 0, NULL, &rd), -EUCLEAN);
            CHECK(strstr(kv_last_error(), p) != NULL);
            CHECK_RC(sst_verify(p, NULL, NULL), 1);
        }
    }
    /* right magic, garbage elsewhere */
    for (size_t j = 0; j < 4096; j++)
        buf[j] = (uint8_t)tu_rand();
    memcpy(buf + 4096 - 8, "kvfsSST1", 8);
    kv_enc32(buf + 4096 - 12, 2); /* a version this release reads */
    write_file(p, buf, 4096);
    CHECK_RC(sst_reader_open(p, 0, NULL, &rd), -EUCLEAN);
    CHECK(strstr(kv_last_error(), "bad footer checksum") != NULL);
    write_file(p, (const uint8_t *)"not a table", 11);
    CHECK_RC(sst_reader_open(p, 0, NULL, &rd), -EUCLEAN);
    CHECK(strstr(kv_last_error(), "too short") != NULL);
    snprintf(p, sizeof p, "%s/missing.sst", dir);
    CHECK(sst_reader_open(p, 0, NULL, &rd) == -ENOENT);
    CHECK(sst_verify(p, NULL, NULL) == -ENOENT);
}

/* The worked example of docs/format.md, section 8: ("apple", seq 2, VALUE) = "red" and
 * ("apricot", seq 3, DELETE), built with 4 KiB blocks, no compression, 10 bloom bits a key.
 * Version 2 is what the builder writes today (XXH3 checksums); version 1 is the same table as
 * earlier releases wrote it (XXH32), which must still open and read. */
static const uint8_t sst_example_v2[183] = {
    0x00, 0x0d, 0x03, 0x61, 0x70, 0x70, 0x6c, 0x65, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x72, 0x65, 0x64, 0x02, 0x0d, 0x00, 0x72, 0x69, 0x63, 0x6f, 0x74, 0x00, 0x03, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0xb0, 0xe4, 0x3d, 0x1e,
    0xc0, 0x00, 0x00, 0xb0, 0x1f, 0x00, 0x06, 0x00, 0x06, 0x00, 0xbc, 0xc3, 0x16, 0xae, 0x01, 0x02,
    0x02, 0x03, 0x01, 0x0d, 0x61, 0x70, 0x70, 0x6c, 0x65, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x0f, 0x61, 0x70, 0x72, 0x69, 0x63, 0x6f, 0x74, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0xbe, 0xc1, 0xe4, 0x18, 0x00, 0x0f, 0x02, 0x61, 0x70, 0x72, 0x69, 0x63, 0x6f, 0x74,
    0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x2b, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00,
    0x00, 0x00, 0x00, 0x05, 0x2b, 0xc2, 0xb8, 0x30, 0x09, 0x3e, 0x23, 0x66, 0x1c, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xa8, 0x67, 0x61, 0xb7, 0x02, 0x00, 0x00, 0x00, 0x6b,
    0x76, 0x66, 0x73, 0x53, 0x53, 0x54, 0x31,
};
static const uint8_t sst_example_v1[183] = {
    0x00, 0x0d, 0x03, 0x61, 0x70, 0x70, 0x6c, 0x65, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x72, 0x65, 0x64, 0x02, 0x0d, 0x00, 0x72, 0x69, 0x63, 0x6f, 0x74, 0x00, 0x03, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x9a, 0xf0, 0x59, 0xfc,
    0xc0, 0x00, 0x00, 0xb0, 0x1f, 0x00, 0x06, 0x00, 0x06, 0x00, 0xa7, 0x96, 0x71, 0x3a, 0x01, 0x02,
    0x02, 0x03, 0x01, 0x0d, 0x61, 0x70, 0x70, 0x6c, 0x65, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x0f, 0x61, 0x70, 0x72, 0x69, 0x63, 0x6f, 0x74, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x53, 0xd0, 0x78, 0xb5, 0x00, 0x0f, 0x02, 0x61, 0x70, 0x72, 0x69, 0x63, 0x6f, 0x74,
    0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x2b, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00,
    0x00, 0x00, 0x00, 0xc0, 0xcb, 0xfe, 0xbc, 0x30, 0x09, 0x3e, 0x23, 0x66, 0x1c, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xfa, 0x13, 0xef, 0x3b, 0x01, 0x00, 0x00, 0x00, 0x6b,
    0x76, 0x66, 0x73, 0x53, 0x53, 0x54, 0x31,
};

/* Reads apple = "red" and apricot deleted from the table at p. */
static void check_example_reads(const char *p)
{
    sst_reader *rd;
    CHECK_OK(sst_reader_open(p, 1, NULL, &rd));
    kv_buf v = {0};
    uint64_t seq;
    unsigned type;
    CHECK_RC(sst_reader_get(rd, kv_slice_of("apple", 5), 5, &seq, &type, &v), 1);
    CHECK(seq == 2 && type == KV_TYPE_VALUE && v.len == 3 && memcmp(v.data, "red", 3) == 0);
    kv_buf_free(&v);
    CHECK_RC(sst_reader_get(rd, kv_slice_of("apricot", 7), 5, &seq, &type, &v), 1);
    CHECK(seq == 3 && type == KV_TYPE_DELETE);
    kv_buf_free(&v);
    CHECK_RC(sst_reader_get(rd, kv_slice_of("apple", 5), 1, &seq, &type, &v), 0);
    sst_reader_close(rd);
    CHECK_RC(sst_verify(p, NULL, NULL), 0);
}

static void test_worked_example(const char *dir)
{
    char p[600];
    snprintf(p, sizeof p, "%s/example.sst", dir);
    sst_build_opts o = {4096, 0, 10};
    sst_builder *b;
    sst_props props;
    kv_buf k1 = {0}, k2 = {0};
    CHECK_OK(ikey_append(&k1, kv_slice_of("apple", 5), 2, KV_TYPE_VALUE));
    CHECK_OK(ikey_append(&k2, kv_slice_of("apricot", 7), 3, KV_TYPE_DELETE));
    CHECK_OK(sst_builder_open(p, &o, &b));
    CHECK_OK(sst_builder_add(b, kv_buf_slice(&k1), kv_slice_of("red", 3)));
    CHECK_OK(sst_builder_add(b, kv_buf_slice(&k2), kv_slice_of("", 0)));
    CHECK_OK(sst_builder_finish(b, &props));
    sst_props_free(&props);
    kv_buf_free(&k1);
    kv_buf_free(&k2);
    uint8_t *got;
    size_t got_len;
    CHECK_OK(kvio_read_file(p, &got, &got_len));
    CHECK(got_len == sizeof sst_example_v2 && memcmp(got, sst_example_v2, got_len) == 0);
    free(got);
    check_example_reads(p);

    write_file(p, sst_example_v1, sizeof sst_example_v1);
    check_example_reads(p);
    /* version 1 bytes under a version 2 footer fail the footer checksum, and the reverse */
    uint8_t mixed[sizeof sst_example_v1];
    memcpy(mixed, sst_example_v1, sizeof mixed);
    mixed[sizeof mixed - 12] = 2;
    write_file(p, mixed, sizeof mixed);
    CHECK_RC(sst_reader_open(p, 1, NULL, &(sst_reader *){NULL}), -EUCLEAN);
    CHECK(strstr(kv_last_error(), "bad footer checksum") != NULL);
    mixed[sizeof mixed - 12] = 3;
    write_file(p, mixed, sizeof mixed);
    CHECK_RC(sst_reader_open(p, 1, NULL, &(sst_reader *){NULL}), -EUCLEAN);
    CHECK(strstr(kv_last_error(), "unsupported SSTable version") != NULL);
}

int main(void)
{
    tu_seed_init();
    const char *d = tu_tmpdir("sst");
    char dir[512];
    snprintf(dir, sizeof dir, "%s", d);
    test_worked_example(dir);
    test_edge(dir);
    test_foreign(dir);
    test_corruption(dir, 0);
    test_corruption(dir, 1);
    test_big(dir);
    if (!getenv("KEEP"))
        tu_rmtree(dir);
    TU_DONE("test_sst");
}
