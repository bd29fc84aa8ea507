/*
 * test_kvio.c -- the file-system layer: full reads and writes, error messages naming the path,
 * the fault hook, atomic replace, copy, directory listing, the lock file, mkdir -p, paths, and
 * short writes / EINTR on a pipe interrupted by signals.
 */
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "kv.h"
#include "kvio.h"
#include "testutil.h"
#include "util.h"

static char dir[512];

/* dir/name in one of 4 rotating buffers, so a call may take several at() arguments. */
static const char *at(const char *name)
{
    static char p[4][PATH_MAX];
    static int next;
    char *out = p[next++ % 4];
    CHECK_OK(kvio_path(out, PATH_MAX, "%s/%s", dir, name));
    return out;
}

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static void test_write_read(void)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s", at("a"));
    int fd = kvio_open(path, O_RDWR | O_CREAT | O_EXCL, 0644);
    CHECK(fd >= 0);
    CHECK(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    size_t n = 300000;
    uint8_t *buf = malloc(n), *back = malloc(n + 10);
    CHECK(buf && back);
    for (size_t i = 0; i < n; i++)
        buf[i] = (uint8_t)tu_rand();
    CHECK_OK(kvio_write_full(fd, path, buf, n));
    CHECK_OK(kvio_pwrite_full(fd, path, "XYZ", 3, 10));
    memcpy(buf + 10, "XYZ", 3);
    CHECK_OK(kvio_fsync(fd, path));
    uint64_t size;
    CHECK_OK(kvio_file_size(fd, path, &size));
    CHECK(size == n);
    size_t got;
    CHECK_OK(kvio_pread_full(fd, path, back, n + 10, 0, &got));
    CHECK(got == n && memcmp(back, buf, n) == 0);
    CHECK_OK(kvio_pread_full(fd, path, back, 100, n - 40, &got));
    CHECK(got == 40 && memcmp(back, buf + n - 40, 40) == 0);
    CHECK_OK(kvio_pread_full(fd, path, back, 100, n + 5, &got));
    CHECK(got == 0);
    CHECK_OK(kvio_truncate(fd, path, 1000));
    CHECK_OK(kvio_file_size(fd, path, &size));
    CHECK(size == 1000);
    CHECK_OK(kvio_close(fd));

    uint8_t *data;
    size_t len;
    CHECK_OK(kvio_read_file(path, &data, &len));
    CHECK(len == 1000 && memcmp(data, buf, 1000) == 0 && data[1000] == 0);
    free(data);
    free(buf);
    free(back);
}

static void test_errors_name_path(void)
{
    const char *missing = at("no/such/file");
    CHECK_RC(kvio_open(missing, O_RDONLY, 0), -ENOENT);
    char want[PATH_MAX + 64];
    snprintf(want, sizeof want, "open %s: %s", missing, strerror(ENOENT));
    CHECK(strcmp(kv_last_error(), want) == 0);
    uint8_t *data = (uint8_t *)1;
    size_t len = 7;
    CHECK_RC(kvio_read_file(missing, &data, &len), -ENOENT);
    CHECK(data == NULL && len == 0);
    CHECK_RC(kvio_unlink(missing), -ENOENT);
    CHECK(strstr(kv_last_error(), missing) != NULL);
    CHECK_RC(kvio_rename(missing, at("x")), -ENOENT);
    CHECK(strstr(kv_last_error(), "rename") != NULL);
    CHECK_RC(kvio_fsync_dir(missing), -ENOENT);
    /* write to a read-only descriptor */
    int fd = kvio_open(at("a"), O_RDONLY, 0);
    CHECK(fd >= 0);
    CHECK_RC(kvio_write_full(fd, "/the/path", "x", 1), -EBADF);
    CHECK(strstr(kv_last_error(), "write /the/path: ") == kv_last_error());
    CHECK_OK(kvio_close(fd));
}

struct hook_state {
    kvio_op op;
    int err;
    int calls;
    char last_path[PATH_MAX];
};

static int hook(kvio_op op, const char *path, void *arg)
{
    struct hook_state *h = arg;
    h->calls++;
    snprintf(h->last_path, sizeof h->last_path, "%s", path ? path : "");
    return op == h->op ? h->err : 0;
}

