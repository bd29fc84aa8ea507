/*
 * log.c -- the record log used by WAL segments and the MANIFEST (format in log.h and
 * docs/format.md).
 *
 *   file     := block* partial_block?
 *   block    := fragment* trailer?                    (LOG_BLOCK_BYTES = 32768 bytes)
 *   trailer  := 0x00{1..10}                            (block tail < LOG_HEADER_BYTES)
 *   fragment := checksum:u32 | length:u16 | type:u8 | log_number:u32 | data[length]
 *                 byte 0..3      4..5        6         7..10             11..
 *   checksum := low 32 bits of XXH3-64(type:u8 | log_number:u32 | length:u16 | data,
 *                                     seed LOG_CHECKSUM_SEED)   (format 2; readers also
 *               accept format 1's XXH32 of the same bytes, written by earlier releases)
 *   record   := FULL | FIRST MIDDLE* LAST
 * All integers little-endian. A fragment never crosses a block boundary.
 *
 * Writer invariants: a record's fragments (and the zero trailer in front of them, if the
 * previous record left a block tail shorter than a header) are built in one reused buffer and
 * written with ONE kvio_write_full, so a reader in another process sees a prefix of the
 * writer's output, never a hole. After a failed write or sync the writer's error is sticky:
 * the file may end in a partial record, so nothing more may be appended to it. One exception:
 * an append refused for want of space (kv_err_is_no_space) is undone, the file cut back to
 * the end of the last whole record (truncating needs no space), and the log stays usable, so
 * that a disk that fills up and is freed again needs no reopen. Only when that cut fails is
 * the error sticky. Making the new file's name durable (fsync of its directory) is the
 * creator's job, as with every new file.
 *
 * Reader invariants: the reader keeps one block in memory (blk, loaded with kvio_pread_full)
 * and the position of the next fragment. Between calls the position is always good_off, the
 * end of the last whole record returned. Classification of the first bad thing met:
 *   - end of data, or a header cut short by EOF                  -> end of log (return 0)
 *   - a bad fragment (type 0 or > 4, foreign log number, length past the block end, checksum
 *     mismatch), a payload cut short by EOF (a torn write, or a damaged length field) or an
 *     orphan MIDDLE/LAST: scan every later byte offset of the file for a valid fragment of
 *     this log number; none -> torn tail (return 0); one -> -EUCLEAN at the bad fragment's
 *     offset (sticky). For a payload cut short the scan stops at the end of data seen when the
 *     block was read: a concurrent writer may have completed the fragment and appended more
 *     since, which must not make a half-visible record look like mid-log corruption.
 *   - FIRST or FULL while a record is open: the open record was cut short yet valid data
 *     follows -> -EUCLEAN at the offset of the unexpected fragment
 * On end of log the position returns to good_off and the cached block is dropped, so the next
 * call re-reads from disk and picks up whatever was appended since (tailing).
 */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kv.h"
#include "kvio.h"

enum log_type {
    LOG_ZERO = 0, /* block trailer / zero fill: never a valid fragment */
    LOG_FULL = 1,
    LOG_FIRST = 2,
    LOG_MIDDLE = 3,
    LOG_LAST = 4,
}; /* DO NOT CHANGE THESE VALUES: they are on disk. */

#define LOG_MAX_DATA (LOG_BLOCK_BYTES - LOG_HEADER_BYTES)
/* A writer buffer grown past this by a huge record is released after the write. */
#define LOG_KEEP_BUF_BYTES (4u << 20)

typedef uint32_t (*log_hash_fn)(const void *p, size_t n, uint32_t seed);

/* Checksum with hash of the fragment at hdr (header already holding its length and data after
 * it). Lays type|log_number|length over header bytes 4..10 so the hashed bytes are contiguous,
 * hashes, and puts the original bytes back. */
static uint32_t log_checksum_with(log_hash_fn hash, uint8_t *hdr, unsigned type, uint32_t lognum,
                                  uint16_t length)
{
    uint8_t save[LOG_HEADER_BYTES - 4];
    memcpy(save, hdr + 4, sizeof save);
    hdr[4] = (uint8_t)type;
    kv_enc32(hdr + 5, lognum);
    hdr[9] = (uint8_t)length;
    hdr[10] = (uint8_t)(length >> 8);
    uint32_t c = hash(hdr + 4, sizeof save + length, LOG_CHECKSUM_SEED);
    memcpy(hdr + 4, save, sizeof save);
    return c;
}

/* 1 if the fragment at hdr carries a valid checksum: the current one (format 2, XXH3), or the
 * XXH32 of format 1, which earlier releases wrote and a data directory may still hold. */
