/*
 * test_log.c -- the record log: round trips and fragmentation at the block boundaries, block
 * tail padding, records of 64 MiB+, torn tails at every truncation point, bit flips and zeroed
 * regions in the middle (-EUCLEAN with the offset) versus at the end (torn tail), foreign log
 * numbers, fragment sequence errors in hand-built files, resumable tailing while a writer
 * appends (byte-by-byte growth and a concurrent thread), and injected I/O faults.
 */
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>

#include "kv.h"
#include "kvio.h"
#include "log.h"
#include "testutil.h"
#include "util.h"

#define BLK LOG_BLOCK_BYTES
#define HDR LOG_HEADER_BYTES

static char dir[512];
static int file_no;

static void new_path(char *out)
{
    CHECK_OK(kvio_path(out, PATH_MAX, "%s/%06d.log", dir, ++file_no));
}

/* Deterministic record contents from (tag, length). */
static void fill(uint8_t *p, size_t n, uint64_t tag)
{
    uint64_t x = tag * 0x9E3779B97F4A7C15ull + n + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (uint8_t)x;
    }
}

static int matches(const uint8_t *p, size_t n, uint64_t tag)
{
    uint8_t *want = malloc(n ? n : 1);
    CHECK(want);
    fill(want, n, tag);
    int ok = n == 0 || memcmp(p, want, n) == 0;
    free(want);
    return ok;
}

/* Writes records of the given sizes (tags 0..n-1) into a new file, or over the existing one
 * when reuse is set (no seal). OUT: ends[i] = offset after record i. */
static void write_log_into(const char *path, uint32_t lognum, const size_t *sizes, size_t n,
                           uint64_t *ends, int reuse)
{
    log_writer *w;
    if (reuse)
        CHECK_OK(log_writer_reuse(path, lognum, &w));
    else
        CHECK_OK(log_writer_create(path, lognum, &w));
    size_t max = 1;
    for (size_t i = 0; i < n; i++)
        max = KV_MAX(max, sizes[i]);
    uint8_t *buf = malloc(max);
    CHECK(buf);
    for (size_t i = 0; i < n; i++) {
        fill(buf, sizes[i], i);
        CHECK_OK(log_writer_add(w, buf, sizes[i]));
        if (ends)
            ends[i] = log_writer_offset(w);
    }
    CHECK_OK(log_writer_sync(w));
    CHECK_OK(log_writer_close(w));
    free(buf);
}

static void write_log(const char *path, uint32_t lognum, const size_t *sizes, size_t n,
                      uint64_t *ends)
{
    write_log_into(path, lognum, sizes, n, ends, 0);
}

/* Reads the log; checks the records against sizes/tags. Returns the final rc; OUT: *nread. */
static int read_log(const char *path, uint32_t lognum, const size_t *sizes, size_t n, size_t *nread,
                    uint64_t *good, uint64_t *bad)
{
    log_reader *r;
    CHECK_OK(log_reader_open(path, lognum, &r));
    size_t got = 0;
    int rc;
    const uint8_t *rec;
    size_t len;
    while ((rc = log_reader_next(r, &rec, &len)) == 1) {
        CHECK(got < n);
        CHECK(len == sizes[got]);
        CHECK(matches(rec, len, got));
        got++;
    }
    *nread = got;
    if (good)
        *good = log_reader_good_offset(r);
    if (bad)
        *bad = log_reader_error_offset(r);
    /* end and corruption are both stable on a second call */
    CHECK_RC(log_reader_next(r, &rec, &len), rc);
    log_reader_close(r);
    return rc;
}

static uint64_t file_size(const char *path)
{
    struct stat st;
    CHECK(stat(path, &st) == 0);
    return (uint64_t)st.st_size;
}

static void patch(const char *path, uint64_t off, const void *p, size_t n)
{
    int fd = kvio_open(path, O_WRONLY, 0);
    CHECK(fd >= 0);
    CHECK_OK(kvio_pwrite_full(fd, path, p, n, off));
    CHECK_OK(kvio_close(fd));
}

static uint8_t peek(const char *path, uint64_t off)
{
    int fd = kvio_open(path, O_RDONLY, 0);
    CHECK(fd >= 0);
    uint8_t b = 0;
    size_t got;
    CHECK_OK(kvio_pread_full(fd, path, &b, 1, off, &got));
    CHECK(got == 1);
    CHECK_OK(kvio_close(fd));
    return b;
}

/* The expected encoded size of one record of len bytes written from block offset boff. */
static uint64_t model_bytes(uint64_t boff, size_t len, int *nfrag)
{
    uint64_t total = 0;
    *nfrag = 0;
    for (;;) {
        if (BLK - boff < HDR) {
            total += BLK - boff;
            boff = 0;
        }
        size_t n = KV_MIN(len, (size_t)(BLK - boff - HDR));
        total += HDR + n;
        boff += HDR + n;
        len -= n;
        (*nfrag)++;
        if (len == 0)
            return total;
    }
}

