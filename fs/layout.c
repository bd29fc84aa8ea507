/*
 * layout.c -- the kvfs key layout (see layout.h for the key grammar and invariants I1-I4):
 * key and record codecs, the inode allocator, chunked file data, orphan purging, and the
 * "key view" (path keys) used by kvfsctl and the daemon's control socket.
 *
 * Inode record, version 1 (little-endian, LAYOUT_INODE_V1_BYTES = 117; decoders accept longer
 * records of the same version so fields can be appended):
 *
 *   off  size  field
 *     0     1  version (1)
 *     1     4  mode (S_IFMT | permission bits)
 *     5     4  uid
 *     9     4  gid
 *    13     4  nlink
 *    17     4  flags: LAYOUT_IF_XATTRS (1) once a user.* xattr was set; other bits 0
 *    21     8  rdev
 *    29     8  size
 *    37     8  generation
 *    45     8  parent (directories)
 *    53     8  expire_at_ms (0 = none)
 *    61     8  default_ttl_s
 *    69    12  atime: sec u64, nsec u32
 *    81    12  mtime
 *    93    12  ctime
 *   105    12  btime
 *
 * Dirent value: child ino u64 | type u8 (S_IFMT >> 12). Allocator value: u64.
 * Parent pointer 'P' ino:be64 parent:be64 name and expiry index 'E' expire_ms:be64 ino:be64
 * both have empty values. Only the inode record carries an engine TTL (I4).
 */
#include "layout.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define LAYOUT_DEL_BATCH 8192u /* keys deleted per batch while purging */

static _Thread_local char layout_errbuf[512];

const char *layout_last_error(void)
{
    return layout_errbuf;
}

int layout_error(int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(layout_errbuf, sizeof(layout_errbuf), fmt, ap);
    va_end(ap);
    return err;
}

/* Records an engine failure: the engine's own message, prefixed by what we were doing. */
static int layout_kverr(int err, const char *what)
{
    const char *m = kv_last_error();
    return layout_error(err, "%s: %s", what, (m && *m) ? m : strerror(-err));
}

