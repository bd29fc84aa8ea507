/*
 * batch.h -- the write batch: the unit of atomicity, of WAL records and of group commit.
 *
 *   batch := seq:fixed64 | time_ms:fixed64 | count:fixed32 | op[count]
 *   op    := type:u8 | klen:varint | key | ( vlen:varint | stored_value )   (no value for DELETE)
 *            (RANGE_DELETE: key = lo, stored_value = hi, lo < hi: drops.h)
 *
 * seq is the sequence of the first op; op i gets seq + i. time_ms is the commit time stamped by
 * the writer that logs the batch. stored_value is as in dbformat.h (a TTL value carries its
 * expiry in front). A WAL record is exactly one batch (a group commit concatenates the ops of
 * several callers' batches into one).
 */
#ifndef KV_BATCH_H
#define KV_BATCH_H

#include "kv.h"
#include "util.h"

#define BATCH_HEADER_BYTES 20

struct kv_batch {
    kv_buf rep;      /* header + ops; the header is always present */
    size_t count;    /* == the count field */
    size_t ndeletes; /* how many of the ops are deletions, of keys or ranges (statistics) */
};

int batch_init(kv_batch *b); /* for batches embedded in other structs */
void batch_set_seq(kv_batch *b, uint64_t seq);
void batch_set_time(kv_batch *b, uint64_t time_ms);
uint64_t batch_seq(const kv_batch *b);
/* Appends the ops of src to dst (count and rep). */
int batch_append(kv_batch *dst, const kv_batch *src);

typedef int (*batch_op_fn)(void *arg, uint64_t seq, unsigned type, kv_slice key,
                           kv_slice stored_value);
/* Decodes rep (from a WAL record) and calls fn per op in order; stops at the first non-zero
 * return of fn and returns it. -EUCLEAN if rep is malformed (checked in full before any call).
 * OUT (may be NULL): *seq, *time_ms, *count of the header. */
int batch_decode(kv_slice rep, batch_op_fn fn, void *arg, uint64_t *seq, uint64_t *time_ms,
                 uint32_t *count);

#endif /* KV_BATCH_H */