/* ---- an independent encoder, straight from the format in log.h ---- */

/* Writes one fragment with the checksum hash (kv_checksum32: today's format 2;
 * kv_checksum32_xxh32: format 1 of earlier releases). Returns its size. */
static size_t craft_with(uint32_t (*hash)(const void *, size_t, uint32_t), uint8_t *out,
                         unsigned type, uint32_t lognum, const void *data, size_t n)
{
    uint8_t *tmp = malloc(7 + n);
    CHECK(tmp);
    tmp[0] = (uint8_t)type;
    kv_enc32(tmp + 1, lognum);
    tmp[5] = (uint8_t)n;
    tmp[6] = (uint8_t)(n >> 8);
    memcpy(tmp + 7, data, n);
    kv_enc32(out, hash(tmp, 7 + n, LOG_CHECKSUM_SEED));
    out[4] = (uint8_t)n;
    out[5] = (uint8_t)(n >> 8);
    out[6] = (uint8_t)type;
    kv_enc32(out + 7, lognum);
    memcpy(out + HDR, data, n);
    free(tmp);
    return HDR + n;
}

static size_t craft(uint8_t *out, unsigned type, uint32_t lognum, const void *data, size_t n)
{
    return craft_with(kv_checksum32, out, type, lognum, data, n);
}

static void write_bytes(const char *path, const uint8_t *p, size_t n)
{
    int fd = kvio_open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0);
    CHECK_OK(kvio_write_full(fd, path, p, n));
    CHECK_OK(kvio_close(fd));
}

/* ------------------------------------------------------------------------- tests ---- */

static void test_sizes(void)
{
    const size_t sizes[] = {0, 1, 32757, 32758, 100 * 1024, 5u << 20};
    const size_t nsz = sizeof sizes / sizeof sizes[0];
    for (size_t i = 0; i < nsz; i++) {
        char path[PATH_MAX];
        new_path(path);
        uint64_t end;
        write_log(path, 3, &sizes[i], 1, &end);
        int nfrag;
        CHECK(end == model_bytes(0, sizes[i], &nfrag));
        CHECK(file_size(path) == end);
        /* fragment types: FULL, or FIRST MIDDLE* LAST at each block start */
        if (nfrag == 1) {
            CHECK(peek(path, 6) == 1);
        } else {
            CHECK(peek(path, 6) == 2);
            for (int f = 1; f < nfrag; f++)
                CHECK(peek(path, (uint64_t)f * BLK + 6) == (f == nfrag - 1 ? 4 : 3));
        }
        size_t nread;
        uint64_t good;
        CHECK_RC(read_log(path, 3, &sizes[i], 1, &nread, &good, NULL), 0);
        CHECK(nread == 1 && good == end);
    }

    /* all of them in one log, at unaligned offsets, plus random ones */
    size_t mix[64];
    size_t n = 0;
    for (size_t i = 0; i < nsz; i++) {
        mix[n++] = sizes[i];
        mix[n++] = (size_t)tu_rand_below(3 * BLK);
    }
    char path[PATH_MAX];
    new_path(path);
    uint64_t ends[64];
    write_log(path, 4, mix, n, ends);
    uint64_t off = 0;
    for (size_t i = 0; i < n; i++) {
        int nfrag;
        off += model_bytes(off % BLK, mix[i], &nfrag);
        CHECK(ends[i] == off);
    }
    size_t nread;
    CHECK_RC(read_log(path, 4, mix, n, &nread, NULL, NULL), 0);
    CHECK(nread == n);
}

static void test_padding(void)
{
    for (size_t rem = 0; rem <= 16; rem++) {
        char path[PATH_MAX];
        new_path(path);
        size_t sizes[2] = {BLK - HDR - rem, 5};
        uint64_t ends[2];
        write_log(path, 9, sizes, 2, ends);
        CHECK(ends[0] == BLK - rem);
        if (rem < HDR) {
            CHECK(ends[1] == BLK + HDR + 5); /* B starts on the next block ... */
            for (size_t i = 0; i < rem; i++)
                CHECK(peek(path, BLK - rem + i) == 0); /* ... after a zero trailer */
            CHECK(peek(path, BLK + 6) == 1);
        } else if (rem < HDR + 5) {
            CHECK(peek(path, BLK - rem + 6) == 2);
            CHECK(peek(path, BLK + 6) == 4);
        } else {
            CHECK(ends[1] == BLK - rem + HDR + 5);
            CHECK(peek(path, BLK - rem + 6) == 1);
        }
        size_t nread;
        uint64_t good;
        CHECK_RC(read_log(path, 9, sizes, 2, &nread, &good, NULL), 0);
        CHECK(nread == 2 && good == ends[1]);
    }
}

