/*
 * batch.c -- write batches: building them (kv_batch_* in kv.h), concatenating them for group
 * commit, and decoding them from WAL records (batch.h).
 *
 *   batch := seq:fixed64 | time_ms:fixed64 | count:fixed32 | op[count]
 *             bytes 0..7     8..15             16..19
 *   op    := type:u8 | klen:varint | key[klen]                          type DELETE (0)
 *          | type:u8 | klen:varint | key[klen] | vlen:varint | value    type VALUE (1)
 *          | type:u8 | klen:varint | key[klen] | vlen:varint |
 *              expire_at_ms:fixed64 | value[vlen - 8]                  type VALUE_TTL (2)
 *
 * Invariants: rep always holds the 20-byte header; the count field always equals b->count;
 * every op satisfies 1 <= klen <= KV_MAX_KEY_BYTES and user value <= KV_MAX_VALUE_BYTES (a
 * failed append leaves the batch exactly as it was). batch_decode checks all of this over the
 * whole rep before it calls back once, so a malformed record applies nothing.
 */
#include "batch.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>

#include "dbformat.h"

#define BATCH_COUNT_OFF 16

int batch_init(kv_batch *b)
{
    memset(b, 0, sizeof *b);
    uint8_t hdr[BATCH_HEADER_BYTES] = {0};
    if (kv_buf_append(&b->rep, hdr, sizeof hdr) != 0)
        return kv_error(-ENOMEM, "batch: out of memory");
    return 0;
}

kv_batch *kv_batch_new(void)
{
    kv_batch *b = malloc(sizeof *b);
    if (!b) {
        kv_error(-ENOMEM, "batch: out of memory");
        return NULL;
    }
    if (batch_init(b) != 0) {
        free(b);
        return NULL;
    }
    return b;
}

void kv_batch_free(kv_batch *b)
{
    if (!b)
        return;
    kv_buf_free(&b->rep);
    free(b);
}

void kv_batch_clear(kv_batch *b)
{
    memset(b->rep.data, 0, BATCH_HEADER_BYTES);
    b->rep.len = BATCH_HEADER_BYTES;
    b->count = 0;
    b->ndeletes = 0;
}

void batch_set_seq(kv_batch *b, uint64_t seq)
{
    kv_enc64(b->rep.data, seq);
}

void batch_set_time(kv_batch *b, uint64_t time_ms)
{
    kv_enc64(b->rep.data + 8, time_ms);
}

uint64_t batch_seq(const kv_batch *b)
{
    return kv_dec64(b->rep.data);
}

size_t kv_batch_count(const kv_batch *b)
{
    return b->count;
}

size_t kv_batch_bytes(const kv_batch *b)
{
    return b->rep.len;
}

static int batch_check(const char *what, size_t klen, size_t vlen)
{
    if (klen == 0)
        return kv_error(-EINVAL, "batch %s: empty key", what);
    if (klen > KV_MAX_KEY_BYTES)
        return kv_error(-ENAMETOOLONG, "batch %s: key of %zu bytes exceeds the %u-byte limit", what,
                        klen, KV_MAX_KEY_BYTES);
    if (vlen > KV_MAX_VALUE_BYTES)
        return kv_error(-EFBIG, "batch %s: value of %zu bytes exceeds the %u-byte limit", what,
                        vlen, KV_MAX_VALUE_BYTES);
    return 0;
}

/* Appends one op (val unused for a delete). On failure the batch is unchanged. */
static int batch_add(kv_batch *b, unsigned type, const void *key, size_t klen, const void *val,
                     size_t vlen, uint64_t expire_at_ms)
{
    if (b->count >= UINT32_MAX)
        return kv_error(-EOVERFLOW, "batch: more than %" PRIu32 " operations", UINT32_MAX);
    size_t old = b->rep.len;
    size_t stored = type == KV_TYPE_VALUE_TTL ? vlen + 8 : vlen;
    uint8_t t = (uint8_t)type;
    int rc = kv_buf_reserve(&b->rep, 1 + 2 * KV_VARINT64_MAX + klen + stored);
    if (rc == 0)
        rc = kv_buf_append(&b->rep, &t, 1);
    if (rc == 0)
        rc = kv_buf_put_lenbytes(&b->rep, key, klen);
    if (rc == 0 && type != KV_TYPE_DELETE)
        rc = kv_buf_put_varint(&b->rep, stored);
    if (rc == 0 && type == KV_TYPE_VALUE_TTL)
        rc = kv_buf_put64(&b->rep, expire_at_ms);
    if (rc == 0 && type != KV_TYPE_DELETE)
        rc = kv_buf_append(&b->rep, val, vlen);
    if (rc) {
        b->rep.len = old;
        return kv_error(-ENOMEM, "batch: out of memory");
    }
    b->count++;
    if (type == KV_TYPE_DELETE || type == KV_TYPE_RANGE_DELETE)
        b->ndeletes++;
    kv_enc32(b->rep.data + BATCH_COUNT_OFF, (uint32_t)b->count);
    return 0;
}

int kv_batch_put(kv_batch *b, const void *key, size_t klen, const void *val, size_t vlen)
{
    int rc = batch_check("put", klen, vlen);
    return rc ? rc : batch_add(b, KV_TYPE_VALUE, key, klen, val, vlen, 0);
}

int kv_batch_put_ttl(kv_batch *b, const void *key, size_t klen, const void *val, size_t vlen,
                     uint64_t expire_at_ms)
{
    int rc = batch_check("put", klen, vlen);
    if (rc)
        return rc;
    unsigned type = expire_at_ms ? KV_TYPE_VALUE_TTL : KV_TYPE_VALUE;
    return batch_add(b, type, key, klen, val, vlen, expire_at_ms);
}