static int log_checksum_ok(uint8_t *hdr, unsigned type, uint32_t lognum, uint16_t length)
{
    uint32_t stored = kv_dec32(hdr);
    return log_checksum_with(kv_checksum32, hdr, type, lognum, length) == stored ||
           log_checksum_with(kv_checksum32_xxh32, hdr, type, lognum, length) == stored;
}

static uint16_t log_dec16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

/* ------------------------------------------------------------------------ writer ---- */

struct log_writer {
    int fd;
    uint32_t lognum;
    uint64_t offset;     /* where the next byte goes (== bytes written to this log) */
    uint64_t stale;      /* the file's end when beyond offset: a reused file's older records, or
                            zeros written ahead (log_writer_prepare_ahead), lie past offset */
    size_t prepare;      /* bytes to keep zero-filled ahead of offset (0: none) */
    int err;             /* sticky: first write/sync failure */
    kvio_writeback wb;   /* background writeback as the log grows */
    uint64_t page_bytes; /* the page size: log_writer_start_writeback leaves the last page */
    kv_buf buf;          /* reused for every record */
    char *path;
};

/* Opens path with flags for log number lognum. */
static int log_writer_open(const char *path, uint32_t lognum, int flags, log_writer **out)
{
    *out = NULL;
    log_writer *w = calloc(1, sizeof *w);
    char *copy = strdup(path);
    if (!w || !copy) {
        free(w);
        free(copy);
        return kv_error(-ENOMEM, "%s: out of memory creating log", path);
    }
    int fd = kvio_open(path, flags, 0644);
    int rc = fd < 0 ? fd : 0;
    if (rc == 0 && !(flags & O_CREAT))
        rc = kvio_file_size(fd, path, &w->stale);
    if (rc) {
        if (fd >= 0)
            kvio_close(fd);
        free(w);
        free(copy);
        return rc;
    }
    w->fd = fd;
    w->lognum = lognum;
    w->path = copy;
    long page = sysconf(_SC_PAGESIZE);
    w->page_bytes = page > 0 ? (uint64_t)page : 4096u;
    *out = w;
    return 0;
}

int log_writer_create(const char *path, uint32_t lognum, log_writer **out)
{
    /* no O_APPEND: zeros written ahead (log_writer_prepare_ahead) sit past the file position */
    return log_writer_open(path, lognum, O_WRONLY | O_CREAT | O_EXCL, out);
}

void log_writer_prepare_ahead(log_writer *w, size_t bytes)
{
    w->prepare = bytes;
}

/* Keeps w->prepare zero bytes written past offset, in steps of at least half of it, so that
 * appends land in blocks the file already has and a later fdatasync writes data only, with no
 * size or allocation change to journal (about half the cost of an appending fdatasync on
 * ext4). The zeros are not pushed to disk here: a bulk writer overwrites them in the page
 * cache first. Readers see zeros past the last record as the end of the log. A failure (a
 * full disk) is no failure of the record just written: the log goes on without zeros ahead,
 * and the seal still cuts off whatever part of them was written. */
static void log_prepare(log_writer *w)
{
    static const uint8_t zeros[64 * 1024];
    if (!w->prepare || w->stale >= w->offset + w->prepare / 2)
        return;
    uint64_t from = KV_MAX(w->stale, w->offset), to = w->offset + w->prepare;
    int rc = 0;
    while (from < to && rc == 0) {
        size_t n = (size_t)KV_MIN(to - from, sizeof zeros);
        rc = kvio_pwrite_full(w->fd, w->path, zeros, n, from);
        from += n;
    }
    w->stale = to;
    if (rc) {
        kv_log("%s; synced writes to this log append from now on", kv_last_error());
        w->prepare = 0;
    }
}

int log_writer_reuse(const char *path, uint32_t lognum, log_writer **out)
{
    return log_writer_open(path, lognum, O_WRONLY, out);
}

int log_writer_continue(const char *path, uint32_t lognum, uint64_t end, log_writer **out)
{
    int rc = log_writer_open(path, lognum, O_WRONLY, out);
    if (rc)
        return rc;
    log_writer *w = *out;
    if ((rc = kvio_truncate_to(w->fd, path, end)) != 0) {
        log_writer_close(w);
        *out = NULL;
        return rc;
    }
    w->offset = w->stale = end;
    return 0;
}

