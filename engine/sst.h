/*
 * sst.h -- SSTables: immutable sorted files of internal keys (format: docs/format.md).
 *
 *   file    := data_block* filter_block props_block index_block footer
 *   block   := contents | compression:u8 | checksum:u32   (kv_checksum32 of contents|compression)
 *   footer  := filter_handle props_handle index_handle (varint pairs, padded) | version:u32
 *              | magic:u64  -- fixed 48 bytes at the end of the file
 *
 * Data blocks hold prefix-compressed entries with restart points; the index maps each data
 * block's last key to its handle; the filter is one bloom filter over every user key in the
 * file. A builder never leaves a half-written file under its final name: it writes
 * NNNNNN.sst.tmp and renames on finish after fsync.
 *
 * Readers are immutable after open and safe for concurrent use; iterators are not shared.
 * Every block read is checksum-verified; a bad block is -EUCLEAN naming the file and offset.
 */
#ifndef KV_SST_H
#define KV_SST_H

#include "cache.h"
#include "iter.h"
#include "util.h"

typedef struct sst_build_opts {
    size_t block_bytes;     /* target uncompressed data block size */
    int compression_level;  /* zstd level (negative: zstd's fast levels), 0 = none */
    int bloom_bits_per_key; /* 0 = no filter */
} sst_build_opts;

/* What a finished table says about itself (also recorded in the manifest). */
typedef struct sst_props {
    uint64_t entries;
    uint64_t file_bytes;
    uint64_t min_seq, max_seq;
    kv_buf smallest; /* internal keys (owned; free with kv_buf_free) */
    kv_buf largest;
} sst_props;

void sst_props_free(sst_props *p);

typedef struct sst_builder sst_builder;

/* path is the final name; the builder writes path + ".tmp" until finish. */
int sst_builder_open(const char *path, const sst_build_opts *o, sst_builder **b);
/* Keys must arrive in strictly increasing ikey_cmp order. */
int sst_builder_add(sst_builder *b, kv_slice ikey, kv_slice value);
uint64_t sst_builder_entries(const sst_builder *b);
uint64_t sst_builder_file_bytes(const sst_builder *b); /* bytes written so far + pending */
/* Writes filter, props, index and footer, fsyncs, renames into place (the caller fsyncs the
 * directory once per batch of new files). Frees b. OUT: *props. */
int sst_builder_finish(sst_builder *b, sst_props *props);
/* Closes and removes the temporary file. Frees b. */
void sst_builder_abandon(sst_builder *b);

typedef struct sst_reader sst_reader;

/* Opens and validates footer, index, filter and props. bc may be NULL (no block cache). */
int sst_reader_open(const char *path, uint64_t file_number, cache *bc, sst_reader **r);
void sst_reader_close(sst_reader *r);
const sst_props *sst_reader_props(const sst_reader *r);

/* 0 if the bloom filter proves ukey absent, 1 if it may be present. */
int sst_reader_may_contain(const sst_reader *r, kv_slice ukey);
/* The newest entry of ukey with seq <= max_seq (consults the filter first). Returns 1 and fills
 * *seq, *type and *value (malloc'd copy of the stored value into value->data; the caller frees
 * with kv_buf_free), 0 if none, negative errno on error. */
int sst_reader_get(sst_reader *r, kv_slice ukey, uint64_t max_seq, uint64_t *seq, unsigned *type,
                   kv_buf *value);
/* An iterator over every entry; the reader must outlive it. */
iter *sst_reader_iter(sst_reader *r);
/* The same for one pass over the table (compaction): blocks read from disk are not added to
 * the block cache. */
iter *sst_reader_scan_iter(sst_reader *r);
uint64_t sst_reader_filter_skips(const sst_reader *r); /* gets answered by the filter alone */

/* Reads every block of the file at path and verifies it (checksums, order, footer). report is
 * called with one line per problem. Returns the number of problems, or negative errno if the
 * file could not be read at all. */
int sst_verify(const char *path, void (*report)(void *arg, const char *line), void *arg);

#endif /* KV_SST_H */
