/*
 * ctl_proto.h -- the kvfsctl control-socket protocol (docs/control-protocol.md), shared by
 * the daemon (ctl_server.c) and the client (ctl_client.c).
 *
 * Socket: AF_UNIX stream at DATA_DIR/kvfs.sock, mode 0600, served by the daemon while the
 * store is mounted. A connection carries any number of request/response pairs, in order.
 *
 *   request  := len:u32 cmd:u8 args        (len counts cmd and args: 1 <= len <= CTL_MAX_REQ)
 *   response := status:i32 len:u32 payload (status 0 or a negative errno; on failure the
 *                                           payload is a one-line message)
 *   bytes    := n:u32 byte[n]
 * All integers little-endian. Command numbers are part of the protocol: do not change them.
 */
#ifndef KVFS_CTL_PROTO_H
#define KVFS_CTL_PROTO_H

#include "kv.h"

#include <stddef.h>
#include <stdint.h>

#define CTL_PROTO_VERSION 1u
#define CTL_SOCKET_NAME "kvfs.sock"
#define CTL_MAX_REQ ((64u << 20) + 65536u) /* a put of LAYOUT_MAX_PUT plus its key */
#define CTL_MAX_RESP (1024u << 20)         /* listings of very large trees */

enum ctl_cmd {
    CTL_PING = 0,        /* -> version:u32, daemon version text */
    CTL_GET = 1,         /* key:bytes -> value */
    CTL_PUT = 2,         /* key:bytes expire_at_ms:u64 value:rest -> empty */
    CTL_DEL = 3,         /* key:bytes -> empty */
    CTL_LS = 4,          /* prefix:bytes -> {key:bytes seq:u64 expire:u64 size:u64}* */
    CTL_HISTORY = 5,     /* key:bytes -> {seq time_ms size expire:u64 deleted:u8}* */
    CTL_SNAP_CREATE = 6, /* name:bytes -> name:bytes seq:u64 time_ms:u64 */
    CTL_SNAP_LIST = 7,   /* -> {name:bytes seq:u64 time_ms:u64}* */
    CTL_SNAP_DELETE = 8, /* name:bytes -> empty */
    CTL_STATS = 9,       /* -> n:u32 u64[n] (kv_stats fields in declaration order) */
    CTL_COMPACT = 10,    /* -> empty */
    CTL_CHECK = 11,      /* -> status = problems found (>= 0); payload: one line per problem */
    CTL_CHECKPOINT = 12, /* dir:bytes -> empty */
};

/* A byte buffer being built (out) or read (in). */
typedef struct ctl_buf {
    uint8_t *data;
    size_t len, cap, pos;
    int err; /* sticky: -ENOMEM while building, -EPROTO while reading */
} ctl_buf;

int ctl_buf_put(ctl_buf *b, const void *p, size_t n);
int ctl_buf_put_u8(ctl_buf *b, uint8_t v);
int ctl_buf_put_u32(ctl_buf *b, uint32_t v);
int ctl_buf_put_u64(ctl_buf *b, uint64_t v);
int ctl_buf_put_bytes(ctl_buf *b, const void *p, size_t n); /* n:u32 then the bytes */
void ctl_buf_free(ctl_buf *b);

/* Readers: on a short buffer they set b->err = -EPROTO and return zeros / NULL. */
uint8_t ctl_buf_get_u8(ctl_buf *b);
uint32_t ctl_buf_get_u32(ctl_buf *b);
uint64_t ctl_buf_get_u64(ctl_buf *b);
const void *ctl_buf_get_bytes(ctl_buf *b, size_t *n);
const void *ctl_buf_rest(ctl_buf *b, size_t *n);

/* kv_stats as n:u32 u64[n], fields in declaration order (sticky_error as a two's-complement
 * u64). A decoder accepts more fields than it knows (newer daemon) and zeroes missing ones. */
int ctl_stats_encode(ctl_buf *b, const kv_stats *st);
int ctl_stats_decode(ctl_buf *b, kv_stats *st);

/* Blocking I/O of whole buffers on a socket (EINTR retried). 0, -EPIPE on EOF, or -errno. */
int ctl_io_read(int fd, void *p, size_t n);
int ctl_io_write(int fd, const void *p, size_t n);

#endif /* KVFS_CTL_PROTO_H */
