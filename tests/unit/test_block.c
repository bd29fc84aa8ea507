/*
 * test_block.c -- block builder and iterator: round trips (forward, backward, seeks, long keys,
 * empty blocks, builder reuse) and corruption (every byte flipped, every truncation) which must
 * never crash or read out of bounds (run under ASan) and must report -EUCLEAN when detected.
 */
#include "block.h"
#include "dbformat.h"
#include "kv.h"
#include "testutil.h"

typedef struct ent {
    kv_buf key; /* internal key */
    kv_buf val;
} ent;

static void make_key(kv_buf *b, const char *ukey, size_t ulen, uint64_t seq, unsigned type)
{
    b->len = 0;
    CHECK_OK(ikey_append(b, kv_slice_of(ukey, ulen), seq, type));
}

/* n entries, several versions per user key, some long keys and empty values */
static ent *make_entries(size_t n, int long_keys)
{
    ent *e = calloc(n, sizeof *e);
    CHECK(e);
    char uk[600];
    size_t i = 0, u = 0;
    while (i < n) {
        int ulen = snprintf(uk, sizeof uk, "user/%08zu", u++);
        if (long_keys && u % 3 == 0) {
            memset(uk + ulen, 'a' + (int)(u % 26), 300);
            ulen += 300;
        }
        size_t versions = 1 + tu_rand_below(4);
        uint64_t seq = 1000000 - u * 10;
        for (size_t v = 0; v < versions && i < n; v++, i++) {
            make_key(&e[i].key, uk, (size_t)ulen, seq - v, v == 1 ? KV_TYPE_DELETE : KV_TYPE_VALUE);
            size_t vl = v == 1 ? 0 : tu_rand_below(long_keys ? 400 : 40);
            for (size_t j = 0; j < vl; j++) {
                uint8_t c = (uint8_t)('A' + (i + j) % 26);
                CHECK_OK(kv_buf_append(&e[i].val, &c, 1));
            }
        }
    }
    return e;
}

static void free_entries(ent *e, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        kv_buf_free(&e[i].key);
        kv_buf_free(&e[i].val);
    }
    free(e);
}

static int slice_eq(kv_slice a, kv_slice b)
{
    return kv_slice_cmp(a, b) == 0;
}

/* Builds a block; OUT: a malloc'd copy of exactly its size (so ASan sees overreads). */
static uint8_t *build(blk_builder *bb, ent *e, size_t n, size_t *size)
{
    kv_slice c;
    blk_builder_reset(bb);
    for (size_t i = 0; i < n; i++)
        CHECK_OK(blk_builder_add(bb, kv_buf_slice(&e[i].key), kv_buf_slice(&e[i].val)));
    CHECK(blk_builder_size(bb) == bb->buf.len + 4 * (bb->nrestarts + 1) || n == 0);
    CHECK_OK(blk_builder_finish(bb, &c));
    uint8_t *copy = malloc(c.len ? c.len : 1);
    CHECK(copy);
    memcpy(copy, c.data, c.len);
    *size = c.len;
    return copy;
}

