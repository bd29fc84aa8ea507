/*
 * util.c -- slices, buffers, coding, checksums, clocks and the per-thread error message.
 *
 * kv_buf growth doubles capacity so appends are amortised O(1); a failed growth leaves the
 * buffer as it was. Varints are LEB128 (7 bits per byte, low bits first, at most 10 bytes).
 */
#include "util.h"

#include "kv.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <xxhash.h>
#if defined(__x86_64__) || defined(__i386__)
#include <xxh_x86dispatch.h> /* libxxhash's run-time choice of SSE2/AVX2/AVX512 for XXH3 */
#endif

int kv_slice_has_prefix(kv_slice s, kv_slice prefix)
{
    return s.len >= prefix.len && (prefix.len == 0 || memcmp(s.data, prefix.data, prefix.len) == 0);
}

void *kv_grow(void *arr, size_t *cap, size_t need, size_t elem, size_t min_cap)
{
    if (need <= *cap && arr)
        return arr;
    size_t nc = *cap ? *cap : (min_cap ? min_cap : 1);
    while (nc < need) {
        if (nc > SIZE_MAX / 2)
            return NULL;
        nc *= 2;
    }
    if (elem && nc > SIZE_MAX / elem)
        return NULL;
    void *p = realloc(arr, nc * elem);
    if (p)
        *cap = nc;
    return p;
}

int kv_buf_reserve(kv_buf *b, size_t extra)
{
    if (b->cap - b->len >= extra)
        return 0;
    if (extra > SIZE_MAX / 2 - b->len)
        return -ENOMEM;
    uint8_t *p = kv_grow(b->data, &b->cap, b->len + extra, 1, 64);
    if (!p)
        return -ENOMEM;
    b->data = p;
    return 0;
}

int kv_buf_append(kv_buf *b, const void *p, size_t n)
{
    int rc = kv_buf_reserve(b, n);
    if (rc)
        return rc;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

int kv_buf_set(kv_buf *b, const void *p, size_t n)
{
    b->len = 0;
    return kv_buf_append(b, p, n);
}

void kv_buf_free(kv_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

size_t kv_enc_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

const uint8_t *kv_dec_varint(const uint8_t *p, const uint8_t *end, uint64_t *v)
{
    uint64_t result = 0;
    for (unsigned shift = 0; shift <= 63 && p < end; shift += 7) {
        uint64_t byte = *p++;
        if (shift == 63 && byte > 1)
            return NULL; /* would overflow 64 bits */
        result |= (byte & 0x7f) << shift;
        if (!(byte & 0x80)) {
            *v = result;
            return p;
        }
    }
    return NULL;
}

size_t kv_varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

int kv_buf_put32(kv_buf *b, uint32_t v)
{
    uint8_t tmp[4];
    kv_enc32(tmp, v);
    return kv_buf_append(b, tmp, 4);
}

int kv_buf_put64(kv_buf *b, uint64_t v)
{
    uint8_t tmp[8];
    kv_enc64(tmp, v);
    return kv_buf_append(b, tmp, 8);
}

int kv_buf_put_varint(kv_buf *b, uint64_t v)
{
    uint8_t tmp[KV_VARINT64_MAX];
    return kv_buf_append(b, tmp, kv_enc_varint(tmp, v));
}

int kv_buf_put_lenbytes(kv_buf *b, const void *p, size_t n)
{
    int rc = kv_buf_put_varint(b, n);
    return rc ? rc : kv_buf_append(b, p, n);
}

int kv_get_varint(kv_reader *r, uint64_t *v)
{
    const uint8_t *p = kv_dec_varint(r->p, r->end, v);
    if (!p)
        return -EUCLEAN;
    r->p = p;
    return 0;
}

int kv_get64(kv_reader *r, uint64_t *v)
{
    if (r->end - r->p < 8)
        return -EUCLEAN;
    *v = kv_dec64(r->p);
    r->p += 8;
    return 0;
}

int kv_get32(kv_reader *r, uint32_t *v)
{
    if (r->end - r->p < 4)
        return -EUCLEAN;
    *v = kv_dec32(r->p);
    r->p += 4;
    return 0;
}

int kv_get_lenbytes(kv_reader *r, kv_slice *out)
{
    uint64_t n;
    int rc = kv_get_varint(r, &n);
    if (rc)
        return rc;
    if ((uint64_t)(r->end - r->p) < n)
        return -EUCLEAN;
    *out = kv_slice_of(r->p, (size_t)n);
    r->p += n;
    return 0;
}

uint32_t kv_checksum32(const void *p, size_t n, uint32_t seed)
{
    return (uint32_t)XXH3_64bits_withSeed(p, n, seed);
}

uint32_t kv_checksum32_xxh32(const void *p, size_t n, uint32_t seed)
{
    return XXH32(p, n, seed);
}

uint64_t kv_hash64(const void *p, size_t n, uint64_t seed)
{
    return XXH64(p, n, seed);
}

uint64_t kv_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t kv_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static kv_log_fn _Atomic kv_log_hook;

void kv_set_log(kv_log_fn fn)
{
    atomic_store(&kv_log_hook, fn);
}

void kv_log(const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    kv_log_fn fn = atomic_load(&kv_log_hook);
    if (fn)
        fn(line);
    else
        fprintf(stderr, "kvfs: %s\n", line);
}

static _Thread_local char kv_error_text[512];

int kv_error(int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(kv_error_text, sizeof kv_error_text, fmt, ap);
    va_end(ap);
    return err;
}

void kv_error_clear(void)
{
    kv_error_text[0] = '\0';
}

int kv_err_is_no_space(int err)
{
    return err == -ENOSPC || err == -EDQUOT || err == -EFBIG;
}

const char *kv_last_error(void)
{
    return kv_error_text;
}
