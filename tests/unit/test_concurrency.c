/*
 * test_concurrency.c -- the engine under concurrent writers, readers and maintenance,
 * through engine/kv.h only. Must also be clean under ThreadSanitizer (-DKVFS_TSAN=ON).
 *
 * Part 1 (a few seconds, small memtable so flushes and compactions run all the time):
 *   - 4 writer threads, each owning a disjoint key set: single keys "w<W>-k<I>" get puts
 *     (value = writer, key, version, padding derived from them) and deletes (some as range
 *     deletions of exactly that key); groups
 *     "w<W>-g<G>-<1..5>" get batches writing all five keys with one new version number.
 *     Each writer keeps its own model and reads its keys back (read-your-writes). Every
 *     kv_write's sequence range is recorded; ranges of all writers must never overlap.
 *   - 2 reader threads: at a fresh snapshot, the five keys of a group are all absent or all
 *     hold the same version with consecutive sequences (a batch is seen whole or not at
 *     all); a later snapshot never sees an older group version; prefix iterators at a
 *     snapshot see every group whole too; every value read anywhere is byte-exact.
 *   - 1 thread doing kv_flush / kv_compact_range / kv_get_stats / named snapshots.
 *   Then: every key matches the writers' models, also after close + reopen; kv_verify = 0.
 * Part 2: 8 threads doing KV_WRITE_SYNC puts at once (the group-commit path): all succeed
 * and all are there after reopen.
 *
 * KVFS_SEED=N repeats the random choices; KVFS_CONC_MS sets the run time (default 3000).
 */
#include "kv.h"
#include "testutil.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>

#define NWRITERS 4
#define NREADERS 2
#define NSINGLE 150
#define NGROUPS 12
#define GROUP_KEYS 5
#define MAX_RANGES 200000

static kv_db *db;
static atomic_int stop;
static atomic_int failed;
static uint64_t seed_base;

/* Per-writer state; group versions are published so readers can check monotonicity. */
typedef struct writer {
    int id;
    uint64_t rng;
    uint32_t single_ver[NSINGLE]; /* 0 = never written; odd/even not meaningful */
    int single_present[NSINGLE];
    uint32_t group_ver[NGROUPS];
    atomic_uint_fast32_t group_issued[NGROUPS]; /* highest version handed to kv_write */
    uint64_t (*ranges)[2];
    size_t nranges;
    long ops;
} writer;

static writer writers[NWRITERS];

#define TFAIL(...)                                                                                 \
    do {                                                                                           \
        fprintf(stderr, "test_concurrency: " __VA_ARGS__);                                         \
        fprintf(stderr, " (seed %" PRIu64 ")\n", tu_seed);                                         \
        atomic_store(&failed, 1);                                                                  \
        atomic_store(&stop, 1);                                                                    \
    } while (0)

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

