/*
 * block.c -- building and reading SSTable blocks (LevelDB table/block_builder.cc design).
 *
 *   block    := entry* restarts:u32[num_restarts] num_restarts:u32
 *   entry    := shared:varint32 unshared:varint32 value_len:varint32
 *               key_delta[unshared] value[value_len]
 *
 * Keys are internal keys in increasing ikey_cmp order. An entry stores only the bytes of its key
 * that differ from the previous key's (shared = length of the common prefix). Every
 * BLK_RESTART_INTERVAL entries a "restart point" stores its key whole (shared = 0) and its
 * offset goes into the restart array, so seek can binary-search the restarts and then scan at
 * most one interval. All integers are little-endian. An empty block is just num_restarts = 1,
 * restarts[0] = 0 (or num_restarts = 0).
 *
 * Reader invariants: blk_parse checks the trailer (restart count fits, restarts start at 0, are
 * strictly increasing and lie inside the entry area); the iterator checks every varint, every
 * length and every shared prefix against the bounds before touching bytes, and every rebuilt
 * key is at least KV_TAG_BYTES long, so ikey_cmp is always safe. Any violation sets status
 * -EUCLEAN (sticky until the iterator is reset to another block) and invalidates it.
 */
#include "block.h"

#include <errno.h>
#include <stdlib.h>

#include "dbformat.h"

/* ---- builder ---- */

void blk_builder_init(blk_builder *b)
{
    memset(b, 0, sizeof *b);
}

static int blk_push_restart(blk_builder *b, uint32_t off)
{
    uint32_t *p = kv_grow(b->restarts, &b->restarts_cap, b->nrestarts + 1, sizeof *p, 64);
    if (!p)
        return -ENOMEM;
    b->restarts = p;
    b->restarts[b->nrestarts++] = off;
    return 0;
}

static size_t blk_common_prefix(kv_slice a, kv_slice b)
{
    size_t n = KV_MIN(a.len, b.len), i = 0;
    while (i + 8 <= n) {
        uint64_t x, y;
        memcpy(&x, a.data + i, 8);
        memcpy(&y, b.data + i, 8);
        if (x != y)
            break;
        i += 8;
    }
    while (i < n && a.data[i] == b.data[i])
        i++;
    return i;
}

int blk_builder_add(blk_builder *b, kv_slice key, kv_slice value)
{
    size_t shared = 0;
    int rc;
    if (b->nrestarts == 0 && (rc = blk_push_restart(b, 0)) != 0)
        return rc;
    if (b->counter < BLK_RESTART_INTERVAL) {
        shared = blk_common_prefix(kv_buf_slice(&b->last_key), key);
    } else {
        if ((rc = blk_push_restart(b, (uint32_t)b->buf.len)) != 0)
            return rc;
        b->counter = 0;
    }
    size_t unshared = key.len - shared;
    uint64_t need =
        (uint64_t)b->buf.len + 3 * 5 + unshared + value.len + 4 * ((uint64_t)b->nrestarts + 2);
    if (need > UINT32_MAX || key.len > UINT32_MAX || value.len > UINT32_MAX)
        return -EFBIG;
    if ((rc = kv_buf_reserve(&b->buf, 3 * 5 + unshared + value.len)) != 0)
        return rc;
    uint8_t *p = b->buf.data + b->buf.len;
    p += kv_enc_varint(p, shared);
    p += kv_enc_varint(p, unshared);
    p += kv_enc_varint(p, value.len);
    memcpy(p, key.data + shared, unshared);
    p += unshared;
    if (value.len)
        memcpy(p, value.data, value.len);
    p += value.len;
    b->buf.len = (size_t)(p - b->buf.data);
    b->last_key.len = shared;
    if ((rc = kv_buf_append(&b->last_key, key.data + shared, unshared)) != 0)
        return rc;
    b->counter++;
    b->entries++;
    return 0;
}

int blk_builder_finish(blk_builder *b, kv_slice *contents)
{
    int rc = 0;
    if (b->nrestarts == 0 && (rc = blk_push_restart(b, 0)) != 0)
        return rc;
    if ((rc = kv_buf_reserve(&b->buf, 4 * (b->nrestarts + 1))) != 0)
        return rc;
    for (size_t i = 0; i < b->nrestarts; i++) {
        kv_enc32(b->buf.data + b->buf.len, b->restarts[i]);
        b->buf.len += 4;
    }
    kv_enc32(b->buf.data + b->buf.len, (uint32_t)b->nrestarts);
    b->buf.len += 4;
    b->finished = 1;
    *contents = kv_buf_slice(&b->buf);
    return 0;
}

void blk_builder_reset(blk_builder *b)
{
    b->buf.len = 0;
    b->last_key.len = 0;
    b->nrestarts = 0;
    b->counter = 0;
    b->finished = 0;
    b->entries = 0;
}

void blk_builder_free(blk_builder *b)
{
    kv_buf_free(&b->buf);
    kv_buf_free(&b->last_key);
    free(b->restarts);
    memset(b, 0, sizeof *b);
}

