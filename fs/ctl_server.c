/*
 * ctl_server.c -- the daemon's control socket: one thread accepting kvfsctl connections on
 * DATA_DIR/kvfs.sock (mode 0600, and only the daemon's own user or root may talk to it) and
 * serving their requests (ctl_proto.h) against the open store.
 *
 * Key-view writes (put, del) hold fs->wmu like any FUSE write, so both views change through
 * one serialised path; afterwards, with the lock released, the kernel's cached dentries and
 * attributes/pages of every path component touched are invalidated, so the mount shows the
 * change at once (a lock held across a notification could deadlock against a handler).
 * Connections are served one at a time, in order.
 */
#include "ctl_client.h"
#include "ctl_proto.h"
#include "kvfs.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

/* ---------------------------------------------------------------- invalidation ---- */

typedef struct inval_ent {
    uint64_t parent, ino;
    size_t nlen;
    char name[LAYOUT_NAME_MAX + 1];
} inval_ent;

typedef struct inval_list {
    inval_ent *v;
    size_t n, cap;
} inval_list;

static void inval_add(void *arg, uint64_t parent, const char *name, size_t nlen, uint64_t ino)
{
    inval_list *l = arg;
    inval_ent *nv = kv_grow(l->v, &l->cap, l->n + 1, sizeof(*nv), 16);
    if (!nv)
        return; /* best effort: the KVFS_TIMEOUT cache timeout bounds staleness */
    l->v = nv;
    inval_ent *e = &l->v[l->n++];
    e->parent = parent;
    e->ino = ino;
    e->nlen = nlen;
    memcpy(e->name, name, nlen);
    e->name[nlen] = '\0';
}

static void inval_run(kvfs *fs, inval_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        inval_ent *e = &l->v[i];
        fuse_lowlevel_notify_inval_entry(fs->se, e->parent, e->name, e->nlen);
        fuse_lowlevel_notify_inval_inode(fs->se, e->parent, -1, 0);
        fuse_lowlevel_notify_inval_inode(fs->se, e->ino, 0, 0);
    }
    free(l->v);
}

/* ---------------------------------------------------------------- commands ---- */

static int srv_err(ctl_buf *out, int rc, const char *msg)
{
    out->len = 0;
    out->err = 0;
    ctl_buf_put(out, msg, strlen(msg));
    return rc;
}

static int srv_layout_err(ctl_buf *out, int rc)
{
    const char *m = layout_last_error();
    return srv_err(out, rc, (m && *m) ? m : strerror(-rc));
}

static int srv_kv_err(ctl_buf *out, int rc)
{
    const char *m = kv_last_error();
    return srv_err(out, rc, (m && *m) ? m : strerror(-rc));
}

static int srv_get(kvfs *fs, ctl_buf *in, ctl_buf *out)
{
    size_t kl, vlen;
    void *val;
    const void *k = ctl_buf_get_bytes(in, &kl);
    if (in->err)
        return in->err;
    int rc = layout_read_file(fs->lfs, k, kl, &val, &vlen, NULL);
    if (rc < 0)
        return srv_layout_err(out, rc);
    rc = ctl_buf_put(out, val, vlen);
    free(val);
    return rc;
}

static int srv_put(kvfs *fs, ctl_buf *in, ctl_buf *out)
{
    size_t kl, vl;
    inval_list l = {0};
    const void *k = ctl_buf_get_bytes(in, &kl);
    uint64_t expire = ctl_buf_get_u64(in);
    const void *v = ctl_buf_rest(in, &vl);
    if (in->err)
        return in->err;
    int rc = kvfs_room_to_grow(fs, vl); /* the mount's reserve holds for the key view too */
    if (rc < 0) {
        srv_layout_err(out, rc);
        return rc;
    }
    pthread_mutex_lock(&fs->wmu);
    layout_walk(fs->lfs, k, kl, inval_add, &l);
    rc = layout_write_file(fs->lfs, k, kl, v, vl, expire, (uint32_t)geteuid(), (uint32_t)getegid());
    if (rc == 0)
        layout_walk(fs->lfs, k, kl, inval_add, &l);
    pthread_mutex_unlock(&fs->wmu);
    if (rc < 0)
        srv_layout_err(out, rc);
    inval_run(fs, &l);
    return rc;
}

