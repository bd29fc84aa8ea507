/*
 * bloom.h -- the per-table bloom filter over user keys (format in bloom.c and
 * docs/format.md).
 *
 * The builder collects one 64-bit hash per distinct user key (no per-key allocation beyond an
 * amortised array) and lays out the bit array at finish. Readers query the finished bytes in
 * place; bloom_check validates them once so queries never read out of bounds.
 */
#ifndef KV_BLOOM_H
#define KV_BLOOM_H

#include "util.h"

#define BLOOM_MAX_K 30

typedef struct bloom_builder {
    uint64_t *hashes;
    size_t n, cap;
    int bits_per_key;
} bloom_builder;

void bloom_builder_init(bloom_builder *b, int bits_per_key);
int bloom_builder_add(bloom_builder *b, kv_slice ukey); /* -ENOMEM */
int bloom_builder_add_hash(bloom_builder *b, uint64_t h);
size_t bloom_builder_bytes(const bloom_builder *b); /* size the filter would have now */
/* Appends the filter (bit array | k:u8) to out. */
int bloom_builder_finish(const bloom_builder *b, kv_buf *out);
void bloom_builder_reset(bloom_builder *b);
void bloom_builder_free(bloom_builder *b);

uint64_t bloom_hash(kv_slice ukey);
/* 0 if filter is well-formed, -EUCLEAN otherwise (no message set). */
int bloom_check(kv_slice filter);
/* 1 if ukey may be in the set, 0 if it is certainly not. filter must have passed bloom_check;
 * anything else answers 1. */
int bloom_may_contain(kv_slice filter, kv_slice ukey);
int bloom_may_contain_hash(kv_slice filter, uint64_t h);

#endif /* KV_BLOOM_H */
