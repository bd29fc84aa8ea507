/*
 * sst.c -- SSTable builder and reader (byte-level format: docs/format-sst.md).
 *
 *   file         := data_block* [filter_block] props_block index_block footer
 *   block        := contents | compression:u8 | checksum:u32
 *                   compression 0 = none, 1 = zstd (contents is one zstd frame with its size)
 *                   checksum = kv_checksum32(contents | compression, seed 0): XXH3-64's
 *                   low 32 bits in version 2; XXH32 in version 1 (read only)
 *   handle       := offset:varint | size:varint      (size = bytes of contents, no trailer)
 *   data block   := block.h format, keys = internal keys, values = stored values
 *   index block  := block.h format, one entry per data block, in file order:
 *                   key = that block's last internal key, value = handle
 *   filter block := bloom.c format over every distinct user key (never compressed)
 *   props block  := version:varint(1) | entries:varint | min_seq:varint | max_seq:varint
 *                   | data_blocks:varint | smallest:lenbytes | largest:lenbytes
 *   footer (48)  := handles[32] | checksum:u32 | version:u32 | magic:u64
 *       handles  = filter, props, index handles as six varints, zero-padded to 32 bytes;
 *                  filter handle 0,0 = no filter
 *       checksum = the version's checksum of the 48 footer bytes with the checksum field
 *                  zeroed, seed 0
 *       version  = 2 (written), 1 (read: XXH32 checksums); magic = 0x315453537366766b (the
 *                  bytes "kvfsSST1" on disk)
 *
 * Invariants:
 *  (1) blocks are contiguous: data blocks from offset 0, then the filter (if any), props and
 *      index, then the footer; the reader checks this exact layout from the footer and every
 *      index handle at open, so no later read can leave the data area;
 *  (2) every block is checksum-verified before it is decompressed or parsed;
 *  (3) a builder writes only to path.tmp (through a 256 KiB output buffer) and renames it to
 *      path after fdatasync; on any error the builder is sticky-failed and finish/abandon
 *      remove the temporary file;
 *  (4) a reader is immutable after open; the only shared mutable state is the atomic filter
 *      skip counter and the (thread-safe) block cache. Per-thread scratch (zstd DCtx,
 *      lookup iterators) lives in pthread-specific storage.
 */
#include "sst.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <zstd.h>

#include "block.h"
#include "bloom.h"
#include "dbformat.h"
#include "kv.h"
#include "kvio.h"

#define SST_FOOTER_BYTES 48
#define SST_HANDLES_BYTES 32
#define SST_VERSION 2       /* written: XXH3 checksums (kv_checksum32) */
#define SST_VERSION_XXH32 1 /* read only: tables of earlier releases, XXH32 checksums */
#define SST_PROPS_VERSION 1
#define SST_MAGIC UINT64_C(0x315453537366766b)
#define SST_TRAILER 5
#define SST_COMP_NONE 0
#define SST_COMP_ZSTD 1
#define SST_WRITE_BUF (256u * 1024u)
#define SST_MAX_BLOCK (256u * 1024u * 1024u) /* largest uncompressed block a reader accepts */

typedef struct sst_handle {
    uint64_t off, size;
} sst_handle;

static int sst_handle_decode(kv_slice v, sst_handle *h)
{
    kv_reader rd = {v.data, v.data + v.len};
    if (kv_get_varint(&rd, &h->off) || kv_get_varint(&rd, &h->size) || rd.p != rd.end)
        return -EUCLEAN;
    return 0;
}

static size_t sst_handle_encode(uint8_t *p, sst_handle h)
{
    size_t n = kv_enc_varint(p, h.off);
    return n + kv_enc_varint(p + n, h.size);
}

/* ================================================================ builder ==== */

struct sst_builder {
    char *path, *tmp_path;
    int fd;
    int created; /* tmp_path exists */
    sst_build_opts o;
    int status; /* sticky */
    uint64_t flushed;
    kvio_writeback wb; /* background writeback as the table grows */
    kv_buf out;        /* output not yet written */
    kv_buf cbuf;       /* compression output */
    blk_builder data, index;
    bloom_builder bloom;
    kv_buf last_key, smallest;
    ZSTD_CCtx *cctx;
    unsigned incompressible; /* blocks in a row that did not compress (see sst_should_try) */
    unsigned skipped;        /* blocks stored raw without trying since the last attempt */
    uint64_t entries, min_seq, max_seq, data_blocks;
};

/* Incompressible data (file contents that are already compressed or encrypted) would cost a
 * failed zstd pass per block. After SST_GIVE_UP blocks in a row fail to compress, only every
 * SST_RETRY_EVERY-th block is tried, until one compresses again. */
#define SST_GIVE_UP 8
#define SST_RETRY_EVERY 32

static int sst_should_try(sst_builder *b)
{
    if (b->incompressible < SST_GIVE_UP)
        return 1;
    if (++b->skipped < SST_RETRY_EVERY)
        return 0;
    b->skipped = 0;
    return 1;
}

static int sst_flush_out(sst_builder *b)
{
    if (b->out.len == 0)
        return 0;
    int rc = kvio_write_full(b->fd, b->tmp_path, b->out.data, b->out.len);
    if (rc)
        return rc;
    b->flushed += b->out.len;
    b->out.len = 0;
    return kvio_writeback_note(&b->wb, b->fd, b->tmp_path, b->flushed);
}