static int srv_del(kvfs *fs, ctl_buf *in, ctl_buf *out)
{
    size_t kl;
    uint64_t ino;
    int orphan = 0;
    inval_list l = {0};
    const void *k = ctl_buf_get_bytes(in, &kl);
    if (in->err)
        return in->err;
    pthread_mutex_lock(&fs->wmu);
    layout_walk(fs->lfs, k, kl, inval_add, &l);
    int rc = layout_unlink_path(fs->lfs, k, kl, &ino, &orphan);
    if (rc == 0 && orphan)
        kvfs_maybe_purge_locked(fs, ino);
    pthread_mutex_unlock(&fs->wmu);
    if (rc < 0)
        srv_layout_err(out, rc);
    inval_run(fs, &l);
    return rc;
}

static int srv_ls_one(void *arg, const void *key, size_t klen, const kv_entry_info *info)
{
    ctl_buf *out = arg;
    ctl_buf_put_bytes(out, key, klen);
    ctl_buf_put_u64(out, info->seq);
    ctl_buf_put_u64(out, info->expire_at_ms);
    ctl_buf_put_u64(out, info->value_len);
    if (out->len > CTL_MAX_RESP)
        return -EFBIG;
    return out->err;
}

static int srv_ls(kvfs *fs, ctl_buf *in, ctl_buf *out)
{
    size_t pl;
    const void *p = ctl_buf_get_bytes(in, &pl);
    if (in->err)
        return in->err;
    int rc = layout_list_prefix(fs->lfs, p, pl, srv_ls_one, out);
    if (rc == -EFBIG)
        return srv_err(out, rc, "listing too large for one response; use a longer prefix");
    return rc < 0 ? srv_layout_err(out, rc) : 0;
}

static int srv_history(kvfs *fs, ctl_buf *in, ctl_buf *out)
{
    size_t kl, n;
    kv_version *v;
    const void *k = ctl_buf_get_bytes(in, &kl);
    if (in->err)
        return in->err;
    int rc = layout_history(fs->lfs, k, kl, &v, &n);
    if (rc < 0)
        return srv_layout_err(out, rc);
    for (size_t i = 0; i < n; i++) {
        ctl_buf_put_u64(out, v[i].seq);
        ctl_buf_put_u64(out, v[i].time_ms);
        ctl_buf_put_u64(out, v[i].size);
        ctl_buf_put_u64(out, v[i].expire_at_ms);
        ctl_buf_put_u8(out, (uint8_t)(v[i].deleted != 0));
    }
    free(v);
    return out->err;
}

static void put_snapinfo(ctl_buf *out, const kv_snapinfo *s)
{
    ctl_buf_put_bytes(out, s->name, strlen(s->name));
    ctl_buf_put_u64(out, s->seq);
    ctl_buf_put_u64(out, s->time_ms);
}

/* Copies a bytes argument into a NUL-terminated string of at most max bytes. */
static int arg_string(ctl_buf *in, char *dst, size_t max)
{
    size_t n;
    const void *p = ctl_buf_get_bytes(in, &n);
    if (in->err)
        return in->err;
    if (n > max || memchr(p, '\0', n))
        return -EINVAL;
    memcpy(dst, p, n);
    dst[n] = '\0';
    return 0;
}

static int srv_snap(kvfs *fs, uint8_t cmd, ctl_buf *in, ctl_buf *out)
{
    char name[KV_SNAPSHOT_NAME_MAX + 2];
    kv_snapinfo info, *list;
    size_t n;
    int rc;
    if (cmd == CTL_SNAP_LIST) {
        if ((rc = kv_named_snapshot_list(fs->db, &list, &n)) < 0)
            return srv_kv_err(out, rc);
        for (size_t i = 0; i < n; i++)
            put_snapinfo(out, &list[i]);
        free(list);
        return out->err;
    }
    if ((rc = arg_string(in, name, KV_SNAPSHOT_NAME_MAX + 1)) < 0)
        return srv_err(out, rc, "bad snapshot name");
    if (cmd == CTL_SNAP_DELETE)
        rc = kv_named_snapshot_delete(fs->db, name);
    else if ((rc = kv_named_snapshot_create(fs->db, name, &info)) == 0)
        put_snapinfo(out, &info);
    if (rc == 0) { /* the kernel may hold .snapshots/NAME (or its absence) and the listing */
        fuse_lowlevel_notify_inval_entry(fs->se, KVFS_SNAPDIR_ID, name, strlen(name));
        fuse_lowlevel_notify_inval_inode(fs->se, KVFS_SNAPDIR_ID, -1, 0);
    }
    return rc < 0 ? srv_kv_err(out, rc) : out->err;
}

