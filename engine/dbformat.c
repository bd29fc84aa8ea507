/*
 * dbformat.c -- parsing, building and ordering internal keys (layout in dbformat.h).
 */
#include "dbformat.h"

#include <errno.h>

int ikey_parse(kv_slice ikey, kv_parsed_key *out)
{
    if (ikey.len < KV_TAG_BYTES)
        return -EUCLEAN;
    uint64_t tag = ikey_tag(ikey);
    unsigned type = (unsigned)(tag & 0xff);
    if (type > KV_TYPE_VALUE_TTL)
        return -EUCLEAN;
    out->user_key = ikey_user_key(ikey);
    out->seq = tag >> 8;
    out->type = type;
    return 0;
}

int ikey_append(kv_buf *b, kv_slice user_key, uint64_t seq, unsigned type)
{
    int rc = kv_buf_append(b, user_key.data, user_key.len);
    return rc ? rc : kv_buf_put64(b, kv_tag(seq, type));
}

int kv_value_decode(unsigned type, kv_slice stored, uint64_t *expire_at_ms, kv_slice *user_val)
{
    if (type == KV_TYPE_VALUE_TTL) {
        if (stored.len < 8)
            return -EUCLEAN;
        *expire_at_ms = kv_dec64(stored.data);
        *user_val = kv_slice_of(stored.data + 8, stored.len - 8);
        return 0;
    }
    *expire_at_ms = 0;
    *user_val = stored;
    return 0;
}
