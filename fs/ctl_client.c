/*
 * ctl_client.c -- the client side of the kvfs control socket (see ctl_proto.h for the frame
 * grammar and docs/control-protocol.md for each command), plus the buffer codec shared with
 * the daemon's server. Every response is read whole before it is decoded; a short or
 * malformed response gives -EPROTO, never a crash.
 */
#include "ctl_client.h"
#include "ctl_proto.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct ctl_conn {
    int fd;
};

static _Thread_local char ctl_errbuf[512];

const char *ctl_client_last_error(void)
{
    return ctl_errbuf;
}

static int ctl_err(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int ctl_err(int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctl_errbuf, sizeof(ctl_errbuf), fmt, ap);
    va_end(ap);
    return err;
}

/* ------------------------------------------------------------------ buffers ---- */

int ctl_buf_put(ctl_buf *b, const void *p, size_t n)
{
    if (b->err)
        return b->err;
    if (b->len + n > b->cap) {
        uint8_t *nd = kv_grow(b->data, &b->cap, b->len + n, 1, 256);
        if (!nd)
            return b->err = -ENOMEM;
        b->data = nd;
    }
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

int ctl_buf_put_u8(ctl_buf *b, uint8_t v)
{
    return ctl_buf_put(b, &v, 1);
}

int ctl_buf_put_u32(ctl_buf *b, uint32_t v)
{
    uint8_t p[4];
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
    return ctl_buf_put(b, p, 4);
}

int ctl_buf_put_u64(ctl_buf *b, uint64_t v)
{
    uint8_t p[8];
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
    return ctl_buf_put(b, p, 8);
}

int ctl_buf_put_bytes(ctl_buf *b, const void *p, size_t n)
{
    if (n > UINT32_MAX)
        return b->err = -EMSGSIZE;
    ctl_buf_put_u32(b, (uint32_t)n);
    return ctl_buf_put(b, p, n);
}

void ctl_buf_free(ctl_buf *b)
{
    free(b->data);
    memset(b, 0, sizeof(*b));
}

static const uint8_t *ctl_buf_take(ctl_buf *b, size_t n)
{
    if (b->err || b->len - b->pos < n) {
        b->err = -EPROTO;
        return NULL;
    }
    const uint8_t *p = b->data + b->pos;
    b->pos += n;
    return p;
}

uint8_t ctl_buf_get_u8(ctl_buf *b)
{
    const uint8_t *p = ctl_buf_take(b, 1);
    return p ? p[0] : 0;
}

uint32_t ctl_buf_get_u32(ctl_buf *b)
{
    const uint8_t *p = ctl_buf_take(b, 4);
    if (!p)
        return 0;
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

uint64_t ctl_buf_get_u64(ctl_buf *b)
{
    uint64_t lo = ctl_buf_get_u32(b);
    uint64_t hi = ctl_buf_get_u32(b);
    return lo | hi << 32;
}

const void *ctl_buf_get_bytes(ctl_buf *b, size_t *n)
{
    *n = ctl_buf_get_u32(b);
    const uint8_t *p = ctl_buf_take(b, *n);
    if (!p)
        *n = 0;
    return p ? p : (const void *)"";
}

const void *ctl_buf_rest(ctl_buf *b, size_t *n)
{
    *n = b->err ? 0 : b->len - b->pos;
    const void *p = b->data ? b->data + b->pos : (const void *)"";
    b->pos = b->len;
    return p;
}

/* Every kv_stats field, in declaration order, one a line (clang-format 14 re-indents a packed
 * X-macro list differently on every pass). */
/* clang-format off */
#define CTL_STATS_U64(X)                                                                           \
    X(last_seq)                                                                                    \
    X(puts)                                                                                        \
    X(deletes)                                                                                     \
    X(gets)                                                                                        \
    X(batches)                                                                                     \
    X(wal_bytes)                                                                                   \
    X(wal_syncs)                                                                                   \
    X(wal_group_commits)                                                                           \
    X(flushes)                                                                                     \
    X(compactions)                                                                                 \
    X(compaction_bytes_read)                                                                       \
    X(compaction_bytes_written)                                                                    \
    X(write_stalls)                                                                                \
    X(write_stall_us)                                                                              \
    X(cache_hits)                                                                                  \
    X(cache_misses)                                                                                \
    X(cache_bytes)                                                                                 \
    X(bloom_useful)                                                                                \
    X(memtable_bytes)                                                                              \
    X(imm_memtable_bytes)
/* clang-format on */

int ctl_stats_encode(ctl_buf *b, const kv_stats *st)
{
    uint32_t n = 20 + 2 * KV_MAX_LEVELS + 6;
    ctl_buf_put_u32(b, n);
#define ENC(f) ctl_buf_put_u64(b, st->f);
    CTL_STATS_U64(ENC)
#undef ENC
    for (int i = 0; i < KV_MAX_LEVELS; i++)
        ctl_buf_put_u64(b, st->level_files[i]);
    for (int i = 0; i < KV_MAX_LEVELS; i++)
        ctl_buf_put_u64(b, st->level_bytes[i]);
    ctl_buf_put_u64(b, st->named_snapshots);
    ctl_buf_put_u64(b, st->live_snapshots);
    ctl_buf_put_u64(b, st->oldest_readable_seq);
    ctl_buf_put_u64(b, (uint64_t)(int64_t)st->sticky_error);
    ctl_buf_put_u64(b, st->range_deletions);
    return ctl_buf_put_u64(b, (uint64_t)(int64_t)st->no_space);
}

int ctl_stats_decode(ctl_buf *b, kv_stats *st)
{
    uint32_t n = ctl_buf_get_u32(b), used = 0;
    memset(st, 0, sizeof(*st));
#define DEC(f)                                                                                     \
    if (used < n) {                                                                                \
        st->f = ctl_buf_get_u64(b);                                                                \
        used++;                                                                                    \
    }
    CTL_STATS_U64(DEC)
#undef DEC
    for (int i = 0; i < KV_MAX_LEVELS && used < n; i++, used++)
        st->level_files[i] = ctl_buf_get_u64(b);
    for (int i = 0; i < KV_MAX_LEVELS && used < n; i++, used++)
        st->level_bytes[i] = ctl_buf_get_u64(b);
    if (used < n) {
        st->named_snapshots = ctl_buf_get_u64(b);
        used++;
    }
    if (used < n) {
        st->live_snapshots = ctl_buf_get_u64(b);
        used++;
    }
    if (used < n) {
        st->oldest_readable_seq = ctl_buf_get_u64(b);
        used++;
    }
    if (used < n) {
        st->sticky_error = (int)(int64_t)ctl_buf_get_u64(b);
        used++;
    }
    if (used < n) {
        st->range_deletions = ctl_buf_get_u64(b);
        used++;
    }
    if (used < n) {
        st->no_space = (int)(int64_t)ctl_buf_get_u64(b);
        used++;
    }
    for (; used < n; used++)
        ctl_buf_get_u64(b);
    return b->err;
}

/* ------------------------------------------------------------------ socket I/O ---- */

int ctl_io_read(int fd, void *p, size_t n)
{
    uint8_t *q = p;
    while (n) {
        ssize_t r = read(fd, q, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            return -EPIPE;
        q += r;
        n -= (size_t)r;
    }
    return 0;
}

int ctl_io_write(int fd, const void *p, size_t n)
{
    const uint8_t *q = p;
    while (n) {
        ssize_t r = send(fd, q, n, MSG_NOSIGNAL);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        q += r;
        n -= (size_t)r;
    }
    return 0;
}

int ctl_socket_address(const char *data_dir, struct sockaddr_un *addr, int *dirfd)
{
    memset(addr, 0, sizeof(*addr));
    addr->sun_family = AF_UNIX;
    *dirfd = -1;
    int n = snprintf(addr->sun_path, sizeof(addr->sun_path), "%s/%s", data_dir, CTL_SOCKET_NAME);
    if (n > 0 && (size_t)n < sizeof(addr->sun_path))
        return 0;
    *dirfd = open(data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (*dirfd < 0)
        return ctl_err(-errno, "%s: %s", data_dir, strerror(errno));
    snprintf(addr->sun_path, sizeof(addr->sun_path), "/proc/self/fd/%d/%s", *dirfd,
             CTL_SOCKET_NAME);
    return 0;
}

/* ------------------------------------------------------------------ client ---- */

int ctl_client_connect(const char *data_dir, ctl_conn **out)
{
    struct sockaddr_un addr;
    int dirfd;
    int rc = ctl_socket_address(data_dir, &addr, &dirfd);
    if (rc < 0)
        return rc;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        rc = ctl_err(-errno, "socket: %s", strerror(errno));
    } else if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        rc = ctl_err(-errno, "%s/%s: %s", data_dir, CTL_SOCKET_NAME, strerror(errno));
        close(fd);
    }
    if (dirfd >= 0)
        close(dirfd);
    if (rc < 0)
        return rc;
    ctl_conn *c = malloc(sizeof(*c));
    if (!c) {
        close(fd);
        return ctl_err(-ENOMEM, "out of memory");
    }
    c->fd = fd;
    *out = c;
    return 0;
}

void ctl_client_close(ctl_conn *c)
{
    if (!c)
        return;
    close(c->fd);
    free(c);
}

/* Sends req (cmd byte first) and reads the response into resp. Returns the status. */
static int ctl_call(ctl_conn *c, ctl_buf *req, ctl_buf *resp)
{
    uint8_t hdr[8];
    memset(resp, 0, sizeof(*resp));
    if (req->err)
        return ctl_err(req->err, "building the request: %s", strerror(-req->err));
    if (req->len > CTL_MAX_REQ)
        return ctl_err(-EFBIG, "request of %zu bytes is too large", req->len);
    for (int i = 0; i < 4; i++)
        hdr[i] = (uint8_t)(req->len >> (8 * i));
    int rc = ctl_io_write(c->fd, hdr, 4);
    if (rc == 0)
        rc = ctl_io_write(c->fd, req->data, req->len);
    if (rc == 0)
        rc = ctl_io_read(c->fd, hdr, 8);
    if (rc < 0)
        return ctl_err(rc == -EPIPE ? -ECONNRESET : rc, "talking to the kvfs daemon: %s",
                       strerror(rc == -EPIPE ? ECONNRESET : -rc));
    ctl_buf h = {hdr, 8, 8, 0, 0};
    int status = (int)(int32_t)ctl_buf_get_u32(&h);
    uint32_t len = ctl_buf_get_u32(&h);
    if (len > CTL_MAX_RESP)
        return ctl_err(-EPROTO, "kvfs daemon sent a %u-byte response", len);
    resp->data = malloc(len ? len : 1);
    if (!resp->data)
        return ctl_err(-ENOMEM, "out of memory");
    resp->len = resp->cap = len;
    if ((rc = ctl_io_read(c->fd, resp->data, len)) < 0)
        return ctl_err(rc, "reading from the kvfs daemon: %s", strerror(-rc));
    if (status < 0)
        ctl_err(status, "%.*s", (int)(len < 400 ? len : 400), (const char *)resp->data);
    return status;
}

/* A request with one bytes argument. */
static int ctl_call1(ctl_conn *c, uint8_t cmd, const void *arg, size_t alen, ctl_buf *resp)
{
    ctl_buf req = {0};
    ctl_buf_put_u8(&req, cmd);
    ctl_buf_put_bytes(&req, arg, alen);
    int rc = ctl_call(c, &req, resp);
    ctl_buf_free(&req);
    return rc;
}

static int ctl_done(ctl_buf *resp, int rc)
{
    if (rc >= 0 && resp->err)
        rc = ctl_err(-EPROTO, "malformed response from the kvfs daemon");
    ctl_buf_free(resp);
    return rc;
}

int ctl_client_ping(ctl_conn *c, uint32_t *version)
{
    ctl_buf req = {0}, resp;
    ctl_buf_put_u8(&req, CTL_PING);
    int rc = ctl_call(c, &req, &resp);
    ctl_buf_free(&req);
    if (rc >= 0 && version)
        *version = ctl_buf_get_u32(&resp);
    return ctl_done(&resp, rc);
}

int ctl_client_get(ctl_conn *c, const void *key, size_t klen, void **val, size_t *vlen)
{
    ctl_buf resp;
    int rc = ctl_call1(c, CTL_GET, key, klen, &resp);
    if (rc < 0)
        return ctl_done(&resp, rc);
    *val = resp.data; /* hand the buffer over */
    *vlen = resp.len;
    return 0;
}

int ctl_client_put(ctl_conn *c, const void *key, size_t klen, const void *val, size_t vlen,
                   uint64_t expire_at_ms)
{
    ctl_buf req = {0}, resp;
    ctl_buf_put_u8(&req, CTL_PUT);
    ctl_buf_put_bytes(&req, key, klen);
    ctl_buf_put_u64(&req, expire_at_ms);
    ctl_buf_put(&req, val, vlen);
    int rc = ctl_call(c, &req, &resp);
    ctl_buf_free(&req);
    return ctl_done(&resp, rc);
}

int ctl_client_del(ctl_conn *c, const void *key, size_t klen)
{
    ctl_buf resp;
    return ctl_done(&resp, ctl_call1(c, CTL_DEL, key, klen, &resp));
}

int ctl_client_list(ctl_conn *c, const void *prefix, size_t plen, ctl_client_list_fn fn, void *arg)
{
    ctl_buf resp;
    int rc = ctl_call1(c, CTL_LS, prefix, plen, &resp);
    while (rc >= 0 && !resp.err && resp.pos < resp.len) {
        size_t kl;
        kv_entry_info info;
        const void *k = ctl_buf_get_bytes(&resp, &kl);
        memset(&info, 0, sizeof(info));
        info.seq = ctl_buf_get_u64(&resp);
        info.expire_at_ms = ctl_buf_get_u64(&resp);
        info.value_len = (size_t)ctl_buf_get_u64(&resp);
        if (!resp.err && (rc = fn(arg, k, kl, &info)) != 0)
            break;
    }
    return ctl_done(&resp, rc);
}

int ctl_client_history(ctl_conn *c, const void *key, size_t klen, kv_version **list, size_t *n)
{
    ctl_buf resp;
    kv_version *v = NULL;
    size_t cnt = 0, cap = 0;
    int rc = ctl_call1(c, CTL_HISTORY, key, klen, &resp);
    while (rc >= 0 && !resp.err && resp.pos < resp.len) {
        kv_version *nv = kv_grow(v, &cap, cnt + 1, sizeof(*nv), 16);
        if (!nv) {
            rc = ctl_err(-ENOMEM, "out of memory");
            break;
        }
        v = nv;
        kv_version *e = &v[cnt++];
        e->seq = ctl_buf_get_u64(&resp);
        e->time_ms = ctl_buf_get_u64(&resp);
        e->size = ctl_buf_get_u64(&resp);
        e->expire_at_ms = ctl_buf_get_u64(&resp);
        e->deleted = ctl_buf_get_u8(&resp);
    }
    rc = ctl_done(&resp, rc);
    if (rc < 0) {
        free(v);
        return rc;
    }
    *list = v;
    *n = cnt;
    return 0;
}

static void get_snapinfo(ctl_buf *b, kv_snapinfo *info)
{
    size_t nl;
    const void *name = ctl_buf_get_bytes(b, &nl);
    memset(info, 0, sizeof(*info));
    if (nl > KV_SNAPSHOT_NAME_MAX)
        nl = KV_SNAPSHOT_NAME_MAX;
    memcpy(info->name, name, nl);
    info->seq = ctl_buf_get_u64(b);
    info->time_ms = ctl_buf_get_u64(b);
}

int ctl_client_snap_create(ctl_conn *c, const char *name, kv_snapinfo *info)
{
    ctl_buf resp;
    int rc = ctl_call1(c, CTL_SNAP_CREATE, name, strlen(name), &resp);
    if (rc >= 0 && info)
        get_snapinfo(&resp, info);
    return ctl_done(&resp, rc);
}

int ctl_client_snap_list(ctl_conn *c, kv_snapinfo **list, size_t *n)
{
    ctl_buf req = {0}, resp;
    kv_snapinfo *v = NULL;
    size_t cnt = 0, cap = 0;
    ctl_buf_put_u8(&req, CTL_SNAP_LIST);
    int rc = ctl_call(c, &req, &resp);
    ctl_buf_free(&req);
    while (rc >= 0 && !resp.err && resp.pos < resp.len) {
        kv_snapinfo *nv = kv_grow(v, &cap, cnt + 1, sizeof(*nv), 16);
        if (!nv) {
            rc = ctl_err(-ENOMEM, "out of memory");
            break;
        }
        v = nv;
        get_snapinfo(&resp, &v[cnt++]);
    }
    rc = ctl_done(&resp, rc);
    if (rc < 0) {
        free(v);
        return rc;
    }
    *list = v;
    *n = cnt;
    return 0;
}

int ctl_client_snap_delete(ctl_conn *c, const char *name)
{
    ctl_buf resp;
    return ctl_done(&resp, ctl_call1(c, CTL_SNAP_DELETE, name, strlen(name), &resp));
}

int ctl_client_stats(ctl_conn *c, kv_stats *st)
{
    ctl_buf req = {0}, resp;
    ctl_buf_put_u8(&req, CTL_STATS);
    int rc = ctl_call(c, &req, &resp);
    ctl_buf_free(&req);
    if (rc >= 0)
        ctl_stats_decode(&resp, st);
    return ctl_done(&resp, rc);
}

int ctl_client_compact(ctl_conn *c)
{
    ctl_buf req = {0}, resp;
    ctl_buf_put_u8(&req, CTL_COMPACT);
    int rc = ctl_call(c, &req, &resp);
    ctl_buf_free(&req);
    return ctl_done(&resp, rc);
}

int ctl_client_check(ctl_conn *c, kv_report_fn report, void *arg)
{
    ctl_buf req = {0}, resp;
    ctl_buf_put_u8(&req, CTL_CHECK);
    int rc = ctl_call(c, &req, &resp);
    ctl_buf_free(&req);
    if (rc >= 0 && report) {
        size_t n;
        const char *p = ctl_buf_rest(&resp, &n), *end = p + n;
        char line[1024];
        while (p < end) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            size_t ll = (size_t)((nl ? nl : end) - p);
            snprintf(line, sizeof(line), "%.*s", (int)ll, p);
            report(arg, line);
            p += ll + (nl ? 1 : 0);
        }
    }
    return ctl_done(&resp, rc);
}

int ctl_client_checkpoint(ctl_conn *c, const char *dir)
{
    ctl_buf resp;
    char abs[8192];
    if (dir[0] != '/') { /* the daemon runs in "/": send an absolute path */
        char cwd[4096];
        if (!getcwd(cwd, sizeof(cwd)))
            return ctl_err(-errno, "getcwd: %s", strerror(errno));
        snprintf(abs, sizeof(abs), "%s/%s", cwd, dir);
        dir = abs;
    }
    return ctl_done(&resp, ctl_call1(c, CTL_CHECKPOINT, dir, strlen(dir), &resp));
}
