/*
 * test_cache.c -- block cache: hit/miss accounting, replacement, eviction under the byte
 * budget, pinned entries surviving eviction and erase, cache_erase_file, capacity 0, and
 * concurrent use from several threads (deleters run exactly once per inserted value).
 */
#include <pthread.h>
#include <stdatomic.h>

#include "cache.h"
#include "kv.h"
#include "testutil.h"

static atomic_long deleted;

/* CHECK for worker threads (tu_checks is not thread-safe) */
#define WCHECK(cond)                                                                               \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s (seed %" PRIu64 ")\n", __FILE__, __LINE__,    \
                    #cond, tu_seed);                                                               \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

typedef struct val {
    uint64_t file, offset;
    long magic;
} val;

static void val_del(void *p)
{
    val *v = p;
    WCHECK(v->magic == 0x5eed);
    v->magic = 0;
    free(v);
    atomic_fetch_add(&deleted, 1);
}

static val *mkval(uint64_t file, uint64_t offset)
{
    val *v = malloc(sizeof *v);
    WCHECK(v);
    v->file = file;
    v->offset = offset;
    v->magic = 0x5eed;
    return v;
}

static void put(cache *c, uint64_t f, uint64_t o, size_t charge)
{
    cache_handle *h = cache_insert(c, f, o, mkval(f, o), charge, val_del);
    CHECK(h);
    cache_release(c, h);
}

static int present(cache *c, uint64_t f, uint64_t o)
{
    cache_handle *h = cache_lookup(c, f, o);
    if (!h)
        return 0;
    val *v = cache_value(h);
    CHECK(v->file == f && v->offset == o && v->magic == 0x5eed);
    cache_release(c, h);
    return 1;
}

static void test_basic(void)
{
    cache *c = cache_new(1 << 20);
    CHECK(c);
    atomic_store(&deleted, 0);
    CHECK(!present(c, 1, 0));
    CHECK(cache_misses(c) == 1 && cache_hits(c) == 0);
    put(c, 1, 0, 100);
    put(c, 1, 4096, 100);
    put(c, 2, 0, 100);
    CHECK(present(c, 1, 0) && present(c, 1, 4096) && present(c, 2, 0));
    CHECK(!present(c, 2, 4096) && !present(c, 3, 0));
    CHECK(cache_hits(c) == 3 && cache_misses(c) == 3);
    CHECK(cache_usage(c) == 300);
    /* replacement: same key, new value; old value deleted */
    put(c, 1, 0, 50);
    CHECK(atomic_load(&deleted) == 1);
    CHECK(cache_usage(c) == 250);
    /* erase_file drops only that file */
    cache_erase_file(c, 1);
    CHECK(!present(c, 1, 0) && !present(c, 1, 4096) && present(c, 2, 0));
    CHECK(atomic_load(&deleted) == 3);
    CHECK(cache_usage(c) == 100);
    cache_free(c);
    CHECK(atomic_load(&deleted) == 4);
}

static void test_eviction(void)
{
    size_t cap = 16 * 10000; /* 10000 bytes per shard */
    cache *c = cache_new(cap);
    CHECK(c);
    atomic_store(&deleted, 0);
    long n = 20000;
    for (long i = 0; i < n; i++) {
        put(c, 7, (uint64_t)i * 4096, 100);
        CHECK(cache_usage(c) <= cap);
    }
    CHECK(cache_usage(c) > cap / 2);
    /* the newest entries survive, the oldest were evicted */
    int recent = 0, old = 0;
    for (long i = n - 50; i < n; i++)
        recent += present(c, 7, (uint64_t)i * 4096);
    for (long i = 0; i < 50; i++)
        old += present(c, 7, (uint64_t)i * 4096);
    CHECK(recent == 50 && old == 0);
    /* LRU, not FIFO: touching an old entry keeps it */
    uint64_t keep = (uint64_t)(n - 1500) * 4096;
    CHECK(present(c, 7, keep));
    for (long i = n; i < n + 1000; i++) {
        put(c, 7, (uint64_t)i * 4096, 100);
        if (i % 20 == 0)
            CHECK(present(c, 7, keep));
    }
    CHECK(present(c, 7, keep));
    long inserted = n + 1000;
    cache_free(c);
    CHECK(atomic_load(&deleted) == inserted);
}