size_t blk_builder_size(const blk_builder *b)
{
    if (b->finished)
        return b->buf.len;
    return b->buf.len + 4 * (KV_MAX(b->nrestarts, (size_t)1) + 1);
}

/* ---- parsing ---- */

static int blk_bad(const char *path, uint64_t off, const char *what)
{
    return kv_error(-EUCLEAN, "%s: corrupt block at offset %llu: %s", path ? path : "(block)",
                    (unsigned long long)off, what);
}

int blk_parse(blk *b, const uint8_t *data, size_t size, const char *path, uint64_t off)
{
    if (size < 4)
        return blk_bad(path, off, "too short for a restart count");
    if (size > UINT32_MAX)
        return blk_bad(path, off, "larger than 4 GiB");
    uint32_t n = kv_dec32(data + size - 4);
    if (n > (size - 4) / 4)
        return blk_bad(path, off, "restart count exceeds block size");
    uint32_t limit = (uint32_t)(size - 4 - 4 * (size_t)n);
    const uint8_t *rs = data + limit;
    if (limit == 0 && n > 1)
        return blk_bad(path, off, "restarts in an empty block");
    if (limit > 0 && n == 0)
        return blk_bad(path, off, "entries without restart points");
    uint32_t prev = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t r = kv_dec32(rs + 4 * (size_t)i);
        if ((i == 0 && r != 0) || (i > 0 && r <= prev) || (limit > 0 && r >= limit))
            return blk_bad(path, off, "restart point out of order or out of range");
        prev = r;
    }
    b->data = data;
    b->limit = limit;
    b->nrestarts = n;
    b->restarts = rs;
    return 0;
}

/* ---- iterator ---- */

static inline uint32_t blk_restart(const blk *b, uint32_t i)
{
    return kv_dec32(b->restarts + 4 * (size_t)i);
}

static const uint8_t *blk_varint32(const uint8_t *p, const uint8_t *end, uint32_t *v)
{
    uint64_t x;
    p = kv_dec_varint(p, end, &x);
    if (!p || x > UINT32_MAX)
        return NULL;
    *v = (uint32_t)x;
    return p;
}

/* Decodes the entry header at off. OUT: lengths and *body (offset of key_delta). Returns 0 or
 * -1 if anything would leave [0, limit). */
static int blk_decode(const blk *b, uint32_t off, uint32_t *shared, uint32_t *unshared,
                      uint32_t *vlen, uint32_t *body)
{
    const uint8_t *p = b->data + off, *end = b->data + b->limit;
    if (end - p >= 3 && (p[0] | p[1] | p[2]) < 0x80) {
        *shared = p[0];
        *unshared = p[1];
        *vlen = p[2];
        p += 3;
    } else {
        if (!(p = blk_varint32(p, end, shared)) || !(p = blk_varint32(p, end, unshared)) ||
            !(p = blk_varint32(p, end, vlen)))
            return -1;
    }
    if ((uint64_t)*unshared + *vlen > (uint64_t)(end - p))
        return -1;
    *body = (uint32_t)(p - b->data);
    return 0;
}

static void blk_invalidate(blk_iter *it)
{
    it->cur = it->next = it->b.limit;
    it->ri = it->b.nrestarts;
    it->key.len = 0;
    it->val = kv_slice_of(NULL, 0);
}

static void blk_corrupt(blk_iter *it, uint32_t at, const char *what)
{
    it->status = kv_error(-EUCLEAN, "%s: corrupt block at offset %llu: %s at entry offset %u",
                          it->path ? it->path : "(block)", (unsigned long long)it->off, what, at);
    blk_invalidate(it);
}

void blk_iter_init(blk_iter *it)
{
    memset(it, 0, sizeof *it);
}

void blk_iter_reset(blk_iter *it, const blk *b, const char *path, uint64_t off)
{
    it->b = *b;
    it->path = path;
    it->off = off;
    it->status = 0;
    blk_invalidate(it);
}

void blk_iter_release(blk_iter *it)
{
    kv_buf_free(&it->key);
}

int blk_iter_valid(const blk_iter *it)
{
    return it->cur < it->b.limit;
}

static void blk_seek_restart(blk_iter *it, uint32_t i)
{
    it->key.len = 0;
    it->ri = i;
    it->next = blk_restart(&it->b, i);
}

/* Moves to the entry at it->next. Returns 1 if positioned, 0 at the end or on error. */
static int blk_parse_next(blk_iter *it)
{
    uint32_t shared, unshared, vlen, body;
    it->cur = it->next;
    if (it->cur >= it->b.limit) {
        blk_invalidate(it);
        return 0;
    }
    if (blk_decode(&it->b, it->cur, &shared, &unshared, &vlen, &body) != 0) {
        blk_corrupt(it, it->cur, "entry runs past the block");
        return 0;
    }
    if (shared > it->key.len) {
        blk_corrupt(it, it->cur, "shared prefix longer than the previous key");
        return 0;
    }
    it->key.len = shared;
    if (kv_buf_append(&it->key, it->b.data + body, unshared) != 0) {
        it->status = kv_error(-ENOMEM, "out of memory decoding a block");
        blk_invalidate(it);
        return 0;
    }
    if (it->key.len < KV_TAG_BYTES) {
        blk_corrupt(it, it->cur, "key shorter than an internal-key tag");
        return 0;
    }
    it->val = kv_slice_of(it->b.data + body + unshared, vlen);
    it->next = body + unshared + vlen;
    while (it->ri + 1 < it->b.nrestarts && blk_restart(&it->b, it->ri + 1) < it->cur)
        it->ri++;
    return 1;
}