static void test_huge_record(void)
{
    char path[PATH_MAX];
    new_path(path);
    size_t sizes[3] = {17, (64u << 20) + 12345, 33};
    uint64_t ends[3];
    write_log(path, 5, sizes, 3, ends);
    size_t nread;
    CHECK_RC(read_log(path, 5, sizes, 3, &nread, NULL, NULL), 0);
    CHECK(nread == 3);
    CHECK_OK(kvio_unlink(path));
}

/* Truncates the log to every length in [0, size] selected by keep() and checks that exactly
 * the records ending at or before the cut are read, then end of log. */
static void torn_every_cut(const size_t *sizes, size_t n, int stride)
{
    char path[PATH_MAX];
    new_path(path);
    uint64_t ends[16];
    write_log(path, 11, sizes, n, ends);
    uint64_t size = file_size(path);
    int fd = kvio_open(path, O_WRONLY, 0);
    CHECK(fd >= 0);
    for (uint64_t cut = size + 1; cut-- > 0;) {
        int near = 0; /* always test cuts near fragment and block edges */
        for (uint64_t b = 0; b <= size; b += BLK)
            near |= cut + HDR + 1 >= b && cut <= b + HDR + 1;
        for (size_t i = 0; i < n; i++)
            near |= cut + HDR + 1 >= ends[i] && cut <= ends[i] + HDR + 1;
        if (!near && cut % (uint64_t)stride != 0)
            continue;
        CHECK_OK(kvio_truncate(fd, path, cut));
        size_t want = 0;
        while (want < n && ends[want] <= cut)
            want++;
        size_t nread;
        uint64_t good;
        CHECK_RC(read_log(path, 11, sizes, n, &nread, &good, NULL), 0);
        CHECK(nread == want);
        CHECK(good == (want ? ends[want - 1] : 0));
    }
    CHECK_OK(kvio_close(fd));
}

static void test_torn_tail(void)
{
    const size_t small[] = {10, 0, 300, 1, 2000, 50, 7};
    torn_every_cut(small, sizeof small / sizeof small[0], 1);
    const size_t spanning[] = {100, 40000, 10, BLK - HDR, 33000, 7, 0};
    torn_every_cut(spanning, sizeof spanning / sizeof spanning[0], 5);
}

static void check_corrupt_msg(const char *path, uint64_t off)
{
    char want[PATH_MAX + 64];
    snprintf(want, sizeof want, "%s: corrupt WAL record at offset %llu", path,
             (unsigned long long)off);
    CHECK(strcmp(kv_last_error(), want) == 0);
}

static void test_bitflip(void)
{
    char path[PATH_MAX];
    new_path(path);
    const size_t sizes[] = {100, 200, 300, 150, 80};
    uint64_t ends[5];
    write_log(path, 12, sizes, 5, ends);
    /* every byte of the middle record, header and data: -EUCLEAN at its start */
    for (uint64_t off = ends[1]; off < ends[2]; off++) {
        uint8_t b = peek(path, off);
        uint8_t flipped = (uint8_t)(b ^ (1u << tu_rand_below(8)));
        patch(path, off, &flipped, 1);
        size_t nread;
        uint64_t good, bad;
        CHECK_RC(read_log(path, 12, sizes, 5, &nread, &good, &bad), -EUCLEAN);
        CHECK(nread == 2 && good == ends[1] && bad == ends[1]);
        check_corrupt_msg(path, ends[1]);
        patch(path, off, &b, 1);
    }
    /* a flip in the last record is a torn tail */
    uint64_t off = ends[3] + 20;
    uint8_t b = peek(path, off), flipped = (uint8_t)(b ^ 0x10);
    patch(path, off, &flipped, 1);
    size_t nread;
    uint64_t good;
    CHECK_RC(read_log(path, 12, sizes, 5, &nread, &good, NULL), 0);
    CHECK(nread == 4 && good == ends[3]);

    /* a flip in the MIDDLE fragment of a 3-fragment record: corruption at that fragment */
    new_path(path);
    const size_t big[] = {100, 70000, 100};
    write_log(path, 12, big, 3, ends);
    flipped = (uint8_t)(peek(path, BLK + 500) ^ 1);
    patch(path, BLK + 500, &flipped, 1);
    uint64_t bad;
    CHECK_RC(read_log(path, 12, big, 3, &nread, &good, &bad), -EUCLEAN);
    CHECK(nread == 1 && good == ends[0] && bad == BLK);
    check_corrupt_msg(path, BLK);
}