/* Appends contents as one physical block (compressing if allowed and worth it). */
static int sst_write_block(sst_builder *b, kv_slice contents, int compress, sst_handle *h)
{
    const uint8_t *src = contents.data;
    size_t n = contents.len;
    uint8_t type = SST_COMP_NONE;
    int rc;
    if (compress && b->cctx && n > 0 && sst_should_try(b)) {
        size_t bound = ZSTD_compressBound(n);
        if ((rc = kv_buf_reserve(&b->cbuf, bound)) != 0)
            return rc;
        size_t c = ZSTD_compressCCtx(b->cctx, b->cbuf.data, bound, src, n, b->o.compression_level);
        if (!ZSTD_isError(c) && c <= n - n / 8) {
            src = b->cbuf.data;
            n = c;
            type = SST_COMP_ZSTD;
            b->incompressible = 0;
        } else {
            b->incompressible++;
        }
    }
    if ((rc = kv_buf_reserve(&b->out, n + SST_TRAILER)) != 0)
        return rc;
    h->off = b->flushed + b->out.len;
    h->size = n;
    uint8_t *p = b->out.data + b->out.len;
    if (n)
        memcpy(p, src, n);
    p[n] = type;
    kv_enc32(p + n + 1, kv_checksum32(p, n + 1, 0));
    b->out.len += n + SST_TRAILER;
    return b->out.len >= SST_WRITE_BUF ? sst_flush_out(b) : 0;
}

static int sst_flush_data_block(sst_builder *b)
{
    kv_slice contents;
    sst_handle h;
    uint8_t hv[2 * KV_VARINT64_MAX];
    int rc = blk_builder_finish(&b->data, &contents);
    if (rc == 0)
        rc = sst_write_block(b, contents, 1, &h);
    if (rc == 0)
        rc = blk_builder_add(&b->index, kv_buf_slice(&b->last_key),
                             kv_slice_of(hv, sst_handle_encode(hv, h)));
    blk_builder_reset(&b->data);
    b->data_blocks++;
    return rc;
}

