/*
 * log.h -- the record log format shared by WAL segments and the MANIFEST.
 *
 * A log file is a sequence of 32 KiB blocks. A record that does not fit in the rest of a block
 * is split into fragments; a block tail too short for a fragment header is zero-filled.
 *
 *   fragment := checksum:u32 | length:u16 | type:u8 | log_number:u32 | data[length]
 *   checksum  = low 32 bits of XXH3-64(type | log_number | length | data, seed 0x6b766673
 *               "kvfs"); readers also accept XXH32 of the same bytes (format 1, older data)
 *   type      = FULL 1 | FIRST 2 | MIDDLE 3 | LAST 4     (0: zero fill, never valid)
 *
 * The log number in every fragment is the file's own number, so bytes left from another file
 * can never validate; an all-zero region never validates either (type 0 is rejected).
 *
 * Readers stop at the first bad fragment. A bad or incomplete fragment that no valid fragment
 * follows is a torn tail (the writer died mid-append): it reads as end of log. A bad fragment
 * followed by a valid one is corruption in the middle and is reported as -EUCLEAN with the
 * file name and offset. The reader can be resumed after end of log to pick up records appended
 * since (a tailing reader in another process does this); a writer only ever appends.
 */
#ifndef KV_LOG_H
#define KV_LOG_H

#include "util.h"

#define LOG_BLOCK_BYTES 32768
#define LOG_HEADER_BYTES 11
#define LOG_CHECKSUM_SEED 0x6b766673u

typedef struct log_writer log_writer;

/* Creates path (it must not exist) for log number lognum. OUT: *w. */
int log_writer_create(const char *path, uint32_t lognum, log_writer **w);
/* Opens the existing file path (an obsolete log already renamed to its new name) to write log
 * number lognum over it from offset 0; its older records stay past the writer's offset until
 * log_writer_seal. OUT: *w. */
int log_writer_reuse(const char *path, uint32_t lognum, log_writer **w);
/* Opens the existing log path (number lognum) to append after its last whole record, which
 * ends at end (a reader's good offset): anything past end (a torn tail) is cut off first.
 * OUT: *w. */
int log_writer_continue(const char *path, uint32_t lognum, uint64_t end, log_writer **w);
/* From the next append on, keeps up to bytes zero-filled past the end of the records (the WAL:
 * an fdatasync over written blocks is cheaper than one that grows the file). log_writer_seal
 * cuts them off again. */
void log_writer_prepare_ahead(log_writer *w, size_t bytes);
/* Appends one record (any length; fragmented as needed) with a single write(2) call, so that
 * a concurrent reader in another process sees either nothing or whole fragments in order.
 * A disk without room gives a no-space error (kv_err_is_no_space) and leaves the log as it
 * was, usable; any other failure makes the writer unusable (sticky). */
int log_writer_add(log_writer *w, const void *data, size_t len);
int log_writer_sync(log_writer *w); /* fdatasync */
/* Starts writing the whole pages of the records added so far to disk without waiting, so that
 * a sync expected soon finds them on their way (db.c: db_expect_sync). The last, partly filled
 * page is left alone: the next record goes into it, and a page under writeback may make that
 * write wait (devices that need stable pages) or be written twice. A failure is sticky, as in
 * add. */
int log_writer_start_writeback(log_writer *w);
/* Ends the log: truncates what lies past the records (a reused file's older records, zeros
 * written ahead) off, then fdatasync. Nothing may be
 * appended afterwards that should survive a crash unsealed. */
int log_writer_seal(log_writer *w);
uint64_t log_writer_offset(const log_writer *w);
/* The writer's sticky error (0: usable, as after an append refused for want of space). */
int log_writer_failed(const log_writer *w);
int log_writer_close(log_writer *w); /* closes (no sync); frees w even on error */

typedef struct log_reader log_reader;

int log_reader_open(const char *path, uint32_t lognum, log_reader **r);
/* OUT: *rec, *len: the next record, valid until the next call. Returns 1 for a record, 0 at end
 * of log (clean end or torn tail), -EUCLEAN for mid-log corruption (kv_last_error names the
 * file and offset), other negative errno for I/O errors. After 0, calling again returns records
 * appended since. */
int log_reader_next(log_reader *r, const uint8_t **rec, size_t *len);
/* Offset just past the last whole record returned (where a torn tail starts). */
uint64_t log_reader_good_offset(const log_reader *r);
/* Offset of the bad fragment after -EUCLEAN. */
uint64_t log_reader_error_offset(const log_reader *r);
void log_reader_close(log_reader *r);

#endif /* KV_LOG_H */