static void test_zeroed(void)
{
    char path[PATH_MAX];
    new_path(path);
    const size_t sizes[] = {100, 200, 300, 150, 80};
    uint64_t ends[5];
    write_log(path, 13, sizes, 5, ends);
    uint8_t zeros[BLK];
    memset(zeros, 0, sizeof zeros);
    /* zeros over records 1 and 2: every record read is intact, then -EUCLEAN */
    patch(path, ends[0] + 50, zeros, 400);
    size_t nread;
    uint64_t good, bad;
    CHECK_RC(read_log(path, 13, sizes, 5, &nread, &good, &bad), -EUCLEAN);
    CHECK(nread == 1 && bad == ends[0]);

    /* a whole block of zeros inside a 3-block record */
    new_path(path);
    const size_t big[] = {10, 3 * BLK, 10};
    write_log(path, 13, big, 3, ends);
    patch(path, BLK, zeros, BLK);
    CHECK_RC(read_log(path, 13, big, 3, &nread, &good, &bad), -EUCLEAN);
    CHECK(nread == 1 && bad == BLK);

    /* a file of zeros, even for log number 0, holds no record */
    for (uint32_t lognum = 0; lognum < 2; lognum++) {
        new_path(path);
        uint8_t *z = calloc(1, 100000);
        CHECK(z);
        write_bytes(path, z, 100000);
        free(z);
        CHECK_RC(read_log(path, lognum, sizes, 0, &nread, &good, NULL), 0);
        CHECK(nread == 0 && good == 0);
    }

    /* zeros after the last record (a preallocated or torn tail) */
    new_path(path);
    write_log(path, 13, sizes, 5, ends);
    patch(path, ends[4], zeros, BLK);
    patch(path, ends[4] + BLK, zeros, 777);
    CHECK_RC(read_log(path, 13, sizes, 5, &nread, &good, NULL), 0);
    CHECK(nread == 5 && good == ends[4]);
}

static void test_foreign(void)
{
    char path[PATH_MAX], other[PATH_MAX];
    new_path(path);
    const size_t sizes[] = {100, 200, 300, 150, 80};
    uint64_t ends[5];
    write_log(path, 7, sizes, 5, ends);
    size_t nread;
    uint64_t good, bad;
    /* a whole file of another log number: nothing of it validates */
    CHECK_RC(read_log(path, 8, sizes, 5, &nread, &good, NULL), 0);
    CHECK(nread == 0 && good == 0);
    /* the same bytes from log 7 spliced over record 2 of log 8 */
    new_path(other);
    write_log(other, 8, sizes, 5, ends);
    uint8_t *data;
    size_t len;
    CHECK_OK(kvio_read_file(path, &data, &len));
    patch(other, ends[1], data + ends[1], (size_t)(ends[2] - ends[1]));
    free(data);
    CHECK_RC(read_log(other, 8, sizes, 5, &nread, &good, &bad), -EUCLEAN);
    CHECK(nread == 2 && bad == ends[1]);
    check_corrupt_msg(other, ends[1]);
}

static void test_crafted(void)
{
    uint8_t buf[4096], a[10], x[20], c[30];
    fill(a, sizeof a, 0);
    fill(x, sizeof x, 1);
    fill(c, sizeof c, 2);
    const size_t sizes[] = {10, 20, 30};
    char path[PATH_MAX];
    size_t n, nread;
    uint64_t good, bad;

    /* the reader accepts what the format in log.h describes */
    n = craft(buf, 1, 21, a, 10);
    n += craft(buf + n, 2, 21, x, 5);
    n += craft(buf + n, 3, 21, x + 5, 10);
    n += craft(buf + n, 4, 21, x + 15, 5);
    new_path(path);
    write_bytes(path, buf, n);
    CHECK_RC(read_log(path, 21, sizes, 3, &nread, &good, NULL), 0);
    CHECK(nread == 2 && good == n);

    /* format 1 (XXH32 checksums, written by earlier releases) still reads, also mixed with
     * format 2 in one file (a MANIFEST appended to after an upgrade) */
    n = craft_with(kv_checksum32_xxh32, buf, 1, 21, a, 10);
    n += craft_with(kv_checksum32_xxh32, buf + n, 2, 21, x, 5);
    n += craft_with(kv_checksum32_xxh32, buf + n, 4, 21, x + 5, 15);
    n += craft(buf + n, 1, 21, c, 30);
    new_path(path);
    write_bytes(path, buf, n);
    CHECK_RC(read_log(path, 21, sizes, 3, &nread, &good, NULL), 0);
    CHECK(nread == 3 && good == n);
    /* a checksum that is neither format's is still damage */
    buf[HDR + 3] ^= 0x10;
    write_bytes(path, buf, n);
    CHECK_RC(read_log(path, 21, sizes, 3, &nread, &good, &bad), -EUCLEAN);
    CHECK(nread == 0 && bad == 0);

    /* orphan MIDDLE followed by a valid record: corruption at the orphan */
    n = craft(buf, 1, 21, a, 10);
    size_t orphan = n;
    n += craft(buf + n, 3, 21, x, 20);
    n += craft(buf + n, 1, 21, c, 30);
    new_path(path);
    write_bytes(path, buf, n);
    CHECK_RC(read_log(path, 21, sizes, 3, &nread, &good, &bad), -EUCLEAN);
    CHECK(nread == 1 && bad == orphan);

    /* orphan LAST at the end, nothing valid after: torn tail */
    n = craft(buf, 1, 21, a, 10);
    n += craft(buf + n, 4, 21, x, 20);
    new_path(path);
    write_bytes(path, buf, n);
    CHECK_RC(read_log(path, 21, sizes, 3, &nread, &good, NULL), 0);
    CHECK(nread == 1 && good == HDR + 10);

    /* FIRST then FULL: the open record was cut short, yet valid data follows */
    n = craft(buf, 1, 21, a, 10);
    n += craft(buf + n, 2, 21, x, 20);
    size_t full = n;
    n += craft(buf + n, 1, 21, c, 30);
    new_path(path);
    write_bytes(path, buf, n);
    CHECK_RC(read_log(path, 21, sizes, 3, &nread, &good, &bad), -EUCLEAN);
    CHECK(nread == 1 && good == HDR + 10 && bad == full);

    /* a fragment of another log number between two valid ones */
    n = craft(buf, 1, 21, a, 10);
    n += craft(buf + n, 1, 22, x, 20);
    n += craft(buf + n, 1, 21, c, 30);
    new_path(path);
    write_bytes(path, buf, n);
    CHECK_RC(read_log(path, 21, sizes, 3, &nread, &good, &bad), -EUCLEAN);
    CHECK(nread == 1 && bad == HDR + 10);

    /* type 0 with a matching checksum is still invalid */
    n = craft(buf, 0, 21, a, 10);
    new_path(path);
    write_bytes(path, buf, n);
    CHECK_RC(read_log(path, 21, sizes, 3, &nread, &good, NULL), 0);
    CHECK(nread == 0);

    /* a length running past the block end is invalid even with a good checksum */
    uint8_t *blk = calloc(1, 2 * BLK);
    uint8_t *big = malloc(BLK);
    CHECK(blk && big);
    const size_t first[] = {BLK - 100 - HDR};
    fill(big, first[0], 0);
    n = craft(blk, 1, 21, big, first[0]);
    CHECK(n == BLK - 100);
    n += craft(blk + n, 1, 21, big, 200); /* crosses into the next block */
    n += craft(blk + n, 1, 21, x, 20);
    write_bytes(path, blk, n);
    CHECK_RC(read_log(path, 21, first, 1, &nread, &good, &bad), -EUCLEAN);
    CHECK(nread == 1 && bad == BLK - 100);
    free(big);
    free(blk);
}