static void test_fault_hook(void)
{
    struct hook_state h = {KVIO_WRITE, -ENOSPC, 0, ""};
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s", at("f"));
    int fd = kvio_open(path, O_RDWR | O_CREAT, 0644);
    CHECK(fd >= 0);
    kvio_set_fault_hook(hook, &h);
    CHECK_RC(kvio_write_full(fd, path, "abc", 3), -ENOSPC);
    char want[PATH_MAX + 64];
    snprintf(want, sizeof want, "write %s: No space left on device", path);
    CHECK(strcmp(kv_last_error(), want) == 0);
    CHECK(strcmp(h.last_path, path) == 0);
    CHECK_RC(kvio_pwrite_full(fd, path, "abc", 3, 0), -ENOSPC);
    uint64_t size;
    CHECK_OK(kvio_file_size(fd, path, &size));
    CHECK(size == 0); /* the failed calls wrote nothing */

    kvio_op ops[] = {KVIO_OPEN,   KVIO_READ, KVIO_SYNC,    KVIO_RENAME,
                     KVIO_UNLINK, KVIO_LINK, KVIO_TRUNCATE};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        h.op = ops[i];
        h.err = -EIO;
        size_t got;
        uint8_t b[4];
        int rc = 0;
        switch (ops[i]) {
        case KVIO_OPEN:
            rc = kvio_open(path, O_RDONLY, 0);
            break;
        case KVIO_READ:
            rc = kvio_pread_full(fd, path, b, 4, 0, &got);
            break;
        case KVIO_SYNC:
            rc = kvio_fsync(fd, path);
            break;
        case KVIO_RENAME:
            rc = kvio_rename(path, at("g"));
            break;
        case KVIO_UNLINK:
            rc = kvio_unlink(path);
            break;
        case KVIO_TRUNCATE:
            rc = kvio_truncate(fd, path, 0);
            break;
        default:
            rc = kvio_link(path, at("g"));
            break;
        }
        CHECK_RC(rc, -EIO);
        CHECK(strstr(kv_last_error(), path) != NULL);
        CHECK(strstr(kv_last_error(), "Input/output error") != NULL);
    }
    CHECK(exists(path) && !exists(at("g")));
    h.op = KVIO_SYNC;
    CHECK_RC(kvio_fsync_dir(dir), -EIO);

    /* replace_atomic failing at rename leaves neither the tmp file nor a new target */
    CHECK(!exists(at("target")));
    h.op = KVIO_RENAME;
    CHECK_RC(kvio_replace_atomic(dir, at("target"), at("target.tmp"), "new", 3), -EIO);
    CHECK(!exists(at("target.tmp")) && !exists(at("target")));
    kvio_set_fault_hook(NULL, NULL);
    int before = h.calls;
    CHECK_OK(kvio_write_full(fd, path, "abc", 3));
    CHECK(h.calls == before);
    CHECK_OK(kvio_close(fd));
}

static void test_replace_copy(void)
{
    const char *target = at("CURRENT");
    char t[PATH_MAX];
    snprintf(t, sizeof t, "%s", target);
    CHECK_OK(kvio_replace_atomic(dir, t, at("CURRENT.tmp"), "MANIFEST-1\n", 11));
    CHECK_OK(kvio_replace_atomic(dir, t, at("CURRENT.tmp"), "MANIFEST-22\n", 12));
    CHECK(!exists(at("CURRENT.tmp")));
    uint8_t *data;
    size_t len;
    CHECK_OK(kvio_read_file(t, &data, &len));
    CHECK(len == 12 && memcmp(data, "MANIFEST-22\n", 12) == 0);
    free(data);

    /* a file larger than the copy chunk, with a partial last chunk */
    size_t n = (3u << 20) + 12345;
    uint8_t *buf = malloc(n);
    CHECK(buf);
    for (size_t i = 0; i < n; i++)
        buf[i] = (uint8_t)(i * 7 + (i >> 13));
    char src[PATH_MAX];
    snprintf(src, sizeof src, "%s", at("big"));
    int fd = kvio_open(src, O_WRONLY | O_CREAT, 0644);
    CHECK(fd >= 0);
    CHECK_OK(kvio_write_full(fd, src, buf, n));
    CHECK_OK(kvio_close(fd));
    CHECK_OK(kvio_copy_file(src, at("big.copy")));
    CHECK(!exists(at("big.copy.tmp")));
    CHECK_OK(kvio_read_file(at("big.copy"), &data, &len));
    CHECK(len == n && memcmp(data, buf, n) == 0);
    free(data);
    free(buf);
    CHECK_RC(kvio_copy_file(at("nonexistent"), at("x.copy")), -ENOENT);
    CHECK(!exists(at("x.copy")) && !exists(at("x.copy.tmp")));
    CHECK_OK(kvio_link(src, at("big.link")));
    CHECK_OK(kvio_rename(at("big.link"), at("big.link2")));
    CHECK_OK(kvio_unlink(at("big.link2")));
    CHECK_OK(kvio_fsync_dir(dir));
}

static void test_list_dir(void)
{
    char sub[PATH_MAX];
    snprintf(sub, sizeof sub, "%s", at("list"));
    CHECK_OK(kvio_mkdir_p(sub, 0755));
    char **names;
    size_t n;
    CHECK_OK(kvio_list_dir(sub, &names, &n));
    CHECK(n == 0);
    kvio_free_list(names, n);
    int seen[40] = {0};
    for (int i = 0; i < 40; i++) {
        char p[PATH_MAX];
        CHECK_OK(kvio_path(p, sizeof p, "%s/%06d.log", sub, i));
        int fd = kvio_open(p, O_WRONLY | O_CREAT, 0644);
        CHECK(fd >= 0);
        CHECK_OK(kvio_close(fd));
    }
    CHECK_OK(kvio_list_dir(sub, &names, &n));
    CHECK(n == 40);
    for (size_t i = 0; i < n; i++) {
        int num;
        CHECK(sscanf(names[i], "%06d.log", &num) == 1 && num >= 0 && num < 40);
        CHECK(seen[num] == 0);
        seen[num] = 1;
    }
    kvio_free_list(names, n);
    CHECK_RC(kvio_list_dir(at("nope"), &names, &n), -ENOENT);
    CHECK(strstr(kv_last_error(), "nope") != NULL);
}

