/*
 * drops.h -- range deletions ("drops"): every user key k with lo <= k < hi deleted at one
 * sequence number, at the cost of one record whatever the range holds.
 *
 * A drop never goes into a table. It is written to the WAL as a batch op and kept in its
 * memtable's list (memtable.h) until that memtable is flushed; the flush's edit moves it into
 * the MANIFEST, where the version carries it (version.h) until compaction has removed every
 * older version of a key in its range and the drop can retire. Reads honour the db's live set
 * (the version's drops plus those of the memtables); compaction drops the versions a drop
 * hides from every reader and deletes tables that lie wholly under one without reading them.
 *
 * A drop_set is immutable once built and shared by reference count (NULL is the empty set).
 * The question every user asks is drops_next_above(set, key, s): the smallest sequence of a
 * drop covering key that is above s. A version of key at seq s is hidden from a read at
 * sequence R exactly when that is <= R.
 */
#ifndef KV_DROPS_H
#define KV_DROPS_H

#include <stdatomic.h>

#include "util.h"

typedef struct kv_drop {
    uint64_t seq;
    kv_slice lo, hi; /* user keys, lo < hi; borrowed when passed in, owned inside a set */
} kv_drop;

typedef struct drop_set drop_set;

/* The set base, without the drops whose seq is in del (any order), plus add (copied). OUT:
 * *out, NULL when the result is empty. Returns 0 or -ENOMEM. base is not changed. */
int drops_make(const drop_set *base, const kv_drop *add, size_t nadd, const uint64_t *del,
               size_t ndel, drop_set **out);
/* drops_make with the drops of the set add (NULL: none). */
int drops_merge(const drop_set *base, const drop_set *add, const uint64_t *del, size_t ndel,
                drop_set **out);
void drops_ref(drop_set *s);   /* NULL-safe */
void drops_unref(drop_set *s); /* NULL-safe; frees on the last reference */
size_t drops_count(const drop_set *s);
/* The i-th drop in (lo, seq) order; valid while the set is referenced. */
const kv_drop *drops_at(const drop_set *s, size_t i);
/* The smallest seq > seq of a drop whose range holds key; UINT64_MAX if there is none. */
uint64_t drops_next_above(const drop_set *s, kv_slice key, uint64_t seq);
/* The smallest seq > above of a drop whose range holds every user key of [lo, hi] (both
 * ends included, lo <= hi); UINT64_MAX if there is none. */
uint64_t drops_cover_span(const drop_set *s, kv_slice lo, kv_slice hi, uint64_t above);

/* The largest seq in the set (0 for none). */
uint64_t drops_max_seq(const drop_set *s);

#endif /* KV_DROPS_H */
