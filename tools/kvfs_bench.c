/*
 * kvfs_bench.c -- kvfs-bench, a micro-benchmark of the kvfs engine that speaks RocksDB
 * db_bench's flag language and prints db_bench's result lines, so the two can be run with
 * identical parameters and compared line by line (tools/compare-db-bench.sh does that).
 *
 *   kvfs-bench --benchmarks=fillseq,readrandom --num=1000000 --threads=1 --db=/tmp/kvfs-bench
 *
 * Semantics copied from db_bench (RocksDB 7.x):
 *   - Benchmarks run in the order given, on one store. fillseq and fillrandom want a fresh
 *     store: it is destroyed and recreated before them (skipped with --use_existing_db=1).
 *   - With --threads=N every thread performs --num operations (--reads for readrandom and
 *     readseq when given), so the total is N * num; fillseq threads all write keys 0..num-1.
 *   - micros/op is the sum of the threads' busy time divided by the total operations;
 *     ops/sec and MB/s use the wall-clock span from the first thread's start to the last
 *     thread's end. MB/s counts key+value bytes of every write, every found read and every
 *     scanned entry.
 *   - Keys are key_size bytes of zero-padded decimal key number (LevelDB's db_bench format;
 *     ordered like the numbers). Values come from a 1 MiB buffer of pieces that compress to
 *     --compression_ratio of their size (db_bench's RandomGenerator/CompressibleString).
 *
 * Each operation's latency goes into a per-thread log-bucket histogram (8 sub-buckets per
 * power of two of nanoseconds, so a percentile is within 12.5%); the result line ends with
 * "(p99 X micros)" and --histogram prints the whole distribution like db_bench does.
 *
 * Invariant: the store directory is only ever deleted when it is empty or holds a CURRENT
 * file (looks like a store), so a mistyped --db cannot remove unrelated data.
 */
#include "kv.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ============================================================================ flags ==== */

typedef enum { FL_I64, FL_BOOL, FL_STR, FL_DBL } fl_type;

static struct bench_flags {
    const char *benchmarks;
    int64_t num, reads, key_size, value_size, threads, seed;
    int64_t cache_size, write_buffer_size, compression_level;
    int64_t sync, use_existing_db, histogram, disable_wal;
    const char *db, *compression;
    double compression_ratio;
} FL = {
    .benchmarks = "fillseq,fillrandom,overwrite,readrandom,readseq",
    .num = 1000000,
    .reads = -1,
    .key_size = 16,
    .value_size = 100,
    .threads = 1,
    .seed = 301,
    .cache_size = -1,
    .write_buffer_size = -1,
    .compression_level = -1,
    .db = "/tmp/kvfs-bench",
    .compression = "zstd",
    .compression_ratio = 0.5,
};

typedef struct fl_def {
    const char *name;
    fl_type type;
    void *p;
    const char *help;
} fl_def;

static const fl_def fl_defs[] = {
    {"benchmarks", FL_STR, &FL.benchmarks,
     "comma list of fillseq,fillrandom,overwrite,readrandom,readseq, run in order"},
    {"num", FL_I64, &FL.num, "key/values per thread to write; key space size"},
    {"reads", FL_I64, &FL.reads, "reads per thread (readrandom, readseq); <0: --num"},
    {"key_size", FL_I64, &FL.key_size, "size of each key"},
    {"value_size", FL_I64, &FL.value_size, "size of each value"},
    {"threads", FL_I64, &FL.threads, "number of concurrent threads"},
    {"sync", FL_BOOL, &FL.sync, "fsync the WAL on every write"},
    {"db", FL_STR, &FL.db, "store directory"},
    {"use_existing_db", FL_BOOL, &FL.use_existing_db, "do not destroy the store first"},
    {"compression", FL_STR, &FL.compression, "none | zstd"},
    {"compression_type", FL_STR, &FL.compression, "same as --compression (db_bench name)"},
    {"compression_level", FL_I64, &FL.compression_level, "zstd level (default 1)"},
    {"compression_ratio", FL_DBL, &FL.compression_ratio, "values compress to this fraction"},
    {"cache_size", FL_I64, &FL.cache_size, "block cache bytes (default: engine's)"},
    {"write_buffer_size", FL_I64, &FL.write_buffer_size, "memtable bytes (default: engine's)"},
    {"histogram", FL_BOOL, &FL.histogram, "print the latency histogram"},
    {"seed", FL_I64, &FL.seed, "random seed"},
    {"disable_wal", FL_BOOL, &FL.disable_wal, "accepted for compatibility; must be 0"},
};

