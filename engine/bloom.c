/*
 * bloom.c -- bloom filters over user keys, one per SSTable ("full filter", as in RocksDB).
 *
 *   filter := bits[nbytes] | k:u8          nbits = 8 * nbytes, 1 <= k <= 30
 *
 * nbits = max(64, keys * bits_per_key) rounded up to a whole byte; k = bits_per_key * 0.69
 * (ln 2, the optimum) clamped to 1..30. Key h = XXH64(user_key, seed 0); probe i (0 <= i < k)
 * sets bit (h1 + i * h2) mod nbits where h1 = low 32 bits of h, h2 = (high 32 bits of h) | 1,
 * computed in 64-bit arithmetic (double hashing, Kirsch & Mitzenmacher). Bit b lives in byte
 * b / 8 at position b % 8 (LSB first). At 10 bits per key this gives about 1% false positives.
 * A filter over zero keys is 8 zero bytes plus k and answers "absent" for everything.
 */
#include "bloom.h"

#include <errno.h>
#include <stdlib.h>

void bloom_builder_init(bloom_builder *b, int bits_per_key)
{
    memset(b, 0, sizeof *b);
    b->bits_per_key = bits_per_key < 1 ? 1 : bits_per_key > 1000 ? 1000 : bits_per_key;
}

uint64_t bloom_hash(kv_slice ukey)
{
    return kv_hash64(ukey.data, ukey.len, 0);
}

int bloom_builder_add_hash(bloom_builder *b, uint64_t h)
{
    uint64_t *p = kv_grow(b->hashes, &b->cap, b->n + 1, sizeof *p, 1024);
    if (!p)
        return -ENOMEM;
    b->hashes = p;
    b->hashes[b->n++] = h;
    return 0;
}

int bloom_builder_add(bloom_builder *b, kv_slice ukey)
{
    return bloom_builder_add_hash(b, bloom_hash(ukey));
}

static unsigned bloom_k(int bits_per_key)
{
    int k = (int)(bits_per_key * 0.69);
    return (unsigned)(k < 1 ? 1 : k > BLOOM_MAX_K ? BLOOM_MAX_K : k);
}

size_t bloom_builder_bytes(const bloom_builder *b)
{
    uint64_t bits = (uint64_t)b->n * (uint64_t)b->bits_per_key;
    if (bits < 64)
        bits = 64;
    return (size_t)((bits + 7) / 8) + 1;
}

static inline void bloom_probe_init(uint64_t h, uint64_t *h1, uint64_t *h2)
{
    *h1 = h & 0xffffffffu;
    *h2 = (h >> 32) | 1;
}

int bloom_builder_finish(const bloom_builder *b, kv_buf *out)
{
    size_t total = bloom_builder_bytes(b), nbytes = total - 1;
    uint64_t nbits = (uint64_t)nbytes * 8;
    unsigned k = bloom_k(b->bits_per_key);
    int rc = kv_buf_reserve(out, total);
    if (rc)
        return rc;
    uint8_t *bits = out->data + out->len;
    memset(bits, 0, nbytes);
    for (size_t i = 0; i < b->n; i++) {
        uint64_t h1, h2;
        bloom_probe_init(b->hashes[i], &h1, &h2);
        for (unsigned j = 0; j < k; j++) {
            uint64_t pos = (h1 + j * h2) % nbits;
            bits[pos >> 3] |= (uint8_t)(1u << (pos & 7));
        }
    }
    bits[nbytes] = (uint8_t)k;
    out->len += total;
    return 0;
}

void bloom_builder_reset(bloom_builder *b)
{
    b->n = 0;
}

void bloom_builder_free(bloom_builder *b)
{
    free(b->hashes);
    b->hashes = NULL;
    b->n = b->cap = 0;
}

int bloom_check(kv_slice filter)
{
    if (filter.len < 2)
        return -EUCLEAN;
    unsigned k = filter.data[filter.len - 1];
    return k >= 1 && k <= BLOOM_MAX_K ? 0 : -EUCLEAN;
}

int bloom_may_contain_hash(kv_slice filter, uint64_t h)
{
    if (bloom_check(filter) != 0)
        return 1;
    size_t nbytes = filter.len - 1;
    uint64_t nbits = (uint64_t)nbytes * 8;
    unsigned k = filter.data[nbytes];
    uint64_t h1, h2;
    bloom_probe_init(h, &h1, &h2);
    for (unsigned j = 0; j < k; j++) {
        uint64_t pos = (h1 + j * h2) % nbits;
        if (!(filter.data[pos >> 3] & (1u << (pos & 7))))
            return 0;
    }
    return 1;
}

int bloom_may_contain(kv_slice filter, kv_slice ukey)
{
    return bloom_may_contain_hash(filter, bloom_hash(ukey));
}
