/*
 * cache.h -- the block cache: a sharded LRU map from (file number, block offset) to an
 * uncompressed, checksum-verified block, bounded by a byte budget.
 *
 * Entries are reference counted: a handle returned by lookup or insert pins its entry until
 * released, so an entry evicted while in use is freed only when its last handle goes. The
 * budget counts every entry's charge; pinned entries may push usage over it briefly.
 * Thread-safe: each of the 16 shards has its own mutex.
 */
#ifndef KV_CACHE_H
#define KV_CACHE_H

#include <stddef.h>
#include <stdint.h>

typedef struct cache cache;
typedef struct cache_handle cache_handle;
typedef void (*cache_deleter)(void *value);

cache *cache_new(size_t capacity_bytes); /* NULL on ENOMEM; capacity 0 caches nothing */
void cache_free(cache *c);               /* all handles must have been released */

/* NULL if absent. */
cache_handle *cache_lookup(cache *c, uint64_t file, uint64_t offset);
/* Inserts (replacing an older entry for the key) and returns a handle to the new entry;
 * deleter(value) runs when the entry is gone and unpinned. NULL on ENOMEM, in which case
 * deleter has been called. */
cache_handle *cache_insert(cache *c, uint64_t file, uint64_t offset, void *value, size_t charge,
                           cache_deleter deleter);
void *cache_value(cache_handle *h);
void cache_release(cache *c, cache_handle *h);
/* Drops every unpinned entry of a file (called when the file is deleted). */
void cache_erase_file(cache *c, uint64_t file);

size_t cache_usage(const cache *c);
uint64_t cache_hits(const cache *c);
uint64_t cache_misses(const cache *c);

#endif /* KV_CACHE_H */
