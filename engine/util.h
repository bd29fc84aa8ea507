/*
 * util.h -- small shared pieces of the engine: byte slices and growable buffers, fixed-width
 * and varint coding (little-endian on disk, always), xxhash checksums, clocks, and the
 * per-thread error message behind kv_last_error().
 *
 * Every on-disk integer is little-endian whatever the host; decoders never read past the end
 * of their input and report truncation by returning NULL / a negative value.
 */
#ifndef KV_UTIL_H
#define KV_UTIL_H

#include <stdarg.h>
#include <stddef.h>

#include "kv.h" /* kv_grow */
#include <stdint.h>
#include <string.h>

/* A borrowed run of bytes. */
typedef struct kv_slice {
    const uint8_t *data;
    size_t len;
} kv_slice;

static inline kv_slice kv_slice_of(const void *p, size_t n)
{
    kv_slice s = {(const uint8_t *)p, n};
    return s;
}

/* Bytewise comparison, shorter-is-smaller on a common prefix (memcmp order). */
static inline int kv_slice_cmp(kv_slice a, kv_slice b)
{
    size_t n = a.len < b.len ? a.len : b.len;
    int c = n ? memcmp(a.data, b.data, n) : 0;
    if (c != 0)
        return c;
    return a.len < b.len ? -1 : a.len > b.len ? 1 : 0;
}
int kv_slice_has_prefix(kv_slice s, kv_slice prefix);

/* An owned, growable byte buffer. A zero-initialised kv_buf is empty and valid. */
typedef struct kv_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
} kv_buf;

int kv_buf_reserve(kv_buf *b, size_t extra); /* room for extra more bytes; -ENOMEM */
int kv_buf_append(kv_buf *b, const void *p, size_t n);
int kv_buf_set(kv_buf *b, const void *p, size_t n); /* replace the contents */
void kv_buf_free(kv_buf *b);
static inline kv_slice kv_buf_slice(const kv_buf *b)
{
    return kv_slice_of(b->data, b->len);
}

/* ---- coding: fixed-width little-endian and LEB128 varints ---- */

static inline void kv_enc32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}
static inline void kv_enc64(uint8_t *p, uint64_t v)
{
    kv_enc32(p, (uint32_t)v);
    kv_enc32(p + 4, (uint32_t)(v >> 32));
}
static inline uint32_t kv_dec32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint64_t kv_dec64(const uint8_t *p)
{
    return (uint64_t)kv_dec32(p) | ((uint64_t)kv_dec32(p + 4) << 32);
}

#define KV_VARINT64_MAX 10
/* Writes v at p (which has room for KV_VARINT64_MAX bytes); returns the bytes written. */
size_t kv_enc_varint(uint8_t *p, uint64_t v);
/* Decodes a varint from [p, end). Returns the byte after it, or NULL if truncated/overlong. */
const uint8_t *kv_dec_varint(const uint8_t *p, const uint8_t *end, uint64_t *v);
size_t kv_varint_len(uint64_t v);

int kv_buf_put32(kv_buf *b, uint32_t v);
int kv_buf_put64(kv_buf *b, uint64_t v);
int kv_buf_put_varint(kv_buf *b, uint64_t v);
/* varint length followed by the bytes */
int kv_buf_put_lenbytes(kv_buf *b, const void *p, size_t n);

/* A cursor for decoding; every get_* returns 0 or -EUCLEAN when the input runs out. */
typedef struct kv_reader {
    const uint8_t *p;
    const uint8_t *end;
} kv_reader;
int kv_get_varint(kv_reader *r, uint64_t *v);
int kv_get64(kv_reader *r, uint64_t *v);
int kv_get32(kv_reader *r, uint32_t *v);
int kv_get_lenbytes(kv_reader *r, kv_slice *out);

/* ---- checksums (xxhash) ---- */
/* The checksum of everything written today (log fragments, table version 2 blocks and
 * footers): the low 32 bits of XXH3-64 with the seed, the CPU's fastest variant (AVX2 where
 * present) chosen at run time. */
uint32_t kv_checksum32(const void *p, size_t n, uint32_t seed);
/* XXH32: the checksum of log fragments and table version 1 written by earlier kvfs releases;
 * still verified when read, never written. */
uint32_t kv_checksum32_xxh32(const void *p, size_t n, uint32_t seed);
uint64_t kv_hash64(const void *p, size_t n, uint64_t seed);

/* ---- clocks ---- */
uint64_t kv_now_ms(void);  /* wall clock, ms since the epoch */
uint64_t kv_mono_us(void); /* monotonic, microseconds */

/* ---- notices (kv_set_log) ---- */
void kv_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- errors ---- */
/* Records the message for kv_last_error() in this thread and returns err (negative errno), so
 * that failures read `return kv_error(-EUCLEAN, "%s: bad block checksum at offset %llu", ...)`. */
int kv_error(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void kv_error_clear(void);
/* Whether err (negative errno) says the disk has no room for more bytes: ENOSPC, EDQUOT, or
 * EFBIG (the file may not grow). Such a refused append is undone and is no damage. */
int kv_err_is_no_space(int err);

#define KV_UNUSED(x) ((void)(x))
#define KV_MIN(a, b) ((a) < (b) ? (a) : (b))
#define KV_MAX(a, b) ((a) > (b) ? (a) : (b))

#endif /* KV_UTIL_H */
