/*
 * cache.c -- the sharded LRU block cache (LevelDB util/cache.cc design).
 *
 * The key (file, offset) is hashed; the top 4 bits pick one of 16 shards, each with its own
 * mutex, a chained hash table, and two circular lists of entries that are in the table:
 *   in_use -- entries some handle pins (refs >= 2: the table's reference + callers'),
 *   lru    -- entries only the table references (refs == 1), oldest first; evictable.
 * Invariants (per shard, under its mutex):
 *   (1) an entry is in the hash table iff in_cache; then it is on exactly one of the lists and
 *       its charge counts in usage;
 *   (2) refs counts the table (if in_cache) plus every outstanding handle; the deleter runs
 *       once, when refs drops to 0;
 *   (3) after every insert or release, usage <= capacity unless the excess is pinned.
 * A shard's capacity is the budget / 16 (rounded up). Capacity 0 caches nothing: insert hands
 * back a handle to an entry that is never in the table and is freed on release.
 */
#include "cache.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define CACHE_SHARD_BITS 4
#define CACHE_SHARDS (1u << CACHE_SHARD_BITS)

struct cache_handle {
    void *value;
    cache_deleter deleter;
    struct cache_handle *next_hash;
    struct cache_handle *next, *prev;
    size_t charge;
    uint64_t file, offset;
    uint32_t hash;
    uint32_t refs;
    int in_cache;
};

typedef struct cache_shard {
    pthread_mutex_t mu;
    size_t capacity;
    atomic_size_t usage;
    cache_handle lru;    /* dummy head; lru.next is the oldest */
    cache_handle in_use; /* dummy head */
    cache_handle **table;
    uint32_t buckets; /* power of two */
    uint32_t elems;
} cache_shard;

struct cache {
    cache_shard shards[CACHE_SHARDS];
    atomic_uint_fast64_t hits, misses;
};

static uint32_t cache_hash(uint64_t file, uint64_t offset)
{
    uint64_t x = file * 0x9e3779b97f4a7c15ull ^ offset;
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return (uint32_t)x;
}

static void list_remove(cache_handle *e)
{
    e->next->prev = e->prev;
    e->prev->next = e->next;
}

static void list_append(cache_handle *list, cache_handle *e)
{
    e->next = list;
    e->prev = list->prev;
    e->prev->next = e;
    e->next->prev = e;
}

static cache_handle **table_find(cache_shard *s, uint64_t file, uint64_t offset, uint32_t hash)
{
    cache_handle **p = &s->table[hash & (s->buckets - 1)];
    while (*p && ((*p)->hash != hash || (*p)->file != file || (*p)->offset != offset))
        p = &(*p)->next_hash;
    return p;
}

/* Doubles the table when it is full on average; keeps the old one if memory is short. */
static void table_grow(cache_shard *s)
{
    uint32_t nb = s->buckets * 2;
    cache_handle **t = calloc(nb, sizeof *t);
    if (!t)
        return;
    for (uint32_t i = 0; i < s->buckets; i++) {
        cache_handle *e = s->table[i];
        while (e) {
            cache_handle *next = e->next_hash;
            cache_handle **slot = &t[e->hash & (nb - 1)];
            e->next_hash = *slot;
            *slot = e;
            e = next;
        }
    }
    free(s->table);
    s->table = t;
    s->buckets = nb;
}

static void entry_unref(cache_shard *s, cache_handle *e)
{
    e->refs--;
    if (e->refs == 0) {
        if (e->deleter)
            e->deleter(e->value);
        free(e);
    } else if (e->in_cache && e->refs == 1) {
        list_remove(e);
        list_append(&s->lru, e);
    }
}

static void entry_ref(cache_shard *s, cache_handle *e)
{
    if (e->refs == 1 && e->in_cache) {
        list_remove(e);
        list_append(&s->in_use, e);
    }
    e->refs++;
}

/* Takes e (already unlinked from the table) out of the cache. */
static void entry_finish_erase(cache_shard *s, cache_handle *e)
{
    list_remove(e);
    e->in_cache = 0;
    atomic_fetch_sub(&s->usage, e->charge);
    s->elems--;
    entry_unref(s, e);
}

static void shard_evict(cache_shard *s)
{
    while (atomic_load(&s->usage) > s->capacity && s->lru.next != &s->lru) {
        cache_handle *old = s->lru.next;
        cache_handle **p = table_find(s, old->file, old->offset, old->hash);
        *p = old->next_hash;
        entry_finish_erase(s, old);
    }
}

