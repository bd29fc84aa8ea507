/*
 * memtable.h -- the in-memory write buffer: a skiplist of internal keys in an arena.
 *
 * Thread safety: mem_add needs external serialisation (the commit leader is the only writer);
 * mem_get and iterators run concurrently with it and with each other without locks, because
 * nodes are fully built before being linked with release stores and readers load links with
 * acquire loads. Nodes are never removed; memory is freed when the last reference goes.
 */
#ifndef KV_MEMTABLE_H
#define KV_MEMTABLE_H

#include "drops.h"
#include "iter.h"
#include "util.h"

typedef struct memtable memtable;

memtable *mem_new(void); /* refcount 1; NULL on ENOMEM */
void mem_ref(memtable *m);
void mem_unref(memtable *m);

/* Inserts (ukey, seq, type) -> stored_value. The (ukey, seq) pair must be new. -ENOMEM. */
int mem_add(memtable *m, uint64_t seq, unsigned type, kv_slice ukey, kv_slice stored_value);

/* Records the range deletion [lo, hi) at seq (drops.h) for the flush to persist; it counts
 * as an entry. Readers do not look here: they use the db's live set. -ENOMEM. */
int mem_add_drop(memtable *m, uint64_t seq, kv_slice lo, kv_slice hi);
/* Its range deletions (NULL: none); stable once the memtable is immutable. */
const drop_set *mem_drops(const memtable *m);

/* Finds the newest entry of ukey with seq <= max_seq. Returns 1 and fills the outputs (the
 * value points into the memtable, valid while the caller holds a reference), 0 if none. */
int mem_get(memtable *m, kv_slice ukey, uint64_t max_seq, uint64_t *seq, unsigned *type,
            kv_slice *stored_value);

/* An iterator over internal keys; the caller keeps a reference for the iterator's life.
 * Never NULL: out of memory gives an iterator whose status is -ENOMEM. */
iter *mem_iter_new(memtable *m);

size_t mem_bytes(const memtable *m); /* arena bytes in use (the memtable budget's measure) */
size_t mem_entries(const memtable *m);
uint64_t mem_min_seq(const memtable *m); /* 0 if empty */
uint64_t mem_max_seq(const memtable *m);

#endif /* KV_MEMTABLE_H */