/* Appends one fragment header + data to the writer's buffer (room reserved by the caller). */
static void log_put_fragment(log_writer *w, unsigned type, const uint8_t *data, size_t n)
{
    uint8_t *hdr = w->buf.data + w->buf.len;
    hdr[4] = (uint8_t)n;
    hdr[5] = (uint8_t)(n >> 8);
    hdr[6] = (uint8_t)type;
    kv_enc32(hdr + 7, w->lognum);
    if (n)
        memcpy(hdr + LOG_HEADER_BYTES, data, n);
    kv_enc32(hdr, log_checksum_with(kv_checksum32, hdr, type, w->lognum, (uint16_t)n));
    w->buf.len += LOG_HEADER_BYTES + n;
}

/* Bytes the record of len bytes occupies from block offset boff, trailer padding included. */
static size_t log_encoded_bytes(size_t boff, size_t len)
{
    size_t total = 0;
    size_t left = len;
    do {
        size_t avail = LOG_BLOCK_BYTES - boff;
        if (avail < LOG_HEADER_BYTES) {
            total += avail;
            boff = 0;
            avail = LOG_BLOCK_BYTES;
        }
        size_t n = KV_MIN(left, avail - LOG_HEADER_BYTES);
        total += LOG_HEADER_BYTES + n;
        boff += LOG_HEADER_BYTES + n;
        left -= n;
    } while (left > 0);
    return total;
}

/* Builds every fragment of the record into w->buf (which the caller emptied). */
static int log_build(log_writer *w, const uint8_t *p, size_t len)
{
    size_t boff = (size_t)(w->offset % LOG_BLOCK_BYTES);
    if (len > SIZE_MAX / 2 || kv_buf_reserve(&w->buf, log_encoded_bytes(boff, len)) != 0)
        return kv_error(-ENOMEM, "%s: no memory for a %zu-byte log record", w->path, len);
    size_t left = len;
    int first = 1;
    do {
        size_t avail = LOG_BLOCK_BYTES - boff;
        if (avail < LOG_HEADER_BYTES) {
            memset(w->buf.data + w->buf.len, 0, avail);
            w->buf.len += avail;
            boff = 0;
            avail = LOG_BLOCK_BYTES;
        }
        size_t n = KV_MIN(left, avail - LOG_HEADER_BYTES);
        int last = n == left;
        unsigned type = first ? (last ? LOG_FULL : LOG_FIRST) : (last ? LOG_LAST : LOG_MIDDLE);
        log_put_fragment(w, type, p, n);
        boff += LOG_HEADER_BYTES + n;
        p += n;
        left -= n;
        first = 0;
    } while (left > 0);
    return 0;
}

/* After an append refused for want of space: cuts off whatever part of the record reached
 * the file (and any zeros or older records past it). 0 (the refusal's message stays: a
 * kvio call that succeeds sets none), or the truncate's error. */
static int log_undo_append(log_writer *w)
{
    int rc = kvio_truncate_to(w->fd, w->path, w->offset);
    if (rc == 0)
        w->stale = w->offset;
    return rc;
}

int log_writer_add(log_writer *w, const void *data, size_t len)
{
    if (w->err)
        return kv_error(w->err, "%s: log is unusable after an earlier I/O error", w->path);
    w->buf.len = 0;
    int rc = log_build(w, data, len);
    if (rc)
        return rc; /* nothing written: the log is still intact */
    rc = kvio_write_full(w->fd, w->path, w->buf.data, w->buf.len);
    if (kv_err_is_no_space(rc) && log_undo_append(w) == 0)
        goto out; /* refused, not failed: the log is as it was */
    if (rc == 0) {
        w->offset += w->buf.len;
        rc = kvio_writeback_note(&w->wb, w->fd, w->path, w->offset);
    }
    if (rc == 0)
        log_prepare(w);
    if (rc)
        w->err = rc;
out:
    if (w->buf.cap > LOG_KEEP_BUF_BYTES)
        kv_buf_free(&w->buf);
    return rc;
}

int log_writer_start_writeback(log_writer *w)
{
    if (w->err)
        return kv_error(w->err, "%s: log is unusable after an earlier I/O error", w->path);
    uint64_t whole = w->offset - w->offset % w->page_bytes;
    int rc = kvio_writeback_now(&w->wb, w->fd, w->path, whole);
    if (rc)
        w->err = rc;
    return rc;
}

int log_writer_sync(log_writer *w)
{
    if (w->err)
        return kv_error(w->err, "%s: log is unusable after an earlier I/O error", w->path);
    int rc = kvio_fsync(w->fd, w->path);
    if (rc)
        w->err = rc;
    return rc;
}

int log_writer_seal(log_writer *w)
{
    if (!w->err && w->stale > w->offset) {
        int rc = kvio_truncate(w->fd, w->path, w->offset);
        if (rc)
            return w->err = rc;
        w->stale = w->offset;
    }
    return log_writer_sync(w);
}

