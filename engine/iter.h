/*
 * iter.h -- the internal iterator contract shared by memtables, SSTable blocks and tables,
 * the merging iterator and compaction.
 *
 * An internal iterator walks internal keys (dbformat.h) in ikey_cmp order. key() and value()
 * are valid only while the iterator is valid and until the next movement call. After an error
 * the iterator becomes invalid and status() returns the negative errno (the kv_error() message
 * was set when it happened); status() is 0 otherwise. seek(target) positions at the first
 * entry >= target. destroy() frees the iterator (not what it iterates over).
 */
#ifndef KV_ITER_H
#define KV_ITER_H

#include "util.h"

typedef struct iter iter;

typedef struct iter_ops {
    int (*valid)(const iter *it);
    void (*seek_first)(iter *it);
    void (*seek_last)(iter *it);
    void (*seek)(iter *it, kv_slice target);
    void (*next)(iter *it);
    void (*prev)(iter *it);
    kv_slice (*key)(const iter *it);
    kv_slice (*value)(const iter *it);
    int (*status)(const iter *it);
    void (*destroy)(iter *it);
} iter_ops;

/* Every iterator struct starts with this. */
struct iter {
    const iter_ops *ops;
};

static inline int iter_valid(const iter *it)
{
    return it->ops->valid(it);
}
static inline void iter_seek_first(iter *it)
{
    it->ops->seek_first(it);
}
static inline void iter_seek_last(iter *it)
{
    it->ops->seek_last(it);
}
static inline void iter_seek(iter *it, kv_slice t)
{
    it->ops->seek(it, t);
}
static inline void iter_next(iter *it)
{
    it->ops->next(it);
}
static inline void iter_prev(iter *it)
{
    it->ops->prev(it);
}
static inline kv_slice iter_key(const iter *it)
{
    return it->ops->key(it);
}
static inline kv_slice iter_value(const iter *it)
{
    return it->ops->value(it);
}
static inline int iter_status(const iter *it)
{
    return it->ops->status(it);
}
static inline void iter_destroy(iter *it)
{
    if (it)
        it->ops->destroy(it);
}

/* The constructors below never return NULL: out of memory gives an iterator whose status is
 * -ENOMEM (having freed what they were given). */

/* An iterator over nothing, or one that only reports err (err 0: empty and fine). */
iter *iter_new_error(int err);

/* Merges n children into one ordered stream (ikey_cmp); equal keys, which do not occur between
 * distinct sources in practice, come out child 0 first. Takes ownership of the children and of
 * the array (malloc'd). The first child error ends the merge with that status. */
iter *iter_merge_new(iter **children, size_t n);

/* Calls destroy on an iterator when another object is freed: a chain of cleanups an iterator
 * can carry (e.g. releasing the version or cache handle it reads from). */
typedef void (*iter_cleanup_fn)(void *arg1, void *arg2);
/* Wraps child so that destroying the wrapper runs fn(arg1, arg2) after destroying child. */
iter *iter_with_cleanup(iter *child, iter_cleanup_fn fn, void *arg1, void *arg2);

#endif /* KV_ITER_H */