/* ---- tailing ---- */

static void test_resume_growth(void)
{
    char src[PATH_MAX], dst[PATH_MAX];
    new_path(src);
    size_t sizes[40];
    for (size_t i = 0; i < 40; i++)
        sizes[i] = (size_t)(i % 5 == 0 ? tu_rand_below(80000) : tu_rand_below(300));
    uint64_t ends[40];
    write_log(src, 30, sizes, 40, ends);
    uint8_t *data;
    size_t len;
    CHECK_OK(kvio_read_file(src, &data, &len));
    new_path(dst);
    write_bytes(dst, data, 0);
    log_reader *r;
    CHECK_OK(log_reader_open(dst, 30, &r));
    int fd = kvio_open(dst, O_WRONLY, 0);
    CHECK(fd >= 0);
    size_t shown = 0, got = 0;
    while (shown < len) {
        size_t step = 1 + (size_t)tu_rand_below(tu_rand_below(4) == 0 ? 20000 : 40);
        step = KV_MIN(step, len - shown);
        CHECK_OK(kvio_pwrite_full(fd, dst, data + shown, step, shown));
        shown += step;
        const uint8_t *rec;
        size_t rlen;
        int rc;
        while ((rc = log_reader_next(r, &rec, &rlen)) == 1) {
            CHECK(got < 40 && rlen == sizes[got] && matches(rec, rlen, got));
            got++;
        }
        CHECK_RC(rc, 0);
        size_t want = 0;
        while (want < 40 && ends[want] <= shown)
            want++;
        CHECK(got == want);
        CHECK(log_reader_good_offset(r) == (want ? ends[want - 1] : 0));
    }
    CHECK(got == 40);
    CHECK_OK(kvio_close(fd));
    log_reader_close(r);
    free(data);
}

struct tail_state {
    char path[PATH_MAX];
    size_t n;
    size_t *sizes;
    atomic_int started;
    atomic_int rc;
};

/* The writer thread; it avoids CHECK (the harness counters are not thread-safe) and reports
 * its first failure in ts->rc instead (1 = still running, 0 = done). */
static void *tail_writer(void *arg)
{
    struct tail_state *ts = arg;
    log_writer *w;
    uint8_t *buf = malloc(50000);
    int rc = buf ? log_writer_create(ts->path, 31, &w) : -ENOMEM;
    if (rc == 0) {
        ts->started = 1;
        for (size_t i = 0; i < ts->n && rc == 0; i++) {
            fill(buf, ts->sizes[i], i);
            rc = log_writer_add(w, buf, ts->sizes[i]);
            if (i % 64 == 0)
                usleep(200);
        }
        int crc = log_writer_close(w);
        rc = rc ? rc : crc;
    }
    free(buf);
    ts->rc = rc;
    ts->started = 1;
    return NULL;
}