uint64_t log_writer_offset(const log_writer *w)
{
    return w->offset;
}

int log_writer_failed(const log_writer *w)
{
    return w->err;
}

int log_writer_close(log_writer *w)
{
    if (!w)
        return 0;
    int rc = kvio_close(w->fd);
    kv_buf_free(&w->buf);
    free(w->path);
    free(w);
    return rc;
}

/* ------------------------------------------------------------------------ reader ---- */

struct log_reader {
    int fd;
    uint32_t lognum;
    uint8_t *blk;      /* the cached block */
    size_t blk_len;    /* bytes of it read from the file (< LOG_BLOCK_BYTES: last block) */
    int blk_fresh;     /* blk was (re)read during this call */
    uint64_t blk_off;  /* file offset of blk[0], a multiple of LOG_BLOCK_BYTES */
    size_t pos;        /* offset in blk of the next fragment */
    uint8_t *scan;     /* a second block buffer for the look-ahead scan */
    kv_buf rec;        /* a record assembled from fragments */
    uint64_t good_off; /* just past the last whole record returned */
    uint64_t err_off;  /* where the corruption is, after -EUCLEAN */
    int err;           /* sticky -EUCLEAN */
    char *path;
};

int log_reader_open(const char *path, uint32_t lognum, log_reader **out)
{
    *out = NULL;
    log_reader *r = calloc(1, sizeof *r);
    if (r) {
        r->fd = -1;
        r->blk = malloc(LOG_BLOCK_BYTES);
        r->scan = malloc(LOG_BLOCK_BYTES);
        r->path = strdup(path);
    }
    if (!r || !r->blk || !r->scan || !r->path) {
        log_reader_close(r);
        return kv_error(-ENOMEM, "%s: out of memory opening log", path);
    }
    r->fd = kvio_open(path, O_RDONLY, 0);
    if (r->fd < 0) {
        int rc = r->fd;
        log_reader_close(r);
        return rc;
    }
    r->lognum = lognum;
    *out = r;
    return 0;
}

static int log_load(log_reader *r)
{
    int rc = kvio_pread_full(r->fd, r->path, r->blk, LOG_BLOCK_BYTES, r->blk_off, &r->blk_len);
    r->blk_fresh = rc == 0;
    if (rc)
        r->blk_len = 0;
    return rc;
}

/* Makes need bytes from the current position available, moving to the next block when the
 * current one is exhausted. Returns 1, 0 at end of data, or a negative errno. A block that
 * ends early is re-read once per call, since the file may have grown since it was cached. */
static int log_fill(log_reader *r, size_t need)
{
    for (;;) {
        if (r->blk_len >= r->pos + need)
            return 1;
        if (r->blk_len == LOG_BLOCK_BYTES) { /* only the trailer is left */
            r->blk_off += LOG_BLOCK_BYTES;
            r->pos = 0;
            r->blk_len = 0;
            r->blk_fresh = 0;
            continue;
        }
        if (r->blk_fresh)
            return 0;
        int rc = log_load(r);
        if (rc)
            return rc;
    }
}

/* Back to good_off, dropping the cached block so the next call re-reads it. */
static void log_rewind(log_reader *r)
{
    r->blk_off = r->good_off - r->good_off % LOG_BLOCK_BYTES;
    r->pos = (size_t)(r->good_off % LOG_BLOCK_BYTES);
    r->blk_len = 0;
    r->blk_fresh = 0;
    r->rec.len = 0;
}

/* Is there a valid fragment of this log at buf[i] (a block of n bytes)? */
static int log_valid_at(const log_reader *r, uint8_t *buf, size_t i, size_t n)
{
    if (n - i < LOG_HEADER_BYTES)
        return 0;
    uint8_t *h = buf + i;
    unsigned type = h[6];
    if (type < LOG_FULL || type > LOG_LAST || kv_dec32(h + 7) != r->lognum)
        return 0;
    uint16_t length = log_dec16(h + 4);
    if (length > n - i - LOG_HEADER_BYTES)
        return 0;
    return log_checksum_ok(h, type, r->lognum, length);
}

