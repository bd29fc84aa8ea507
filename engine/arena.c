/*
 * arena.c -- block-based bump allocation (see arena.h).
 *
 * A shared block (16 KiB growing to ARENA_BLOCK_BYTES) of payload after a small header; requests
 * are rounded up to 8 bytes and cut from the front of the current block. A request of more than a
 * quarter block gets a dedicated block of exactly its size, and the current shared block stays
 * current, so at most a quarter block is wasted when a new shared block is started.
 * ar_usage counts header + payload of every block and is written only by the allocating
 * thread (relaxed atomics: readers only want an up-to-date-enough figure).
 */
#include "arena.h"

#include <stdint.h>
#include <stdlib.h>

#define ARENA_ALIGN 8

struct arena_block {
    struct arena_block *next;
    union {
        max_align_t align; /* payload starts max-aligned */
        char bytes[1];
    } data;
};

#define ARENA_HEADER_BYTES offsetof(struct arena_block, data)

void arena_init(arena *a)
{
    a->ar_blocks = NULL;
    a->ar_ptr = NULL;
    a->ar_left = 0;
    a->ar_block_bytes = ARENA_FIRST_BLOCK_BYTES;
    atomic_init(&a->ar_usage, 0);
}

void arena_destroy(arena *a)
{
    struct arena_block *b = a->ar_blocks;
    while (b) {
        struct arena_block *next = b->next;
        free(b);
        b = next;
    }
    arena_init(a);
}

/* A new block with payload bytes of room, linked in front of the list. */
static char *arena_new_block(arena *a, size_t payload)
{
    if (payload > SIZE_MAX - ARENA_HEADER_BYTES)
        return NULL;
    struct arena_block *b = malloc(ARENA_HEADER_BYTES + payload);
    if (!b)
        return NULL;
    b->next = a->ar_blocks;
    a->ar_blocks = b;
    size_t used = atomic_load_explicit(&a->ar_usage, memory_order_relaxed);
    atomic_store_explicit(&a->ar_usage, used + ARENA_HEADER_BYTES + payload, memory_order_relaxed);
    return b->data.bytes;
}

void *arena_alloc(arena *a, size_t n)
{
    if (n == 0 || n > SIZE_MAX - ARENA_ALIGN)
        return NULL;
    n = (n + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    if (n <= a->ar_left) {
        char *p = a->ar_ptr;
        a->ar_ptr += n;
        a->ar_left -= n;
        return p;
    }
    size_t block = a->ar_block_bytes;
    if (n > block / 4)
        return arena_new_block(a, n);
    char *p = arena_new_block(a, block);
    if (!p)
        return NULL;
    a->ar_ptr = p + n;
    a->ar_left = block - n;
    if (block < ARENA_BLOCK_BYTES)
        a->ar_block_bytes = block * 2;
    return p;
}

size_t arena_usage(const arena *a)
{
    return atomic_load_explicit(&a->ar_usage, memory_order_relaxed);
}