static void test_resume_concurrent(void)
{
    struct tail_state ts;
    new_path(ts.path);
    ts.n = 3000;
    ts.started = 0;
    ts.rc = 1;
    ts.sizes = malloc(ts.n * sizeof *ts.sizes);
    CHECK(ts.sizes);
    for (size_t i = 0; i < ts.n; i++)
        ts.sizes[i] = (size_t)(i % 100 == 7 ? 40000 + tu_rand_below(10000) : tu_rand_below(2000));
    pthread_t t;
    CHECK(pthread_create(&t, NULL, tail_writer, &ts) == 0);
    while (!ts.started)
        usleep(100);
    CHECK(ts.rc == 1 || ts.rc == 0);
    log_reader *r;
    CHECK_OK(log_reader_open(ts.path, 31, &r));
    size_t got = 0;
    uint64_t last_progress = kv_mono_us();
    while (got < ts.n) {
        const uint8_t *rec;
        size_t len;
        int rc = log_reader_next(r, &rec, &len);
        CHECK(rc >= 0);
        if (rc == 1) {
            CHECK(len == ts.sizes[got] && matches(rec, len, got));
            got++;
            last_progress = kv_mono_us();
        } else {
            CHECK(kv_mono_us() - last_progress < 10u * 1000 * 1000);
            usleep(50);
        }
    }
    pthread_join(t, NULL);
    CHECK_RC(ts.rc, 0);
    const uint8_t *rec;
    size_t len;
    CHECK_RC(log_reader_next(r, &rec, &len), 0);
    log_reader_close(r);
    free(ts.sizes);
}

/* ---- faults ---- */

struct fault {
    kvio_op op;
    int err;
};

static int fault_hook(kvio_op op, const char *path, void *arg)
{
    KV_UNUSED(path);
    struct fault *f = arg;
    return op == f->op ? f->err : 0;
}

/* Fails the nth call of op (counting from 1), lets every other call through. */
struct nth_fault {
    kvio_op op;
    int err;
    int nth, seen;
};

static int nth_fault_hook(kvio_op op, const char *path, void *arg)
{
    KV_UNUSED(path);
    struct nth_fault *f = arg;
    return op == f->op && ++f->seen == f->nth ? f->err : 0;
}

static void test_faults(void)
{
    char path[PATH_MAX];
    new_path(path);
    log_writer *w;
    CHECK_OK(log_writer_create(path, 40, &w));
    log_writer *w2 = (log_writer *)&w;
    CHECK_RC(log_writer_create(path, 40, &w2), -EEXIST);
    CHECK(w2 == NULL);
    CHECK_OK(log_writer_add(w, "hello", 5));
    struct fault f = {KVIO_WRITE, -EIO};
    kvio_set_fault_hook(fault_hook, &f);
    CHECK_RC(log_writer_add(w, "world", 5), -EIO);
    CHECK(strstr(kv_last_error(), path) != NULL);
    kvio_set_fault_hook(NULL, NULL);
    CHECK_RC(log_writer_add(w, "again", 5), -EIO); /* sticky */
    CHECK_RC(log_writer_sync(w), -EIO);
    CHECK(log_writer_offset(w) == HDR + 5);
    CHECK_OK(log_writer_close(w));

    /* a failed sync is sticky too */
    new_path(path);
    CHECK_OK(log_writer_create(path, 41, &w));
    CHECK_OK(log_writer_add(w, "hello", 5));
    f.op = KVIO_SYNC;
    kvio_set_fault_hook(fault_hook, &f);
    CHECK_RC(log_writer_sync(w), -EIO);
    kvio_set_fault_hook(NULL, NULL);
    CHECK_RC(log_writer_add(w, "x", 1), -EIO);
    CHECK_OK(log_writer_close(w));

    /* a failed read is reported, and the reader resumes once the fault is gone */
    log_reader *r;
    CHECK_OK(log_reader_open(path, 41, &r));
    f.op = KVIO_READ;
    kvio_set_fault_hook(fault_hook, &f);
    const uint8_t *rec;
    size_t len;
    CHECK_RC(log_reader_next(r, &rec, &len), -EIO);
    kvio_set_fault_hook(NULL, NULL);
    CHECK_RC(log_reader_next(r, &rec, &len), 1);
    CHECK(len == 5 && memcmp(rec, "hello", 5) == 0);
    CHECK_RC(log_reader_next(r, &rec, &len), 0);
    log_reader_close(r);

    f.op = KVIO_OPEN;
    kvio_set_fault_hook(fault_hook, &f);
    CHECK_RC(log_reader_open(path, 41, &r), -EIO);
    new_path(path);
    CHECK_RC(log_writer_create(path, 42, &w), -EIO);
    kvio_set_fault_hook(NULL, NULL);
    CHECK_RC(log_reader_open(path, 42, &r), -ENOENT);
}