static void srv_report(void *arg, const char *line)
{
    ctl_buf *out = arg;
    ctl_buf_put(out, line, strlen(line));
    ctl_buf_put_u8(out, '\n');
}

static int srv_check(kvfs *fs, ctl_buf *out)
{
    int n = kv_verify(fs->db, srv_report, out);
    if (n < 0)
        return srv_kv_err(out, n);
    int m = layout_check(fs->lfs, srv_report, out);
    if (m == -EUCLEAN) {
        /* The walk stopped at damage: that is a finding, not a failure to check. */
        srv_report(out, layout_last_error());
        m = 1;
    } else if (m < 0) {
        return srv_layout_err(out, m);
    }
    return out->err ? out->err : n + m;
}

static int srv_admin(kvfs *fs, uint8_t cmd, ctl_buf *in, ctl_buf *out)
{
    kv_stats st;
    char dir[4097];
    int rc;
    switch (cmd) {
    case CTL_PING:
        ctl_buf_put_u32(out, CTL_PROTO_VERSION);
        ctl_buf_put(out, "kvfs " KV_VERSION_STRING, strlen("kvfs " KV_VERSION_STRING));
        return out->err;
    case CTL_STATS:
        if ((rc = kv_get_stats(fs->db, &st)) < 0)
            return srv_kv_err(out, rc);
        return ctl_stats_encode(out, &st);
    case CTL_COMPACT:
        rc = kv_compact_range(fs->db, NULL, 0, NULL, 0); /* flushes the memtable first */
        return rc < 0 ? srv_kv_err(out, rc) : 0;
    case CTL_CHECK:
        return srv_check(fs, out);
    case CTL_CHECKPOINT:
        if ((rc = arg_string(in, dir, sizeof(dir) - 1)) < 0 || dir[0] != '/')
            return srv_err(out, -EINVAL, "checkpoint needs an absolute directory path");
        rc = kv_checkpoint(fs->db, dir);
        return rc < 0 ? srv_kv_err(out, rc) : 0;
    default:
        return srv_err(out, -EOPNOTSUPP, "unknown command");
    }
}

static int srv_dispatch(kvfs *fs, ctl_buf *in, ctl_buf *out)
{
    uint8_t cmd = ctl_buf_get_u8(in);
    int rc;
    switch (cmd) {
    case CTL_GET:
        rc = srv_get(fs, in, out);
        break;
    case CTL_PUT:
        rc = srv_put(fs, in, out);
        break;
    case CTL_DEL:
        rc = srv_del(fs, in, out);
        break;
    case CTL_LS:
        rc = srv_ls(fs, in, out);
        break;
    case CTL_HISTORY:
        rc = srv_history(fs, in, out);
        break;
    case CTL_SNAP_CREATE:
    case CTL_SNAP_LIST:
    case CTL_SNAP_DELETE:
        rc = srv_snap(fs, cmd, in, out);
        break;
    default:
        rc = srv_admin(fs, cmd, in, out);
        break;
    }
    if (rc == -EPROTO && out->len == 0)
        srv_err(out, rc, "malformed request");
    if (out->err) /* could not build the payload */
        rc = srv_err(out, out->err, strerror(-out->err));
    return rc;
}

/* ---------------------------------------------------------------- connections ---- */

static int peer_allowed(int fd)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
        return 0;
    return cred.uid == 0 || cred.uid == geteuid();
}

