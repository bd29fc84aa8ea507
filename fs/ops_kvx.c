/*
 * ops_kvx.c -- the kvfs.* extended attributes (version queries and TTL) and the expiry
 * helpers the namespace handlers use.
 *
 *   user.kvfs.version      read-only: sequence of the inode record's current version
 *   user.kvfs.versions     read-only: the version table (layout_versions_format)
 *   user.kvfs.ttl          remaining whole seconds (rounded up), -1 if none; set N (decimal,
 *                          0 <= N) = expire N s from now; remove = no expiry
 *   user.kvfs.expires      absolute expiry, epoch seconds, -1 if none; set E > 0; remove
 *   user.kvfs.default_ttl  directories: TTL in seconds given to files created inside
 *                          (ENODATA when unset); set N > 0; remove
 * Values are decimal ASCII without sign (one trailing newline is accepted); anything else
 * (negative, non-numeric, empty, overflowing) is EINVAL and changes nothing. Setting the
 * read-only ones gives EPERM; other user.kvfs.* names are reserved (EINVAL / ENODATA).
 * These names are not listed by listxattr, so cp -a and rsync -X do not copy them.
 *
 * Expiry (layout.h I4, I5): only the inode record carries the engine TTL; the 'E' index
 * orders inodes by expiry. A dirent whose inode record is gone is absent
 * (kvfs_dirent_live), and directory listings skip the inodes listed in 'E' with a passed
 * expiry (kvfs_expired_pending) until the reaper removes their keys.
 */
#include "kvfs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KVX_PREFIX "user.kvfs."
#define KVX_MAX_S 3153600000ull /* 100 years: larger TTLs are refused (EINVAL) */