int kv_batch_delete(kv_batch *b, const void *key, size_t klen)
{
    int rc = batch_check("delete", klen, 0);
    return rc ? rc : batch_add(b, KV_TYPE_DELETE, key, klen, NULL, 0, 0);
}

int kv_batch_delete_range(kv_batch *b, const void *lo, size_t lolen, const void *hi, size_t hilen)
{
    int rc = batch_check("range delete", lolen, 0);
    if (rc == 0)
        rc = batch_check("range delete", hilen, 0);
    if (rc == 0 && kv_slice_cmp(kv_slice_of(lo, lolen), kv_slice_of(hi, hilen)) >= 0)
        rc = kv_error(-EINVAL, "batch range delete: the low key is not below the high key");
    return rc ? rc : batch_add(b, KV_TYPE_RANGE_DELETE, lo, lolen, hi, hilen, 0);
}

int batch_append(kv_batch *dst, const kv_batch *src)
{
    if (dst->count + src->count > UINT32_MAX)
        return kv_error(-EOVERFLOW, "batch: more than %" PRIu32 " operations", UINT32_MAX);
    if (kv_buf_append(&dst->rep, src->rep.data + BATCH_HEADER_BYTES,
                      src->rep.len - BATCH_HEADER_BYTES) != 0)
        return kv_error(-ENOMEM, "batch: out of memory");
    dst->count += src->count;
    dst->ndeletes += src->ndeletes;
    kv_enc32(dst->rep.data + BATCH_COUNT_OFF, (uint32_t)dst->count);
    return 0;
}

/* ------------------------------------------------------------------------ decoding ---- */

typedef struct batch_op {
    unsigned type;
    kv_slice key, value;
} batch_op;

static int batch_malformed(const kv_reader *r, kv_slice rep, uint32_t i, const char *why)
{
    return kv_error(-EUCLEAN, "batch: malformed op %" PRIu32 " at byte %zu of %zu: %s", i,
                    (size_t)(r->p - rep.data), rep.len, why);
}

/* Decodes the op at r into *op, checking every length and the type. */
static int batch_next_op(kv_reader *r, kv_slice rep, uint32_t i, batch_op *op)
{
    if (r->p >= r->end)
        return batch_malformed(r, rep, i, "truncated");
    op->type = *r->p++;
    if (op->type > KV_TYPE_RANGE_DELETE)
        return batch_malformed(r, rep, i, "unknown type");
    if (kv_get_lenbytes(r, &op->key) != 0)
        return batch_malformed(r, rep, i, "truncated key");
    if (op->key.len == 0 || op->key.len > KV_MAX_KEY_BYTES)
        return batch_malformed(r, rep, i, "bad key length");
    op->value = kv_slice_of(NULL, 0);
    if (op->type == KV_TYPE_DELETE)
        return 0;
    if (kv_get_lenbytes(r, &op->value) != 0)
        return batch_malformed(r, rep, i, "truncated value");
    if (op->type == KV_TYPE_RANGE_DELETE) {
        if (op->value.len == 0 || op->value.len > KV_MAX_KEY_BYTES ||
            kv_slice_cmp(op->key, op->value) >= 0)
            return batch_malformed(r, rep, i, "bad range");
        return 0;
    }
    size_t extra = op->type == KV_TYPE_VALUE_TTL ? 8 : 0;
    if (op->value.len < extra || op->value.len - extra > KV_MAX_VALUE_BYTES)
        return batch_malformed(r, rep, i, "bad value length");
    return 0;
}

/* Checks the whole rep: header, every op, count and no trailing bytes. */
static int batch_validate(kv_slice rep, uint64_t seq, uint32_t count)
{
    kv_reader r = {rep.data + BATCH_HEADER_BYTES, rep.data + rep.len};
    if (count && seq > KV_MAX_SEQ - (count - 1))
        return kv_error(-EUCLEAN, "batch: sequence %" PRIu64 " + %" PRIu32 " out of range", seq,
                        count);
    for (uint32_t i = 0; i < count; i++) {
        batch_op op;
        int rc = batch_next_op(&r, rep, i, &op);
        if (rc)
            return rc;
    }
    if (r.p != r.end)
        return batch_malformed(&r, rep, count, "bytes after the last op");
    return 0;
}

int batch_decode(kv_slice rep, batch_op_fn fn, void *arg, uint64_t *seq, uint64_t *time_ms,
                 uint32_t *count)
{
    if (rep.len < BATCH_HEADER_BYTES)
        return kv_error(-EUCLEAN, "batch: %zu bytes, shorter than its %d-byte header", rep.len,
                        BATCH_HEADER_BYTES);
    uint64_t s = kv_dec64(rep.data);
    uint32_t n = kv_dec32(rep.data + BATCH_COUNT_OFF);
    int rc = batch_validate(rep, s, n);
    if (rc)
        return rc;
    if (seq)
        *seq = s;
    if (time_ms)
        *time_ms = kv_dec64(rep.data + 8);
    if (count)
        *count = n;
    kv_reader r = {rep.data + BATCH_HEADER_BYTES, rep.data + rep.len};
    for (uint32_t i = 0; i < n && fn; i++) {
        batch_op op;
        batch_next_op(&r, rep, i, &op); /* cannot fail: validated above */
        rc = fn(arg, s + i, op.type, op.key, op.value);
        if (rc)
            return rc;
    }
    return 0;
}