static uint64_t mix(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* value := "<tag>:<ver>|" + padding derived from (tag, ver); length derived too. */
static size_t make_value(const char *tag, uint32_t ver, uint8_t *out)
{
    uint64_t h =
        mix((uint64_t)ver * 1000003u ^ (uint64_t)strlen(tag) ^ (uint64_t)(uint8_t)tag[1] << 32 ^
            (uint64_t)(uint8_t)tag[strlen(tag) - 1] << 40);
    int n = snprintf((char *)out, 64, "%s:%u|", tag, ver);
    size_t len = (size_t)n + (size_t)(h % 600);
    for (size_t i = (size_t)n; i < len; i++)
        out[i] = (uint8_t)(h >> ((i % 8) * 8)) ^ (uint8_t)i;
    return len;
}

/* Parses and verifies a value for key tag; returns its version or -1 if malformed. */
static long check_value(const char *tag, const uint8_t *v, size_t vl)
{
    size_t tl = strlen(tag);
    if (vl < tl + 3 || memcmp(v, tag, tl) != 0 || v[tl] != ':')
        return -1;
    uint32_t ver = 0;
    size_t i = tl + 1;
    while (i < vl && v[i] >= '0' && v[i] <= '9')
        ver = ver * 10 + (uint32_t)(v[i++] - '0');
    if (i >= vl || v[i] != '|')
        return -1;
    uint8_t want[1024];
    size_t wl = make_value(tag, ver, want);
    if (wl != vl || memcmp(want, v, vl) != 0)
        return -1;
    return (long)ver;
}

static void single_key(int w, int i, char *out)
{
    snprintf(out, 32, "w%d-k%03d", w, i);
}

static void group_key(int w, int g, int j, char *out)
{
    snprintf(out, 32, "w%d-g%02d-%d", w, g, j);
}

/* ----------------------------------------------------------------- writers ---- */

static void record_range(writer *wr, uint64_t seq, size_t n)
{
    if (wr->nranges < MAX_RANGES) {
        wr->ranges[wr->nranges][0] = seq - n + 1;
        wr->ranges[wr->nranges][1] = seq;
        wr->nranges++;
    }
}

static void writer_single(writer *wr, kv_batch *b)
{
    int i = (int)(rng_next(&wr->rng) % NSINGLE);
    char k[32];
    uint8_t v[1024];
    single_key(wr->id, i, k);
    int del = rng_next(&wr->rng) % 5 == 0;
    int via_batch = rng_next(&wr->rng) % 2;
    int as_range = del && via_batch && rng_next(&wr->rng) % 4 == 0;
    int rc;
    uint32_t ver = wr->single_ver[i] + 1;
    size_t vl = del ? 0 : make_value(k, ver, v);
    if (via_batch) {
        uint64_t seq = 0;
        kv_batch_clear(b);
        size_t kl = strlen(k);
        char end[33];
        memcpy(end, k, kl + 1); /* [k, k "\0"): the range of exactly k */
        if (as_range)
            rc = kv_batch_delete_range(b, k, kl, end, kl + 1);
        else
            rc = del ? kv_batch_delete(b, k, kl) : kv_batch_put(b, k, kl, v, vl);
        if (rc == 0)
            rc = kv_write(db, b, 0, &seq);
        if (rc == 0)
            record_range(wr, seq, 1);
    } else {
        rc = del ? kv_delete(db, k, strlen(k), 0) : kv_put(db, k, strlen(k), v, vl, 0);
    }
    if (rc) {
        TFAIL("writer %d: write of %s failed: %d %s", wr->id, k, rc, kv_last_error());
        return;
    }
    wr->single_ver[i] = ver;
    wr->single_present[i] = !del;
    /* read your own write */
    void *got = NULL;
    size_t gl = 0;
    rc = kv_get(db, NULL, k, strlen(k), &got, &gl, NULL);
    if (del ? rc != -ENOENT : (rc != 0 || check_value(k, got, gl) != (long)ver))
        TFAIL("writer %d: read-your-write of %s (ver %u, %s): rc %d, got version %ld", wr->id, k,
              ver, del ? "deleted" : "put", rc, rc == 0 ? check_value(k, got, gl) : -1L);
    free(got);
}

static void writer_group(writer *wr, kv_batch *b)
{
    int g = (int)(rng_next(&wr->rng) % NGROUPS);
    uint32_t ver = wr->group_ver[g] + 1;
    atomic_store(&wr->group_issued[g], ver);
    kv_batch_clear(b);
    for (int j = 1; j <= GROUP_KEYS; j++) {
        char k[32];
        uint8_t v[1024];
        group_key(wr->id, g, j, k);
        size_t vl = make_value(k, ver, v);
        if (kv_batch_put(b, k, strlen(k), v, vl) != 0) {
            TFAIL("writer %d: kv_batch_put failed", wr->id);
            return;
        }
    }
    uint64_t seq = 0;
    unsigned flags = rng_next(&wr->rng) % 16 == 0 ? KV_WRITE_SYNC : 0;
    int rc = kv_write(db, b, flags, &seq);
    if (rc) {
        TFAIL("writer %d: batch write failed: %d %s", wr->id, rc, kv_last_error());
        return;
    }
    record_range(wr, seq, GROUP_KEYS);
    wr->group_ver[g] = ver;
}

static void *writer_main(void *arg)
{
    writer *wr = arg;
    kv_batch *b = kv_batch_new();
    if (!b) {
        TFAIL("kv_batch_new");
        return NULL;
    }
    while (!atomic_load(&stop)) {
        if (rng_next(&wr->rng) % 3 == 0)
            writer_group(wr, b);
        else
            writer_single(wr, b);
        wr->ops++;
    }
    kv_batch_free(b);
    return NULL;
}

/* ----------------------------------------------------------------- readers ---- */

typedef struct reader {
    int id;
    uint64_t rng;
    uint32_t last_seen[NWRITERS][NGROUPS];
    long snapshots, iterations;
} reader;

/* Reads group (w, g) at ro; returns its version (0 = absent) or -1 after a failure. */
static long read_group(const kv_readopts *ro, int w, int g, const char *what)
{
    long ver = -2;
    uint64_t first_seq = 0;
    for (int j = 1; j <= GROUP_KEYS; j++) {
        char k[32];
        group_key(w, g, j, k);
        void *v = NULL;
        size_t vl = 0;
        kv_entry_info info;
        int rc = kv_get(db, ro, k, strlen(k), &v, &vl, &info);
        long this_ver;
        if (rc == -ENOENT) {
            this_ver = 0;
        } else if (rc == 0) {
            this_ver = check_value(k, v, vl);
            if (this_ver < 0) {
                TFAIL("%s: %s has a malformed value (len %zu)", what, k, vl);
                free(v);
                return -1;
            }
            if (j == 1)
                first_seq = info.seq;
            else if (info.seq != first_seq + (uint64_t)(j - 1)) {
                TFAIL("%s: %s seq %" PRIu64 ", want %" PRIu64 " (batch ops are consecutive)", what,
                      k, info.seq, first_seq + (uint64_t)(j - 1));
                free(v);
                return -1;
            }
        } else {
            TFAIL("%s: get %s failed: %d %s", what, k, rc, kv_last_error());
            return -1;
        }
        free(v);
        if (ver == -2)
            ver = this_ver;
        else if (ver != this_ver) {
            TFAIL("%s: group w%d-g%02d torn: key 1 at version %ld, key %d at version %ld", what, w,
                  g, ver, j, this_ver);
            return -1;
        }
    }
    return ver;
}

static void reader_snapshot_round(reader *rd)
{
    kv_snapshot *s = NULL;
    int rc = kv_snapshot_acquire(db, 0, &s);
    if (rc) {
        TFAIL("reader %d: snapshot acquire: %d %s", rd->id, rc, kv_last_error());
        return;
    }
    rd->snapshots++;
    kv_readopts ro;
    memset(&ro, 0, sizeof ro);
    ro.snapshot = s;
    for (int n = 0; n < 6 && !atomic_load(&failed); n++) {
        int w = (int)(rng_next(&rd->rng) % NWRITERS), g = (int)(rng_next(&rd->rng) % NGROUPS);
        long ver = read_group(&ro, w, g, "snapshot get");
        if (ver < 0)
            break;
        if ((uint32_t)ver < rd->last_seen[w][g]) {
            TFAIL("reader %d: group w%d-g%02d went back from version %u to %ld", rd->id, w, g,
                  rd->last_seen[w][g], ver);
            break;
        }
        uint32_t issued = (uint32_t)atomic_load(&writers[w].group_issued[g]);
        if ((uint32_t)ver > issued) {
            TFAIL("reader %d: group w%d-g%02d at version %ld never written (issued %u)", rd->id, w,
                  g, ver, issued);
            break;
        }
        rd->last_seen[w][g] = (uint32_t)ver;
    }
    /* a prefix iterator over one writer's groups at the same snapshot */
    int w = (int)(rng_next(&rd->rng) % NWRITERS);
    char prefix[16];
    int pl = snprintf(prefix, sizeof prefix, "w%d-g", w);
    kv_iter_opts io;
    memset(&io, 0, sizeof io);
    io.ro = ro;
    io.prefix = prefix;
    io.prefix_len = (size_t)pl;
    kv_iter *it = NULL;
    rc = kv_iter_new(db, &io, &it);
    if (rc) {
        TFAIL("reader %d: kv_iter_new: %d %s", rd->id, rc, kv_last_error());
        kv_snapshot_release(db, s);
        return;
    }
    int backward = rng_next(&rd->rng) % 2;
    long gver[NGROUPS];
    int gcount[NGROUPS];
    for (int g = 0; g < NGROUPS; g++) {
        gver[g] = -1;
        gcount[g] = 0;
    }
    for (backward ? kv_iter_seek_last(it) : kv_iter_seek_first(it); kv_iter_valid(it);
         backward ? kv_iter_prev(it) : kv_iter_next(it)) {
        size_t kl, vl;
        const char *k = kv_iter_key(it, &kl);
        const uint8_t *v = kv_iter_value(it, &vl);
        char kb[32];
        if (kl >= sizeof kb) {
            TFAIL("reader %d: iterator key too long", rd->id);
            break;
        }
        memcpy(kb, k, kl);
        kb[kl] = 0;
        int gw, g, j;
        if (sscanf(kb, "w%d-g%d-%d", &gw, &g, &j) != 3 || gw != w || g < 0 || g >= NGROUPS) {
            TFAIL("reader %d: unexpected key %s under prefix %s", rd->id, kb, prefix);
            break;
        }
        long ver = check_value(kb, v, vl);
        if (ver < 0) {
            TFAIL("reader %d: iterator: %s malformed value", rd->id, kb);
            break;
        }
        if (gver[g] >= 0 && gver[g] != ver) {
            TFAIL("reader %d: iterator at snapshot sees group w%d-g%02d torn (%ld vs %ld)", rd->id,
                  w, g, gver[g], ver);
            break;
        }
        gver[g] = ver;
        gcount[g]++;
    }
    if (kv_iter_status(it))
        TFAIL("reader %d: iterator status %d %s", rd->id, kv_iter_status(it), kv_last_error());
    kv_iter_free(it);
    for (int g = 0; g < NGROUPS && !atomic_load(&failed); g++)
        if (gcount[g] != 0 && gcount[g] != GROUP_KEYS)
            TFAIL("reader %d: iterator at snapshot sees %d of the 5 keys of group w%d-g%02d",
                  rd->id, gcount[g], w, g);
    /* the single keys: any value present must be well-formed */
    for (int n = 0; n < 4; n++) {
        int sw = (int)(rng_next(&rd->rng) % NWRITERS), i = (int)(rng_next(&rd->rng) % NSINGLE);
        char k[32];
        single_key(sw, i, k);
        void *v = NULL;
        size_t vl = 0;
        rc = kv_get(db, &ro, k, strlen(k), &v, &vl, NULL);
        if (rc == 0 && check_value(k, v, vl) < 0)
            TFAIL("reader %d: %s malformed value", rd->id, k);
        else if (rc != 0 && rc != -ENOENT)
            TFAIL("reader %d: get %s: %d %s", rd->id, k, rc, kv_last_error());
        free(v);
    }
    kv_snapshot_release(db, s);
    rd->iterations++;
}

/* A plain iterator (no snapshot) is one point in time too. */
static void reader_iter_round(reader *rd)
{
    kv_iter_opts io;
    memset(&io, 0, sizeof io);
    kv_iter *it = NULL;
    int rc = kv_iter_new(db, &io, &it);
    if (rc) {
        TFAIL("reader %d: kv_iter_new: %d %s", rd->id, rc, kv_last_error());
        return;
    }
    long cur_ver = -1;
    int cur_n = 0;
    char cur_group[32] = "";
    for (kv_iter_seek_first(it); kv_iter_valid(it); kv_iter_next(it)) {
        size_t kl, vl;
        const char *k = kv_iter_key(it, &kl);
        const uint8_t *v = kv_iter_value(it, &vl);
        char kb[32];
        if (kl >= sizeof kb) {
            TFAIL("reader %d: long key", rd->id);
            break;
        }
        memcpy(kb, k, kl);
        kb[kl] = 0;
        long ver = check_value(kb, v, vl);
        if (ver < 0) {
            TFAIL("reader %d: full scan: %s malformed value", rd->id, kb);
            break;
        }
        char *dash = strrchr(kb, '-');
        if (strstr(kb, "-g") && dash) {
            *dash = 0;
            if (strcmp(kb, cur_group) != 0) {
                if (cur_n != 0 && cur_n != GROUP_KEYS)
                    TFAIL("reader %d: scan sees %d keys of group %s", rd->id, cur_n, cur_group);
                snprintf(cur_group, sizeof cur_group, "%s", kb);
                cur_n = 0;
                cur_ver = ver;
            } else if (ver != cur_ver) {
                TFAIL("reader %d: scan sees group %s torn (%ld vs %ld)", rd->id, kb, cur_ver, ver);
                break;
            }
            cur_n++;
        }
    }
    if (!atomic_load(&failed) && cur_n != 0 && cur_n != GROUP_KEYS)
        TFAIL("reader %d: scan sees %d keys of group %s", rd->id, cur_n, cur_group);
    if (kv_iter_status(it))
        TFAIL("reader %d: scan status %d %s", rd->id, kv_iter_status(it), kv_last_error());
    kv_iter_free(it);
}

static void *reader_main(void *arg)
{
    reader *rd = arg;
    while (!atomic_load(&stop)) {
        if (rng_next(&rd->rng) % 8 == 0)
            reader_iter_round(rd);
        else
            reader_snapshot_round(rd);
    }
    return NULL;
}

/* ------------------------------------------------------------- maintenance ---- */

static long maint_flushes, maint_compactions;

static void *maint_main(void *arg)
{
    uint64_t rng = *(uint64_t *)arg;
    int named = 0;
    while (!atomic_load(&stop)) {
        uint64_t r = rng_next(&rng) % 10;
        int rc = 0;
        if (r < 4) {
            rc = kv_flush(db);
            maint_flushes++;
        } else if (r < 7) {
            char lo[8], hi[8];
            snprintf(lo, sizeof lo, "w%d", (int)(rng_next(&rng) % NWRITERS));
            snprintf(hi, sizeof hi, "w%d", (int)(rng_next(&rng) % NWRITERS) + 1);
            rc = kv_compact_range(db, lo, strlen(lo), hi, strlen(hi));
            maint_compactions++;
        } else if (r < 8) {
            rc = kv_compact_range(db, NULL, 0, NULL, 0);
            maint_compactions++;
        } else if (r < 9) {
            kv_stats st;
            rc = kv_get_stats(db, &st);
            if (rc == 0 && st.sticky_error != 0)
                TFAIL("sticky error %d during the run", st.sticky_error);
        } else {
            char name[32];
            snprintf(name, sizeof name, "conc-%d", named % 3);
            if (named >= 3)
                rc = kv_named_snapshot_delete(db, name);
            if (rc == 0)
                rc = kv_named_snapshot_create(db, name, NULL);
            named++;
        }
        if (rc) {
            TFAIL("maintenance op %d failed: %d %s", (int)r, rc, kv_last_error());
            break;
        }
        struct timespec ts = {0, 2 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

/* ---------------------------------------------------------- verification ---- */

static void verify_final(const char *when)
{
    for (int w = 0; w < NWRITERS; w++) {
        writer *wr = &writers[w];
        for (int i = 0; i < NSINGLE; i++) {
            char k[32];
            single_key(w, i, k);
            void *v = NULL;
            size_t vl = 0;
            int rc = kv_get(db, NULL, k, strlen(k), &v, &vl, NULL);
            if (wr->single_present[i]) {
                long ver = rc == 0 ? check_value(k, v, vl) : -1;
                if (ver != (long)wr->single_ver[i])
                    fprintf(stderr, "%s: %s rc %d version %ld, want %u\n", when, k, rc, ver,
                            wr->single_ver[i]);
                CHECK(rc == 0 && ver == (long)wr->single_ver[i]);
            } else {
                if (rc != -ENOENT)
                    fprintf(stderr, "%s: %s rc %d, want -ENOENT\n", when, k, rc);
                CHECK_RC(rc, -ENOENT);
            }
            free(v);
        }
        kv_readopts ro;
        memset(&ro, 0, sizeof ro);
        for (int g = 0; g < NGROUPS; g++) {
            long ver = read_group(&ro, w, g, when);
            CHECK(!atomic_load(&failed));
            if (ver != (long)wr->group_ver[g])
                fprintf(stderr, "%s: group w%d-g%02d at version %ld, want %u\n", when, w, g, ver,
                        wr->group_ver[g]);
            CHECK(ver == (long)wr->group_ver[g]);
        }
    }
}

static int range_cmp(const void *a, const void *b)
{
    const uint64_t *x = a, *y = b;
    return x[0] < y[0] ? -1 : x[0] > y[0];
}

static void check_ranges(void)
{
    size_t total = 0;
    for (int w = 0; w < NWRITERS; w++)
        total += writers[w].nranges;
    uint64_t(*all)[2] = malloc((total + 1) * sizeof *all);
    CHECK(all != NULL);
    size_t n = 0;
    for (int w = 0; w < NWRITERS; w++)
        for (size_t i = 0; i < writers[w].nranges; i++, n++) {
            all[n][0] = writers[w].ranges[i][0];
            all[n][1] = writers[w].ranges[i][1];
        }
    qsort(all, n, sizeof *all, range_cmp);
    for (size_t i = 1; i < n; i++) {
        if (all[i][0] <= all[i - 1][1])
            fprintf(stderr,
                    "kv_write sequence ranges overlap: [%" PRIu64 ",%" PRIu64 "] and [%" PRIu64
                    ",%" PRIu64 "]\n",
                    all[i - 1][0], all[i - 1][1], all[i][0], all[i][1]);
        CHECK(all[i][0] > all[i - 1][1]);
    }
    free(all);
}

static void print_report(void *arg, const char *line)
{
    (void)arg;
    fprintf(stderr, "kv_verify: %s\n", line);
}

static void part1(const char *dir)
{
    kv_options o;
    kv_options_init(&o);
    o.memtable_bytes = 64 << 10;
    o.table_bytes = 64 << 10;
    o.block_bytes = 2048;
    o.background_threads = 2;
    CHECK_OK(kv_open(dir, &o, &db));
    long run_ms = 3000;
    const char *e = getenv("KVFS_CONC_MS");
    if (e)
        run_ms = atol(e);
    pthread_t wt[NWRITERS], rt[NREADERS], mt;
    static reader readers[NREADERS];
    for (int w = 0; w < NWRITERS; w++) {
        writers[w].id = w;
        writers[w].rng = mix(seed_base + (uint64_t)w) | 1;
        writers[w].ranges = malloc(MAX_RANGES * sizeof *writers[w].ranges);
        CHECK(writers[w].ranges != NULL);
        for (int g = 0; g < NGROUPS; g++)
            atomic_init(&writers[w].group_issued[g], 0);
        CHECK(pthread_create(&wt[w], NULL, writer_main, &writers[w]) == 0);
    }
    for (int r = 0; r < NREADERS; r++) {
        readers[r].id = r;
        readers[r].rng = mix(seed_base + 100 + (uint64_t)r) | 1;
        CHECK(pthread_create(&rt[r], NULL, reader_main, &readers[r]) == 0);
    }
    uint64_t mseed = mix(seed_base + 200) | 1;
    CHECK(pthread_create(&mt, NULL, maint_main, &mseed) == 0);
    for (long t = 0; t < run_ms && !atomic_load(&stop); t += 50) {
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
    atomic_store(&stop, 1);
    for (int w = 0; w < NWRITERS; w++)
        pthread_join(wt[w], NULL);
    for (int r = 0; r < NREADERS; r++)
        pthread_join(rt[r], NULL);
    pthread_join(mt, NULL);
    CHECK(!atomic_load(&failed));
    long ops = 0, snaps = 0;
    for (int w = 0; w < NWRITERS; w++)
        ops += writers[w].ops;
    for (int r = 0; r < NREADERS; r++)
        snaps += readers[r].snapshots;
    printf("part 1: %ld writes, %ld reader snapshots, %ld flushes, %ld compactions\n", ops, snaps,
           maint_flushes, maint_compactions);
    CHECK(ops > 100 && snaps > 10);
    check_ranges();
    verify_final("after the run");
    kv_stats st;
    CHECK_OK(kv_get_stats(db, &st));
    CHECK(st.sticky_error == 0);
    CHECK(st.flushes > 0);
    int problems = kv_verify(db, print_report, NULL);
    CHECK(problems == 0);
    CHECK_OK(kv_close(db));
    CHECK_OK(kv_open(dir, &o, &db));
    verify_final("after reopen");
    problems = kv_verify(db, print_report, NULL);
    CHECK(problems == 0);
    CHECK_OK(kv_close(db));
    for (int w = 0; w < NWRITERS; w++)
        free(writers[w].ranges);
}

/* ------------------------------------------------------------ group commit ---- */

#define NSYNC_THREADS 8
#define NSYNC_PUTS 100

static void *sync_main(void *arg)
{
    int t = (int)(intptr_t)arg;
    for (int i = 0; i < NSYNC_PUTS; i++) {
        char k[32];
        uint8_t v[1024];
        snprintf(k, sizeof k, "sync-%d-%03d", t, i);
        size_t vl = make_value(k, (uint32_t)i + 1, v);
        int rc = kv_put(db, k, strlen(k), v, vl, KV_WRITE_SYNC);
        if (rc) {
            TFAIL("sync writer %d put %d: %d %s", t, i, rc, kv_last_error());
            break;
        }
    }
    return NULL;
}

static void part2(const char *dir)
{
    kv_options o;
    kv_options_init(&o);
    CHECK_OK(kv_open(dir, &o, &db));
    kv_stats st0, st1;
    CHECK_OK(kv_get_stats(db, &st0));
    pthread_t th[NSYNC_THREADS];
    for (int t = 0; t < NSYNC_THREADS; t++)
        CHECK(pthread_create(&th[t], NULL, sync_main, (void *)(intptr_t)t) == 0);
    for (int t = 0; t < NSYNC_THREADS; t++)
        pthread_join(th[t], NULL);
    CHECK(!atomic_load(&failed));
    CHECK_OK(kv_get_stats(db, &st1));
    CHECK(st1.puts >= st0.puts + NSYNC_THREADS * NSYNC_PUTS);
    CHECK(st1.wal_syncs > st0.wal_syncs);
    printf("part 2: %d sync puts, %" PRIu64 " WAL syncs, %" PRIu64 " group commits\n",
           NSYNC_THREADS * NSYNC_PUTS, st1.wal_syncs - st0.wal_syncs,
           st1.wal_group_commits - st0.wal_group_commits);
    CHECK_OK(kv_close(db));
    CHECK_OK(kv_open(dir, &o, &db));
    for (int t = 0; t < NSYNC_THREADS; t++)
        for (int i = 0; i < NSYNC_PUTS; i++) {
            char k[32];
            snprintf(k, sizeof k, "sync-%d-%03d", t, i);
            void *v = NULL;
            size_t vl = 0;
            CHECK_OK(kv_get(db, NULL, k, strlen(k), &v, &vl, NULL));
            CHECK(check_value(k, v, vl) == i + 1);
            free(v);
        }
    CHECK_OK(kv_close(db));
}

int main(void)
{
    tu_seed_init();
    signal(SIGPIPE, SIG_IGN);
    seed_base = tu_seed;
    char root[600];
    snprintf(root, sizeof root, "%s", tu_tmpdir("conc"));
    char d1[700], d2[700];
    snprintf(d1, sizeof d1, "%s/mixed", root);
    snprintf(d2, sizeof d2, "%s/sync", root);
    part1(d1);
    part2(d2);
    tu_rmtree(root);
    TU_DONE("test_concurrency");
}