void blk_iter_seek_first(blk_iter *it)
{
    if (it->status)
        return;
    if (it->b.limit == 0) {
        blk_invalidate(it);
        return;
    }
    blk_seek_restart(it, 0);
    blk_parse_next(it);
}

void blk_iter_seek_last(blk_iter *it)
{
    if (it->status)
        return;
    if (it->b.limit == 0) {
        blk_invalidate(it);
        return;
    }
    blk_seek_restart(it, it->b.nrestarts - 1);
    while (blk_parse_next(it) && it->next < it->b.limit) {
    }
}

void blk_iter_next(blk_iter *it)
{
    if (it->status || !blk_iter_valid(it))
        return;
    blk_parse_next(it);
}

void blk_iter_prev(blk_iter *it)
{
    if (it->status || !blk_iter_valid(it))
        return;
    uint32_t original = it->cur;
    while (blk_restart(&it->b, it->ri) >= original) {
        if (it->ri == 0) {
            blk_invalidate(it);
            return;
        }
        it->ri--;
    }
    blk_seek_restart(it, it->ri);
    do {
        if (!blk_parse_next(it))
            return;
    } while (it->next < original);
}

/* The whole key stored at restart point i. Returns 0, or -1 after marking corruption. */
static int blk_restart_key(blk_iter *it, uint32_t i, kv_slice *key)
{
    uint32_t off = blk_restart(&it->b, i), shared, unshared, vlen, body;
    if (blk_decode(&it->b, off, &shared, &unshared, &vlen, &body) != 0) {
        blk_corrupt(it, off, "restart entry runs past the block");
        return -1;
    }
    if (shared != 0 || unshared < KV_TAG_BYTES) {
        blk_corrupt(it, off, "restart entry does not hold a whole key");
        return -1;
    }
    *key = kv_slice_of(it->b.data + body, unshared);
    return 0;
}

void blk_iter_seek(blk_iter *it, kv_slice target)
{
    if (it->status)
        return;
    if (target.len < KV_TAG_BYTES) {
        it->status = kv_error(-EINVAL, "block seek: target is not an internal key");
        blk_invalidate(it);
        return;
    }
    if (it->b.limit == 0) {
        blk_invalidate(it);
        return;
    }
    uint32_t left = 0, right = it->b.nrestarts - 1;
    while (left < right) {
        uint32_t mid = left + (right - left + 1) / 2;
        kv_slice k;
        if (blk_restart_key(it, mid, &k) != 0)
            return;
        if (ikey_cmp(k, target) < 0)
            left = mid;
        else
            right = mid - 1;
    }
    blk_seek_restart(it, left);
    while (blk_parse_next(it)) {
        if (ikey_cmp(kv_buf_slice(&it->key), target) >= 0)
            return;
    }
}

/* ---- the iter interface ---- */

static int bi_valid(const iter *it)
{
    return blk_iter_valid((const blk_iter *)it);
}
static void bi_seek_first(iter *it)
{
    blk_iter_seek_first((blk_iter *)it);
}
static void bi_seek_last(iter *it)
{
    blk_iter_seek_last((blk_iter *)it);
}
static void bi_seek(iter *it, kv_slice t)
{
    blk_iter_seek((blk_iter *)it, t);
}
static void bi_next(iter *it)
{
    blk_iter_next((blk_iter *)it);
}
static void bi_prev(iter *it)
{
    blk_iter_prev((blk_iter *)it);
}
static kv_slice bi_key(const iter *it)
{
    return blk_iter_key((const blk_iter *)it);
}
static kv_slice bi_value(const iter *it)
{
    return blk_iter_value((const blk_iter *)it);
}
static int bi_status(const iter *it)
{
    return blk_iter_status((const blk_iter *)it);
}
static void bi_destroy(iter *it)
{
    blk_iter_release((blk_iter *)it);
    free(it);
}

static const iter_ops blk_iter_ops = {
    bi_valid, bi_seek_first, bi_seek_last, bi_seek,   bi_next,
    bi_prev,  bi_key,        bi_value,     bi_status, bi_destroy,
};

iter *blk_iter_new(const blk *b, const char *path, uint64_t off)
{
    blk_iter *it = malloc(sizeof *it);
    if (!it)
        return NULL;
    blk_iter_init(it);
    blk_iter_reset(it, b, path, off);
    it->base.ops = &blk_iter_ops;
    return &it->base;
}