/* Serves one request; returns <0 when the connection should close. */
static int serve_one(kvfs *fs, int fd)
{
    uint8_t hdr[8];
    ctl_buf in = {0}, out = {0};
    int rc = ctl_io_read(fd, hdr, 4);
    if (rc < 0)
        return rc;
    uint32_t len =
        (uint32_t)hdr[0] | (uint32_t)hdr[1] << 8 | (uint32_t)hdr[2] << 16 | (uint32_t)hdr[3] << 24;
    if (len == 0 || len > CTL_MAX_REQ)
        return -EPROTO;
    if (!(in.data = malloc(len)))
        return -ENOMEM;
    in.len = in.cap = len;
    rc = ctl_io_read(fd, in.data, len);
    if (rc == 0) {
        int status = srv_dispatch(fs, &in, &out);
        for (int i = 0; i < 4; i++) {
            hdr[i] = (uint8_t)((uint32_t)status >> (8 * i));
            hdr[4 + i] = (uint8_t)((uint32_t)out.len >> (8 * i));
        }
        rc = ctl_io_write(fd, hdr, 8);
        if (rc == 0)
            rc = ctl_io_write(fd, out.data ? (void *)out.data : (void *)"", out.len);
    }
    ctl_buf_free(&in);
    ctl_buf_free(&out);
    return rc;
}

static void serve_conn(kvfs *fs, int fd)
{
    struct timeval tv = {60, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (!peer_allowed(fd))
        return;
    for (;;) {
        struct pollfd p[2] = {{fd, POLLIN, 0}, {fs->ctl_wake[0], POLLIN, 0}};
        if (poll(p, 2, -1) < 0 && errno != EINTR)
            return;
        if (p[1].revents)
            return;
        if (p[0].revents && serve_one(fs, fd) < 0)
            return;
    }
}

static void *ctl_main(void *arg)
{
    kvfs *fs = arg;
    for (;;) {
        struct pollfd p[2] = {{fs->ctl_fd, POLLIN, 0}, {fs->ctl_wake[0], POLLIN, 0}};
        if (poll(p, 2, -1) < 0 && errno != EINTR)
            break;
        if (p[1].revents)
            break;
        if (!(p[0].revents & POLLIN))
            continue;
        int c = accept4(fs->ctl_fd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0)
            continue;
        serve_conn(fs, c);
        close(c);
    }
    return NULL;
}

static int ctl_listen(kvfs *fs)
{
    struct sockaddr_un addr;
    int dirfd;
    int rc = ctl_socket_address(fs->data_dir, &addr, &dirfd);
    if (rc < 0)
        return rc;
    unlink(addr.sun_path); /* a stale socket: we hold the store's lock, nobody serves it */
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    mode_t old = umask(077);
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 ||
        chmod(addr.sun_path, 0600) < 0 || listen(fd, 16) < 0) {
        rc = -errno;
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
    umask(old);
    if (dirfd >= 0)
        close(dirfd);
    fs->ctl_fd = fd;
    return rc;
}

int ctl_server_start(kvfs *fs)
{
    int rc = ctl_listen(fs);
    if (rc < 0) {
        fprintf(stderr, "kvfs: control socket %s/%s: %s\n", fs->data_dir, CTL_SOCKET_NAME,
                strerror(-rc));
        return rc;
    }
    if (pipe2(fs->ctl_wake, O_CLOEXEC) < 0 ||
        (rc = -pthread_create(&fs->ctl_thread, NULL, ctl_main, fs)) < 0) {
        rc = rc < 0 ? rc : -errno;
        fprintf(stderr, "kvfs: control socket thread: %s\n", strerror(-rc));
        close(fs->ctl_fd);
        fs->ctl_fd = -1;
        return rc;
    }
    fs->ctl_running = 1;
    return 0;
}

void ctl_server_stop(kvfs *fs)
{
    struct sockaddr_un addr;
    int dirfd;
    if (!fs->ctl_running)
        return;
    if (write(fs->ctl_wake[1], "x", 1) < 0)
        fprintf(stderr, "kvfs: waking the control thread: %s\n", strerror(errno));
    pthread_join(fs->ctl_thread, NULL);
    fs->ctl_running = 0;
    close(fs->ctl_fd);
    close(fs->ctl_wake[0]);
    close(fs->ctl_wake[1]);
    if (ctl_socket_address(fs->data_dir, &addr, &dirfd) == 0) {
        unlink(addr.sun_path);
        if (dirfd >= 0)
            close(dirfd);
    }
}