#define FL_NDEFS (sizeof(fl_defs) / sizeof(fl_defs[0]))

static void fl_usage(FILE *f)
{
    fprintf(f, "Usage: kvfs-bench [--flag=value]...  (db_bench flag language)\n\nFlags:\n");
    for (size_t i = 0; i < FL_NDEFS; i++)
        fprintf(f, "  --%-20s %s\n", fl_defs[i].name, fl_defs[i].help);
    fprintf(f, "  --help                 this help\n  --version              print the version\n");
}

static int fl_parse_bool(const char *v, int64_t *out)
{
    if (!v || !strcmp(v, "1") || !strcmp(v, "true") || !strcmp(v, "yes"))
        *out = 1;
    else if (!strcmp(v, "0") || !strcmp(v, "false") || !strcmp(v, "no"))
        *out = 0;
    else
        return -1;
    return 0;
}

static int fl_set(const fl_def *d, const char *v)
{
    char *end;
    switch (d->type) {
    case FL_BOOL:
        return fl_parse_bool(v, d->p);
    case FL_STR:
        if (!v)
            return -1;
        *(const char **)d->p = v;
        return 0;
    case FL_I64:
        if (!v || !*v)
            return -1;
        errno = 0;
        *(int64_t *)d->p = strtoll(v, &end, 10);
        return errno || *end ? -1 : 0;
    case FL_DBL:
        if (!v || !*v)
            return -1;
        errno = 0;
        *(double *)d->p = strtod(v, &end);
        return errno || *end ? -1 : 0;
    }
    return -1;
}

/* Parses "--name=value", "-name=value", "--name value" and bare "--boolname". Returns -1 to
 * go on, or an exit code. */
static int fl_parse(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-') {
            fprintf(stderr, "kvfs-bench: unexpected argument '%s'\n", a);
            return 2;
        }
        a += a[1] == '-' ? 2 : 1;
        if (!strcmp(a, "help")) {
            fl_usage(stdout);
            return 0;
        }
        if (!strcmp(a, "version")) {
            printf("kvfs-bench (kvfs) %s\n", KV_VERSION_STRING);
            return 0;
        }
        const char *eq = strchr(a, '=');
        size_t nlen = eq ? (size_t)(eq - a) : strlen(a);
        const fl_def *d = NULL;
        for (size_t j = 0; j < FL_NDEFS && !d; j++)
            if (strlen(fl_defs[j].name) == nlen && !strncmp(fl_defs[j].name, a, nlen))
                d = &fl_defs[j];
        if (!d) {
            fprintf(stderr, "kvfs-bench: unknown flag '%s' (see --help)\n", argv[i]);
            return 2;
        }
        const char *v = eq ? eq + 1 : NULL;
        if (!v && d->type != FL_BOOL && i + 1 < argc)
            v = argv[++i];
        if (fl_set(d, v) < 0) {
            fprintf(stderr, "kvfs-bench: bad value for --%s: '%s'\n", d->name, v ? v : "");
            return 2;
        }
    }
    return -1;
}

static int fl_validate(void)
{
    const char *bad = NULL;
    if (FL.num < 1)
        bad = "--num must be at least 1";
    else if (FL.key_size < 1 || FL.key_size > (int64_t)KV_MAX_KEY_BYTES)
        bad = "--key_size out of range";
    else if (FL.value_size < 0 || FL.value_size > (int64_t)KV_MAX_VALUE_BYTES)
        bad = "--value_size out of range";
    else if (FL.threads < 1 || FL.threads > 1024)
        bad = "--threads must be 1..1024";
    else if (strcmp(FL.compression, "none") && strcmp(FL.compression, "zstd"))
        bad = "--compression must be none or zstd";
    else if (FL.compression_ratio <= 0.0 || FL.compression_ratio > 1.0)
        bad = "--compression_ratio must be in (0, 1]";
    else if (FL.disable_wal)
        bad = "--disable_wal=1 is not supported: the kvfs engine always writes its WAL";
    else if (FL.compression_level > 19)
        bad = "--compression_level must be at most 19";
    if (!bad && FL.key_size < 20) {
        int64_t max = 1;
        for (int64_t i = 0; i < FL.key_size; i++)
            max *= 10;
        if (FL.num > max)
            bad = "--key_size too small to hold every key number below --num";
    }
    if (bad) {
        fprintf(stderr, "kvfs-bench: %s\n", bad);
        return 2;
    }
    return -1;
}