/* log_writer_start_writeback submits whole pages only (the hook sees a call only once a page
 * is complete), leaves the records intact, and a failure is sticky and names the file. */
static void test_early_writeback(void)
{
    char path[PATH_MAX];
    uint8_t rec[6000];
    new_path(path);
    log_writer *w;
    CHECK_OK(log_writer_create(path, 43, &w));
    struct fault f = {KVIO_SYNC, -EIO};
    fill(rec, 100, 0);
    CHECK_OK(log_writer_add(w, rec, 100));
    kvio_set_fault_hook(fault_hook, &f);
    CHECK_OK(log_writer_start_writeback(w)); /* no whole page yet: no call made */
    kvio_set_fault_hook(NULL, NULL);
    fill(rec, sizeof rec, 1);
    CHECK_OK(log_writer_add(w, rec, sizeof rec)); /* past the first page */
    CHECK_OK(log_writer_start_writeback(w));
    CHECK_OK(log_writer_start_writeback(w)); /* nothing new: no-op */
    fill(rec, 50, 2);
    CHECK_OK(log_writer_add(w, rec, 50));
    CHECK_OK(log_writer_sync(w));
    CHECK_OK(log_writer_close(w));
    size_t sizes[] = {100, sizeof rec, 50}, nread;
    CHECK(read_log(path, 43, sizes, 3, &nread, NULL, NULL) == 0 && nread == 3);

    new_path(path);
    CHECK_OK(log_writer_create(path, 44, &w));
    CHECK_OK(log_writer_add(w, rec, sizeof rec));
    kvio_set_fault_hook(fault_hook, &f);
    CHECK_RC(log_writer_start_writeback(w), -EIO);
    CHECK(strstr(kv_last_error(), path) != NULL);
    kvio_set_fault_hook(NULL, NULL);
    CHECK_RC(log_writer_add(w, "x", 1), -EIO); /* sticky */
    CHECK_OK(log_writer_close(w));
}

/* A reused file (an obsolete log renamed, written over from offset 0): the older log's records
 * past the new ones read as the end of the new log, never as records or as corruption; torn
 * and damaged new records are classified as in a fresh file; seal cuts the old ones off. */
static void test_reuse(void)
{
    char path[PATH_MAX];
    new_path(path);
    size_t old_sizes[80];
    for (size_t i = 0; i < 80; i++)
        old_sizes[i] = i % 9 == 0 ? 40000 : 100 + i * 37;
    write_log(path, 5, old_sizes, 80, NULL);
    uint64_t old_size = file_size(path);
    const size_t sizes[] = {300, 50000, 20, 4000, 1, 700};
    uint64_t ends[6];
    write_log_into(path, 9, sizes, 6, ends, 1);
    CHECK(file_size(path) == old_size); /* overwritten in place: the size did not change */
    size_t nread;
    uint64_t good;
    CHECK_RC(read_log(path, 9, sizes, 6, &nread, &good, NULL), 0);
    CHECK(nread == 6 && good == ends[5]);

    /* the last new record torn: the end of the log, whatever old bytes follow */
    uint8_t b = peek(path, ends[4] + 30), flipped = (uint8_t)(b ^ 0x40);
    patch(path, ends[4] + 30, &flipped, 1);
    CHECK_RC(read_log(path, 9, sizes, 6, &nread, &good, NULL), 0);
    CHECK(nread == 5 && good == ends[4]);
    patch(path, ends[4] + 30, &b, 1);

    /* damage in the middle of the new records: corruption, as in a fresh file */
    b = peek(path, ends[2] + 5);
    flipped = (uint8_t)(b ^ 0x01);
    patch(path, ends[2] + 5, &flipped, 1);
    uint64_t bad;
    CHECK_RC(read_log(path, 9, sizes, 6, &nread, &good, &bad), -EUCLEAN);
    CHECK(nread == 3 && bad == ends[2]);
    patch(path, ends[2] + 5, &b, 1);

    /* seal: the file ends where the new log does; appending afterwards still reads back */
    log_writer *w;
    CHECK_OK(log_writer_reuse(path, 11, &w));
    uint8_t buf[500];
    fill(buf, sizeof buf, 0);
    CHECK_OK(log_writer_add(w, buf, sizeof buf));
    CHECK_OK(log_writer_seal(w));
    CHECK(file_size(path) == log_writer_offset(w));
    fill(buf, sizeof buf, 1);
    CHECK_OK(log_writer_add(w, buf, sizeof buf));
    CHECK_OK(log_writer_sync(w));
    CHECK_OK(log_writer_close(w));
    const size_t two[] = {500, 500};
    CHECK_RC(read_log(path, 11, two, 2, &nread, &good, NULL), 0);
    CHECK(nread == 2 && good == file_size(path));
}