int sst_builder_open(const char *path, const sst_build_opts *o, sst_builder **out)
{
    int rc = -ENOMEM;
    sst_builder *b = calloc(1, sizeof *b);
    if (!b)
        return kv_error(-ENOMEM, "%s: out of memory opening an SSTable builder", path);
    b->fd = -1;
    b->o = *o;
    if (b->o.block_bytes == 0)
        b->o.block_bytes = 4096;
    size_t plen = strlen(path);
    b->path = malloc(plen + 1);
    b->tmp_path = malloc(plen + 5);
    if (!b->path || !b->tmp_path)
        goto fail;
    memcpy(b->path, path, plen + 1);
    memcpy(b->tmp_path, path, plen);
    memcpy(b->tmp_path + plen, ".tmp", 5);
    blk_builder_init(&b->data);
    blk_builder_init(&b->index);
    bloom_builder_init(&b->bloom, o->bloom_bits_per_key);
    if (o->compression_level != 0 && !(b->cctx = ZSTD_createCCtx()))
        goto fail;
    if (kv_buf_reserve(&b->out, SST_WRITE_BUF + 64 * 1024) != 0)
        goto fail;
    b->fd = kvio_open(b->tmp_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (b->fd < 0) {
        rc = b->fd;
        b->fd = -1;
        goto fail;
    }
    b->created = 1;
    *out = b;
    return 0;
fail:
    if (rc == -ENOMEM)
        kv_error(rc, "%s: out of memory opening an SSTable builder", path);
    sst_builder_abandon(b);
    return rc;
}

static int sst_builder_fail(sst_builder *b, int rc)
{
    if (b->status == 0)
        b->status = rc;
    return rc;
}

int sst_builder_add(sst_builder *b, kv_slice ikey, kv_slice value)
{
    kv_parsed_key pk;
    int rc;
    if (b->status)
        return b->status;
    if (ikey_parse(ikey, &pk) != 0)
        return kv_error(-EINVAL, "%s: sst_builder_add: malformed internal key", b->tmp_path);
    if (b->entries > 0 && ikey_cmp(ikey, kv_buf_slice(&b->last_key)) <= 0)
        return kv_error(-EINVAL, "%s: sst_builder_add: keys out of order", b->tmp_path);
    if (b->o.bloom_bits_per_key > 0 &&
        (b->entries == 0 ||
         kv_slice_cmp(pk.user_key, ikey_user_key(kv_buf_slice(&b->last_key))) != 0) &&
        (rc = bloom_builder_add(&b->bloom, pk.user_key)) != 0)
        goto fail;
    if (b->entries == 0) {
        if ((rc = kv_buf_set(&b->smallest, ikey.data, ikey.len)) != 0)
            goto fail;
        b->min_seq = b->max_seq = pk.seq;
    }
    b->min_seq = KV_MIN(b->min_seq, pk.seq);
    b->max_seq = KV_MAX(b->max_seq, pk.seq);
    if ((rc = blk_builder_add(&b->data, ikey, value)) != 0 ||
        (rc = kv_buf_set(&b->last_key, ikey.data, ikey.len)) != 0)
        goto fail;
    b->entries++;
    if (blk_builder_size(&b->data) >= b->o.block_bytes && (rc = sst_flush_data_block(b)) != 0)
        goto fail;
    return 0;
fail:
    if (rc == -ENOMEM || rc == -EFBIG)
        kv_error(rc, "%s: cannot add entry %llu to the table", b->tmp_path,
                 (unsigned long long)b->entries);
    return sst_builder_fail(b, rc);
}

uint64_t sst_builder_entries(const sst_builder *b)
{
    return b->entries;
}

uint64_t sst_builder_file_bytes(const sst_builder *b)
{
    return b->flushed + b->out.len + (blk_builder_empty(&b->data) ? 0 : blk_builder_size(&b->data));
}

static int sst_put_props(sst_builder *b, kv_buf *p)
{
    int rc = 0;
    if ((rc = kv_buf_put_varint(p, SST_PROPS_VERSION)) || (rc = kv_buf_put_varint(p, b->entries)) ||
        (rc = kv_buf_put_varint(p, b->min_seq)) || (rc = kv_buf_put_varint(p, b->max_seq)) ||
        (rc = kv_buf_put_varint(p, b->data_blocks)) ||
        (rc = kv_buf_put_lenbytes(p, b->smallest.data, b->smallest.len)) ||
        (rc = kv_buf_put_lenbytes(p, b->last_key.data, b->last_key.len)))
        return rc;
    return 0;
}

/* Encodes the footer for the three handles; -EFBIG if they do not fit in 32 bytes. */
static int sst_footer_encode(uint8_t f[SST_FOOTER_BYTES], const sst_handle hs[3])
{
    uint8_t tmp[6 * KV_VARINT64_MAX];
    size_t n = 0;
    for (int i = 0; i < 3; i++)
        n += sst_handle_encode(tmp + n, hs[i]);
    if (n > SST_HANDLES_BYTES)
        return -EFBIG;
    memset(f, 0, SST_FOOTER_BYTES);
    memcpy(f, tmp, n);
    kv_enc32(f + 36, SST_VERSION);
    kv_enc64(f + 40, SST_MAGIC);
    kv_enc32(f + 32, kv_checksum32(f, SST_FOOTER_BYTES, 0));
    return 0;
}

static int sst_write_meta(sst_builder *b)
{
    sst_handle hs[3] = {{0, 0}, {0, 0}, {0, 0}}; /* filter, props, index */
    kv_buf tmp = {0};
    kv_slice contents;
    uint8_t footer[SST_FOOTER_BYTES];
    int rc = 0;
    if (b->o.bloom_bits_per_key > 0) {
        if ((rc = bloom_builder_finish(&b->bloom, &tmp)) != 0 ||
            (rc = sst_write_block(b, kv_buf_slice(&tmp), 0, &hs[0])) != 0)
            goto out;
        tmp.len = 0;
    }
    if ((rc = sst_put_props(b, &tmp)) != 0 ||
        (rc = sst_write_block(b, kv_buf_slice(&tmp), 0, &hs[1])) != 0 ||
        (rc = blk_builder_finish(&b->index, &contents)) != 0 ||
        (rc = sst_write_block(b, contents, 1, &hs[2])) != 0)
        goto out;
    if ((rc = sst_footer_encode(footer, hs)) != 0) {
        rc = kv_error(rc, "%s: table too large for the footer", b->tmp_path);
        goto out;
    }
    rc = kv_buf_append(&b->out, footer, sizeof footer);
out:
    if (rc == -ENOMEM)
        kv_error(rc, "%s: out of memory finishing the table", b->tmp_path);
    kv_buf_free(&tmp);
    return rc;
}

static void sst_builder_free(sst_builder *b)
{
    free(b->path);
    free(b->tmp_path);
    kv_buf_free(&b->out);
    kv_buf_free(&b->cbuf);
    blk_builder_free(&b->data);
    blk_builder_free(&b->index);
    bloom_builder_free(&b->bloom);
    kv_buf_free(&b->last_key);
    kv_buf_free(&b->smallest);
    ZSTD_freeCCtx(b->cctx);
    free(b);
}

int sst_builder_finish(sst_builder *b, sst_props *props)
{
    int rc = b->status;
    if (rc == 0 && !blk_builder_empty(&b->data))
        rc = sst_flush_data_block(b);
    if (rc == 0)
        rc = sst_write_meta(b);
    if (rc == 0)
        rc = sst_flush_out(b);
    if (rc == 0)
        rc = kvio_fsync(b->fd, b->tmp_path);
    if (rc == 0) {
        rc = kvio_close(b->fd);
        b->fd = -1;
    }
    if (rc == 0)
        rc = kvio_rename(b->tmp_path, b->path);
    if (rc != 0) {
        sst_builder_abandon(b);
        return rc;
    }
    memset(props, 0, sizeof *props);
    props->entries = b->entries;
    props->file_bytes = b->flushed;
    props->min_seq = b->min_seq;
    props->max_seq = b->max_seq;
    props->smallest = b->smallest;
    props->largest = b->entries ? b->last_key : (kv_buf){0};
    memset(&b->smallest, 0, sizeof b->smallest);
    if (b->entries)
        memset(&b->last_key, 0, sizeof b->last_key);
    sst_builder_free(b);
    return 0;
}

void sst_builder_abandon(sst_builder *b)
{
    if (!b)
        return;
    if (b->fd >= 0) {
        kvio_close(b->fd);
        b->fd = -1;
    }
    if (b->created) {
        /* keep the message of the failure that made the caller give up */
        char msg[512];
        snprintf(msg, sizeof msg, "%s", kv_last_error());
        kvio_unlink(b->tmp_path);
        kv_error(0, "%s", msg);
    }
    sst_builder_free(b);
}

void sst_props_free(sst_props *p)
{
    kv_buf_free(&p->smallest);
    kv_buf_free(&p->largest);
}

/* ==================================================== per-thread scratch ==== */

typedef struct sst_tls {
    ZSTD_DCtx *dctx;
    kv_buf target; /* seek key of sst_reader_get */
    blk_iter ix, dx;
} sst_tls;

static pthread_key_t sst_tls_key;
static pthread_once_t sst_tls_once = PTHREAD_ONCE_INIT;
static int sst_tls_ready;

static void sst_tls_free(void *p)
{
    sst_tls *t = p;
    ZSTD_freeDCtx(t->dctx);
    kv_buf_free(&t->target);
    blk_iter_release(&t->ix);
    blk_iter_release(&t->dx);
    free(t);
}

static void sst_tls_init(void)
{
    sst_tls_ready = pthread_key_create(&sst_tls_key, sst_tls_free) == 0;
}

static sst_tls *sst_tls_get(void)
{
    pthread_once(&sst_tls_once, sst_tls_init);
    if (!sst_tls_ready)
        return NULL;
    sst_tls *t = pthread_getspecific(sst_tls_key);
    if (t)
        return t;
    if (!(t = calloc(1, sizeof *t)))
        return NULL;
    blk_iter_init(&t->ix);
    blk_iter_init(&t->dx);
    if (pthread_setspecific(sst_tls_key, t) != 0) {
        free(t);
        return NULL;
    }
    return t;
}

/* ================================================================= reader ==== */

/* A block's uncompressed contents in one allocation (the block cache's value type). */
typedef struct sst_block {
    blk b;
    size_t size;
    uint8_t data[];
} sst_block;

static void sst_block_free(void *p)
{
    free(p);
}

struct sst_reader {
    char *path;
    int fd;
    uint64_t file_number, file_size;
    uint64_t data_end; /* data blocks occupy [0, data_end) */
    uint64_t index_off;
    cache *bc;
    sst_props props;
    uint64_t data_blocks;
    sst_block *index;
    sst_block *filter; /* NULL: no filter */
    atomic_uint_fast64_t filter_skips;
    uint32_t (*checksum)(const void *p, size_t n, uint32_t seed); /* by the footer's version */
};

/* A data block in use: from the cache (h) or owned. */
typedef struct sst_blkref {
    sst_block *blk;
    cache_handle *h;
} sst_blkref;

static int sst_corrupt(const sst_reader *r, uint64_t off, const char *what)
{
    return kv_error(-EUCLEAN, "%s: %s at offset %llu", r->path, what, (unsigned long long)off);
}

static int sst_decompress(sst_reader *r, sst_handle h, const uint8_t *src, sst_block **out)
{
    sst_tls *t = sst_tls_get();
    if (!t || (!t->dctx && !(t->dctx = ZSTD_createDCtx())))
        return kv_error(-ENOMEM, "%s: out of memory for a zstd context", r->path);
    unsigned long long n = ZSTD_getFrameContentSize(src, (size_t)h.size);
    if (n == ZSTD_CONTENTSIZE_ERROR || n == ZSTD_CONTENTSIZE_UNKNOWN || n > SST_MAX_BLOCK)
        return sst_corrupt(r, h.off, "bad zstd frame header in block");
    sst_block *blk = malloc(sizeof *blk + (size_t)n + 1);
    if (!blk)
        return kv_error(-ENOMEM, "%s: out of memory reading block at offset %llu", r->path,
                        (unsigned long long)h.off);
    size_t got = ZSTD_decompressDCtx(t->dctx, blk->data, (size_t)n, src, (size_t)h.size);
    if (ZSTD_isError(got) || got != n) {
        free(blk);
        return sst_corrupt(r, h.off, "bad zstd data in block");
    }
    blk->size = (size_t)n;
    *out = blk;
    return 0;
}

/* Reads the block at h, which must end by limit; verifies and decompresses it. OUT: *out
 * (malloc'd, b not parsed). The bytes are read straight into the block that is kept, so an
 * uncompressed block (the young levels' default) is never copied; a compressed one is
 * decompressed into a block of its own. */
static int sst_read_raw(sst_reader *r, sst_handle h, uint64_t limit, sst_block **out)
{
    size_t got;
    int rc;
    if (h.size > SST_MAX_BLOCK || h.off > limit || limit - h.off < h.size + SST_TRAILER)
        return sst_corrupt(r, h.off, "block handle out of range");
    size_t n = (size_t)h.size + SST_TRAILER;
    sst_block *raw = malloc(sizeof *raw + n);
    if (!raw)
        return kv_error(-ENOMEM, "%s: out of memory reading block at offset %llu", r->path,
                        (unsigned long long)h.off);
    uint8_t *p = raw->data;
    if ((rc = kvio_pread_full(r->fd, r->path, p, n, h.off, &got)) != 0)
        goto fail;
    if (got != n) {
        rc = sst_corrupt(r, h.off, "truncated block");
        goto fail;
    }
    if (r->checksum(p, (size_t)h.size + 1, 0) != kv_dec32(p + h.size + 1)) {
        rc = sst_corrupt(r, h.off, "bad block checksum");
        goto fail;
    }
    if (p[h.size] == SST_COMP_NONE) {
        raw->size = (size_t)h.size;
        *out = raw;
        return 0;
    }
    if (p[h.size] == SST_COMP_ZSTD)
        rc = sst_decompress(r, h, p, out);
    else
        rc = sst_corrupt(r, h.off, "unknown compression type in block");
fail:
    free(raw);
    return rc;
}

/* sst_read_raw + blk_parse: a block in block.h format. */
static int sst_read_blk(sst_reader *r, sst_handle h, uint64_t limit, sst_block **out)
{
    sst_block *blk = NULL;
    int rc = sst_read_raw(r, h, limit, &blk);
    if (rc == 0 && (rc = blk_parse(&blk->b, blk->data, blk->size, r->path, h.off)) != 0) {
        free(blk);
        blk = NULL;
    }
    *out = blk;
    return rc;
}

/* Finds block h in the cache or reads it; fill = 0 (compaction's scans) leaves a block read
 * from disk out of the cache, so one pass over cold data does not evict the hot set. */
static int sst_get_block(sst_reader *r, sst_handle h, sst_blkref *ref, int fill)
{
    sst_block *blk;
    ref->h = NULL;
    ref->blk = NULL;
    if (r->bc && (ref->h = cache_lookup(r->bc, r->file_number, h.off)) != NULL) {
        ref->blk = cache_value(ref->h);
        return 0;
    }
    int rc = sst_read_blk(r, h, r->data_end, &blk);
    if (rc)
        return rc;
    if (r->bc && fill) {
        ref->h = cache_insert(r->bc, r->file_number, h.off, blk, sizeof *blk + blk->size,
                              sst_block_free);
        if (!ref->h)
            return kv_error(-ENOMEM, "%s: out of memory caching a block", r->path);
    }
    ref->blk = blk;
    return 0;
}

static void sst_put_block(sst_reader *r, sst_blkref *ref)
{
    if (ref->h)
        cache_release(r->bc, ref->h);
    else
        free(ref->blk);
    ref->h = NULL;
    ref->blk = NULL;
}

static int sst_parse_props(sst_reader *r, const sst_block *pb, uint64_t off)
{
    kv_reader rd = {pb->data, pb->data + pb->size};
    uint64_t version;
    kv_slice sm, lg;
    sst_props *p = &r->props;
    if (kv_get_varint(&rd, &version) || kv_get_varint(&rd, &p->entries) ||
        kv_get_varint(&rd, &p->min_seq) || kv_get_varint(&rd, &p->max_seq) ||
        kv_get_varint(&rd, &r->data_blocks) || kv_get_lenbytes(&rd, &sm) ||
        kv_get_lenbytes(&rd, &lg) || rd.p != rd.end)
        return sst_corrupt(r, off, "malformed properties block");
    if (version != SST_PROPS_VERSION)
        return sst_corrupt(r, off, "unsupported table version in properties block");
    if (p->entries > 0 && (sm.len < KV_TAG_BYTES || lg.len < KV_TAG_BYTES ||
                           p->min_seq > p->max_seq || ikey_cmp(sm, lg) > 0))
        return sst_corrupt(r, off, "inconsistent properties block");
    if (kv_buf_set(&p->smallest, sm.data, sm.len) || kv_buf_set(&p->largest, lg.data, lg.len))
        return kv_error(-ENOMEM, "%s: out of memory reading properties", r->path);
    return 0;
}

/* Checks that the index lists contiguous data blocks covering [0, data_end) exactly. */
static int sst_check_index(sst_reader *r)
{
    blk_iter it;
    uint64_t expect = 0, n = 0;
    sst_handle h;
    int rc = 0;
    blk_iter_init(&it);
    blk_iter_reset(&it, &r->index->b, r->path, r->index_off);
    for (blk_iter_seek_first(&it); blk_iter_valid(&it); blk_iter_next(&it)) {
        if (sst_handle_decode(blk_iter_value(&it), &h) != 0 || h.off != expect ||
            h.size > SST_MAX_BLOCK) {
            rc = sst_corrupt(r, r->index_off, "bad data block handle in index block");
            goto out;
        }
        expect = h.off + h.size + SST_TRAILER;
        n++;
    }
    if ((rc = blk_iter_status(&it)) != 0)
        goto out;
    if (expect != r->data_end || n != r->data_blocks || (n == 0) != (r->props.entries == 0))
        rc = sst_corrupt(r, r->index_off, "index block does not match the data area");
out:
    blk_iter_release(&it);
    return rc;
}

/* 1 if the block at h (with its trailer) ends exactly at end. */
static int sst_ends_at(sst_handle h, uint64_t end)
{
    return h.size <= SST_MAX_BLOCK && end >= h.size + SST_TRAILER &&
           h.off == end - h.size - SST_TRAILER;
}

/* Reads and checks the footer. OUT: hs = filter, props, index handles. */
static int sst_read_footer(sst_reader *r, sst_handle hs[3])
{
    uint8_t f[SST_FOOTER_BYTES];
    size_t got;
    uint64_t foff = r->file_size - SST_FOOTER_BYTES;
    int rc = kvio_pread_full(r->fd, r->path, f, sizeof f, foff, &got);
    if (rc)
        return rc;
    if (got != sizeof f)
        return sst_corrupt(r, foff, "truncated footer");
    if (kv_dec64(f + 40) != SST_MAGIC)
        return sst_corrupt(r, foff + 40, "not an SSTable (bad magic)");
    uint32_t version = kv_dec32(f + 36);
    if (version == SST_VERSION)
        r->checksum = kv_checksum32;
    else if (version == SST_VERSION_XXH32)
        r->checksum = kv_checksum32_xxh32;
    else
        return sst_corrupt(r, foff + 36, "unsupported SSTable version");
    uint32_t sum = kv_dec32(f + 32);
    memset(f + 32, 0, 4);
    if (r->checksum(f, sizeof f, 0) != sum)
        return sst_corrupt(r, foff, "bad footer checksum");
    kv_reader rd = {f, f + SST_HANDLES_BYTES};
    for (int i = 0; i < 3; i++)
        if (kv_get_varint(&rd, &hs[i].off) || kv_get_varint(&rd, &hs[i].size))
            return sst_corrupt(r, foff, "malformed block handles in footer");
    while (rd.p < rd.end)
        if (*rd.p++ != 0)
            return sst_corrupt(r, foff, "nonzero footer padding");
    /* exact layout: [data][filter][props][index][footer] */
    int ok = sst_ends_at(hs[2], foff) && sst_ends_at(hs[1], hs[2].off);
    if (ok && (hs[0].size || hs[0].off))
        ok = hs[0].size > 0 && sst_ends_at(hs[0], hs[1].off);
    if (!ok)
        return sst_corrupt(r, foff, "block handles in footer do not match the file layout");
    r->data_end = (hs[0].size ? hs[0].off : hs[1].off);
    r->index_off = hs[2].off;
    return 0;
}

static int sst_load_meta(sst_reader *r)
{
    sst_handle hs[3];
    sst_block *pb = NULL;
    int rc = sst_read_footer(r, hs);
    if (rc)
        return rc;
    if ((rc = sst_read_raw(r, hs[1], hs[2].off, &pb)) != 0 ||
        (rc = sst_parse_props(r, pb, hs[1].off)) != 0)
        goto out;
    if ((rc = sst_read_blk(r, hs[2], r->file_size - SST_FOOTER_BYTES, &r->index)) != 0 ||
        (rc = sst_check_index(r)) != 0)
        goto out;
    if (hs[0].size) {
        if ((rc = sst_read_raw(r, hs[0], hs[1].off, &r->filter)) != 0)
            goto out;
        if (bloom_check(kv_slice_of(r->filter->data, r->filter->size)) != 0)
            rc = sst_corrupt(r, hs[0].off, "malformed filter block");
    }
out:
    free(pb);
    return rc;
}

int sst_reader_open(const char *path, uint64_t file_number, cache *bc, sst_reader **out)
{
    int rc;
    sst_reader *r = calloc(1, sizeof *r);
    size_t plen = strlen(path);
    if (!r || !(r->path = malloc(plen + 1))) {
        free(r);
        return kv_error(-ENOMEM, "%s: out of memory opening table", path);
    }
    memcpy(r->path, path, plen + 1);
    r->file_number = file_number;
    r->bc = bc;
    atomic_init(&r->filter_skips, 0);
    r->fd = kvio_open(path, O_RDONLY, 0);
    if (r->fd < 0) {
        rc = r->fd;
        goto fail;
    }
    if ((rc = kvio_file_size(r->fd, path, &r->file_size)) != 0)
        goto fail;
    if (r->file_size < SST_FOOTER_BYTES) {
        rc = kv_error(-EUCLEAN, "%s: file too short (%llu bytes) to be an SSTable at offset 0",
                      path, (unsigned long long)r->file_size);
        goto fail;
    }
    if ((rc = sst_load_meta(r)) != 0)
        goto fail;
    r->props.file_bytes = r->file_size;
    *out = r;
    return 0;
fail:
    sst_reader_close(r);
    return rc;
}

void sst_reader_close(sst_reader *r)
{
    if (!r)
        return;
    if (r->fd >= 0)
        kvio_close(r->fd);
    sst_props_free(&r->props);
    free(r->index);
    free(r->filter);
    free(r->path);
    free(r);
}

const sst_props *sst_reader_props(const sst_reader *r)
{
    return &r->props;
}

int sst_reader_may_contain(const sst_reader *r, kv_slice ukey)
{
    if (!r->filter)
        return 1;
    return bloom_may_contain(kv_slice_of(r->filter->data, r->filter->size), ukey);
}

uint64_t sst_reader_filter_skips(const sst_reader *r)
{
    return atomic_load(&r->filter_skips);
}

/* Positions t->dx at the first entry >= target, walking into later blocks if a block has
 * none. Returns 1 positioned (ref holds the block), 0 past the end, or negative errno. */
static int sst_get_position(sst_reader *r, sst_tls *t, kv_slice target, sst_blkref *ref)
{
    sst_handle h;
    int rc;
    blk_iter_reset(&t->ix, &r->index->b, r->path, r->index_off);
    for (blk_iter_seek(&t->ix, target); blk_iter_valid(&t->ix); blk_iter_next(&t->ix)) {
        if (sst_handle_decode(blk_iter_value(&t->ix), &h) != 0)
            return sst_corrupt(r, r->index_off, "bad data block handle in index block");
        if ((rc = sst_get_block(r, h, ref, 1)) != 0)
            return rc;
        blk_iter_reset(&t->dx, &ref->blk->b, r->path, h.off);
        blk_iter_seek(&t->dx, target);
        if (blk_iter_valid(&t->dx))
            return 1;
        rc = blk_iter_status(&t->dx);
        sst_put_block(r, ref);
        if (rc)
            return rc;
    }
    return blk_iter_status(&t->ix);
}

int sst_reader_get(sst_reader *r, kv_slice ukey, uint64_t max_seq, uint64_t *seq, unsigned *type,
                   kv_buf *value)
{
    sst_blkref ref = {NULL, NULL};
    kv_parsed_key pk;
    sst_tls *t;
    int rc;
    if (r->filter && !bloom_may_contain(kv_slice_of(r->filter->data, r->filter->size), ukey)) {
        atomic_fetch_add_explicit(&r->filter_skips, 1, memory_order_relaxed);
        return 0;
    }
    if (r->props.entries == 0)
        return 0;
    if (!(t = sst_tls_get()))
        return kv_error(-ENOMEM, "%s: out of memory for a lookup", r->path);
    t->target.len = 0;
    if (ikey_append(&t->target, ukey, KV_MIN(max_seq, KV_MAX_SEQ), KV_TYPE_SEEK) != 0)
        return kv_error(-ENOMEM, "%s: out of memory for a lookup", r->path);
    rc = sst_get_position(r, t, kv_buf_slice(&t->target), &ref);
    if (rc <= 0)
        goto out;
    if (ikey_parse(blk_iter_key(&t->dx), &pk) != 0) {
        rc = sst_corrupt(r, t->dx.off, "bad internal key in block");
        goto out;
    }
    if (kv_slice_cmp(pk.user_key, ukey) != 0) {
        rc = 0;
        goto out;
    }
    kv_slice v = blk_iter_value(&t->dx);
    if (kv_buf_set(value, v.data, v.len) != 0) {
        rc = kv_error(-ENOMEM, "%s: out of memory copying a value", r->path);
        goto out;
    }
    *seq = pk.seq;
    *type = pk.type;
    rc = 1;
out:
    if (ref.blk)
        sst_put_block(r, &ref);
    return rc;
}

/* ============================================================== iterator ==== */

typedef struct sst_iter {
    iter base;
    sst_reader *r;
    blk_iter ix, dx;
    sst_blkref ref; /* the block dx walks (have_block) */
    uint64_t block_off;
    int have_block;
    int fill_cache;
    int status;
} sst_iter;

static void si_drop(sst_iter *it)
{
    if (it->have_block)
        sst_put_block(it->r, &it->ref);
    it->have_block = 0;
}

/* Loads the block the index iterator points at into dx (unpositioned). */
static void si_load(sst_iter *it)
{
    sst_handle h;
    int rc;
    if (!blk_iter_valid(&it->ix)) {
        si_drop(it);
        it->status = blk_iter_status(&it->ix);
        return;
    }
    if (sst_handle_decode(blk_iter_value(&it->ix), &h) != 0) {
        si_drop(it);
        it->status = sst_corrupt(it->r, it->r->index_off, "bad data block handle in index block");
        return;
    }
    if (it->have_block && it->block_off == h.off) {
        blk_iter_reset(&it->dx, &it->ref.blk->b, it->r->path, h.off);
        return;
    }
    si_drop(it);
    if ((rc = sst_get_block(it->r, h, &it->ref, it->fill_cache)) != 0) {
        it->status = rc;
        return;
    }
    it->have_block = 1;
    it->block_off = h.off;
    blk_iter_reset(&it->dx, &it->ref.blk->b, it->r->path, h.off);
}

static void si_skip_forward(sst_iter *it)
{
    while (it->status == 0 && it->have_block && !blk_iter_valid(&it->dx)) {
        if ((it->status = blk_iter_status(&it->dx)) != 0)
            break;
        blk_iter_next(&it->ix);
        si_load(it);
        if (it->have_block)
            blk_iter_seek_first(&it->dx);
    }
    if (it->status)
        si_drop(it);
}

static void si_skip_backward(sst_iter *it)
{
    while (it->status == 0 && it->have_block && !blk_iter_valid(&it->dx)) {
        if ((it->status = blk_iter_status(&it->dx)) != 0)
            break;
        blk_iter_prev(&it->ix);
        si_load(it);
        if (it->have_block)
            blk_iter_seek_last(&it->dx);
    }
    if (it->status)
        si_drop(it);
}

static int si_valid(const iter *i)
{
    const sst_iter *it = (const sst_iter *)i;
    return it->status == 0 && it->have_block && blk_iter_valid(&it->dx);
}

static void si_seek_first(iter *i)
{
    sst_iter *it = (sst_iter *)i;
    if (it->status)
        return;
    blk_iter_seek_first(&it->ix);
    si_load(it);
    if (it->have_block)
        blk_iter_seek_first(&it->dx);
    si_skip_forward(it);
}

static void si_seek_last(iter *i)
{
    sst_iter *it = (sst_iter *)i;
    if (it->status)
        return;
    blk_iter_seek_last(&it->ix);
    si_load(it);
    if (it->have_block)
        blk_iter_seek_last(&it->dx);
    si_skip_backward(it);
}

static void si_seek(iter *i, kv_slice target)
{
    sst_iter *it = (sst_iter *)i;
    if (it->status)
        return;
    if (target.len < KV_TAG_BYTES) {
        si_drop(it);
        it->status = kv_error(-EINVAL, "%s: seek target is not an internal key", it->r->path);
        return;
    }
    blk_iter_seek(&it->ix, target);
    si_load(it);
    if (it->have_block)
        blk_iter_seek(&it->dx, target);
    si_skip_forward(it);
}

static void si_next(iter *i)
{
    sst_iter *it = (sst_iter *)i;
    if (!si_valid(i))
        return;
    blk_iter_next(&it->dx);
    si_skip_forward(it);
}

static void si_prev(iter *i)
{
    sst_iter *it = (sst_iter *)i;
    if (!si_valid(i))
        return;
    blk_iter_prev(&it->dx);
    si_skip_backward(it);
}

static kv_slice si_key(const iter *i)
{
    return blk_iter_key(&((const sst_iter *)i)->dx);
}

static kv_slice si_value(const iter *i)
{
    return blk_iter_value(&((const sst_iter *)i)->dx);
}

static int si_status(const iter *i)
{
    const sst_iter *it = (const sst_iter *)i;
    return it->status ? it->status : blk_iter_status(&it->ix);
}

static void si_destroy(iter *i)
{
    sst_iter *it = (sst_iter *)i;
    si_drop(it);
    blk_iter_release(&it->ix);
    blk_iter_release(&it->dx);
    free(it);
}

static const iter_ops sst_iter_ops = {
    si_valid, si_seek_first, si_seek_last, si_seek,   si_next,
    si_prev,  si_key,        si_value,     si_status, si_destroy,
};

static iter *sst_iter_new(sst_reader *r, int fill_cache)
{
    sst_iter *it = calloc(1, sizeof *it);
    if (!it) {
        kv_error(-ENOMEM, "%s: out of memory for an iterator", r->path);
        return iter_new_error(-ENOMEM);
    }
    it->base.ops = &sst_iter_ops;
    it->r = r;
    it->fill_cache = fill_cache;
    blk_iter_init(&it->ix);
    blk_iter_init(&it->dx);
    blk_iter_reset(&it->ix, &r->index->b, r->path, r->index_off);
    return &it->base;
}

iter *sst_reader_iter(sst_reader *r)
{
    return sst_iter_new(r, 1);
}

iter *sst_reader_scan_iter(sst_reader *r)
{
    return sst_iter_new(r, 0);
}

/* ================================================================ verify ==== */

typedef struct sst_vctx {
    const char *path;
    void (*report)(void *arg, const char *line);
    void *arg;
    int problems;
} sst_vctx;

__attribute__((format(printf, 2, 3))) static void sst_vreport(sst_vctx *v, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    v->problems++;
    if (v->report)
        v->report(v->arg, line);
}

/* Checks the entries of one data block; prev is the previous entry's key (across blocks). */
static void sst_verify_block(sst_vctx *v, sst_reader *r, sst_handle h, kv_slice index_key,
                             kv_buf *prev, kv_buf *first, uint64_t *count)
{
    sst_block *blk;
    blk_iter it;
    kv_parsed_key pk;
    if (sst_read_blk(r, h, r->data_end, &blk) != 0) {
        sst_vreport(v, "%s", kv_last_error());
        return;
    }
    blk_iter_init(&it);
    blk_iter_reset(&it, &blk->b, r->path, h.off);
    for (blk_iter_seek_first(&it); blk_iter_valid(&it); blk_iter_next(&it)) {
        kv_slice k = blk_iter_key(&it);
        if (ikey_parse(k, &pk) != 0) {
            sst_vreport(v, "%s: bad internal key in block at offset %llu", v->path,
                        (unsigned long long)h.off);
        } else if (pk.seq < r->props.min_seq || pk.seq > r->props.max_seq) {
            sst_vreport(v, "%s: sequence %llu outside the table's range in block at offset %llu",
                        v->path, (unsigned long long)pk.seq, (unsigned long long)h.off);
        } else if (!sst_reader_may_contain(r, pk.user_key)) {
            sst_vreport(v, "%s: filter misses a key of block at offset %llu", v->path,
                        (unsigned long long)h.off);
        }
        if (*count > 0 && ikey_cmp(kv_buf_slice(prev), k) >= 0)
            sst_vreport(v, "%s: keys out of order in block at offset %llu", v->path,
                        (unsigned long long)h.off);
        if (kv_buf_set(prev, k.data, k.len) != 0 ||
            (*count == 0 && kv_buf_set(first, k.data, k.len) != 0)) {
            sst_vreport(v, "%s: out of memory verifying", v->path);
            break;
        }
        (*count)++;
    }
    if (blk_iter_status(&it) != 0)
        sst_vreport(v, "%s", kv_last_error());
    else if (prev->len == 0 || kv_slice_cmp(kv_buf_slice(prev), index_key) != 0)
        sst_vreport(v, "%s: index key does not match the last key of block at offset %llu", v->path,
                    (unsigned long long)h.off);
    blk_iter_release(&it);
    free(blk);
}

static void sst_verify_tables(sst_vctx *v, sst_reader *r)
{
    blk_iter ix;
    kv_buf prev = {0}, first = {0};
    uint64_t count = 0;
    sst_handle h;
    blk_iter_init(&ix);
    blk_iter_reset(&ix, &r->index->b, r->path, r->index_off);
    for (blk_iter_seek_first(&ix); blk_iter_valid(&ix); blk_iter_next(&ix)) {
        if (sst_handle_decode(blk_iter_value(&ix), &h) != 0) {
            sst_vreport(v, "%s: bad data block handle in index block at offset %llu", v->path,
                        (unsigned long long)r->index_off);
            continue;
        }
        sst_verify_block(v, r, h, blk_iter_key(&ix), &prev, &first, &count);
    }
    if (blk_iter_status(&ix) != 0)
        sst_vreport(v, "%s", kv_last_error());
    if (v->problems == 0 && count != r->props.entries)
        sst_vreport(v, "%s: %llu entries found, properties say %llu", v->path,
                    (unsigned long long)count, (unsigned long long)r->props.entries);
    if (v->problems == 0 && count > 0 &&
        (kv_slice_cmp(kv_buf_slice(&first), kv_buf_slice(&r->props.smallest)) != 0 ||
         kv_slice_cmp(kv_buf_slice(&prev), kv_buf_slice(&r->props.largest)) != 0))
        sst_vreport(v, "%s: smallest/largest keys do not match the properties", v->path);
    blk_iter_release(&ix);
    kv_buf_free(&prev);
    kv_buf_free(&first);
}

int sst_verify(const char *path, void (*report)(void *arg, const char *line), void *arg)
{
    sst_vctx v = {path, report, arg, 0};
    sst_reader *r;
    int rc = sst_reader_open(path, 0, NULL, &r);
    if (rc == -EUCLEAN) {
        sst_vreport(&v, "%s", kv_last_error());
        return v.problems;
    }
    if (rc)
        return rc;
    sst_verify_tables(&v, r);
    sst_reader_close(r);
    return v.problems;
}