/* Looks for a valid fragment of this log starting in [from, limit). OUT: *found. */
static int log_scan(log_reader *r, uint64_t from, uint64_t limit, int *found)
{
    *found = 0;
    uint64_t boff = from - from % LOG_BLOCK_BYTES;
    size_t i = (size_t)(from % LOG_BLOCK_BYTES);
    for (;;) {
        size_t n;
        int rc = kvio_pread_full(r->fd, r->path, r->scan, LOG_BLOCK_BYTES, boff, &n);
        if (rc)
            return rc;
        if (boff + n > limit)
            n = limit > boff ? (size_t)(limit - boff) : 0;
        for (; i + LOG_HEADER_BYTES <= n; i++) {
            if (log_valid_at(r, r->scan, i, n)) {
                *found = 1;
                return 0;
            }
        }
        if (n < LOG_BLOCK_BYTES)
            return 0;
        boff += LOG_BLOCK_BYTES;
        i = 0;
    }
}

static int log_corrupt(log_reader *r, uint64_t off)
{
    r->err = -EUCLEAN;
    r->err_off = off;
    log_rewind(r);
    return kv_error(-EUCLEAN, "%s: corrupt WAL record at offset %" PRIu64, r->path, off);
}

/* The fragment at off is bad: corruption if a valid fragment follows before limit, else a
 * torn tail. */
static int log_bad(log_reader *r, uint64_t off, uint64_t limit)
{
    int found;
    int rc = log_scan(r, off + 1, limit, &found);
    if (rc) {
        log_rewind(r);
        return rc;
    }
    if (found)
        return log_corrupt(r, off);
    log_rewind(r);
    return 0;
}

/* Adds a fragment's data to the record being assembled. */
static int log_append(log_reader *r, const uint8_t *data, size_t n)
{
    if (kv_buf_append(&r->rec, data, n) == 0)
        return 0;
    log_rewind(r);
    return kv_error(-ENOMEM, "%s: no memory for a %zu-byte log record", r->path, r->rec.len + n);
}

/* Reads fragments from the current position until a whole record, end of log or an error. */
static int log_read_record(log_reader *r, const uint8_t **rec, size_t *len)
{
    int open = 0;
    int rc;
    for (;;) {
        uint64_t off = r->blk_off + r->pos;
        rc = log_fill(r, LOG_HEADER_BYTES);
        if (rc <= 0)
            goto end;
        uint8_t *h = r->blk + r->pos;
        unsigned type = h[6];
        uint16_t length = log_dec16(h + 4);
        if (type < LOG_FULL || type > LOG_LAST || kv_dec32(h + 7) != r->lognum ||
            length > LOG_BLOCK_BYTES - r->pos - LOG_HEADER_BYTES)
            return log_bad(r, off, UINT64_MAX);
        rc = log_fill(r, LOG_HEADER_BYTES + length);
        if (rc < 0)
            goto end;
        if (rc == 0) /* payload cut short by EOF, or a damaged length: look only at the bytes
                        that were there, since a writer may have completed it by now */
            return log_bad(r, off, r->blk_off + r->blk_len);
        h = r->blk + r->pos;
        if (!log_checksum_ok(h, type, r->lognum, length))
            return log_bad(r, off, UINT64_MAX);
        if ((type == LOG_FULL || type == LOG_FIRST) && open)
            return log_corrupt(r, off);
        if ((type == LOG_MIDDLE || type == LOG_LAST) && !open)
            return log_bad(r, off, UINT64_MAX);
        const uint8_t *data = h + LOG_HEADER_BYTES;
        r->pos += LOG_HEADER_BYTES + length;
        if (type == LOG_FULL) {
            *rec = data;
            *len = length;
            return 1;
        }
        rc = log_append(r, data, length);
        if (rc)
            return rc;
        open = 1;
        if (type == LOG_LAST) {
            *rec = r->rec.data;
            *len = r->rec.len;
            return 1;
        }
    }
end: /* end of data (rc 0) or a read error: either way, resume from good_off */
    log_rewind(r);
    return rc;
}

int log_reader_next(log_reader *r, const uint8_t **rec, size_t *len)
{
    *rec = NULL;
    *len = 0;
    if (r->err)
        return kv_error(r->err, "%s: corrupt WAL record at offset %" PRIu64, r->path, r->err_off);
    r->blk_fresh = 0;
    if (r->rec.cap > LOG_KEEP_BUF_BYTES)
        kv_buf_free(&r->rec);
    r->rec.len = 0;
    int rc = log_read_record(r, rec, len);
    if (rc == 1)
        r->good_off = r->blk_off + r->pos;
    return rc;
}

uint64_t log_reader_good_offset(const log_reader *r)
{
    return r->good_off;
}

uint64_t log_reader_error_offset(const log_reader *r)
{
    return r->err_off;
}

void log_reader_close(log_reader *r)
{
    if (!r)
        return;
    if (r->fd >= 0)
        kvio_close(r->fd);
    kv_buf_free(&r->rec);
    free(r->blk);
    free(r->scan);
    free(r->path);
    free(r);
}
