/*
 * ctl_client.h -- kvfsctl's side of the control socket (protocol: ctl_proto.h and
 * docs/control-protocol.md). When a kvfs daemon has the store mounted, kvfsctl reaches the
 * store through it, so the mount and the key view always agree.
 *
 * Every call returns 0 (or a count) or a negative errno; after a failure
 * ctl_client_last_error() gives one line (the daemon's message when it sent one). The
 * semantics of each call are those of the layout_* / kv_* call the daemon makes for it.
 * A ctl_conn belongs to one thread at a time.
 */
#ifndef KVFS_CTL_CLIENT_H
#define KVFS_CTL_CLIENT_H

#include "kv.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/un.h>

typedef struct ctl_conn ctl_conn;

/* Fills addr for DATA_DIR/kvfs.sock. Paths longer than sun_path go through an open
 * directory descriptor (/proc/self/fd/N/kvfs.sock); *dirfd is then >= 0 and must stay open
 * until bind/connect is done (close it after). OUT: *addr, *dirfd. */
int ctl_socket_address(const char *data_dir, struct sockaddr_un *addr, int *dirfd);

/* Connects to the daemon serving data_dir. -ENOENT or -ECONNREFUSED: no daemon (the store
 * is not mounted; use it directly). OUT: *out. */
int ctl_client_connect(const char *data_dir, ctl_conn **out);
void ctl_client_close(ctl_conn *c);
const char *ctl_client_last_error(void);

int ctl_client_ping(ctl_conn *c, uint32_t *version);
/* OUT: *val (malloc'd), *vlen. */
int ctl_client_get(ctl_conn *c, const void *key, size_t klen, void **val, size_t *vlen);
int ctl_client_put(ctl_conn *c, const void *key, size_t klen, const void *val, size_t vlen,
                   uint64_t expire_at_ms);
int ctl_client_del(ctl_conn *c, const void *key, size_t klen);
/* fn is called per file key under prefix, in path order; info: seq, expire_at_ms,
 * value_len = size. A non-zero return of fn stops and is returned. */
typedef int (*ctl_client_list_fn)(void *arg, const void *key, size_t klen,
                                  const kv_entry_info *info);
int ctl_client_list(ctl_conn *c, const void *prefix, size_t plen, ctl_client_list_fn fn, void *arg);
/* OUT: *list (malloc'd, newest first), *n. */
int ctl_client_history(ctl_conn *c, const void *key, size_t klen, kv_version **list, size_t *n);
int ctl_client_snap_create(ctl_conn *c, const char *name, kv_snapinfo *info);
int ctl_client_snap_list(ctl_conn *c, kv_snapinfo **list, size_t *n);
int ctl_client_snap_delete(ctl_conn *c, const char *name);
int ctl_client_stats(ctl_conn *c, kv_stats *st);
int ctl_client_compact(ctl_conn *c);
/* report is called per problem line; returns the number of problems (0 = clean). */
int ctl_client_check(ctl_conn *c, kv_report_fn report, void *arg);
int ctl_client_checkpoint(ctl_conn *c, const char *dir);

#endif /* KVFS_CTL_CLIENT_H */