static void test_round_trip(size_t n, int long_keys)
{
    blk_builder bb;
    blk b;
    size_t size;
    ent *e = make_entries(n, long_keys);
    blk_builder_init(&bb);
    uint8_t *data = build(&bb, e, n, &size);
    CHECK_OK(blk_parse(&b, data, size, "t", 0));
    CHECK(b.nrestarts == (n + BLK_RESTART_INTERVAL - 1) / BLK_RESTART_INTERVAL || n == 0);

    iter *it = blk_iter_new(&b, "t", 0);
    CHECK(it);
    size_t i = 0;
    for (iter_seek_first(it); iter_valid(it); iter_next(it), i++) {
        CHECK(i < n);
        CHECK(slice_eq(iter_key(it), kv_buf_slice(&e[i].key)));
        CHECK(slice_eq(iter_value(it), kv_buf_slice(&e[i].val)));
    }
    CHECK(i == n);
    CHECK_OK(iter_status(it));
    i = n;
    for (iter_seek_last(it); iter_valid(it); iter_prev(it)) {
        CHECK(i > 0);
        i--;
        CHECK(slice_eq(iter_key(it), kv_buf_slice(&e[i].key)));
        CHECK(slice_eq(iter_value(it), kv_buf_slice(&e[i].val)));
    }
    CHECK(i == 0);
    /* exact seeks, then a step each way */
    for (i = 0; i < n; i++) {
        iter_seek(it, kv_buf_slice(&e[i].key));
        CHECK(iter_valid(it));
        CHECK(slice_eq(iter_key(it), kv_buf_slice(&e[i].key)));
        if (i % 7 == 0) {
            iter_prev(it);
            CHECK(i == 0 ? !iter_valid(it) : slice_eq(iter_key(it), kv_buf_slice(&e[i - 1].key)));
            iter_seek(it, kv_buf_slice(&e[i].key));
            iter_next(it);
            CHECK(i + 1 == n ? !iter_valid(it)
                             : slice_eq(iter_key(it), kv_buf_slice(&e[i + 1].key)));
        }
    }
    /* seeks between keys: user key of entry i at a seq above its newest -> entry i's group */
    kv_buf t = {0};
    for (i = 0; i < n; i++) {
        kv_parsed_key pk;
        CHECK_OK(ikey_parse(kv_buf_slice(&e[i].key), &pk));
        make_key(&t, (const char *)pk.user_key.data, pk.user_key.len, pk.seq, KV_TYPE_SEEK);
        iter_seek(it, kv_buf_slice(&t)); /* seq, 0xff sorts before (seq, any type) */
        CHECK(iter_valid(it));
        CHECK(slice_eq(iter_key(it), kv_buf_slice(&e[i].key)));
        make_key(&t, (const char *)pk.user_key.data, pk.user_key.len, 0, 0);
        iter_seek(it, kv_buf_slice(&t)); /* after every version of this user key */
        size_t j = i;
        while (j < n && slice_eq(ikey_user_key(kv_buf_slice(&e[j].key)), pk.user_key))
            j++;
        CHECK(j == n ? !iter_valid(it) : slice_eq(iter_key(it), kv_buf_slice(&e[j].key)));
    }
    make_key(&t, "", 0, KV_MAX_SEQ, KV_TYPE_SEEK);
    iter_seek(it, kv_buf_slice(&t));
    CHECK(n == 0 ? !iter_valid(it) : slice_eq(iter_key(it), kv_buf_slice(&e[0].key)));
    make_key(&t, "zzzz", 4, 0, 0);
    iter_seek(it, kv_buf_slice(&t));
    CHECK(!iter_valid(it));
    CHECK_OK(iter_status(it));
    iter_destroy(it);
    kv_buf_free(&t);
    free(data);
    blk_builder_free(&bb);
    free_entries(e, n);
}

/* Builder reuse: reset keeps memory, a second block is independent of the first. */
static void test_reuse(void)
{
    blk_builder bb;
    blk b;
    size_t size;
    ent *e = make_entries(200, 0);
    blk_builder_init(&bb);
    free(build(&bb, e, 200, &size));
    uint8_t *data = build(&bb, e + 100, 50, &size);
    CHECK_OK(blk_parse(&b, data, size, "t", 0));
    blk_iter it;
    blk_iter_init(&it);
    blk_iter_reset(&it, &b, "t", 0);
    size_t i = 100;
    for (blk_iter_seek_first(&it); blk_iter_valid(&it); blk_iter_next(&it), i++)
        CHECK(slice_eq(blk_iter_key(&it), kv_buf_slice(&e[i].key)));
    CHECK(i == 150);
    blk_iter_release(&it);
    free(data);
    blk_builder_free(&bb);
    free_entries(e, 200);
}

/* Walks a possibly corrupt block every way; returns the status seen (0 or -EUCLEAN). */
static int exercise(const blk *b, ent *e, size_t n)
{
    blk_iter it;
    int st = 0, steps;
    blk_iter_init(&it);
    blk_iter_reset(&it, b, "corrupt", 0);
    steps = 0;
    for (blk_iter_seek_first(&it); blk_iter_valid(&it); blk_iter_next(&it))
        CHECK(++steps < 100000 && blk_iter_key(&it).len >= KV_TAG_BYTES);
    st = st ? st : blk_iter_status(&it);
    blk_iter_reset(&it, b, "corrupt", 0);
    steps = 0;
    for (blk_iter_seek_last(&it); blk_iter_valid(&it); blk_iter_prev(&it))
        CHECK(++steps < 100000);
    st = st ? st : blk_iter_status(&it);
    for (size_t i = 0; i < n; i += 5) {
        blk_iter_reset(&it, b, "corrupt", 0);
        blk_iter_seek(&it, kv_buf_slice(&e[i].key));
        if (blk_iter_valid(&it)) {
            blk_iter_next(&it);
            blk_iter_prev(&it);
            blk_iter_prev(&it);
        }
        st = st ? st : blk_iter_status(&it);
    }
    blk_iter_release(&it);
    return st;
}