static void test_lock(void)
{
    char lock[PATH_MAX];
    snprintf(lock, sizeof lock, "%s", at("LOCK"));
    int fd1, fd2;
    CHECK_OK(kvio_lock_file(lock, &fd1));
    /* flock locks belong to the open file description: a second open conflicts */
    CHECK_RC(kvio_lock_file(lock, &fd2), -EBUSY);
    CHECK(fd2 == -1);
    char want[PATH_MAX + 64];
    snprintf(want, sizeof want, "%s: data directory is in use by another process", lock);
    CHECK(strcmp(kv_last_error(), want) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        int fd;
        _exit(kvio_lock_file(lock, &fd) == -EBUSY ? 0 : 1);
    }
    int status;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK_OK(kvio_close(fd1));
    CHECK_OK(kvio_lock_file(lock, &fd2));
    CHECK_OK(kvio_close(fd2));
}

static void test_mkdir_path(void)
{
    char deep[PATH_MAX];
    snprintf(deep, sizeof deep, "%s/m1//m2/m3/", dir);
    CHECK_OK(kvio_mkdir_p(deep, 0755));
    CHECK_OK(kvio_mkdir_p(deep, 0755)); /* existing is fine */
    struct stat st;
    CHECK(stat(at("m1/m2/m3"), &st) == 0 && S_ISDIR(st.st_mode));
    CHECK_RC(kvio_mkdir_p(at("a/sub"), 0755), -ENOTDIR); /* "a" is a file */
    CHECK(strstr(kv_last_error(), "/a") != NULL);

    char small[16];
    CHECK_OK(kvio_path(small, sizeof small, "%s/%06u.log", "d", 7u));
    CHECK(strcmp(small, "d/000007.log") == 0);
    CHECK_RC(kvio_path(small, sizeof small, "%s/%06u.log", "dirxy", 7u), -ENAMETOOLONG);
    char big[PATH_MAX];
    char longname[PATH_MAX + 10];
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    CHECK_RC(kvio_path(big, sizeof big, "%s", longname), -ENAMETOOLONG);
}

/* ---- short writes and EINTR: a pipe drained slowly while signals hit the writer ---- */

static void on_signal(int sig)
{
    KV_UNUSED(sig);
}

struct pipe_state {
    int rfd;
    size_t n;
    const uint8_t *want;
    int ok;
};

static void *pipe_reader(void *arg)
{
    struct pipe_state *ps = arg;
    uint8_t chunk[4096];
    size_t off = 0;
    unsigned x = 12345; /* a private generator: tu_rand is not thread-safe */
    ps->ok = 1;
    while (off < ps->n) {
        x = x * 1103515245u + 12345u;
        ssize_t r = read(ps->rfd, chunk, 1 + (size_t)((x >> 8) % sizeof chunk));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0 || memcmp(chunk, ps->want + off, (size_t)r) != 0) {
            ps->ok = 0;
            break;
        }
        off += (size_t)r;
    }
    return NULL;
}

struct killer_state {
    pthread_t target;
    atomic_int stop;
};

static void *killer(void *arg)
{
    struct killer_state *ks = arg;
    while (!ks->stop) {
        pthread_kill(ks->target, SIGUSR1);
        usleep(200);
    }
    return NULL;
}

static void test_short_writes_eintr(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART: write(2) returns short or EINTR */
    CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
    int p[2];
    CHECK(pipe(p) == 0);
    size_t n = 8u << 20;
    uint8_t *buf = malloc(n);
    CHECK(buf);
    for (size_t i = 0; i < n; i++)
        buf[i] = (uint8_t)tu_rand();
    struct pipe_state ps = {p[0], n, buf, 0};
    struct killer_state ks = {pthread_self(), 0};
    pthread_t rt, kt;
    CHECK(pthread_create(&rt, NULL, pipe_reader, &ps) == 0);
    CHECK(pthread_create(&kt, NULL, killer, &ks) == 0);
    CHECK_OK(kvio_write_full(p[1], "pipe", buf, n));
    ks.stop = 1;
    pthread_join(kt, NULL);
    pthread_join(rt, NULL);
    CHECK(ps.ok);
    close(p[0]);
    close(p[1]);
    free(buf);
    signal(SIGUSR1, SIG_DFL);
}

int main(void)
{
    tu_seed_init();
    snprintf(dir, sizeof dir, "%s", tu_tmpdir("kvio"));
    test_write_read();
    test_errors_name_path();
    test_fault_hook();
    test_replace_copy();
    test_list_dir();
    test_lock();
    test_mkdir_path();
    test_short_writes_eintr();
    tu_rmtree(dir);
    TU_DONE("test_kvio");
}
