/*
 * layout.h -- how the kvfs filesystem is laid out in the engine's key space, and the
 * operations on that layout shared by the FUSE daemon (fs/kvfs.c, fs/ops_*.c) and by kvfsctl
 * when the store is not mounted.
 *
 * Key space (integers in keys are big-endian so that scans run in numeric order; integers in
 * values are little-endian):
 *
 *   'I' ino:u64              -> inode record (layout_inode_encode below, versioned)
 *   'D' parent:u64 name      -> directory entry: child ino u64 | type u8 (S_IFMT >> 12)
 *   'C' ino:u64 chunk:u64    -> file bytes [chunk*CHUNK, chunk*CHUNK + len), CHUNK =
 *                               LAYOUT_CHUNK (4 KiB); a chunk may be shorter than CHUNK and may
 *                               be missing: absent bytes inside the file size read as zeros
 *   'X' ino:u64 name         -> extended attribute value (only user.* names are stored)
 *   'L' ino:u64              -> symlink target
 *   'M' "format"             -> layout format: version u32 | chunk bytes u32 (written with the
 *                               root; a store whose format differs, or that has a root but no
 *                               format key, is refused by layout_open with -EPROTO)
 *   'M' "next_ino"           -> inode allocator high-water mark u64: every ino below it may be
 *                               in use, none at or above it is
 *   'O' ino:u64              -> empty value: the inode has nlink 0 and is waiting to be purged
 *                               (open when unlinked, or a crash came before the purge)
 *   'P' ino:u64 parent:u64 name -> empty: parent pointer, one per dirent naming ino (kept by
 *                               layout_dirent_put/del in the same batch as the dirent)
 *   'E' expire_ms:u64 ino:u64 -> empty: expiry index, one per inode with expire_at_ms != 0
 *                               (kept by layout_expiry_set; the reaper scans it in time order)
 *
 * Invariants (kept by every function here, each change being one kv_write batch):
 *   I1. No chunk holds bytes at or beyond its file's size (truncate trims, so growing a file
 *       again always shows zeros).
 *   I2. Every dirent names an inode record; a directory's nlink is 2 + its subdirectories; a
 *       non-directory's nlink is the number of dirents naming it.
 *   I3. An inode with nlink 0 has an 'O' key until its last key is deleted (layout_purge).
 *   I4. The inode record of an inode with expire_at_ms != 0 is written with that engine TTL
 *       (and no other key is: so changing a TTL costs one record, never a rewrite of the data).
 *       At expiry the engine hides the record; every reader treats a dirent naming a missing
 *       record as absent, so the whole file disappears at once. The reaper (fs/reaper.c) then
 *       deletes the dirents and every other key of the inode, found through 'P' and 'E'.
 *   I5. Every dirent (parent, name) -> ino has the parent pointer 'P' ino parent name, and
 *       every inode with an expiry has exactly the one 'E' key of that expiry.
 *
 * The "key view": the key "a/b/c" is the regular file reached from the root through the
 * dirents a, b, c; its value is the file's bytes. Directories are implied by the paths.
 *
 * Thread safety: a layout_fs may be used from many threads for reads; functions that write
 * (those taking a kv_batch or named *_write_*, *_unlink_*, *_purge, *_alloc_*) must be
 * serialised by the caller (the daemon holds its write mutex).
 *
 * Errors: 0 or a negative errno; layout_last_error() describes the latest failure in the
 * calling thread.
 */
#ifndef KVFS_LAYOUT_H
#define KVFS_LAYOUT_H

#include "kv.h"

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define LAYOUT_CHUNK 4096u       /* bytes per 'C' chunk; recorded in 'M' "format" */
#define LAYOUT_FORMAT_VERSION 2u /* 1: the unrecorded 64 KiB-chunk layout; 2: 4 KiB chunks */
#define LAYOUT_FORMAT_BYTES 8u
#define LAYOUT_ROOT_INO 1u
#define LAYOUT_NAME_MAX 255u
#define LAYOUT_INO_BATCH 4096u      /* inodes reserved per allocator step */
#define LAYOUT_MAX_PUT (64u << 20)  /* largest value written by layout_write_file */
#define LAYOUT_MAX_GET (256u << 20) /* largest value returned by layout_read_file */
#define LAYOUT_PURGE_FAST 64u       /* chunks up to which layout_purge deletes one by one */
#define LAYOUT_IF_XATTRS 1u         /* inode flag: the inode has (or once had) 'X' keys */
#define LAYOUT_INODE_VERSION 1u
#define LAYOUT_INODE_V1_BYTES 117u

