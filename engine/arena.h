/*
 * arena.h -- a bump allocator for memtables: memory is carved out of large blocks and only
 * ever freed all at once (arena_destroy).
 *
 * Invariants: every pointer returned is 8-byte aligned and stays valid until arena_destroy;
 * a request larger than a quarter of a block gets a block of its own, so big values waste
 * no space in the shared blocks. Shared blocks start at 16 KiB and double up to 1 MiB, so the
 * usage of a small memtable is not inflated by one large block. arena_alloc needs external
 * serialisation (one writer); arena_usage may be read from any thread at any time.
 */
#ifndef KV_ARENA_H
#define KV_ARENA_H

#include <stdatomic.h>
#include <stddef.h>

#define ARENA_BLOCK_BYTES ((size_t)1 << 20)
#define ARENA_FIRST_BLOCK_BYTES ((size_t)16 << 10)

struct arena_block;

typedef struct arena {
    struct arena_block *ar_blocks; /* every block, newest first (writer only) */
    char *ar_ptr;                  /* next free byte of the current shared block */
    size_t ar_left;                /* bytes left after ar_ptr */
    size_t ar_block_bytes;         /* size of the next shared block */
    _Atomic size_t ar_usage;       /* bytes taken from malloc, block headers included */
} arena;

void arena_init(arena *a);
/* Frees every block; the arena is empty (and reusable) afterwards. */
void arena_destroy(arena *a);
/* n bytes, 8-byte aligned; NULL on ENOMEM (or n == 0). */
void *arena_alloc(arena *a, size_t n);
/* Bytes obtained from malloc so far, including block overhead. Thread-safe. */
size_t arena_usage(const arena *a);

#endif /* KV_ARENA_H */