static uint64_t kvx_now_ms(void)
{
    struct timespec ts;
    layout_now(&ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int kvfs_kvx_is(const char *name)
{
    return strncmp(name, KVX_PREFIX, sizeof(KVX_PREFIX) - 1) == 0;
}

/* Strict unsigned decimal. */
static int kvx_parse(const char *value, size_t size, uint64_t *out)
{
    char buf[32];
    if (size && value[size - 1] == '\n')
        size--;
    if (size == 0 || size >= sizeof(buf))
        return -EINVAL;
    memcpy(buf, value, size);
    buf[size] = '\0';
    uint64_t v = 0;
    for (size_t i = 0; i < size; i++) {
        if (buf[i] < '0' || buf[i] > '9')
            return -EINVAL;
        unsigned d = (unsigned)(buf[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -EINVAL;
        v = v * 10 + d;
    }
    if (v > KVX_MAX_S * 20) /* also keeps epoch seconds * 1000 far from overflow */
        return -EINVAL;
    *out = v;
    return 0;
}

static int kvx_text(char **val, size_t *vlen, const char *fmt, long long v)
{
    char buf[64];
    int n = snprintf(buf, sizeof(buf), fmt, v);
    *val = malloc((size_t)n + 1);
    if (!*val)
        return -ENOMEM;
    memcpy(*val, buf, (size_t)n + 1);
    *vlen = (size_t)n;
    return 0;
}

int kvfs_kvx_get(kvfs *fs, uint64_t ino, const kv_readopts *ro, const char *name, char **val,
                 size_t *vlen)
{
    const char *n = name + sizeof(KVX_PREFIX) - 1;
    uint8_t key[LAYOUT_KEY_MAX];
    layout_inode in;
    kv_entry_info info;
    *val = NULL;
    int rc = kv_get(fs->db, ro, key, layout_key_inode(key, ino), NULL, NULL, &info);
    if (rc < 0)
        return rc;
    if ((rc = layout_inode_get_at(fs->lfs, ro, ino, &in)) < 0)
        return rc;
    uint64_t now = ro && ro->time_ms ? ro->time_ms : kvx_now_ms();
    if (strcmp(n, "version") == 0)
        return kvx_text(val, vlen, "%lld", (long long)info.seq);
    if (strcmp(n, "ttl") == 0)
        return kvx_text(val, vlen, "%lld",
                        in.expire_at_ms ? (long long)((in.expire_at_ms - now + 999) / 1000) : -1ll);
    if (strcmp(n, "expires") == 0)
        return kvx_text(val, vlen, "%lld",
                        in.expire_at_ms ? (long long)(in.expire_at_ms / 1000) : -1ll);
    if (strcmp(n, "default_ttl") == 0) {
        if (!S_ISDIR(in.mode) || in.default_ttl_s == 0)
            return -ENODATA;
        return kvx_text(val, vlen, "%lld", (long long)in.default_ttl_s);
    }
    if (strcmp(n, "versions") == 0) {
        kv_version *list = NULL;
        size_t cnt = 0;
        rc = layout_history_ino(fs->lfs, ino, &list, &cnt);
        if (rc == 0)
            rc = layout_versions_format(list, cnt, val, vlen);
        free(list);
        return rc;
    }
    return -ENODATA;
}

/* Changes the expiry (or default TTL) of ino in one batch. what: 0 expiry, 1 default TTL. */
static int kvx_update(kvfs *fs, uint64_t ino, int what, uint64_t v, int must_exist)
{
    layout_inode in;
    kv_batch *b = NULL;
    pthread_mutex_lock(&fs->wmu);
    int rc = layout_inode_get(fs->lfs, ino, &in);
    if (rc == 0 && what == 0 && S_ISDIR(in.mode))
        rc = -EINVAL; /* expiry is per file; directories take default_ttl */
    if (rc == 0 && what == 1 && !S_ISDIR(in.mode))
        rc = -EINVAL;
    if (rc == 0 && must_exist && (what == 0 ? in.expire_at_ms : in.default_ttl_s) == 0)
        rc = -ENODATA;
    if (rc == 0 && !(b = kv_batch_new()))
        rc = -ENOMEM;
    if (rc == 0 && what == 0)
        rc = layout_expiry_set(b, &in, v);
    if (rc == 0 && what == 1)
        in.default_ttl_s = v;
    if (rc == 0) {
        layout_now(&in.ctime);
        if ((rc = layout_inode_put(b, &in)) == 0)
            rc = kvfs_commit(fs, b);
    }
    pthread_mutex_unlock(&fs->wmu);
    kv_batch_free(b);
    if (rc == 0 && what == 0 && v)
        kvfs_reaper_kick(fs, v);
    return rc;
}

int kvfs_kvx_set(kvfs *fs, uint64_t ino, const char *name, const char *value, size_t size)
{
    const char *n = name + sizeof(KVX_PREFIX) - 1;
    uint64_t v;
    if (strcmp(n, "version") == 0 || strcmp(n, "versions") == 0)
        return -EPERM;
    int is_ttl = strcmp(n, "ttl") == 0, is_exp = strcmp(n, "expires") == 0;
    int is_def = strcmp(n, "default_ttl") == 0;
    if (!is_ttl && !is_exp && !is_def)
        return -EINVAL;
    if (kvx_parse(value, size, &v) < 0)
        return -EINVAL;
    if (is_ttl) {
        if (v > KVX_MAX_S)
            return -EINVAL;
        return kvx_update(fs, ino, 0, kvx_now_ms() + v * 1000u, 0);
    }
    if (is_exp) { /* a time in the past expires the file now; the same 100-year cap */
        uint64_t now = kvx_now_ms(), at = v * 1000u;
        if (v == 0 || (at > now && at - now > KVX_MAX_S * 1000u))
            return -EINVAL;
        return kvx_update(fs, ino, 0, at, 0);
    }
    if (v == 0 || v > KVX_MAX_S)
        return -EINVAL;
    return kvx_update(fs, ino, 1, v, 0);
}

int kvfs_kvx_remove(kvfs *fs, uint64_t ino, const char *name)
{
    const char *n = name + sizeof(KVX_PREFIX) - 1;
    if (strcmp(n, "version") == 0 || strcmp(n, "versions") == 0)
        return -EPERM;
    if (strcmp(n, "ttl") == 0 || strcmp(n, "expires") == 0)
        return kvx_update(fs, ino, 0, 0, 1);
    if (strcmp(n, "default_ttl") == 0)
        return kvx_update(fs, ino, 1, 0, 1);
    return -ENODATA;
}

/* ------------------------------------------------------------------ expiry helpers ---- */

int kvfs_dirent_live(kvfs *fs, uint64_t parent, const char *name, size_t nlen, uint64_t *ino,
                     uint32_t *type)
{
    uint8_t key[LAYOUT_KEY_MAX];
    uint64_t child;
    int rc = layout_dirent_get(fs->lfs, parent, name, nlen, &child, type);
    if (rc < 0)
        return rc;
    rc = kv_get(fs->db, NULL, key, layout_key_inode(key, child), NULL, NULL, NULL);
    if (rc < 0)
        return rc; /* -ENOENT: the inode expired; the name is free */
    if (ino)
        *ino = child;
    return 0;
}

static int u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Collects the inodes whose expiry has passed (layout_expiry_scan callback). */
typedef struct kvx_pending {
    uint64_t now, *v;
    size_t n, cap;
} kvx_pending;

static int kvx_collect_due(void *arg, uint64_t expire_at_ms, uint64_t ino)
{
    kvx_pending *p = arg;
    if (expire_at_ms > p->now)
        return 1; /* the index is in time order: nothing later is due */
    uint64_t *nv = kv_grow(p->v, &p->cap, p->n + 1, sizeof(*nv), 16);
    if (!nv)
        return -ENOMEM;
    p->v = nv;
    p->v[p->n++] = ino;
    return 0;
}

int kvfs_expired_pending(kvfs *fs, uint64_t **inos, size_t *n)
{
    kvx_pending p = {kvx_now_ms(), NULL, 0, 0};
    *inos = NULL;
    *n = 0;
    int rc = layout_expiry_scan(fs->lfs, kvx_collect_due, &p);
    if (rc < 0) {
        free(p.v);
        return rc;
    }
    if (p.n > 1)
        qsort(p.v, p.n, sizeof(*p.v), u64_cmp);
    *inos = p.v;
    *n = p.n;
    return 0;
}