/* Longest key the layout builds ('P' + ino + parent + name is the longest). */
#define LAYOUT_KEY_MAX (1u + 8u + 8u + LAYOUT_NAME_MAX + 1u)

typedef struct layout_inode {
    uint64_t ino; /* not stored in the record: the key says it */
    uint32_t mode, uid, gid, nlink, flags;
    uint64_t rdev, size, generation;
    uint64_t parent;        /* directories: the parent directory (root: itself) */
    uint64_t expire_at_ms;  /* 0 = none (I4) */
    uint64_t default_ttl_s; /* directories: TTL given to new files (0 = none) */
    struct timespec atime, mtime, ctime, btime;
} layout_inode;

typedef struct layout_fs {
    kv_db *db;
    int read_only;
    uint64_t next_ino;  /* next inode number to hand out; protected by the writer lock */
    uint64_t ino_limit; /* high-water mark persisted in 'M' */
} layout_fs;

const char *layout_last_error(void);
int layout_error(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Opens the layout over db: checks the layout format ('M' "format"; -EPROTO with a one-line
 * message when it is not LAYOUT_FORMAT_VERSION with LAYOUT_CHUNK-byte chunks, or missing
 * beside a root), loads the allocator; creates the root directory (owned by uid:gid, mode
 * 0755) and the format key when the store is writable and has none. OUT: *out. */
int layout_open(kv_db *db, int read_only, uint32_t uid, uint32_t gid, layout_fs **out);
void layout_close(layout_fs *fs);

/* ---- keys: each returns the key length; out must hold LAYOUT_KEY_MAX bytes ---- */
size_t layout_key_inode(uint8_t *out, uint64_t ino);
size_t layout_key_dirent(uint8_t *out, uint64_t parent, const char *name, size_t nlen);
size_t layout_key_chunk(uint8_t *out, uint64_t ino, uint64_t idx);
size_t layout_key_xattr(uint8_t *out, uint64_t ino, const char *name, size_t nlen);
size_t layout_key_symlink(uint8_t *out, uint64_t ino);
size_t layout_key_orphan(uint8_t *out, uint64_t ino);
size_t layout_key_parent(uint8_t *out, uint64_t ino, uint64_t parent, const char *name,
                         size_t nlen);
size_t layout_key_expiry(uint8_t *out, uint64_t expire_at_ms, uint64_t ino);

/* ---- records ---- */
void layout_now(struct timespec *ts);
void layout_inode_init(layout_inode *in, uint64_t ino, uint32_t mode, uint32_t uid, uint32_t gid);
int layout_inode_decode(const void *val, size_t vlen, uint64_t ino, layout_inode *out);
/* OUT: *out; -ENOENT when the inode has no record. ro may be NULL (latest). */
int layout_inode_get_at(layout_fs *fs, const kv_readopts *ro, uint64_t ino, layout_inode *out);
int layout_inode_get(layout_fs *fs, uint64_t ino, layout_inode *out);
int layout_inode_put(kv_batch *b, const layout_inode *in);
/* OUT: *ino, *type (S_IFMT bits). -ENOENT when there is no such entry. */
int layout_dirent_get(layout_fs *fs, uint64_t parent, const char *name, size_t nlen, uint64_t *ino,
                      uint32_t *type);
int layout_dirent_get_at(layout_fs *fs, const kv_readopts *ro, uint64_t parent, const char *name,
                         size_t nlen, uint64_t *ino, uint32_t *type);
/* Both also keep the parent pointer of ino (I5). Dirents carry no TTL (I4); expire_at_ms
 * is accepted for the callers' convenience and ignored. */
int layout_dirent_put(kv_batch *b, uint64_t parent, const char *name, size_t nlen, uint64_t ino,
                      uint32_t type, uint64_t expire_at_ms);
int layout_dirent_del(kv_batch *b, uint64_t parent, const char *name, size_t nlen, uint64_t ino);
/* Changes in->expire_at_ms to expire_at_ms (0 = none), keeping the 'E' index (I5); the caller
 * puts the record into the same batch. */
int layout_expiry_set(kv_batch *b, layout_inode *in, uint64_t expire_at_ms);
/* Walks the expiry index 'E' in time order, calling fn(arg, expire_at_ms, ino) for each entry;
 * fn returns 0 to go on, 1 to stop, or a negative errno to stop with it. Returns 0, fn's
 * error, or the scan's. */
typedef int (*layout_expiry_fn)(void *arg, uint64_t expire_at_ms, uint64_t ino);
int layout_expiry_scan(layout_fs *fs, layout_expiry_fn fn, void *arg);
/* Reads the inode record even if its TTL has passed (TTL judged at the epoch). */
int layout_inode_get_any(layout_fs *fs, uint64_t ino, layout_inode *out);
/* The names of ino, from its parent pointers. OUT: *links (malloc'd), *n. */
typedef struct layout_link {
    uint64_t parent;
    size_t nlen;
    char name[LAYOUT_NAME_MAX + 1];
} layout_link;
int layout_links(layout_fs *fs, uint64_t ino, layout_link **links, size_t *n);
/* 1 if the directory has no entries, 0 if it has some, <0 on error. */
int layout_dir_is_empty(layout_fs *fs, uint64_t dir);
/* Reserves a new inode number; adds the allocator record to b when a new range is taken. */
int layout_alloc_ino(layout_fs *fs, kv_batch *b, uint64_t *ino);
/* Sets the 'O' key for an inode whose nlink reached 0 (I3). */
int layout_orphan_put(kv_batch *b, uint64_t ino);

/* ---- file data ---- */
/* Reads [off, off+len) clipped to in->size. OUT: buf, *got. */
int layout_read(layout_fs *fs, const layout_inode *in, void *buf, size_t len, uint64_t off,
                size_t *got);
int layout_read_at(layout_fs *fs, const kv_readopts *ro, const layout_inode *in, void *buf,
                   size_t len, uint64_t off, size_t *got);
/* Adds chunk writes of buf at off to b (read-modify-write of partial chunks only) and grows
 * in->size. The caller puts the inode record into the same batch. */
int layout_write(layout_fs *fs, kv_batch *b, layout_inode *in, const void *buf, size_t len,
                 uint64_t off);
/* Adds the deletes/trim that make the file size bytes long (I1); sets in->size. */
int layout_truncate(layout_fs *fs, kv_batch *b, layout_inode *in, uint64_t size);
/* Zeroes [off, off+len) inside the file (deleting whole chunks); size unchanged. */
int layout_punch(layout_fs *fs, kv_batch *b, layout_inode *in, uint64_t off, uint64_t len);
/* Deletes every key of an inode with nlink 0. A file of up to LAYOUT_PURGE_FAST chunks goes
 * in one batch with no scan: its chunks are below its size (I1), it has no 'P' keys (nlink 0,
 * I5) and 'X' keys only if LAYOUT_IF_XATTRS is set. A larger one loses its chunks to one
 * range deletion (kv_batch_delete_range), whatever its size; its 'X' and 'P' keys, if any,
 * are found by prefix scans and deleted first, the 'O' key in the last batch. */
int layout_purge(layout_fs *fs, uint64_t ino);
/* Purges every orphan ('O' key); returns the number purged or <0. */
int layout_sweep_orphans(layout_fs *fs);

/* ---- the key view ---- */
/* Called per path component that exists: parent dir, name, child ino. */
typedef void (*layout_walk_fn)(void *arg, uint64_t parent, const char *name, size_t nlen,
                               uint64_t ino);
/* Validates the key as a path ("a/b/c"; one leading '/' ignored; no empty, "." or ".."
 * components; components up to 255 bytes) and resolves it. OUT: *ino, *in (may be NULL).
 * -ENOENT if a component is missing, -ENOTDIR if a non-final one is not a directory. */
int layout_resolve(layout_fs *fs, const kv_readopts *ro, const void *key, size_t klen,
                   uint64_t *ino, layout_inode *in);
/* Calls fn for every existing component of key, from the root down; stops at the first
 * missing one. Returns 0 or <0. */
int layout_walk(layout_fs *fs, const void *key, size_t klen, layout_walk_fn fn, void *arg);
/* The value of key: the file's bytes. OUT: *val (malloc'd), *vlen, *info (may be NULL).
 * -EISDIR for a directory, -EINVAL for a non-regular file, -EFBIG above LAYOUT_MAX_GET. */
int layout_read_file(layout_fs *fs, const void *key, size_t klen, void **val, size_t *vlen,
                     kv_entry_info *info);
/* Makes key a regular file holding exactly val (one batch): missing parent directories are
 * created (mode 0755), an existing file keeps its inode, mode and owner. New inodes belong
 * to uid:gid. expire_at_ms (0 = none) becomes the file's TTL. */
int layout_write_file(layout_fs *fs, const void *key, size_t klen, const void *val, size_t vlen,
                      uint64_t expire_at_ms, uint32_t uid, uint32_t gid);
/* Removes the dirent of a non-directory key. OUT: *ino, *now_orphan (1 when nlink reached
 * 0: the caller purges with layout_purge once nothing holds the inode). */
int layout_unlink_path(layout_fs *fs, const void *key, size_t klen, uint64_t *ino, int *now_orphan);
/* Calls fn, in path order, for every regular file whose key starts with prefix; info gives
 * the file's size (value_len), inode-record seq and TTL. A non-zero return of fn stops the
 * listing and is returned. */
typedef int (*layout_list_fn)(void *arg, const void *key, size_t klen, const kv_entry_info *info);
int layout_list_prefix(layout_fs *fs, const void *prefix, size_t plen, layout_list_fn fn,
                       void *arg);
/* The versions of a path, newest first: every retained version of the inode record of
 * each inode the name pointed to (while it pointed there; size = the size at that version),
 * plus a `deleted` entry for each retained removal of the name. Each seq can be read at
 * .snapshots/@SEQ/path. The key must name a live non-directory (-ENOENT, -EISDIR
 * otherwise: kvfsctl history's contract). OUT: *list (malloc'd), *n. */
int layout_history(layout_fs *fs, const void *key, size_t klen, kv_version **list, size_t *n);
/* The same for the name (parent, name). */
int layout_history_name(layout_fs *fs, uint64_t parent, const char *name, size_t nlen,
                        kv_version **list, size_t *n);
/* The same for an inode: through its first name (parent pointer), else its record alone. */
int layout_history_ino(layout_fs *fs, uint64_t ino, kv_version **list, size_t *n);
/* The one table format of versions, used by user.kvfs.versions and `kvfsctl history`: one
 * line per version "SEQ TIME SIZE[ deleted]\n", TIME as ISO-8601 UTC (2026-11-21T10:00:00Z).
 * OUT: *out (malloc'd, NUL-terminated), *len (without the NUL). */
int layout_versions_format(const kv_version *list, size_t n, char **out, size_t *len);
/* ISO-8601 UTC text of a time in ms (one-second resolution); buf of 32 bytes. */
void layout_iso_time(uint64_t time_ms, char *buf, size_t size);
/* Parses "2026-11-21T10:00:00Z", "...T10:00:00+01:00", "...T10:00:00.5-0330" (fractional
 * seconds ignored). OUT: *time_ms. -EINVAL on anything else. */
int layout_parse_iso_time(const char *s, uint64_t *time_ms);
/* Filesystem consistency check (I1-I3): report is called once per problem. Returns the
 * number of problems (0 = clean) or <0. */
int layout_check(layout_fs *fs, kv_report_fn report, void *arg);

#endif /* KVFS_LAYOUT_H */
