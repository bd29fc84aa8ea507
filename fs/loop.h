/*
 * loop.h -- kvfs's FUSE request loop (loop.c): worker threads that hand a serial caller's
 * requests to one warm thread and read side by side for parallel callers. It knows nothing of
 * the filesystem behind the session, so tests drive it with a filesystem of their own.
 */
#ifndef KVFS_LOOP_H
#define KVFS_LOOP_H

#ifndef FUSE_USE_VERSION
#define FUSE_USE_VERSION 312
#endif
#include <fuse_lowlevel.h>

/* Serves se with up to max_threads workers (0: the default, 10) until the session ends
 * (unmount, or a termination signal caught by libfuse's handlers). A worker that has answered
 * a chatty caller polls for its next request up to spin_us microseconds before it sleeps
 * (negative: the default, 50; 0: never; never on one CPU; see loop.c). Call with the termination
 * signals blocked (kvfs_block_signals) in every thread: the calling thread alone takes them,
 * while it waits. Returns 0, or a negative errno: the loop could not start (no thread, no
 * memory) or reading /dev/fuse failed. */
int kvfs_loop_run(struct fuse_session *se, unsigned max_threads, int spin_us);

/* SIGTERM, SIGINT and SIGHUP (those fuse_set_signal_handlers catches): blocked in the calling
 * thread and every thread it starts later, or taken again. */
void kvfs_block_signals(void);
void kvfs_unblock_signals(void);

#endif /* KVFS_LOOP_H */