/* Zeros written ahead of the records (log_writer_prepare_ahead): the file keeps a zero tail of
 * about the asked size while it grows, every reader takes the zeros for the end of the log,
 * damage before them is still corruption, and the seal cuts them off. */
static void test_prepare_ahead(void)
{
    char path[PATH_MAX];
    new_path(path);
    log_writer *w;
    CHECK_OK(log_writer_create(path, 13, &w));
    log_writer_prepare_ahead(w, 64 * 1024);
    const size_t sizes[] = {300, 20000, 50000, 7, 40000, 3000};
    uint8_t *buf = malloc(50000);
    CHECK(buf);
    log_reader *tail;
    CHECK_OK(log_reader_open(path, 13, &tail));
    const uint8_t *rec;
    size_t len, nread;
    uint64_t ends[6], good, bad;
    for (size_t i = 0; i < 6; i++) {
        fill(buf, sizes[i], i);
        CHECK_OK(log_writer_add(w, buf, sizes[i]));
        ends[i] = log_writer_offset(w);
        uint64_t size = file_size(path);
        CHECK(size >= ends[i] + 32 * 1024 && size <= ends[i] + 64 * 1024);
        /* a tailing reader gets exactly the new record, then the end */
        CHECK_RC(log_reader_next(tail, &rec, &len), 1);
        CHECK(len == sizes[i] && matches(rec, len, i));
        CHECK_RC(log_reader_next(tail, &rec, &len), 0);
    }
    log_reader_close(tail);
    CHECK_OK(log_writer_sync(w));
    CHECK_RC(read_log(path, 13, sizes, 6, &nread, &good, NULL), 0);
    CHECK(nread == 6 && good == ends[5]);
    /* a bad byte in the data of record 3 with whole records after it, then zeros: corruption */
    uint8_t b = peek(path, ends[2] + 12), flipped = (uint8_t)(b ^ 0x08);
    patch(path, ends[2] + 12, &flipped, 1);
    CHECK_RC(read_log(path, 13, sizes, 6, &nread, &good, &bad), -EUCLEAN);
    CHECK(nread == 3);
    patch(path, ends[2] + 12, &b, 1);
    /* the last record torn, zeros after it: the end of the log */
    b = peek(path, ends[4] + 100);
    flipped = (uint8_t)(b ^ 0x08);
    patch(path, ends[4] + 100, &flipped, 1);
    CHECK_RC(read_log(path, 13, sizes, 6, &nread, &good, NULL), 0);
    CHECK(nread == 5 && good == ends[4]);
    patch(path, ends[4] + 100, &b, 1);
    /* the seal leaves the records only */
    CHECK_OK(log_writer_seal(w));
    CHECK(file_size(path) == ends[5]);
    CHECK_OK(log_writer_close(w));
    CHECK_RC(read_log(path, 13, sizes, 6, &nread, &good, NULL), 0);
    CHECK(nread == 6 && good == ends[5]);

    /* the zeros cannot be written (a full disk): the record still is, the log goes on
     * appending, and the seal cuts off the part of the zeros that was written */
    new_path(path);
    CHECK_OK(log_writer_create(path, 14, &w));
    log_writer_prepare_ahead(w, 256 * 1024);
    struct nth_fault nf = {KVIO_WRITE, -ENOSPC, 3, 0}; /* record, 64 KiB of zeros, then full */
    kvio_set_fault_hook(nth_fault_hook, &nf);
    fill(buf, sizes[0], 0);
    CHECK_OK(log_writer_add(w, buf, sizes[0]));
    kvio_set_fault_hook(NULL, NULL);
    ends[0] = log_writer_offset(w);
    CHECK(file_size(path) == ends[0] + 64 * 1024);
    for (size_t i = 1; i < 6; i++) {
        fill(buf, sizes[i], i);
        CHECK_OK(log_writer_add(w, buf, sizes[i]));
        ends[i] = log_writer_offset(w);
        CHECK(file_size(path) == KV_MAX(ends[i], ends[0] + 64 * 1024));
    }
    CHECK_RC(read_log(path, 14, sizes, 6, &nread, &good, NULL), 0);
    CHECK(nread == 6 && good == ends[5]);
    CHECK_OK(log_writer_seal(w));
    CHECK(file_size(path) == ends[5]);
    CHECK_OK(log_writer_close(w));
    free(buf);
}

int main(void)
{
    tu_seed_init();
    snprintf(dir, sizeof dir, "%s", tu_tmpdir("log"));
    test_sizes();
    test_padding();
    test_huge_record();
    test_torn_tail();
    test_bitflip();
    test_zeroed();
    test_foreign();
    test_crafted();
    test_reuse();
    test_prepare_ahead();
    test_resume_growth();
    test_resume_concurrent();
    test_faults();
    test_early_writeback();
    tu_rmtree(dir);
    TU_DONE("test_log");
}