/* ================================================================= helpers ==== */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* splitmix64: small, fast, good enough for key choice. */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Formats key number k as FL.key_size bytes of zero-padded decimal into buf. */
static void key_format(char *buf, uint64_t k)
{
    for (int64_t i = FL.key_size - 1; i >= 0; i--) {
        buf[i] = (char)('0' + k % 10);
        k /= 10;
    }
}

/* ---- value generator: db_bench's RandomGenerator ---- */

#define VGEN_BYTES (1024 * 1024)

static char *vgen_data;
static size_t vgen_len;

static int vgen_init(void)
{
    size_t need = VGEN_BYTES > (size_t)FL.value_size ? VGEN_BYTES : (size_t)FL.value_size;
    vgen_len = need + 100;
    vgen_data = malloc(vgen_len);
    if (!vgen_data)
        return -ENOMEM;
    uint64_t s = 301;
    /* Pieces of 100 bytes: raw random printable bytes (ratio of the piece), repeated. */
    for (size_t pos = 0; pos < vgen_len; pos += 100) {
        size_t plen = vgen_len - pos < 100 ? vgen_len - pos : 100;
        size_t raw = (size_t)(100 * FL.compression_ratio);
        if (raw < 1)
            raw = 1;
        char piece[100];
        for (size_t i = 0; i < raw && i < 100; i++)
            piece[i] = (char)(' ' + rng_next(&s) % 95);
        for (size_t i = raw; i < 100; i++)
            piece[i] = piece[i % raw];
        memcpy(vgen_data + pos, piece, plen);
    }
    return 0;
}

/* A value of FL.value_size bytes; *pos is the thread's cursor into the buffer. */
static const char *vgen_next(size_t *pos)
{
    if (*pos + (size_t)FL.value_size > vgen_len)
        *pos = 0;
    const char *v = vgen_data + *pos;
    *pos += (size_t)FL.value_size;
    return v;
}

/* ---- log-bucket latency histogram (nanoseconds) ---- */

#define HIST_SUB_BITS 3
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_BUCKETS (HIST_SUB + (64 - HIST_SUB_BITS) * HIST_SUB)

typedef struct hist {
    uint64_t count, min, max;
    double sum, sumsq;
    uint64_t b[HIST_BUCKETS];
} hist;

static void hist_init(hist *h)
{
    memset(h, 0, sizeof(*h));
    h->min = UINT64_MAX;
}

static unsigned hist_index(uint64_t v)
{
    if (v < HIST_SUB)
        return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned shift = msb - HIST_SUB_BITS;
    return HIST_SUB + shift * HIST_SUB + (unsigned)((v >> shift) & (HIST_SUB - 1));
}

/* [lo, hi) of bucket i. */
static void hist_bounds(unsigned i, double *lo, double *hi)
{
    if (i < HIST_SUB) {
        *lo = i;
        *hi = i + 1;
        return;
    }
    unsigned shift = (i - HIST_SUB) / HIST_SUB, m = (i - HIST_SUB) % HIST_SUB;
    double scale = (double)(1ull << shift);
    *lo = (double)(HIST_SUB + m) * scale;
    *hi = (double)(HIST_SUB + m + 1) * scale;
}

static void hist_add(hist *h, uint64_t v)
{
    h->count++;
    h->b[hist_index(v)]++;
    if (v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
    h->sum += (double)v;
    h->sumsq += (double)v * (double)v;
}

static void hist_merge(hist *into, const hist *h)
{
    into->count += h->count;
    if (h->min < into->min)
        into->min = h->min;
    if (h->max > into->max)
        into->max = h->max;
    into->sum += h->sum;
    into->sumsq += h->sumsq;
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        into->b[i] += h->b[i];
}

/* The p-th percentile (0..100) in nanoseconds, interpolated within its bucket. */
static double hist_percentile(const hist *h, double p)
{
    if (!h->count)
        return 0.0;
    double want = (double)h->count * p / 100.0, cum = 0.0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        if (!h->b[i])
            continue;
        if (cum + (double)h->b[i] >= want) {
            double lo, hi;
            hist_bounds(i, &lo, &hi);
            double r = lo + (hi - lo) * (want - cum) / (double)h->b[i];
            if (r < (double)h->min)
                r = (double)h->min;
            if (r > (double)h->max)
                r = (double)h->max;
            return r;
        }
        cum += (double)h->b[i];
    }
    return (double)h->max;
}