static void test_pinned(void)
{
    size_t cap = 16 * 1000;
    cache *c = cache_new(cap);
    CHECK(c);
    atomic_store(&deleted, 0);
    cache_handle *pin = cache_insert(c, 9, 0, mkval(9, 0), 500, val_del);
    CHECK(pin);
    for (long i = 1; i < 5000; i++)
        put(c, 9, (uint64_t)i, 100);
    /* the pinned entry survived all that eviction and is still found */
    CHECK(((val *)cache_value(pin))->magic == 0x5eed);
    CHECK(present(c, 9, 0));
    /* erase_file leaves the pinned entry alone */
    cache_erase_file(c, 9);
    CHECK(present(c, 9, 0));
    CHECK(atomic_load(&deleted) == 4999);
    /* replacing a pinned entry: the old value lives until released */
    cache_handle *h2 = cache_insert(c, 9, 0, mkval(9, 0), 10, val_del);
    CHECK(h2);
    CHECK(((val *)cache_value(pin))->magic == 0x5eed);
    CHECK(atomic_load(&deleted) == 4999);
    cache_release(c, pin);
    CHECK(atomic_load(&deleted) == 5000);
    cache_release(c, h2);
    CHECK(present(c, 9, 0));
    /* an over-budget entry is kept only while pinned */
    cache_handle *big = cache_insert(c, 10, 0, mkval(10, 0), cap, val_del);
    CHECK(big && present(c, 10, 0));
    cache_release(c, big);
    CHECK(!present(c, 10, 0));
    CHECK(cache_usage(c) <= cap);
    cache_free(c);
    CHECK(atomic_load(&deleted) == 5002);
}

static void test_zero_capacity(void)
{
    cache *c = cache_new(0);
    CHECK(c);
    atomic_store(&deleted, 0);
    cache_handle *h = cache_insert(c, 1, 1, mkval(1, 1), 10, val_del);
    CHECK(h && ((val *)cache_value(h))->magic == 0x5eed);
    CHECK(!present(c, 1, 1));
    CHECK(cache_usage(c) == 0);
    cache_release(c, h);
    CHECK(atomic_load(&deleted) == 1);
    cache_free(c);
}

#define THREADS 4
#define OPS 200000
static cache *shared;
static atomic_long inserted;

static void *worker(void *arg)
{
    uint64_t s = (uint64_t)(uintptr_t)arg * 0x9e3779b97f4a7c15ull + tu_seed;
    cache_handle *held[8] = {0};
    for (long i = 0; i < OPS; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        uint64_t f = s % 8, o = (s >> 8) % 2000;
        unsigned slot = (unsigned)((s >> 24) % 8);
        if (held[slot]) {
            cache_release(shared, held[slot]);
            held[slot] = NULL;
        }
        cache_handle *h = cache_lookup(shared, f, o);
        if (!h) {
            h = cache_insert(shared, f, o, mkval(f, o), 64 + (s >> 40) % 64, val_del);
            WCHECK(h);
            atomic_fetch_add(&inserted, 1);
        }
        val *v = cache_value(h);
        WCHECK(v->file == f && v->offset == o && v->magic == 0x5eed);
        if ((s >> 32) % 4 == 0)
            held[slot] = h; /* keep it pinned a while */
        else
            cache_release(shared, h);
        if (i % 5000 == 0)
            cache_erase_file(shared, f);
    }
    for (int k = 0; k < 8; k++)
        if (held[k])
            cache_release(shared, held[k]);
    return NULL;
}

static void test_threads(void)
{
    size_t cap = 256 * 1024;
    pthread_t t[THREADS];
    shared = cache_new(cap);
    CHECK(shared);
    atomic_store(&deleted, 0);
    atomic_store(&inserted, 0);
    for (long i = 0; i < THREADS; i++)
        CHECK(pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)i) == 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    CHECK(cache_usage(shared) <= cap);
    CHECK(cache_hits(shared) + cache_misses(shared) == (uint64_t)THREADS * OPS);
    CHECK(cache_hits(shared) > 0 && cache_misses(shared) > 0);
    cache_free(shared);
    CHECK(atomic_load(&deleted) == atomic_load(&inserted));
}

int main(void)
{
    tu_seed_init();
    test_basic();
    test_eviction();
    test_pinned();
    test_zero_capacity();
    test_threads();
    TU_DONE("test_cache");
}