/* ------------------------------------------------------------------------ coding ---- */

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static uint64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_le64(const uint8_t *p)
{
    return (uint64_t)get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

static size_t key_ino(uint8_t *out, char tag, uint64_t ino)
{
    out[0] = (uint8_t)tag;
    put_be64(out + 1, ino);
    return 9;
}

size_t layout_key_inode(uint8_t *out, uint64_t ino)
{
    return key_ino(out, 'I', ino);
}

size_t layout_key_symlink(uint8_t *out, uint64_t ino)
{
    return key_ino(out, 'L', ino);
}

size_t layout_key_orphan(uint8_t *out, uint64_t ino)
{
    return key_ino(out, 'O', ino);
}

static size_t key_named(uint8_t *out, char tag, uint64_t ino, const char *name, size_t nlen)
{
    if (nlen > LAYOUT_NAME_MAX)
        nlen = LAYOUT_NAME_MAX; /* callers check; never overflow out */
    key_ino(out, tag, ino);
    if (nlen)
        memcpy(out + 9, name, nlen);
    return 9 + nlen;
}

size_t layout_key_dirent(uint8_t *out, uint64_t parent, const char *name, size_t nlen)
{
    return key_named(out, 'D', parent, name, nlen);
}

size_t layout_key_xattr(uint8_t *out, uint64_t ino, const char *name, size_t nlen)
{
    return key_named(out, 'X', ino, name, nlen);
}

size_t layout_key_parent(uint8_t *out, uint64_t ino, uint64_t parent, const char *name, size_t nlen)
{
    if (nlen > LAYOUT_NAME_MAX)
        nlen = LAYOUT_NAME_MAX;
    key_ino(out, 'P', ino);
    put_be64(out + 9, parent);
    if (nlen)
        memcpy(out + 17, name, nlen);
    return 17 + nlen;
}

size_t layout_key_expiry(uint8_t *out, uint64_t expire_at_ms, uint64_t ino)
{
    key_ino(out, 'E', expire_at_ms);
    put_be64(out + 9, ino);
    return 17;
}

size_t layout_key_chunk(uint8_t *out, uint64_t ino, uint64_t idx)
{
    key_ino(out, 'C', ino);
    put_be64(out + 9, idx);
    return 17;
}

/* ----------------------------------------------------------------------- records ---- */

void layout_now(struct timespec *ts)
{
    clock_gettime(CLOCK_REALTIME, ts);
}

void layout_inode_init(layout_inode *in, uint64_t ino, uint32_t mode, uint32_t uid, uint32_t gid)
{
    memset(in, 0, sizeof(*in));
    in->ino = ino;
    in->mode = mode;
    in->uid = uid;
    in->gid = gid;
    in->nlink = S_ISDIR(mode) ? 2 : 1;
    in->generation = 1;
    layout_now(&in->atime);
    in->mtime = in->ctime = in->btime = in->atime;
}

static void enc_ts(uint8_t *p, const struct timespec *ts)
{
    put_le64(p, (uint64_t)ts->tv_sec);
    put_le32(p + 8, (uint32_t)ts->tv_nsec);
}

static void dec_ts(const uint8_t *p, struct timespec *ts)
{
    ts->tv_sec = (time_t)get_le64(p);
    ts->tv_nsec = (long)get_le32(p + 8);
}

static void layout_inode_encode(uint8_t *p, const layout_inode *in)
{
    p[0] = LAYOUT_INODE_VERSION;
    put_le32(p + 1, in->mode);
    put_le32(p + 5, in->uid);
    put_le32(p + 9, in->gid);
    put_le32(p + 13, in->nlink);
    put_le32(p + 17, in->flags);
    put_le64(p + 21, in->rdev);
    put_le64(p + 29, in->size);
    put_le64(p + 37, in->generation);
    put_le64(p + 45, in->parent);
    put_le64(p + 53, in->expire_at_ms);
    put_le64(p + 61, in->default_ttl_s);
    enc_ts(p + 69, &in->atime);
    enc_ts(p + 81, &in->mtime);
    enc_ts(p + 93, &in->ctime);
    enc_ts(p + 105, &in->btime);
}

int layout_inode_decode(const void *val, size_t vlen, uint64_t ino, layout_inode *out)
{
    const uint8_t *p = val;
    if (vlen < LAYOUT_INODE_V1_BYTES || p[0] != LAYOUT_INODE_VERSION)
        return layout_error(-EUCLEAN, "inode %llu: bad record (%zu bytes, version %u)",
                            (unsigned long long)ino, vlen, vlen ? p[0] : 0u);
    memset(out, 0, sizeof(*out));
    out->ino = ino;
    out->mode = get_le32(p + 1);
    out->uid = get_le32(p + 5);
    out->gid = get_le32(p + 9);
    out->nlink = get_le32(p + 13);
    out->flags = get_le32(p + 17);
    out->rdev = get_le64(p + 21);
    out->size = get_le64(p + 29);
    out->generation = get_le64(p + 37);
    out->parent = get_le64(p + 45);
    out->expire_at_ms = get_le64(p + 53);
    out->default_ttl_s = get_le64(p + 61);
    dec_ts(p + 69, &out->atime);
    dec_ts(p + 81, &out->mtime);
    dec_ts(p + 93, &out->ctime);
    dec_ts(p + 105, &out->btime);
    return 0;
}

int layout_inode_get_at(layout_fs *fs, const kv_readopts *ro, uint64_t ino, layout_inode *out)
{
    uint8_t key[LAYOUT_KEY_MAX];
    void *val = NULL;
    size_t vlen = 0;
    int rc = kv_get(fs->db, ro, key, layout_key_inode(key, ino), &val, &vlen, NULL);
    if (rc == -ENOENT)
        return layout_error(-ENOENT, "inode %llu not found", (unsigned long long)ino);
    if (rc < 0)
        return layout_kverr(rc, "read inode");
    rc = layout_inode_decode(val, vlen, ino, out);
    free(val);
    return rc;
}

int layout_inode_get(layout_fs *fs, uint64_t ino, layout_inode *out)
{
    return layout_inode_get_at(fs, NULL, ino, out);
}

int layout_inode_get_any(layout_fs *fs, uint64_t ino, layout_inode *out)
{
    kv_readopts ro;
    memset(&ro, 0, sizeof(ro));
    ro.time_ms = 1; /* TTL judged at the epoch: an expired record not yet reaped is seen */
    return layout_inode_get_at(fs, &ro, ino, out);
}

int layout_expiry_set(kv_batch *b, layout_inode *in, uint64_t expire_at_ms)
{
    uint8_t key[LAYOUT_KEY_MAX];
    int rc = 0;
    if (in->expire_at_ms == expire_at_ms)
        return 0;
    if (in->expire_at_ms)
        rc = kv_batch_delete(b, key, layout_key_expiry(key, in->expire_at_ms, in->ino));
    if (rc == 0 && expire_at_ms)
        rc = kv_batch_put(b, key, layout_key_expiry(key, expire_at_ms, in->ino), "", 0);
    if (rc < 0)
        return layout_kverr(rc, "expiry index");
    in->expire_at_ms = expire_at_ms;
    return 0;
}

/* Puts one key of an inode, honouring the inode's TTL (I4). */
static int put_owned(kv_batch *b, const void *k, size_t kl, const void *v, size_t vl,
                     uint64_t expire_at_ms)
{
    int rc = expire_at_ms ? kv_batch_put_ttl(b, k, kl, v, vl, expire_at_ms)
                          : kv_batch_put(b, k, kl, v, vl);
    return rc < 0 ? layout_kverr(rc, "batch put") : 0;
}

int layout_inode_put(kv_batch *b, const layout_inode *in)
{
    uint8_t key[LAYOUT_KEY_MAX], val[LAYOUT_INODE_V1_BYTES];
    layout_inode_encode(val, in);
    return put_owned(b, key, layout_key_inode(key, in->ino), val, sizeof(val), in->expire_at_ms);
}

int layout_dirent_get(layout_fs *fs, uint64_t parent, const char *name, size_t nlen, uint64_t *ino,
                      uint32_t *type)
{
    uint8_t key[LAYOUT_KEY_MAX];
    void *val = NULL;
    size_t vlen = 0;
    if (nlen > LAYOUT_NAME_MAX)
        return layout_error(-ENAMETOOLONG, "name of %zu bytes", nlen);
    int rc =
        kv_get(fs->db, NULL, key, layout_key_dirent(key, parent, name, nlen), &val, &vlen, NULL);
    if (rc == -ENOENT)
        return -ENOENT;
    if (rc < 0)
        return layout_kverr(rc, "read dirent");
    if (vlen < 9) {
        free(val);
        return layout_error(-EUCLEAN, "dirent %.*s in directory %llu: %zu-byte value", (int)nlen,
                            name, (unsigned long long)parent, vlen);
    }
    const uint8_t *p = val;
    if (ino)
        *ino = get_le64(p);
    if (type)
        *type = (uint32_t)p[8] << 12;
    free(val);
    return 0;
}

int layout_dirent_put(kv_batch *b, uint64_t parent, const char *name, size_t nlen, uint64_t ino,
                      uint32_t type, uint64_t expire_at_ms)
{
    uint8_t key[LAYOUT_KEY_MAX], val[9];
    if (nlen > LAYOUT_NAME_MAX)
        return layout_error(-ENAMETOOLONG, "name of %zu bytes", nlen);
    (void)expire_at_ms; /* I4: only the inode record carries the TTL */
    put_le64(val, ino);
    val[8] = (uint8_t)((type & S_IFMT) >> 12);
    int rc = put_owned(b, key, layout_key_dirent(key, parent, name, nlen), val, sizeof(val), 0);
    if (rc == 0)
        rc = put_owned(b, key, layout_key_parent(key, ino, parent, name, nlen), "", 0, 0);
    return rc;
}

int layout_dirent_del(kv_batch *b, uint64_t parent, const char *name, size_t nlen, uint64_t ino)
{
    uint8_t key[LAYOUT_KEY_MAX];
    int rc = kv_batch_delete(b, key, layout_key_dirent(key, parent, name, nlen));
    if (rc == 0)
        rc = kv_batch_delete(b, key, layout_key_parent(key, ino, parent, name, nlen));
    return rc < 0 ? layout_kverr(rc, "batch delete") : 0;
}

int layout_orphan_put(kv_batch *b, uint64_t ino)
{
    uint8_t key[LAYOUT_KEY_MAX];
    return put_owned(b, key, layout_key_orphan(key, ino), "", 0, 0);
}

/* Opens an iterator over keys starting with prefix. */
static int prefix_iter(layout_fs *fs, const kv_readopts *ro, const void *prefix, size_t plen,
                       kv_iter **it)
{
    kv_iter_opts o;
    memset(&o, 0, sizeof(o));
    if (ro)
        o.ro = *ro;
    o.prefix = prefix;
    o.prefix_len = plen;
    int rc = kv_iter_new(fs->db, &o, it);
    if (rc < 0)
        return layout_kverr(rc, "open iterator");
    return 0;
}

int layout_expiry_scan(layout_fs *fs, layout_expiry_fn fn, void *arg)
{
    kv_iter *it = NULL;
    int rc = prefix_iter(fs, NULL, "E", 1, &it);
    if (rc < 0)
        return rc;
    for (kv_iter_seek_first(it); kv_iter_valid(it) && rc == 0; kv_iter_next(it)) {
        size_t kl;
        const uint8_t *k = kv_iter_key(it, &kl);
        if (kl == 17)
            rc = fn(arg, get_be64(k + 1), get_be64(k + 9));
    }
    if (rc == 0 && kv_iter_status(it) < 0)
        rc = layout_kverr(kv_iter_status(it), "scan the expiry index");
    kv_iter_free(it);
    return rc < 0 ? rc : 0;
}

int layout_dir_is_empty(layout_fs *fs, uint64_t dir)
{
    uint8_t pfx[9];
    kv_iter *it = NULL;
    int rc = prefix_iter(fs, NULL, pfx, key_ino(pfx, 'D', dir), &it);
    if (rc < 0)
        return rc;
    kv_iter_seek_first(it);
    rc = kv_iter_valid(it) ? 0 : 1;
    int st = kv_iter_status(it);
    kv_iter_free(it);
    return st < 0 ? layout_kverr(st, "scan directory") : rc;
}

int layout_alloc_ino(layout_fs *fs, kv_batch *b, uint64_t *ino)
{
    if (fs->next_ino >= fs->ino_limit) {
        uint8_t val[8];
        uint64_t lim = fs->next_ino + LAYOUT_INO_BATCH;
        put_le64(val, lim);
        int rc = put_owned(b, "Mnext_ino", 9, val, sizeof(val), 0);
        if (rc < 0)
            return rc;
        fs->ino_limit = lim;
    }
    *ino = fs->next_ino++;
    return 0;
}

/* ------------------------------------------------------------------- open/close ---- */

static int layout_load_alloc(layout_fs *fs)
{
    void *val = NULL;
    size_t vlen = 0;
    int rc = kv_get(fs->db, NULL, "Mnext_ino", 9, &val, &vlen, NULL);
    if (rc == -ENOENT) {
        fs->next_ino = fs->ino_limit = LAYOUT_ROOT_INO + 1;
        return 0;
    }
    if (rc < 0)
        return layout_kverr(rc, "read inode allocator");
    if (vlen != 8) {
        free(val);
        return layout_error(-EUCLEAN, "inode allocator record has %zu bytes", vlen);
    }
    fs->next_ino = fs->ino_limit = get_le64(val);
    free(val);
    if (fs->next_ino <= LAYOUT_ROOT_INO)
        return layout_error(-EUCLEAN, "inode allocator mark %llu is below the root",
                            (unsigned long long)fs->next_ino);
    return 0;
}

/*
 * Layout format record, key 'M' "format" (LAYOUT_FORMAT_BYTES = 8, little-endian):
 *
 *   off  size  field
 *     0     4  format version (LAYOUT_FORMAT_VERSION; 1 = the older, unrecorded layout)
 *     4     4  chunk bytes (LAYOUT_CHUNK)
 *
 * Written in the batch that creates the root directory. Readers accept longer records.
 */
#define LAYOUT_FORMAT_KEY "Mformat"
#define LAYOUT_FORMAT_KEY_LEN 7u

/* Checks the format record against this build. has_root: the store has a root record. */
static int layout_check_format(layout_fs *fs, int has_root)
{
    void *val = NULL;
    size_t vlen = 0;
    int rc = kv_get(fs->db, NULL, LAYOUT_FORMAT_KEY, LAYOUT_FORMAT_KEY_LEN, &val, &vlen, NULL);
    if (rc == -ENOENT)
        return has_root ? layout_error(-EPROTO,
                                       "store has no layout format record (made by "
                                       "an older kvfs with 64 KiB chunks); this kvfs reads "
                                       "format %u with %u-byte chunks only",
                                       LAYOUT_FORMAT_VERSION, LAYOUT_CHUNK)
                        : 0;
    if (rc < 0)
        return layout_kverr(rc, "read layout format");
    if (vlen < LAYOUT_FORMAT_BYTES) {
        free(val);
        return layout_error(-EUCLEAN, "layout format record has %zu bytes (want %u)", vlen,
                            LAYOUT_FORMAT_BYTES);
    }
    uint32_t ver = get_le32(val), chunk = get_le32((uint8_t *)val + 4);
    free(val);
    if (ver != LAYOUT_FORMAT_VERSION || chunk != LAYOUT_CHUNK)
        return layout_error(-EPROTO,
                            "store has layout format %u with %u-byte chunks; this "
                            "kvfs reads format %u with %u-byte chunks only",
                            ver, chunk, LAYOUT_FORMAT_VERSION, LAYOUT_CHUNK);
    return 0;
}

static int layout_make_root(layout_fs *fs, uint32_t uid, uint32_t gid)
{
    layout_inode root;
    uint8_t fmt[LAYOUT_FORMAT_BYTES];
    int rc = layout_inode_get(fs, LAYOUT_ROOT_INO, &root);
    if (rc < 0 && rc != -ENOENT)
        return rc;
    int has_root = rc == 0;
    if ((rc = layout_check_format(fs, has_root)) < 0 || has_root || fs->read_only)
        return rc;
    kv_batch *b = kv_batch_new();
    if (!b)
        return layout_error(-ENOMEM, "out of memory");
    layout_inode_init(&root, LAYOUT_ROOT_INO, S_IFDIR | 0755, uid, gid);
    root.parent = LAYOUT_ROOT_INO;
    put_le32(fmt, LAYOUT_FORMAT_VERSION);
    put_le32(fmt + 4, LAYOUT_CHUNK);
    rc = layout_inode_put(b, &root);
    if (rc == 0)
        rc = put_owned(b, LAYOUT_FORMAT_KEY, LAYOUT_FORMAT_KEY_LEN, fmt, sizeof(fmt), 0);
    if (rc == 0) {
        rc = kv_write(fs->db, b, KV_WRITE_SYNC, NULL);
        if (rc < 0)
            layout_kverr(rc, "create root directory");
    }
    kv_batch_free(b);
    return rc;
}

int layout_open(kv_db *db, int read_only, uint32_t uid, uint32_t gid, layout_fs **out)
{
    layout_fs *fs = calloc(1, sizeof(*fs));
    if (!fs)
        return layout_error(-ENOMEM, "out of memory");
    fs->db = db;
    fs->read_only = read_only;
    int rc = layout_make_root(fs, uid, gid);
    if (rc == 0)
        rc = layout_load_alloc(fs);
    if (rc < 0) {
        free(fs);
        return rc;
    }
    *out = fs;
    return 0;
}

void layout_close(layout_fs *fs)
{
    free(fs);
}

/* -------------------------------------------------------------------- file data ---- */

/* Fetches chunk idx. OUT: *val (malloc'd or NULL when missing), *vlen. */
static int chunk_get(layout_fs *fs, const kv_readopts *ro, uint64_t ino, uint64_t idx, void **val,
                     size_t *vlen)
{
    uint8_t key[LAYOUT_KEY_MAX];
    *val = NULL;
    *vlen = 0;
    int rc = kv_get(fs->db, ro, key, layout_key_chunk(key, ino, idx), val, vlen, NULL);
    if (rc == -ENOENT)
        return 0;
    if (rc < 0)
        return layout_kverr(rc, "read chunk");
    if (*vlen > LAYOUT_CHUNK) {
        free(*val);
        *val = NULL;
        return layout_error(-EUCLEAN, "inode %llu chunk %llu: %zu bytes", (unsigned long long)ino,
                            (unsigned long long)idx, *vlen);
    }
    return 0;
}

/* Copies chunk idx (val, vlen bytes) into out, which holds file bytes [off, off+len), after
 * zeroing the hole between *done (bytes of out filled so far) and the chunk. */
static void chunk_copy(uint8_t *out, uint64_t off, size_t len, size_t *done, uint64_t idx,
                       const uint8_t *val, size_t vlen)
{
    uint64_t base = idx * LAYOUT_CHUNK, lo = base > off ? base : off;
    uint64_t hi = base + vlen < off + len ? base + vlen : off + len;
    if (lo - off > *done)
        memset(out + *done, 0, (size_t)(lo - off) - *done);
    if (hi > lo) {
        memcpy(out + (lo - off), val + (lo - base), (size_t)(hi - lo));
        *done = (size_t)(hi - off);
    } else if (lo - off > *done) {
        *done = (size_t)(lo - off);
    }
}

/* One iterator over the chunks under [off, off+len); holes are zeroed as they are passed. */
int layout_read_at(layout_fs *fs, const kv_readopts *ro, const layout_inode *in, void *buf,
                   size_t len, uint64_t off, size_t *got)
{
    uint8_t pfx[9], lo[LAYOUT_KEY_MAX], hi[LAYOUT_KEY_MAX];
    kv_iter_opts o;
    kv_iter *it = NULL;
    *got = 0;
    if (off >= in->size)
        return 0;
    if (len > in->size - off)
        len = (size_t)(in->size - off);
    if (len == 0)
        return 0;
    memset(&o, 0, sizeof(o));
    if (ro)
        o.ro = *ro;
    o.prefix = pfx;
    o.prefix_len = key_ino(pfx, 'C', in->ino);
    o.lower = lo;
    o.lower_len = layout_key_chunk(lo, in->ino, off / LAYOUT_CHUNK);
    o.upper = hi;
    o.upper_len = layout_key_chunk(hi, in->ino, (off + len - 1) / LAYOUT_CHUNK + 1);
    int rc = kv_iter_new(fs->db, &o, &it);
    if (rc < 0)
        return layout_kverr(rc, "open chunk iterator");
    size_t done = 0;
    for (kv_iter_seek_first(it); kv_iter_valid(it) && rc == 0; kv_iter_next(it)) {
        size_t kl, vl;
        const uint8_t *k = kv_iter_key(it, &kl);
        const uint8_t *v = kv_iter_value(it, &vl);
        if (kl != 17 || vl > LAYOUT_CHUNK)
            rc = layout_error(-EUCLEAN, "inode %llu: chunk key of %zu bytes, value of %zu",
                              (unsigned long long)in->ino, kl, vl);
        else
            chunk_copy(buf, off, len, &done, get_be64(k + 9), v, vl);
    }
    if (done < len)
        memset((uint8_t *)buf + done, 0, len - done);
    int st = kv_iter_status(it);
    kv_iter_free(it);
    if (rc == 0 && st < 0)
        rc = layout_kverr(st, "read chunks");
    if (rc == 0)
        *got = len;
    return rc;
}

int layout_read(layout_fs *fs, const layout_inode *in, void *buf, size_t len, uint64_t off,
                size_t *got)
{
    return layout_read_at(fs, NULL, in, buf, len, off, got);
}

/* Puts chunk idx = old bytes with [lo, hi) replaced by src (NULL = zeros), growing the chunk
 * to at least hi bytes. */
static int chunk_patch(layout_fs *fs, kv_batch *b, const layout_inode *in, uint64_t idx, size_t lo,
                       size_t hi, const uint8_t *src)
{
    uint8_t key[LAYOUT_KEY_MAX];
    size_t klen = layout_key_chunk(key, in->ino, idx);
    if (lo == 0 && hi == LAYOUT_CHUNK && src)
        return put_owned(b, key, klen, src, LAYOUT_CHUNK, 0);
    void *old;
    size_t olen;
    int rc = chunk_get(fs, NULL, in->ino, idx, &old, &olen);
    if (rc < 0)
        return rc;
    size_t nlen = olen > hi ? olen : hi;
    uint8_t *nb = malloc(nlen ? nlen : 1);
    if (!nb) {
        free(old);
        return layout_error(-ENOMEM, "out of memory");
    }
    if (olen)
        memcpy(nb, old, olen);
    if (lo > olen)
        memset(nb + olen, 0, lo - olen);
    if (src)
        memcpy(nb + lo, src, hi - lo);
    else
        memset(nb + lo, 0, hi - lo);
    rc = put_owned(b, key, klen, nb, nlen, 0);
    free(nb);
    free(old);
    return rc;
}

int layout_write(layout_fs *fs, kv_batch *b, layout_inode *in, const void *buf, size_t len,
                 uint64_t off)
{
    const uint8_t *src = buf;
    size_t done = 0;
    if (off + len < off)
        return layout_error(-EFBIG, "write beyond the largest offset");
    while (done < len) {
        uint64_t pos = off + done;
        uint64_t idx = pos / LAYOUT_CHUNK;
        size_t lo = (size_t)(pos % LAYOUT_CHUNK);
        size_t n = LAYOUT_CHUNK - lo;
        if (n > len - done)
            n = len - done;
        int rc = chunk_patch(fs, b, in, idx, lo, lo + n, src + done);
        if (rc < 0)
            return rc;
        done += n;
    }
    if (len && off + len > in->size)
        in->size = off + len;
    return 0;
}

/* Deletes every existing chunk of ino with index >= first (and < end, 0 = unbounded). */
static int chunks_delete(layout_fs *fs, kv_batch *b, uint64_t ino, uint64_t first, uint64_t end)
{
    uint8_t pfx[9], lo[LAYOUT_KEY_MAX], hi[LAYOUT_KEY_MAX];
    kv_iter_opts o;
    kv_iter *it = NULL;
    memset(&o, 0, sizeof(o));
    o.prefix = pfx;
    o.prefix_len = key_ino(pfx, 'C', ino);
    o.lower = lo;
    o.lower_len = layout_key_chunk(lo, ino, first);
    if (end) {
        o.upper = hi;
        o.upper_len = layout_key_chunk(hi, ino, end);
    }
    int rc = kv_iter_new(fs->db, &o, &it);
    if (rc < 0)
        return layout_kverr(rc, "open chunk iterator");
    for (kv_iter_seek_first(it); kv_iter_valid(it) && rc == 0; kv_iter_next(it)) {
        size_t kl;
        const void *k = kv_iter_key(it, &kl);
        rc = kv_batch_delete(b, k, kl);
        if (rc < 0)
            layout_kverr(rc, "batch delete");
    }
    int st = kv_iter_status(it);
    kv_iter_free(it);
    if (rc == 0 && st < 0)
        rc = layout_kverr(st, "scan chunks");
    return rc;
}

int layout_truncate(layout_fs *fs, kv_batch *b, layout_inode *in, uint64_t size)
{
    if (size < in->size) {
        uint64_t first_gone = (size + LAYOUT_CHUNK - 1) / LAYOUT_CHUNK;
        int rc = chunks_delete(fs, b, in->ino, first_gone, 0);
        if (rc < 0)
            return rc;
        size_t keep = (size_t)(size % LAYOUT_CHUNK);
        if (keep) {
            uint8_t key[LAYOUT_KEY_MAX];
            uint64_t idx = size / LAYOUT_CHUNK;
            void *old;
            size_t olen;
            rc = chunk_get(fs, NULL, in->ino, idx, &old, &olen);
            if (rc < 0)
                return rc;
            if (olen > keep)
                rc = put_owned(b, key, layout_key_chunk(key, in->ino, idx), old, keep, 0);
            free(old);
            if (rc < 0)
                return rc;
        }
    }
    in->size = size;
    return 0;
}

/* Zeroes [lo, hi) of chunk idx where the chunk has bytes (no growth). */
static int chunk_zero(layout_fs *fs, kv_batch *b, const layout_inode *in, uint64_t idx, size_t lo,
                      size_t hi)
{
    void *old;
    size_t olen;
    int rc = chunk_get(fs, NULL, in->ino, idx, &old, &olen);
    free(old);
    if (rc < 0 || olen <= lo)
        return rc;
    return chunk_patch(fs, b, in, idx, lo, hi < olen ? hi : olen, NULL);
}

int layout_punch(layout_fs *fs, kv_batch *b, layout_inode *in, uint64_t off, uint64_t len)
{
    if (off >= in->size || len == 0)
        return 0;
    uint64_t end = (len > in->size - off) ? in->size : off + len;
    uint64_t first = off / LAYOUT_CHUNK, last = (end - 1) / LAYOUT_CHUNK;
    /* chunks [lo_full, hi_full) lie wholly inside the range (the tail chunk counts as whole
     * when the range runs to the end of the file: I1 says it has no bytes beyond) */
    uint64_t lo_full = (off + LAYOUT_CHUNK - 1) / LAYOUT_CHUNK;
    uint64_t hi_full = end == in->size ? last + 1 : end / LAYOUT_CHUNK;
    int rc = 0;
    if (hi_full > lo_full)
        rc = chunks_delete(fs, b, in->ino, lo_full, hi_full);
    uint64_t edge[2] = {first, last};
    for (int i = 0; i < 2 && rc == 0; i++) {
        uint64_t idx = edge[i], base = idx * LAYOUT_CHUNK;
        if ((i == 1 && last == first) || (idx >= lo_full && idx < hi_full))
            continue;
        size_t zlo = (size_t)((off > base ? off : base) - base);
        uint64_t cend = base + LAYOUT_CHUNK < end ? base + LAYOUT_CHUNK : end;
        rc = chunk_zero(fs, b, in, idx, zlo, (size_t)(cend - base));
    }
    return rc;
}

/* Deletes, in batches, every key with the given prefix. */
static int delete_prefix(layout_fs *fs, const uint8_t *pfx, size_t plen)
{
    kv_batch *b = kv_batch_new();
    kv_iter *it = NULL;
    if (!b)
        return layout_error(-ENOMEM, "out of memory");
    int rc = prefix_iter(fs, NULL, pfx, plen, &it);
    if (rc < 0)
        goto out;
    for (kv_iter_seek_first(it); kv_iter_valid(it) && rc == 0; kv_iter_next(it)) {
        size_t kl;
        const void *k = kv_iter_key(it, &kl);
        rc = kv_batch_delete(b, k, kl);
        if (rc == 0 && kv_batch_count(b) >= LAYOUT_DEL_BATCH) {
            rc = kv_write(fs->db, b, KV_WRITE_NOSYNC, NULL);
            kv_batch_clear(b);
        }
        if (rc < 0)
            layout_kverr(rc, "purge");
    }
    if (rc == 0 && kv_iter_status(it) < 0)
        rc = layout_kverr(kv_iter_status(it), "purge scan");
    if (rc == 0 && kv_batch_count(b)) {
        rc = kv_write(fs->db, b, KV_WRITE_NOSYNC, NULL);
        if (rc < 0)
            layout_kverr(rc, "purge");
    }
out:
    kv_iter_free(it);
    kv_batch_free(b);
    return rc;
}

/* Adds the deletes of the inode's last keys ('E', 'L', 'I', 'O') to b; in may be NULL. */
static int purge_tail(kv_batch *b, const layout_inode *in, uint64_t ino)
{
    uint8_t key[LAYOUT_KEY_MAX];
    int rc = 0;
    if (in && in->expire_at_ms)
        rc = kv_batch_delete(b, key, layout_key_expiry(key, in->expire_at_ms, ino));
    if (rc == 0 && (!in || S_ISLNK(in->mode)))
        rc = kv_batch_delete(b, key, layout_key_symlink(key, ino));
    if (rc == 0)
        rc = kv_batch_delete(b, key, layout_key_inode(key, ino));
    if (rc == 0)
        rc = kv_batch_delete(b, key, layout_key_orphan(key, ino));
    return rc;
}

/* Adds the deletion of every chunk of the inode to b: one delete per chunk below its size for
 * a small regular file (I1), else one range deletion of its whole 'C' prefix (in may be NULL:
 * the size is unknown). A range deletion costs one record however large the file, reads none
 * of its data, and lets compaction drop the file's tables without rewriting them. */
static int purge_chunks(kv_batch *b, const layout_inode *in, uint64_t ino)
{
    uint8_t key[LAYOUT_KEY_MAX], end[9];
    if (in && !S_ISREG(in->mode))
        return 0;
    if (in && in->size <= (uint64_t)LAYOUT_PURGE_FAST * LAYOUT_CHUNK) {
        int rc = 0;
        for (uint64_t i = 0; i < (in->size + LAYOUT_CHUNK - 1) / LAYOUT_CHUNK && rc == 0; i++)
            rc = kv_batch_delete(b, key, layout_key_chunk(key, ino, i));
        return rc;
    }
    size_t klen = key_ino(key, 'C', ino);
    size_t elen = ino < UINT64_MAX ? key_ino(end, 'C', ino + 1) : 1;
    if (ino == UINT64_MAX)
        end[0] = 'C' + 1;
    return kv_batch_delete_range(b, key, klen, end, elen);
}

/* The common case of layout_purge (see layout.h): one batch, no scan. */
static int purge_small(layout_fs *fs, const layout_inode *in)
{
    kv_batch *b = kv_batch_new();
    if (!b)
        return layout_error(-ENOMEM, "out of memory");
    int rc = purge_chunks(b, in, in->ino);
    if (rc == 0)
        rc = purge_tail(b, in, in->ino);
    if (rc == 0)
        rc = kv_write(fs->db, b, KV_WRITE_NOSYNC, NULL);
    if (rc < 0)
        layout_kverr(rc, "purge inode");
    kv_batch_free(b);
    return rc;
}

int layout_purge(layout_fs *fs, uint64_t ino)
{
    uint8_t pfx[9];
    layout_inode in;
    int have = layout_inode_get_any(fs, ino, &in) == 0;
    if (have && !(in.flags & LAYOUT_IF_XATTRS) && in.nlink == 0 &&
        (!S_ISREG(in.mode) || in.size <= (uint64_t)LAYOUT_PURGE_FAST * LAYOUT_CHUNK))
        return purge_small(fs, &in);
    int rc = delete_prefix(fs, pfx, key_ino(pfx, 'X', ino));
    if (rc == 0)
        rc = delete_prefix(fs, pfx, key_ino(pfx, 'P', ino));
    if (rc < 0)
        return rc;
    kv_batch *b = kv_batch_new();
    if (!b)
        return layout_error(-ENOMEM, "out of memory");
    rc = purge_chunks(b, have ? &in : NULL, ino);
    if (rc == 0)
        rc = purge_tail(b, have ? &in : NULL, ino);
    if (rc == 0)
        rc = kv_write(fs->db, b, KV_WRITE_NOSYNC, NULL);
    if (rc < 0)
        layout_kverr(rc, "purge inode");
    kv_batch_free(b);
    return rc;
}

int layout_sweep_orphans(layout_fs *fs)
{
    kv_iter *it = NULL;
    uint64_t *inos = NULL;
    size_t n = 0, cap = 0;
    int rc = prefix_iter(fs, NULL, "O", 1, &it);
    if (rc < 0)
        return rc;
    for (kv_iter_seek_first(it); kv_iter_valid(it); kv_iter_next(it)) {
        size_t kl;
        const uint8_t *k = kv_iter_key(it, &kl);
        if (kl != 9)
            continue;
        uint64_t *ni = kv_grow(inos, &cap, n + 1, sizeof(*ni), 64);
        if (!ni) {
            rc = layout_error(-ENOMEM, "out of memory");
            break;
        }
        inos = ni;
        inos[n++] = get_be64(k + 1);
    }
    if (rc == 0 && kv_iter_status(it) < 0)
        rc = layout_kverr(kv_iter_status(it), "scan orphans");
    kv_iter_free(it);
    for (size_t i = 0; i < n && rc == 0; i++) {
        layout_inode in;
        int g = layout_inode_get_any(fs, inos[i], &in);
        if (g == 0 && in.nlink > 0) { /* a stale marker: the inode is linked again */
            uint8_t key[LAYOUT_KEY_MAX];
            g = kv_delete(fs->db, key, layout_key_orphan(key, inos[i]), KV_WRITE_NOSYNC);
            rc = g < 0 ? layout_kverr(g, "drop orphan marker") : 0;
            continue;
        }
        if (g < 0 && g != -ENOENT)
            rc = g;
        else
            rc = layout_purge(fs, inos[i]);
    }
    free(inos);
    return rc < 0 ? rc : (int)n;
}

/* ------------------------------------------------------------------- key view ---- */

/* Splits the next component off the path [*p, end). OUT: *name, *nlen. Returns 1 when a
 * component was produced, 0 at the end, <0 for an invalid path. */
static int path_next(const char **p, const char *end, const char **name, size_t *nlen)
{
    if (*p >= end)
        return 0;
    const char *s = *p, *slash = memchr(s, '/', (size_t)(end - s));
    const char *e = slash ? slash : end;
    *name = s;
    *nlen = (size_t)(e - s);
    if (*nlen == 0 || (*nlen == 1 && s[0] == '.') || (*nlen == 2 && s[0] == '.' && s[1] == '.'))
        return layout_error(-EINVAL, "invalid key: empty, '.' or '..' path component");
    if (memchr(s, '\0', *nlen))
        return layout_error(-EINVAL, "invalid key: NUL byte in a path component");
    if (*nlen > LAYOUT_NAME_MAX)
        return layout_error(-ENAMETOOLONG, "invalid key: a path component exceeds 255 bytes");
    if (slash && slash + 1 == end)
        return layout_error(-EINVAL, "invalid key: trailing '/'");
    *p = slash ? slash + 1 : end;
    return 1;
}

static int path_start(const void *key, size_t klen, const char **p, const char **end)
{
    *p = key;
    *end = *p + klen;
    if (klen && **p == '/')
        (*p)++;
    if (*p >= *end)
        return layout_error(-EINVAL, "invalid key: empty path");
    return 0;
}

/* dirent lookup at a read point. */
int layout_dirent_get_at(layout_fs *fs, const kv_readopts *ro, uint64_t parent, const char *name,
                         size_t nlen, uint64_t *ino, uint32_t *type)
{
    if (!ro)
        return layout_dirent_get(fs, parent, name, nlen, ino, type);
    uint8_t key[LAYOUT_KEY_MAX];
    void *val = NULL;
    size_t vlen = 0;
    int rc = kv_get(fs->db, ro, key, layout_key_dirent(key, parent, name, nlen), &val, &vlen, NULL);
    if (rc < 0)
        return rc == -ENOENT ? rc : layout_kverr(rc, "read dirent");
    if (vlen < 9) {
        free(val);
        return layout_error(-EUCLEAN, "dirent in directory %llu: %zu-byte value",
                            (unsigned long long)parent, vlen);
    }
    if (ino)
        *ino = get_le64(val);
    if (type)
        *type = (uint32_t)((uint8_t *)val)[8] << 12;
    free(val);
    return 0;
}

static int layout_walk_ro(layout_fs *fs, const kv_readopts *ro, const void *key, size_t klen,
                          layout_walk_fn fn, void *arg, uint64_t *last, int *complete)
{
    const char *p, *end, *name;
    size_t nlen;
    uint64_t cur = LAYOUT_ROOT_INO;
    uint32_t type = S_IFDIR;
    int rc = path_start(key, klen, &p, &end);
    *complete = 0;
    while (rc == 0 && (rc = path_next(&p, end, &name, &nlen)) == 1) {
        uint64_t child;
        if (type != S_IFDIR)
            return layout_error(-ENOTDIR, "%.*s: a path component is not a directory", (int)klen,
                                (const char *)key);
        rc = layout_dirent_get_at(fs, ro, cur, name, nlen, &child, &type);
        if (rc == -ENOENT) {
            *last = cur;
            return 0;
        }
        if (rc < 0)
            return rc;
        if (fn)
            fn(arg, cur, name, nlen, child);
        cur = child;
        rc = 0;
    }
    if (rc < 0)
        return rc;
    *last = cur;
    *complete = 1;
    return 0;
}

int layout_walk(layout_fs *fs, const void *key, size_t klen, layout_walk_fn fn, void *arg)
{
    uint64_t last;
    int complete;
    return layout_walk_ro(fs, NULL, key, klen, fn, arg, &last, &complete);
}

int layout_resolve(layout_fs *fs, const kv_readopts *ro, const void *key, size_t klen,
                   uint64_t *ino, layout_inode *in)
{
    uint64_t last;
    int complete;
    int rc = layout_walk_ro(fs, ro, key, klen, NULL, NULL, &last, &complete);
    if (rc < 0)
        return rc;
    if (!complete)
        return layout_error(-ENOENT, "%.*s: no such key", (int)klen, (const char *)key);
    if (ino)
        *ino = last;
    if (in) {
        rc = layout_inode_get_at(fs, ro, last, in);
        if (rc == -ENOENT) /* dangling dirent (e.g. expired) reads as missing */
            return layout_error(-ENOENT, "%.*s: no such key", (int)klen, (const char *)key);
    }
    return rc;
}

int layout_read_file(layout_fs *fs, const void *key, size_t klen, void **val, size_t *vlen,
                     kv_entry_info *info)
{
    layout_inode in;
    kv_snapshot *snap = NULL;
    kv_readopts ro;
    uint8_t ikey[LAYOUT_KEY_MAX];
    int rc = kv_snapshot_acquire(fs->db, 0, &snap);
    if (rc < 0)
        return layout_kverr(rc, "snapshot");
    memset(&ro, 0, sizeof(ro));
    ro.snapshot = snap;
    rc = layout_resolve(fs, &ro, key, klen, NULL, &in);
    if (rc == 0 && S_ISDIR(in.mode))
        rc = layout_error(-EISDIR, "%.*s is a directory", (int)klen, (const char *)key);
    else if (rc == 0 && !S_ISREG(in.mode))
        rc = layout_error(-EINVAL, "%.*s is not a regular file", (int)klen, (const char *)key);
    else if (rc == 0 && in.size > LAYOUT_MAX_GET)
        rc = layout_error(-EFBIG, "%.*s: %llu bytes is too large to return in one value", (int)klen,
                          (const char *)key, (unsigned long long)in.size);
    if (rc == 0) {
        size_t got;
        void *buf = malloc(in.size ? (size_t)in.size : 1);
        rc = buf ? layout_read_at(fs, &ro, &in, buf, (size_t)in.size, 0, &got)
                 : layout_error(-ENOMEM, "out of memory");
        if (rc == 0 && info) {
            kv_entry_info ii;
            memset(info, 0, sizeof(*info));
            if (kv_get(fs->db, &ro, ikey, layout_key_inode(ikey, in.ino), NULL, NULL, &ii) == 0)
                info->seq = ii.seq;
            info->expire_at_ms = in.expire_at_ms;
            info->value_len = got;
        }
        if (rc == 0) {
            *val = buf;
            *vlen = got;
        } else {
            free(buf);
        }
    }
    kv_snapshot_release(fs->db, snap);
    return rc;
}

/* The directory being walked by layout_write_file, with a pending record change. */
typedef struct wf_dir {
    layout_inode in;
    int dirty;
} wf_dir;

static int wf_descend(layout_fs *fs, kv_batch *b, wf_dir *d, const char *name, size_t nlen,
                      uint32_t uid, uint32_t gid, const struct timespec *now)
{
    uint64_t child;
    uint32_t type;
    int rc = layout_dirent_get(fs, d->in.ino, name, nlen, &child, &type);
    if (rc == 0) {
        if (type != S_IFDIR)
            return layout_error(-ENOTDIR, "%.*s is not a directory", (int)nlen, name);
        if (d->dirty && (rc = layout_inode_put(b, &d->in)) < 0)
            return rc;
        d->dirty = 0;
        return layout_inode_get(fs, child, &d->in);
    }
    if (rc != -ENOENT)
        return rc;
    if ((rc = layout_alloc_ino(fs, b, &child)) < 0 ||
        (rc = layout_dirent_put(b, d->in.ino, name, nlen, child, S_IFDIR, 0)) < 0)
        return rc;
    d->in.nlink++;
    d->in.mtime = d->in.ctime = *now;
    if ((rc = layout_inode_put(b, &d->in)) < 0)
        return rc;
    uint64_t parent = d->in.ino;
    layout_inode_init(&d->in, child, S_IFDIR | 0755, uid, gid);
    d->in.parent = parent;
    d->dirty = 1;
    return 0;
}

/* Puts the whole new content of f as chunks (the last one short) and sets its size. The file
 * was truncated to 0 earlier in the same batch, so nothing old is read back. */
static int wf_chunks(kv_batch *b, layout_inode *f, const void *val, size_t vlen)
{
    uint8_t key[LAYOUT_KEY_MAX];
    const uint8_t *src = val;
    for (size_t off = 0; off < vlen; off += LAYOUT_CHUNK) {
        size_t n = vlen - off < LAYOUT_CHUNK ? vlen - off : LAYOUT_CHUNK;
        int rc =
            put_owned(b, key, layout_key_chunk(key, f->ino, off / LAYOUT_CHUNK), src + off, n, 0);
        if (rc < 0)
            return rc;
    }
    f->size = vlen;
    return 0;
}

static int wf_file(layout_fs *fs, kv_batch *b, wf_dir *d, const char *name, size_t nlen,
                   const void *val, size_t vlen, uint64_t expire, uint32_t uid, uint32_t gid,
                   const struct timespec *now)
{
    layout_inode f;
    uint64_t ino;
    uint32_t type;
    int rc = layout_dirent_get(fs, d->in.ino, name, nlen, &ino, &type);
    if (rc == 0 && type != S_IFDIR && (rc = layout_inode_get(fs, ino, &f)) == -ENOENT)
        rc = -ENOENT; /* the dirent of an expired file: the name is free (I4) */
    if (rc == 0) {
        if (type == S_IFDIR)
            return layout_error(-EISDIR, "%.*s is a directory", (int)nlen, name);
        if (!S_ISREG(f.mode))
            return layout_error(-EINVAL, "%.*s is not a regular file", (int)nlen, name);
        if ((rc = layout_truncate(fs, b, &f, 0)) < 0)
            return rc;
    } else if (rc == -ENOENT) {
        if ((rc = layout_alloc_ino(fs, b, &ino)) < 0)
            return rc;
        layout_inode_init(&f, ino, S_IFREG | 0644, uid, gid);
        f.parent = d->in.ino;
        d->in.mtime = d->in.ctime = *now;
        d->dirty = 1;
    } else {
        return rc;
    }
    if ((rc = layout_expiry_set(b, &f, expire)) < 0)
        return rc;
    f.mtime = f.ctime = *now;
    if ((rc = layout_dirent_put(b, d->in.ino, name, nlen, ino, S_IFREG, expire)) < 0 ||
        (rc = wf_chunks(b, &f, val, vlen)) < 0 || (rc = layout_inode_put(b, &f)) < 0)
        return rc;
    if (d->dirty)
        rc = layout_inode_put(b, &d->in);
    return rc;
}

int layout_write_file(layout_fs *fs, const void *key, size_t klen, const void *val, size_t vlen,
                      uint64_t expire_at_ms, uint32_t uid, uint32_t gid)
{
    const char *p, *end, *name, *next_name;
    size_t nlen, next_len;
    struct timespec now;
    wf_dir d;
    if (fs->read_only)
        return layout_error(-EROFS, "the store is open read-only");
    if (vlen > LAYOUT_MAX_PUT)
        return layout_error(-EFBIG, "value of %zu bytes exceeds the %u-byte limit", vlen,
                            LAYOUT_MAX_PUT);
    int rc = path_start(key, klen, &p, &end);
    if (rc < 0 || (rc = path_next(&p, end, &name, &nlen)) < 0)
        return rc;
    kv_batch *b = kv_batch_new();
    if (!b)
        return layout_error(-ENOMEM, "out of memory");
    layout_now(&now);
    d.dirty = 0;
    rc = layout_inode_get(fs, LAYOUT_ROOT_INO, &d.in);
    while (rc == 0 && (rc = path_next(&p, end, &next_name, &next_len)) == 1) {
        rc = wf_descend(fs, b, &d, name, nlen, uid, gid, &now);
        name = next_name;
        nlen = next_len;
    }
    if (rc == 0)
        rc = wf_file(fs, b, &d, name, nlen, val, vlen, expire_at_ms, uid, gid, &now);
    if (rc == 0) {
        rc = kv_write(fs->db, b, KV_WRITE_NOSYNC, NULL);
        if (rc < 0)
            layout_kverr(rc, "write");
    }
    kv_batch_free(b);
    return rc;
}

/* Finds the parent directory and final name of key. OUT: *parent, *name, *nlen. */
static int split_parent(layout_fs *fs, const void *key, size_t klen, uint64_t *parent,
                        const char **name, size_t *nlen)
{
    const char *p, *end;
    int rc = path_start(key, klen, &p, &end);
    if (rc < 0)
        return rc;
    const char *slash = NULL;
    for (const char *q = end; q > p; q--)
        if (q[-1] == '/') {
            slash = q - 1;
            break;
        }
    if (!slash) {
        *parent = LAYOUT_ROOT_INO;
        const char *e2 = end;
        if ((rc = path_next(&p, e2, name, nlen)) < 0)
            return rc;
        return 0;
    }
    layout_inode dir;
    if ((rc = layout_resolve(fs, NULL, p, (size_t)(slash - p), parent, &dir)) < 0)
        return rc;
    if (!S_ISDIR(dir.mode))
        return layout_error(-ENOTDIR, "%.*s is not a directory", (int)(slash - p), p);
    const char *s = slash + 1;
    return path_next(&s, end, name, nlen) < 0 ? -EINVAL : 0;
}

int layout_unlink_path(layout_fs *fs, const void *key, size_t klen, uint64_t *ino, int *now_orphan)
{
    uint64_t parent, child;
    uint32_t type;
    const char *name;
    size_t nlen;
    layout_inode pin, cin;
    struct timespec now;
    if (fs->read_only)
        return layout_error(-EROFS, "the store is open read-only");
    int rc = split_parent(fs, key, klen, &parent, &name, &nlen);
    if (rc < 0)
        return rc;
    rc = layout_dirent_get(fs, parent, name, nlen, &child, &type);
    if (rc == -ENOENT)
        return layout_error(-ENOENT, "%.*s: no such key", (int)klen, (const char *)key);
    if (rc == 0 && type == S_IFDIR)
        return layout_error(-EISDIR, "%.*s is a directory", (int)klen, (const char *)key);
    if (rc < 0 || (rc = layout_inode_get(fs, parent, &pin)) < 0 ||
        (rc = layout_inode_get(fs, child, &cin)) < 0)
        return rc;
    kv_batch *b = kv_batch_new();
    if (!b)
        return layout_error(-ENOMEM, "out of memory");
    layout_now(&now);
    pin.mtime = pin.ctime = now;
    cin.ctime = now;
    if (cin.nlink)
        cin.nlink--;
    rc = layout_dirent_del(b, parent, name, nlen, child);
    if (rc == 0)
        rc = layout_inode_put(b, &pin);
    if (rc == 0)
        rc = layout_inode_put(b, &cin);
    if (rc == 0 && cin.nlink == 0)
        rc = layout_orphan_put(b, child);
    if (rc == 0 && (rc = kv_write(fs->db, b, KV_WRITE_NOSYNC, NULL)) < 0)
        layout_kverr(rc, "delete");
    kv_batch_free(b);
    if (rc == 0) {
        *ino = child;
        *now_orphan = cin.nlink == 0;
    }
    return rc;
}

typedef struct list_ctx {
    layout_fs *fs;
    kv_readopts ro;
    layout_list_fn fn;
    void *arg;
    char *path; /* KV_MAX_KEY_BYTES + 1 */
} list_ctx;

static int list_dir(list_ctx *c, uint64_t dir, size_t plen, const char *npfx, size_t npl,
                    int depth);

static int list_one(list_ctx *c, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl,
                    size_t plen, int depth)
{
    size_t nlen = kl - 9;
    if (vl < 9)
        return 0;
    uint64_t child = get_le64(v);
    uint32_t type = (uint32_t)v[8] << 12;
    if (plen + nlen + 1 > KV_MAX_KEY_BYTES)
        return 0; /* not expressible as a key */
    memcpy(c->path + plen, k + 9, nlen);
    if (type == S_IFDIR) {
        c->path[plen + nlen] = '/';
        return depth < 4096 ? list_dir(c, child, plen + nlen + 1, NULL, 0, depth + 1) : 0;
    }
    if (type != S_IFREG)
        return 0;
    layout_inode in;
    uint8_t ikey[LAYOUT_KEY_MAX];
    kv_entry_info ii, info;
    void *val = NULL;
    size_t vlen = 0;
    int rc = kv_get(c->fs->db, &c->ro, ikey, layout_key_inode(ikey, child), &val, &vlen, &ii);
    if (rc == -ENOENT)
        return 0;
    if (rc < 0)
        return layout_kverr(rc, "read inode");
    rc = layout_inode_decode(val, vlen, child, &in);
    free(val);
    if (rc < 0)
        return rc;
    memset(&info, 0, sizeof(info));
    info.seq = ii.seq;
    info.expire_at_ms = in.expire_at_ms;
    info.value_len = (size_t)in.size;
    return c->fn(c->arg, c->path, plen + nlen, &info);
}

static int list_dir(list_ctx *c, uint64_t dir, size_t plen, const char *npfx, size_t npl, int depth)
{
    uint8_t pfx[LAYOUT_KEY_MAX];
    kv_iter *it = NULL;
    int rc = prefix_iter(c->fs, &c->ro, pfx, layout_key_dirent(pfx, dir, npfx, npl), &it);
    if (rc < 0)
        return rc;
    for (kv_iter_seek_first(it); kv_iter_valid(it) && rc == 0; kv_iter_next(it)) {
        size_t kl, vl;
        const uint8_t *k = kv_iter_key(it, &kl);
        const uint8_t *v = kv_iter_value(it, &vl);
        rc = list_one(c, k, kl, v, vl, plen, depth);
    }
    if (rc == 0 && kv_iter_status(it) < 0)
        rc = layout_kverr(kv_iter_status(it), "scan directory");
    kv_iter_free(it);
    return rc;
}

int layout_list_prefix(layout_fs *fs, const void *prefix, size_t plen, layout_list_fn fn, void *arg)
{
    list_ctx c;
    kv_snapshot *snap = NULL;
    const char *p = prefix;
    if (plen && p[0] == '/') {
        p++;
        plen--;
    }
    if (plen > LAYOUT_KEY_MAX + KV_MAX_KEY_BYTES)
        return layout_error(-ENAMETOOLONG, "prefix too long");
    size_t dirlen = 0;
    for (size_t i = plen; i > 0; i--)
        if (p[i - 1] == '/') {
            dirlen = i;
            break;
        }
    memset(&c, 0, sizeof(c));
    c.fs = fs;
    c.fn = fn;
    c.arg = arg;
    c.path = malloc(KV_MAX_KEY_BYTES + 1);
    int rc = c.path ? kv_snapshot_acquire(fs->db, 0, &snap) : layout_error(-ENOMEM, "no memory");
    if (rc < 0) {
        free(c.path);
        return rc == -ENOMEM ? rc : layout_kverr(rc, "snapshot");
    }
    c.ro.snapshot = snap;
    uint64_t dir = LAYOUT_ROOT_INO;
    layout_inode din;
    if (dirlen > 1)
        rc = layout_resolve(fs, &c.ro, p, dirlen - 1, &dir, &din);
    if (rc == 0 && dirlen > 1 && !S_ISDIR(din.mode))
        rc = -ENOENT;
    const char *npfx = p + dirlen;
    size_t npl = plen - dirlen;
    if (rc == 0 && npl <= LAYOUT_NAME_MAX && dirlen <= KV_MAX_KEY_BYTES) {
        memcpy(c.path, p, dirlen);
        rc = list_dir(&c, dir, dirlen, npfx, npl, 0);
    }
    if (rc == -ENOENT || rc == -ENOTDIR || rc == -EINVAL)
        rc = 0; /* nothing lives under that prefix */
    kv_snapshot_release(fs->db, snap);
    free(c.path);
    return rc;
}

/* Newest-first order of versions. */
static int version_cmp(const void *a, const void *b)
{
    uint64_t x = ((const kv_version *)a)->seq, y = ((const kv_version *)b)->seq;
    return x < y ? 1 : x > y ? -1 : 0;
}

static int versions_push(kv_version **list, size_t *n, size_t *cap, const kv_version *v)
{
    kv_version *nl = kv_grow(*list, cap, *n + 1, sizeof(*nl), 16);
    if (!nl)
        return layout_error(-ENOMEM, "out of memory");
    *list = nl;
    (*list)[(*n)++] = *v;
    return 0;
}

/* The ino a dirent version pointed to (0 for a deletion or an unreadable one). */
static uint64_t dirent_ino_at(layout_fs *fs, const uint8_t *dkey, size_t dkl, uint64_t seq)
{
    kv_readopts ro;
    void *val = NULL;
    size_t vlen = 0;
    uint64_t ino = 0;
    memset(&ro, 0, sizeof(ro));
    ro.seq = seq;
    ro.time_ms = 1;
    if (kv_get(fs->db, &ro, dkey, dkl, &val, &vlen, NULL) == 0 && vlen >= 9)
        ino = get_le64(val);
    free(val);
    return ino;
}

/* Adds the versions of ino's record made while the name pointed to it (dv: the name's
 * versions, newest first, with .size holding the ino named, 0 when deleted). */
static int history_add_ino(layout_fs *fs, uint64_t ino, const kv_version *dv, size_t dn, int whole,
                           kv_version **out, size_t *n, size_t *cap)
{
    uint8_t ikey[LAYOUT_KEY_MAX];
    kv_version *iv = NULL;
    size_t in_n = 0;
    int rc = kv_history(fs->db, ikey, layout_key_inode(ikey, ino), &iv, &in_n);
    if (rc < 0)
        return layout_kverr(rc, "history");
    for (size_t i = 0; i < in_n && rc == 0; i++) {
        kv_version v = iv[i];
        size_t k = 0;
        while (k < dn && dv[k].seq > v.seq)
            k++;
        if (v.deleted || (!whole && (k == dn || dv[k].size != ino)))
            continue;
        kv_readopts ro;
        layout_inode old;
        memset(&ro, 0, sizeof(ro));
        ro.seq = v.seq;
        ro.time_ms = 1;
        if (layout_inode_get_at(fs, &ro, ino, &old) < 0)
            continue; /* no longer readable at that seq: not listed */
        v.size = S_ISDIR(old.mode) ? 0 : old.size;
        v.expire_at_ms = old.expire_at_ms;
        rc = versions_push(out, n, cap, &v);
    }
    free(iv);
    return rc;
}

int layout_history_name(layout_fs *fs, uint64_t parent, const char *name, size_t nlen,
                        kv_version **list, size_t *n)
{
    uint8_t dkey[LAYOUT_KEY_MAX];
    kv_version *dv = NULL, *out = NULL;
    size_t dn = 0, on = 0, cap = 0;
    *list = NULL;
    *n = 0;
    size_t dkl = layout_key_dirent(dkey, parent, name, nlen);
    int rc = kv_history(fs->db, dkey, dkl, &dv, &dn);
    if (rc < 0)
        return layout_kverr(rc, "history");
    for (size_t i = 0; i < dn; i++) /* .size now holds the ino named (0: removed) */
        dv[i].size = dv[i].deleted ? 0 : dirent_ino_at(fs, dkey, dkl, dv[i].seq);
    for (size_t i = 0; i < dn && rc == 0; i++) {
        int seen = 0;
        if (dv[i].deleted) {
            kv_version v = dv[i];
            v.size = 0;
            v.expire_at_ms = 0;
            rc = versions_push(&out, &on, &cap, &v);
            continue;
        }
        for (size_t k = 0; k < i; k++)
            seen |= dv[k].size == dv[i].size;
        if (!seen && dv[i].size)
            rc = history_add_ino(fs, dv[i].size, dv, dn, 0, &out, &on, &cap);
    }
    free(dv);
    if (rc < 0) {
        free(out);
        return rc;
    }
    if (on > 1)
        qsort(out, on, sizeof(*out), version_cmp);
    *list = out;
    *n = on;
    return 0;
}

int layout_history_ino(layout_fs *fs, uint64_t ino, kv_version **list, size_t *n)
{
    layout_link *links = NULL;
    size_t ln = 0, cap = 0;
    *list = NULL;
    *n = 0;
    int rc = ino == LAYOUT_ROOT_INO ? 0 : layout_links(fs, ino, &links, &ln);
    if (rc == 0 && ln > 0)
        rc = layout_history_name(fs, links[0].parent, links[0].name, links[0].nlen, list, n);
    else if (rc == 0)
        rc = history_add_ino(fs, ino, NULL, 0, 1, list, n, &cap);
    free(links);
    if (rc == 0 && *n > 1)
        qsort(*list, *n, sizeof(**list), version_cmp);
    return rc;
}

int layout_history(layout_fs *fs, const void *key, size_t klen, kv_version **list, size_t *n)
{
    const char *k = key;
    layout_inode in;
    uint64_t parent;
    const char *name;
    size_t nlen;
    *list = NULL;
    *n = 0;
    /* kvfsctl's contract: the key must be a live regular file (a removed one is ENOENT) */
    int rc = layout_resolve(fs, NULL, key, klen, NULL, &in);
    if (rc == 0 && S_ISDIR(in.mode))
        rc = layout_error(-EISDIR, "%.*s is a directory", (int)klen, k);
    if (rc == 0)
        rc = split_parent(fs, key, klen, &parent, &name, &nlen);
    if (rc < 0)
        return rc;
    rc = layout_history_name(fs, parent, name, nlen, list, n);
    if (rc == 0 && *n == 0)
        rc = layout_error(-ENOENT, "%.*s: no such key and no retained history", (int)klen, k);
    return rc;
}

int layout_links(layout_fs *fs, uint64_t ino, layout_link **links, size_t *n)
{
    uint8_t pfx[9];
    kv_iter *it = NULL;
    layout_link *v = NULL;
    size_t cap = 0;
    *links = NULL;
    *n = 0;
    int rc = prefix_iter(fs, NULL, pfx, key_ino(pfx, 'P', ino), &it);
    if (rc < 0)
        return rc;
    for (kv_iter_seek_first(it); kv_iter_valid(it) && rc == 0; kv_iter_next(it)) {
        size_t kl;
        const uint8_t *k = kv_iter_key(it, &kl);
        if (kl < 18 || kl > 17 + LAYOUT_NAME_MAX)
            continue;
        layout_link *nv = kv_grow(v, &cap, *n + 1, sizeof(*nv), 4);
        if (!nv) {
            rc = layout_error(-ENOMEM, "out of memory");
            break;
        }
        v = nv;
        layout_link *l = &v[(*n)++];
        l->parent = get_be64(k + 9);
        l->nlen = kl - 17;
        memcpy(l->name, k + 17, l->nlen);
        l->name[l->nlen] = '\0';
    }
    if (rc == 0 && kv_iter_status(it) < 0)
        rc = layout_kverr(kv_iter_status(it), "scan parent pointers");
    kv_iter_free(it);
    if (rc < 0) {
        free(v);
        *n = 0;
        return rc;
    }
    *links = v;
    return 0;
}

void layout_iso_time(uint64_t time_ms, char *buf, size_t size)
{
    time_t t = (time_t)(time_ms / 1000);
    struct tm tm;
    if (!gmtime_r(&t, &tm) || strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(buf, size, "%llu", (unsigned long long)(time_ms / 1000));
}

int layout_versions_format(const kv_version *list, size_t n, char **out, size_t *len)
{
    size_t cap = n * 80 + 1, pos = 0;
    char *buf = malloc(cap);
    if (!buf)
        return layout_error(-ENOMEM, "out of memory");
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        char when[40];
        layout_iso_time(list[i].time_ms, when, sizeof(when));
        int w = snprintf(buf + pos, cap - pos, "%llu %s %llu%s\n", (unsigned long long)list[i].seq,
                         when, (unsigned long long)list[i].size, list[i].deleted ? " deleted" : "");
        if (w < 0 || (size_t)w >= cap - pos) {
            free(buf);
            return layout_error(-EOVERFLOW, "version table too long");
        }
        pos += (size_t)w;
    }
    *out = buf;
    *len = pos;
    return 0;
}

/* Days since 1970-01-01 of a proleptic Gregorian date. */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

/* Reads exactly n digits. */
static int iso_digits(const char **p, int n, int *v)
{
    *v = 0;
    for (int i = 0; i < n; i++, (*p)++) {
        if (**p < '0' || **p > '9')
            return -1;
        *v = *v * 10 + (**p - '0');
    }
    return 0;
}

int layout_parse_iso_time(const char *s, uint64_t *time_ms)
{
    int Y, M, D, h, m, sec = 0, oh = 0, om = 0, sign = 0;
    const char *p = s;
    if (iso_digits(&p, 4, &Y) || *p++ != '-' || iso_digits(&p, 2, &M) || *p++ != '-' ||
        iso_digits(&p, 2, &D) || (*p != 'T' && *p != 't' && *p != ' ') ||
        (p++, iso_digits(&p, 2, &h)) || *p++ != ':' || iso_digits(&p, 2, &m))
        return -EINVAL;
    if (*p == ':' && (p++, iso_digits(&p, 2, &sec)))
        return -EINVAL;
    if (*p == '.' || *p == ',') {
        p++;
        if (*p < '0' || *p > '9')
            return -EINVAL;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        sign = *p++ == '-' ? -1 : 1;
        if (iso_digits(&p, 2, &oh))
            return -EINVAL;
        if (*p == ':')
            p++;
        if (*p && iso_digits(&p, 2, &om))
            return -EINVAL;
    } else {
        return -EINVAL; /* a zone is required: local time would be ambiguous */
    }
    if (*p || M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || sec > 60 || oh > 23 ||
        om > 59 || Y < 1970)
        return -EINVAL;
    int64_t t = days_from_civil(Y, (unsigned)M, (unsigned)D) * 86400 + h * 3600 + m * 60 + sec;
    t -= sign * (oh * 3600 + om * 60);
    if (t < 0)
        return -EINVAL;
    *time_ms = (uint64_t)t * 1000u;
    return 0;
}

/* ----------------------------------------------------------------------- check ---- */

typedef struct check_ctx {
    layout_fs *fs;
    kv_readopts ro;
    kv_report_fn report;
    void *arg;
    int problems;
} check_ctx;

static void check_report(check_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void check_report(check_ctx *c, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    c->problems++;
    if (c->report)
        c->report(c->arg, line);
}

/* Counts dirents naming each inode and subdirectories of each directory, then compares with
 * the records. Memory: one entry per inode (a sorted array), fine for a check. */
typedef struct check_ino {
    uint64_t ino;
    uint32_t links, subdirs;
} check_ino;

static int ino_cmp(const void *a, const void *b)
{
    uint64_t x = ((const check_ino *)a)->ino, y = ((const check_ino *)b)->ino;
    return x < y ? -1 : x > y;
}

static check_ino *check_find(check_ino *v, size_t n, uint64_t ino)
{
    check_ino k = {ino, 0, 0};
    return bsearch(&k, v, n, sizeof(*v), ino_cmp);
}

static int check_inodes(check_ctx *c, check_ino **out, size_t *n)
{
    kv_iter *it = NULL;
    size_t cap = 0;
    *out = NULL;
    *n = 0;
    int rc = prefix_iter(c->fs, &c->ro, "I", 1, &it);
    if (rc < 0)
        return rc;
    for (kv_iter_seek_first(it); kv_iter_valid(it); kv_iter_next(it)) {
        size_t kl;
        const uint8_t *k = kv_iter_key(it, &kl);
        if (kl != 9)
            continue;
        check_ino *nv = kv_grow(*out, &cap, *n + 1, sizeof(*nv), 1024);
        if (!nv) {
            rc = layout_error(-ENOMEM, "out of memory");
            break;
        }
        *out = nv;
        (*out)[(*n)++] = (check_ino){get_be64(k + 1), 0, 0};
    }
    if (rc == 0 && kv_iter_status(it) < 0)
        rc = layout_kverr(kv_iter_status(it), "scan inodes");
    kv_iter_free(it);
    return rc;
}

static int check_dirents(check_ctx *c, check_ino *v, size_t n)
{
    kv_iter *it = NULL;
    int rc = prefix_iter(c->fs, &c->ro, "D", 1, &it);
    if (rc < 0)
        return rc;
    for (kv_iter_seek_first(it); kv_iter_valid(it); kv_iter_next(it)) {
        size_t kl, vl;
        const uint8_t *k = kv_iter_key(it, &kl), *val = kv_iter_value(it, &vl);
        uint64_t parent = kl >= 9 ? get_be64(k + 1) : 0;
        if (kl < 10 || vl < 9) {
            check_report(c, "dirent in directory %llu: malformed key or value",
                         (unsigned long long)parent);
            continue;
        }
        uint64_t child = get_le64(val);
        check_ino *ci = check_find(v, n, child), *pi = check_find(v, n, parent);
        if (!pi)
            check_report(c, "dirent '%.*s' in missing directory %llu", (int)(kl - 9), k + 9,
                         (unsigned long long)parent);
        if (!ci) {
            check_report(c, "dirent '%.*s' in directory %llu names missing inode %llu",
                         (int)(kl - 9), k + 9, (unsigned long long)parent,
                         (unsigned long long)child);
            continue;
        }
        ci->links++;
        if (pi && ((uint32_t)val[8] << 12) == S_IFDIR)
            pi->subdirs++;
    }
    if (kv_iter_status(it) < 0)
        rc = layout_kverr(kv_iter_status(it), "scan dirents");
    kv_iter_free(it);
    return rc;
}

static int check_records(check_ctx *c, check_ino *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        layout_inode in;
        uint8_t okey[LAYOUT_KEY_MAX];
        int rc = layout_inode_get_at(c->fs, &c->ro, v[i].ino, &in);
        if (rc == -EUCLEAN) {
            check_report(c, "%s", layout_last_error());
            continue;
        }
        if (rc < 0)
            return rc;
        int orphan =
            kv_get(c->fs->db, &c->ro, okey, layout_key_orphan(okey, in.ino), NULL, NULL, NULL) == 0;
        uint32_t want = S_ISDIR(in.mode) ? 2 + v[i].subdirs : v[i].links;
        int linked = v[i].links > 0 || in.ino == LAYOUT_ROOT_INO;
        if (linked && in.nlink != want)
            check_report(c, "inode %llu: nlink %u, expected %u", (unsigned long long)in.ino,
                         in.nlink, want);
        if (!linked && !orphan)
            check_report(c, "inode %llu: not linked from any directory and not an orphan",
                         (unsigned long long)in.ino);
        if (S_ISREG(in.mode)) {
            uint8_t ckey[LAYOUT_KEY_MAX];
            kv_iter *it = NULL;
            kv_iter_opts o;
            memset(&o, 0, sizeof(o));
            o.ro = c->ro;
            o.prefix = okey;
            o.prefix_len = key_ino(okey, 'C', in.ino);
            o.lower = ckey;
            o.lower_len = layout_key_chunk(ckey, in.ino, in.size / LAYOUT_CHUNK);
            if ((rc = kv_iter_new(c->fs->db, &o, &it)) < 0)
                return layout_kverr(rc, "open iterator");
            for (kv_iter_seek_first(it); kv_iter_valid(it); kv_iter_next(it)) {
                size_t kl, vl;
                const uint8_t *k = kv_iter_key(it, &kl);
                kv_iter_value(it, &vl);
                uint64_t idx = kl == 17 ? get_be64(k + 9) : 0;
                if (idx * LAYOUT_CHUNK + vl > in.size)
                    check_report(c, "inode %llu: chunk %llu holds bytes beyond size %llu",
                                 (unsigned long long)in.ino, (unsigned long long)idx,
                                 (unsigned long long)in.size);
            }
            kv_iter_free(it);
        }
    }
    return 0;
}

int layout_check(layout_fs *fs, kv_report_fn report, void *arg)
{
    check_ctx c;
    kv_snapshot *snap = NULL;
    check_ino *v = NULL;
    size_t n = 0;
    memset(&c, 0, sizeof(c));
    c.fs = fs;
    c.report = report;
    c.arg = arg;
    int rc = kv_snapshot_acquire(fs->db, 0, &snap);
    if (rc < 0)
        return layout_kverr(rc, "snapshot");
    c.ro.snapshot = snap;
    c.ro.time_ms = 1; /* expired but not yet reaped inodes still count (I4) */
    rc = check_inodes(&c, &v, &n);
    if (rc == 0 && n > 1)
        qsort(v, n, sizeof(*v), ino_cmp);
    if (rc == 0 && n > 0 && !check_find(v, n, LAYOUT_ROOT_INO))
        check_report(&c, "the root directory (inode 1) has no record");
    if (rc == 0)
        rc = check_dirents(&c, v, n);
    if (rc == 0)
        rc = check_records(&c, v, n);
    free(v);
    kv_snapshot_release(fs->db, snap);
    return rc < 0 ? rc : c.problems;
}