/* Square root by Newton's method (keeps the tool free of libm). */
static double hist_sqrt(double x)
{
    if (x <= 0)
        return 0;
    double r = x > 1 ? x : 1;
    for (int i = 0; i < 200; i++) {
        double next = 0.5 * (r + x / r);
        if (next >= r)
            break;
        r = next;
    }
    return r;
}

static void hist_print(const hist *h, const char *what)
{
    double n = h->count ? (double)h->count : 1.0;
    double avg = h->sum / n;
    double var = h->sumsq / n - avg * avg;
    printf("Microseconds per %s:\n", what);
    printf("Count: %" PRIu64 " Average: %.4f  StdDev: %.2f\n", h->count, avg / 1e3,
           hist_sqrt(var) / 1e3);
    printf("Min: %.3f  Median: %.4f  Max: %.3f\n", h->count ? (double)h->min / 1e3 : 0.0,
           hist_percentile(h, 50) / 1e3, (double)h->max / 1e3);
    printf("Percentiles: P50: %.2f P75: %.2f P99: %.2f P99.9: %.2f P99.99: %.2f\n",
           hist_percentile(h, 50) / 1e3, hist_percentile(h, 75) / 1e3, hist_percentile(h, 99) / 1e3,
           hist_percentile(h, 99.9) / 1e3, hist_percentile(h, 99.99) / 1e3);
    printf("------------------------------------------------------\n");
    double cum = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        if (!h->b[i])
            continue;
        double lo, hi;
        hist_bounds(i, &lo, &hi);
        double pct = 100.0 * (double)h->b[i] / n;
        cum += pct;
        printf("[ %10.3f, %10.3f ) %8" PRIu64 " %7.3f%% %7.3f%% ", lo / 1e3, hi / 1e3, h->b[i], pct,
               cum);
        for (int k = 0; k < (int)(pct / 5.0 + 0.5); k++)
            putchar('#');
        putchar('\n');
    }
    putchar('\n');
}

