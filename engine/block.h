/*
 * block.h -- SSTable blocks: a builder that prefix-compresses sorted internal keys with restart
 * points, and a bounds-checked iterator over the result (format in block.c and
 * docs/format.md).
 *
 * The iterator structs are public so that tables can embed them (no malloc per block or per
 * entry); blk_iter_new gives a heap iterator behind the generic iter interface for other users.
 * Every decode is checked against the block bounds: a corrupt block makes the iterator invalid
 * with status -EUCLEAN, never a crash or an out-of-bounds read.
 */
#ifndef KV_BLOCK_H
#define KV_BLOCK_H

#include "iter.h"
#include "util.h"

#define BLK_RESTART_INTERVAL 16

/* ---- builder ---- */

typedef struct blk_builder {
    kv_buf buf;         /* entries, then the trailer once finished */
    kv_buf last_key;    /* the key added last (for prefix compression) */
    uint32_t *restarts; /* entry offsets of the restart points */
    size_t nrestarts, restarts_cap;
    int counter; /* entries since the last restart */
    int finished;
    uint64_t entries;
} blk_builder;

void blk_builder_init(blk_builder *b);
/* Keys must be internal keys in increasing ikey_cmp order (checked by the caller).
 * -ENOMEM, or -EFBIG if the block would outgrow 32-bit offsets. */
int blk_builder_add(blk_builder *b, kv_slice key, kv_slice value);
/* Appends the restart trailer. OUT: *contents (valid until the next reset/free). */
int blk_builder_finish(blk_builder *b, kv_slice *contents);
void blk_builder_reset(blk_builder *b); /* empty again, keeping the memory */
void blk_builder_free(blk_builder *b);
/* Size of the block if it were finished now. */
size_t blk_builder_size(const blk_builder *b);
static inline int blk_builder_empty(const blk_builder *b)
{
    return b->entries == 0;
}

/* ---- reading ---- */

/* A parsed view of block contents (the caller owns the bytes and keeps them alive). */
typedef struct blk {
    const uint8_t *data;
    uint32_t limit; /* entries occupy [0, limit); the restart array starts here */
    uint32_t nrestarts;
    const uint8_t *restarts;
} blk;

/* Validates the trailer and restart array. -EUCLEAN (message naming path and off) if corrupt;
 * path may be NULL. */
int blk_parse(blk *b, const uint8_t *data, size_t size, const char *path, uint64_t off);

typedef struct blk_iter {
    iter base;
    blk b;
    uint32_t cur;  /* offset of the current entry; b.limit when invalid */
    uint32_t next; /* offset just after the current entry */
    uint32_t ri;   /* restart interval the current entry is in */
    kv_buf key;    /* current key, rebuilt from the shared prefix */
    kv_slice val;
    int status;
    const char *path; /* for messages (borrowed) */
    uint64_t off;     /* file offset of the block, for messages */
} blk_iter;

/* Starts an embedded iterator (key buffer empty). */
void blk_iter_init(blk_iter *it);
/* Points it at block b (copied), invalid until positioned; keeps the key buffer's memory. */
void blk_iter_reset(blk_iter *it, const blk *b, const char *path, uint64_t off);
/* Frees the key buffer of an embedded iterator. */
void blk_iter_release(blk_iter *it);

int blk_iter_valid(const blk_iter *it);
void blk_iter_seek_first(blk_iter *it);
void blk_iter_seek_last(blk_iter *it);
void blk_iter_seek(blk_iter *it, kv_slice target);
void blk_iter_next(blk_iter *it);
void blk_iter_prev(blk_iter *it);
static inline kv_slice blk_iter_key(const blk_iter *it)
{
    return kv_buf_slice(&it->key);
}
static inline kv_slice blk_iter_value(const blk_iter *it)
{
    return it->val;
}
static inline int blk_iter_status(const blk_iter *it)
{
    return it->status;
}

/* A heap iterator over b (which must outlive it) behind the iter interface; NULL on ENOMEM. */
iter *blk_iter_new(const blk *b, const char *path, uint64_t off);

#endif /* KV_BLOCK_H */