cache *cache_new(size_t capacity_bytes)
{
    cache *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    size_t per = capacity_bytes / CACHE_SHARDS + (capacity_bytes % CACHE_SHARDS != 0);
    for (unsigned i = 0; i < CACHE_SHARDS; i++) {
        cache_shard *s = &c->shards[i];
        s->capacity = per;
        s->lru.next = s->lru.prev = &s->lru;
        s->in_use.next = s->in_use.prev = &s->in_use;
        s->buckets = 16;
        s->table = calloc(s->buckets, sizeof *s->table);
        if (!s->table || pthread_mutex_init(&s->mu, NULL) != 0) {
            free(s->table);
            for (unsigned j = 0; j < i; j++) {
                pthread_mutex_destroy(&c->shards[j].mu);
                free(c->shards[j].table);
            }
            free(c);
            return NULL;
        }
    }
    return c;
}

void cache_free(cache *c)
{
    if (!c)
        return;
    for (unsigned i = 0; i < CACHE_SHARDS; i++) {
        cache_shard *s = &c->shards[i];
        /* every handle is released, so every entry is on the lru list with refs == 1 */
        while (s->lru.next != &s->lru) {
            cache_handle *e = s->lru.next;
            cache_handle **p = table_find(s, e->file, e->offset, e->hash);
            *p = e->next_hash;
            entry_finish_erase(s, e);
        }
        pthread_mutex_destroy(&s->mu);
        free(s->table);
    }
    free(c);
}

static cache_shard *cache_shard_of(cache *c, uint32_t hash)
{
    return &c->shards[hash >> (32 - CACHE_SHARD_BITS)];
}

cache_handle *cache_lookup(cache *c, uint64_t file, uint64_t offset)
{
    uint32_t hash = cache_hash(file, offset);
    cache_shard *s = cache_shard_of(c, hash);
    pthread_mutex_lock(&s->mu);
    cache_handle *e = *table_find(s, file, offset, hash);
    if (e)
        entry_ref(s, e);
    pthread_mutex_unlock(&s->mu);
    atomic_fetch_add_explicit(e ? &c->hits : &c->misses, 1, memory_order_relaxed);
    return e;
}

cache_handle *cache_insert(cache *c, uint64_t file, uint64_t offset, void *value, size_t charge,
                           cache_deleter deleter)
{
    uint32_t hash = cache_hash(file, offset);
    cache_shard *s = cache_shard_of(c, hash);
    cache_handle *e = calloc(1, sizeof *e);
    if (!e) {
        if (deleter)
            deleter(value);
        return NULL;
    }
    e->value = value;
    e->deleter = deleter;
    e->charge = charge;
    e->file = file;
    e->offset = offset;
    e->hash = hash;
    e->refs = 1; /* the caller's handle */
    pthread_mutex_lock(&s->mu);
    if (s->capacity > 0) {
        e->refs++; /* the table's reference */
        e->in_cache = 1;
        list_append(&s->in_use, e);
        atomic_fetch_add(&s->usage, charge);
        cache_handle **p = table_find(s, file, offset, hash);
        cache_handle *old = *p;
        e->next_hash = old ? old->next_hash : NULL;
        *p = e;
        s->elems++;
        if (old)
            entry_finish_erase(s, old);
        else if (s->elems > s->buckets)
            table_grow(s);
        shard_evict(s);
    }
    pthread_mutex_unlock(&s->mu);
    return e;
}

void *cache_value(cache_handle *h)
{
    return h->value;
}

void cache_release(cache *c, cache_handle *h)
{
    cache_shard *s = cache_shard_of(c, h->hash);
    pthread_mutex_lock(&s->mu);
    entry_unref(s, h);
    shard_evict(s);
    pthread_mutex_unlock(&s->mu);
}

void cache_erase_file(cache *c, uint64_t file)
{
    for (unsigned i = 0; i < CACHE_SHARDS; i++) {
        cache_shard *s = &c->shards[i];
        pthread_mutex_lock(&s->mu);
        cache_handle *e = s->lru.next;
        while (e != &s->lru) {
            cache_handle *next = e->next;
            if (e->file == file) {
                cache_handle **p = table_find(s, e->file, e->offset, e->hash);
                *p = e->next_hash;
                entry_finish_erase(s, e);
            }
            e = next;
        }
        pthread_mutex_unlock(&s->mu);
    }
}

size_t cache_usage(const cache *c)
{
    size_t total = 0;
    for (unsigned i = 0; i < CACHE_SHARDS; i++)
        total += atomic_load(&c->shards[i].usage);
    return total;
}

uint64_t cache_hits(const cache *c)
{
    return atomic_load(&c->hits);
}

uint64_t cache_misses(const cache *c)
{
    return atomic_load(&c->misses);
}