static void test_corruption(void)
{
    blk_builder bb;
    blk b;
    size_t size, n = 40;
    ent *e = make_entries(n, 0);
    blk_builder_init(&bb);
    uint8_t *data = build(&bb, e, n, &size);
    static const uint8_t masks[] = {0x01, 0x10, 0x80, 0xff};
    int detected = 0, runs = 0;
    for (size_t pos = 0; pos < size; pos++) {
        for (size_t m = 0; m < sizeof masks + 1; m++) {
            uint8_t *copy = malloc(size);
            CHECK(copy);
            memcpy(copy, data, size);
            copy[pos] ^= m < sizeof masks ? masks[m] : (uint8_t)(1 + tu_rand_below(255));
            int rc = blk_parse(&b, copy, size, "corrupt", 0);
            CHECK(rc == 0 || rc == -EUCLEAN);
            if (rc == 0)
                rc = exercise(&b, e, n);
            CHECK(rc == 0 || rc == -EUCLEAN);
            if (rc == -EUCLEAN) {
                CHECK(strstr(kv_last_error(), "corrupt") != NULL);
                detected++;
            }
            runs++;
            free(copy);
        }
    }
    /* plenty of flips must be caught structurally (the rest is the checksum's job) */
    CHECK(detected > runs / 10);
    /* every truncation */
    for (size_t len = 0; len < size; len++) {
        uint8_t *copy = malloc(len ? len : 1);
        CHECK(copy);
        memcpy(copy, data, len);
        int rc = blk_parse(&b, copy, len, "short", 0);
        if (rc == 0)
            rc = exercise(&b, e, n);
        CHECK(rc == 0 || rc == -EUCLEAN);
        free(copy);
    }
    /* random garbage blocks */
    for (int r = 0; r < 2000; r++) {
        size_t len = tu_rand_below(300);
        uint8_t *copy = malloc(len ? len : 1);
        CHECK(copy);
        for (size_t i = 0; i < len; i++)
            copy[i] = (uint8_t)tu_rand();
        if (len >= 8 && r % 2) { /* plausible trailer: one restart at 0 */
            kv_enc32(copy + len - 4, 1);
            kv_enc32(copy + len - 8, 0);
        }
        int rc = blk_parse(&b, copy, len, "garbage", 0);
        if (rc == 0)
            rc = exercise(&b, e, n);
        CHECK(rc == 0 || rc == -EUCLEAN);
        free(copy);
    }
    free(data);
    blk_builder_free(&bb);
    free_entries(e, n);
}

static void test_bad_trailers(void)
{
    blk b;
    uint8_t d[16] = {0};
    CHECK_RC(blk_parse(&b, d, 3, "x", 7), -EUCLEAN);
    CHECK(strstr(kv_last_error(), "x: corrupt block at offset 7") != NULL);
    kv_enc32(d + 12, 5); /* 5 restarts do not fit in 16 bytes */
    CHECK_RC(blk_parse(&b, d, 16, "x", 0), -EUCLEAN);
    kv_enc32(d + 12, 1);
    kv_enc32(d + 8, 3); /* first restart not 0 */
    CHECK_RC(blk_parse(&b, d, 16, "x", 0), -EUCLEAN);
    kv_enc32(d + 8, 0);
    CHECK_OK(blk_parse(&b, d, 16, "x", 0)); /* 8 zero bytes of entries: "0,0,0" x2 + 2 */
    blk_iter it;
    blk_iter_init(&it);
    blk_iter_reset(&it, &b, "x", 0);
    blk_iter_seek_first(&it); /* key length 0 < tag: corrupt */
    CHECK(!blk_iter_valid(&it));
    CHECK_RC(blk_iter_status(&it), -EUCLEAN);
    blk_iter_next(&it); /* sticky, no crash */
    CHECK_RC(blk_iter_status(&it), -EUCLEAN);
    blk_iter_release(&it);
    /* empty block forms */
    kv_enc32(d, 0);
    CHECK_OK(blk_parse(&b, d, 4, "x", 0));
    kv_enc32(d, 0);
    kv_enc32(d + 4, 1);
    CHECK_OK(blk_parse(&b, d, 8, "x", 0));
    blk_iter_init(&it);
    blk_iter_reset(&it, &b, "x", 0);
    blk_iter_seek_first(&it);
    CHECK(!blk_iter_valid(&it));
    blk_iter_seek_last(&it);
    CHECK(!blk_iter_valid(&it));
    CHECK_OK(blk_iter_status(&it));
    blk_iter_release(&it);
}

int main(void)
{
    tu_seed_init();
    test_round_trip(0, 0);
    test_round_trip(1, 0);
    test_round_trip(16, 0);
    test_round_trip(17, 0);
    test_round_trip(1000, 0);
    test_round_trip(300, 1);
    test_reuse();
    test_bad_trailers();
    test_corruption();
    TU_DONE("test_block");
}
