/*
 * dbformat.h -- internal keys: how a user key, a sequence number and an entry type are packed
 * into the keys stored in memtables and SSTables, and how they are ordered.
 *
 *   internal_key := user_key | tag:fixed64      tag = seq << 8 | type
 *
 * Order (ikey_cmp): user key ascending (bytewise, a prefix sorts first), then tag DESCENDING,
 * so the newest version of a key comes first. To find the newest version visible at sequence S,
 * seek to ikey(user_key, S, KV_TYPE_SEEK): every entry of that key with seq <= S sorts at or
 * after it, every newer one before it.
 *
 * Stored values by type:
 *   KV_TYPE_DELETE     value empty
 *   KV_TYPE_VALUE      value = user value
 *   KV_TYPE_VALUE_TTL  value = expire_at_ms:fixed64 | user value
 * KV_TYPE_RANGE_DELETE is a batch op only (drops.h): memtables and tables never hold it.
 * DO NOT CHANGE THESE ENUM VALUES: they are embedded in the on-disk data.
 */
#ifndef KV_DBFORMAT_H
#define KV_DBFORMAT_H

#include "util.h"

enum kv_type {
    KV_TYPE_DELETE = 0,
    KV_TYPE_VALUE = 1,
    KV_TYPE_VALUE_TTL = 2,
    KV_TYPE_RANGE_DELETE = 3, /* only in write batches (key = lo, value = hi: drops.h) */
    KV_TYPE_SEEK = 0xFF,      /* only in seek keys, never stored */
};

#define KV_TAG_BYTES 8
#define KV_MAX_SEQ ((UINT64_C(1) << 56) - 1)

static inline uint64_t kv_tag(uint64_t seq, unsigned type)
{
    return (seq << 8) | (uint64_t)type;
}

typedef struct kv_parsed_key {
    kv_slice user_key;
    uint64_t seq;
    unsigned type;
} kv_parsed_key;

/* Returns 0, or -EUCLEAN if ikey is shorter than a tag or has an unknown type. */
int ikey_parse(kv_slice ikey, kv_parsed_key *out);

static inline kv_slice ikey_user_key(kv_slice ikey)
{
    return kv_slice_of(ikey.data, ikey.len - KV_TAG_BYTES);
}
static inline uint64_t ikey_tag(kv_slice ikey)
{
    return kv_dec64(ikey.data + ikey.len - KV_TAG_BYTES);
}

/* Appends user_key|tag to b. */
int ikey_append(kv_buf *b, kv_slice user_key, uint64_t seq, unsigned type);

/* The internal-key order described above. Both keys must be >= KV_TAG_BYTES long. */
static inline int ikey_cmp(kv_slice a, kv_slice b)
{
    int c = kv_slice_cmp(ikey_user_key(a), ikey_user_key(b));
    if (c != 0)
        return c;
    uint64_t ta = ikey_tag(a), tb = ikey_tag(b);
    return ta > tb ? -1 : ta < tb ? 1 : 0;
}

/* Decodes a stored value of the given type into expiry and user value (-EUCLEAN if short). */
int kv_value_decode(unsigned type, kv_slice stored, uint64_t *expire_at_ms, kv_slice *user_val);

#endif /* KV_DBFORMAT_H */