/* ---- store lifetime ---- */

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    if (remove(path) < 0 && errno != ENOENT) {
        fprintf(stderr, "kvfs-bench: remove %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* Removes the store at FL.db if it is absent, empty or looks like a store. */
static int store_destroy(void)
{
    DIR *d = opendir(FL.db);
    if (!d) {
        if (errno == ENOENT)
            return 0;
        fprintf(stderr, "kvfs-bench: %s: %s\n", FL.db, strerror(errno));
        return -1;
    }
    int entries = 0, has_current = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        entries++;
        has_current |= !strcmp(de->d_name, "CURRENT");
    }
    closedir(d);
    if (entries && !has_current) {
        fprintf(stderr, "kvfs-bench: %s: not empty and not a kvfs store; refusing to delete it\n",
                FL.db);
        return -1;
    }
    return nftw(FL.db, rm_entry, 16, FTW_DEPTH | FTW_PHYS) == 0 ? 0 : -1;
}

static kv_db *store_open(void)
{
    kv_options opt;
    kv_options_init(&opt);
    if (FL.cache_size >= 0)
        opt.block_cache_bytes = (size_t)FL.cache_size;
    if (FL.write_buffer_size > 0)
        opt.memtable_bytes = (size_t)FL.write_buffer_size;
    if (!strcmp(FL.compression, "none"))
        opt.compression_level = 0;
    else if (FL.compression_level > 0)
        opt.compression_level = (int)FL.compression_level;
    else if (opt.compression_level <= 0)
        opt.compression_level = 1;
    opt.sync_writes = 0;
    kv_db *db = NULL;
    int rc = kv_open(FL.db, &opt, &db);
    if (rc < 0) {
        const char *m = kv_last_error();
        fprintf(stderr, "kvfs-bench: open %s: %s\n", FL.db, *m ? m : strerror(-rc));
        return NULL;
    }
    return db;
}

/* ============================================================== benchmarks ==== */

struct bench_shared;

typedef struct bench_thread {
    struct bench_shared *sh;
    int tid;
    uint64_t seed_index; /* counts threads across benchmarks, as db_bench does, so a
                            readrandom does not replay the key sequence of the fill before */
    uint64_t rng;
    size_t vpos;
    uint64_t start_ns, finish_ns, last_ns;
    uint64_t done, bytes, found, attempted;
    int err;
    hist h;
} bench_thread;

typedef struct bench_shared {
    kv_db *db;
    int (*fn)(kv_db *db, bench_thread *t);
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int ready, go;
} bench_shared;

/* Records one finished operation: its latency is the time since the previous one ended. */
static inline void op_done(bench_thread *t, uint64_t bytes)
{
    uint64_t now = now_ns();
    hist_add(&t->h, now - t->last_ns);
    t->last_ns = now;
    t->done++;
    t->bytes += bytes;
}

static void op_error(const char *what, int rc)
{
    const char *m = kv_last_error();
    fprintf(stderr, "kvfs-bench: %s: %s\n", what, *m ? m : strerror(-rc));
}

static int do_write(kv_db *db, bench_thread *t, int sequential)
{
    char key[KV_MAX_KEY_BYTES];
    unsigned flags = FL.sync ? KV_WRITE_SYNC : KV_WRITE_NOSYNC;
    for (int64_t i = 0; i < FL.num; i++) {
        uint64_t k = sequential ? (uint64_t)i : rng_next(&t->rng) % (uint64_t)FL.num;
        key_format(key, k);
        const char *v = vgen_next(&t->vpos);
        int rc = kv_put(db, key, (size_t)FL.key_size, v, (size_t)FL.value_size, flags);
        if (rc < 0) {
            op_error("put", rc);
            return rc;
        }
        op_done(t, (uint64_t)(FL.key_size + FL.value_size));
    }
    return 0;
}

static int b_fillseq(kv_db *db, bench_thread *t)
{
    return do_write(db, t, 1);
}

static int b_fillrandom(kv_db *db, bench_thread *t)
{
    return do_write(db, t, 0);
}

static int64_t reads_per_thread(void)
{
    return FL.reads < 0 ? FL.num : FL.reads;
}

static int b_readrandom(kv_db *db, bench_thread *t)
{
    char key[KV_MAX_KEY_BYTES];
    int64_t n = reads_per_thread();
    for (int64_t i = 0; i < n; i++) {
        key_format(key, rng_next(&t->rng) % (uint64_t)FL.num);
        void *val = NULL;
        size_t vlen = 0;
        int rc = kv_get(db, NULL, key, (size_t)FL.key_size, &val, &vlen, NULL);
        t->attempted++;
        if (rc == 0) {
            t->found++;
            free(val);
            op_done(t, (uint64_t)FL.key_size + vlen);
        } else if (rc == -ENOENT) {
            op_done(t, 0);
        } else {
            op_error("get", rc);
            return rc;
        }
    }
    return 0;
}

static int b_readseq(kv_db *db, bench_thread *t)
{
    kv_iter_opts io;
    memset(&io, 0, sizeof(io));
    kv_iter *it = NULL;
    int rc = kv_iter_new(db, &io, &it);
    if (rc < 0) {
        op_error("iterator", rc);
        return rc;
    }
    int64_t n = reads_per_thread(), i = 0;
    for (kv_iter_seek_first(it); i < n && kv_iter_valid(it); kv_iter_next(it), i++) {
        size_t klen, vlen;
        kv_iter_key(it, &klen);
        kv_iter_value(it, &vlen);
        op_done(t, klen + vlen);
    }
    rc = kv_iter_status(it);
    if (rc < 0)
        op_error("iterator", rc);
    kv_iter_free(it);
    return rc;
}

static void *bench_thread_main(void *arg)
{
    bench_thread *t = arg;
    bench_shared *sh = t->sh;
    t->rng = (uint64_t)FL.seed * 1000003u + (uint64_t)t->seed_index * 7919u + 1;
    pthread_mutex_lock(&sh->mu);
    sh->ready++;
    pthread_cond_broadcast(&sh->cv);
    while (!sh->go)
        pthread_cond_wait(&sh->cv, &sh->mu);
    pthread_mutex_unlock(&sh->mu);
    t->start_ns = t->last_ns = now_ns();
    t->err = sh->fn(sh->db, t);
    t->finish_ns = now_ns();
    return NULL;
}

typedef struct bench_def {
    const char *name;
    int fresh;
    int writes;
    int (*fn)(kv_db *db, bench_thread *t);
} bench_def;

static const bench_def bench_defs[] = {
    {"fillseq", 1, 1, b_fillseq},      {"fillrandom", 1, 1, b_fillrandom},
    {"overwrite", 0, 1, b_fillrandom}, {"readrandom", 0, 0, b_readrandom},
    {"readseq", 0, 0, b_readseq},
};

#define NBENCH (sizeof(bench_defs) / sizeof(bench_defs[0]))

static void bench_report(const bench_def *b, bench_thread *ts, int n)
{
    uint64_t done = 0, bytes = 0, found = 0, attempted = 0, start = UINT64_MAX, finish = 0;
    double busy = 0;
    hist *h = malloc(sizeof(*h));
    if (h)
        hist_init(h);
    for (int i = 0; i < n; i++) {
        done += ts[i].done;
        bytes += ts[i].bytes;
        found += ts[i].found;
        attempted += ts[i].attempted;
        busy += (double)(ts[i].finish_ns - ts[i].start_ns) / 1e9;
        if (ts[i].start_ns < start)
            start = ts[i].start_ns;
        if (ts[i].finish_ns > finish)
            finish = ts[i].finish_ns;
        if (h)
            hist_merge(h, &ts[i].h);
    }
    uint64_t ops = done ? done : 1;
    double elapsed = (double)(finish - start) / 1e9;
    if (elapsed <= 0)
        elapsed = 1e-9;
    char extra[160] = "";
    size_t len = 0;
    if (bytes)
        len += (size_t)snprintf(extra, sizeof(extra), " %6.1f MB/s",
                                (double)bytes / 1048576.0 / elapsed);
    if (b->fn == b_readrandom)
        len += (size_t)snprintf(extra + len, sizeof(extra) - len,
                                " (%" PRIu64 " of %" PRIu64 " found)", found, attempted);
    if (h)
        snprintf(extra + len, sizeof(extra) - len, " (p99 %.3f micros)",
                 hist_percentile(h, 99) / 1e3);
    printf("%-12s : %11.3f micros/op %ld ops/sec %.3f seconds %" PRIu64 " operations;%s\n", b->name,
           busy * 1e6 / (double)ops, (long)((double)done / elapsed), elapsed, done, extra);
    if (FL.histogram && h)
        hist_print(h, b->writes ? "write" : "read");
    fflush(stdout);
    free(h);
}

static uint64_t bench_threads_total;

/* Runs b on FL.threads threads. Returns 0 or the first thread's error. */
static int bench_run(kv_db *db, const bench_def *b)
{
    int n = (int)FL.threads, rc = 0, started = 0;
    bench_shared sh = {.db = db, .fn = b->fn};
    bench_thread *ts = calloc((size_t)n, sizeof(*ts));
    pthread_t *tid = calloc((size_t)n, sizeof(*tid));
    if (!ts || !tid) {
        fprintf(stderr, "kvfs-bench: out of memory\n");
        rc = -ENOMEM;
        goto out;
    }
    pthread_mutex_init(&sh.mu, NULL);
    pthread_cond_init(&sh.cv, NULL);
    for (; started < n; started++) {
        ts[started].tid = started;
        ts[started].seed_index = bench_threads_total++;
        ts[started].vpos = (size_t)started * 4099u % vgen_len;
        ts[started].sh = &sh;
        hist_init(&ts[started].h);
        int e = pthread_create(&tid[started], NULL, bench_thread_main, &ts[started]);
        if (e) {
            fprintf(stderr, "kvfs-bench: pthread_create: %s\n", strerror(e));
            rc = -e;
            break;
        }
    }
    pthread_mutex_lock(&sh.mu);
    while (sh.ready < started)
        pthread_cond_wait(&sh.cv, &sh.mu);
    sh.go = 1;
    pthread_cond_broadcast(&sh.cv);
    pthread_mutex_unlock(&sh.mu);
    for (int i = 0; i < started; i++) {
        pthread_join(tid[i], NULL);
        if (ts[i].err && !rc)
            rc = ts[i].err;
    }
    pthread_mutex_destroy(&sh.mu);
    pthread_cond_destroy(&sh.cv);
    if (!rc)
        bench_report(b, ts, n);
out:
    free(ts);
    free(tid);
    return rc;
}

/* ==================================================================== main ==== */

static const bench_def *bench_find(const char *name, size_t len)
{
    for (size_t i = 0; i < NBENCH; i++)
        if (strlen(bench_defs[i].name) == len && !strncmp(bench_defs[i].name, name, len))
            return &bench_defs[i];
    return NULL;
}

/* Splits FL.benchmarks. OUT: list (room for cap), *n. */
static int bench_parse_list(const bench_def **list, size_t cap, size_t *n)
{
    *n = 0;
    for (const char *p = FL.benchmarks; *p;) {
        const char *c = strchr(p, ',');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        if (len) {
            const bench_def *b = bench_find(p, len);
            if (!b) {
                fprintf(stderr, "kvfs-bench: unknown benchmark '%.*s'\n", (int)len, p);
                return 2;
            }
            if (*n == cap) {
                fprintf(stderr, "kvfs-bench: too many benchmarks\n");
                return 2;
            }
            list[(*n)++] = b;
        }
        p += len + (c ? 1 : 0);
    }
    return -1;
}

static void print_header(void)
{
    double raw = (double)(FL.key_size + FL.value_size) * (double)FL.num / 1048576.0;
    double file = ((double)FL.key_size + (double)FL.value_size * FL.compression_ratio) *
                  (double)FL.num / 1048576.0;
    time_t now = time(NULL);
    char date[64];
    struct tm tm;
    if (!localtime_r(&now, &tm) || !strftime(date, sizeof(date), "%c", &tm))
        snprintf(date, sizeof(date), "?");
    printf("kvfs:       version %s\n", KV_VERSION_STRING);
    printf("Date:       %s\n", date);
    printf("Keys:       %" PRId64 " bytes each\n", FL.key_size);
    printf("Values:     %" PRId64 " bytes each (%" PRId64 " bytes after compression)\n",
           FL.value_size, (int64_t)((double)FL.value_size * FL.compression_ratio));
    printf("Entries:    %" PRId64 "\n", FL.num);
    printf("RawSize:    %.1f MB (estimated)\n", raw);
    printf("FileSize:   %.1f MB (estimated)\n", file);
    printf("Compression: %s\n", FL.compression);
    printf("Threads:    %" PRId64 ", sync: %" PRId64 "\n", FL.threads, FL.sync);
    printf("DB path:    [%s]\n", FL.db);
    printf("------------------------------------------------\n");
    fflush(stdout);
}

int main(int argc, char **argv)
{
    int r = fl_parse(argc, argv);
    if (r < 0)
        r = fl_validate();
    if (r >= 0)
        return r;
    const bench_def *list[256];
    size_t n;
    r = bench_parse_list(list, sizeof(list) / sizeof(list[0]), &n);
    if (r >= 0)
        return r;
    if (vgen_init() < 0) {
        fprintf(stderr, "kvfs-bench: out of memory\n");
        return 1;
    }
    int code = 0;
    kv_db *db = NULL;
    if (!FL.use_existing_db && store_destroy() < 0) {
        code = 1;
        goto out;
    }
    if (!(db = store_open())) {
        code = 1;
        goto out;
    }
    print_header();
    for (size_t i = 0; i < n; i++) {
        const bench_def *b = list[i];
        if (b->fresh && FL.use_existing_db) {
            printf("%-12s : skipped (--use_existing_db is true)\n", b->name);
            continue;
        }
        if (b->fresh) {
            int rc = kv_close(db);
            db = NULL;
            if (rc < 0) {
                op_error("close", rc);
                code = 1;
                goto out;
            }
            if (store_destroy() < 0 || !(db = store_open())) {
                code = 1;
                goto out;
            }
        }
        if (bench_run(db, b) < 0) {
            fprintf(stderr, "kvfs-bench: %s failed\n", b->name);
            code = 1;
            goto out;
        }
    }
out:
    if (db) {
        int rc = kv_close(db);
        if (rc < 0) {
            op_error("close", rc);
            code = 1;
        }
    }
    free(vgen_data);
    return code;
}
