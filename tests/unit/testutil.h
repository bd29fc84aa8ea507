/*
 * testutil.h -- the tiny harness every engine unit test uses: CHECK macros that print the
 * failing expression with file and line and exit non-zero, a fresh temporary directory per
 * test, and a seeded PRNG whose seed is printed on failure so a run can be repeated
 * (KVFS_SEED=N in the environment).
 */
#ifndef KVFS_TESTUTIL_H
#define KVFS_TESTUTIL_H

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t tu_seed;
static int tu_checks;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        tu_checks++;                                                                               \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s (seed %" PRIu64 ")\n", __FILE__, __LINE__,    \
                    #cond, tu_seed);                                                               \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

/* Checks that an int-returning call gives want; prints both and kv_last_error() if not. */
#define CHECK_RC(call, want)                                                                       \
    do {                                                                                           \
        long long tu_rc = (long long)(call);                                                       \
        tu_checks++;                                                                               \
        if (tu_rc != (long long)(want)) {                                                          \
            fprintf(stderr, "%s:%d: %s returned %lld, want %lld (%s) (seed %" PRIu64 ")\n",        \
                    __FILE__, __LINE__, #call, tu_rc, (long long)(want), kv_last_error(),          \
                    tu_seed);                                                                      \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)
#define CHECK_OK(call) CHECK_RC(call, 0)

/* Makes a new empty directory under $TMPDIR (or /tmp) and returns its path (static). */
static inline const char *tu_tmpdir(const char *tag)
{
    static char path[512];
    const char *base = getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/kvfs-%s-XXXXXX", base ? base : "/tmp", tag);
    if (!mkdtemp(path)) {
        perror("mkdtemp");
        exit(1);
    }
    return path;
}

static inline void tu_rmtree(const char *path)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    if (system(cmd) != 0)
        fprintf(stderr, "warning: could not remove %s\n", path);
}

/* xorshift64*: deterministic per seed */
/* Files in dir whose names end in suffix (".sst", ".log"). */
static inline size_t tu_count_files(const char *dir, const char *suffix)
{
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    size_t n = 0;
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name), sl = strlen(suffix);
        n += l > sl && strcmp(de->d_name + l - sl, suffix) == 0;
    }
    if (d)
        closedir(d);
    return n;
}

static uint64_t tu_rng_state;
static inline void tu_seed_init(void)
{
    const char *s = getenv("KVFS_SEED");
    tu_seed = s ? strtoull(s, NULL, 10) : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 16);
    if (tu_seed == 0)
        tu_seed = 1;
    tu_rng_state = tu_seed;
}
static inline uint64_t tu_rand(void)
{
    tu_rng_state ^= tu_rng_state >> 12;
    tu_rng_state ^= tu_rng_state << 25;
    tu_rng_state ^= tu_rng_state >> 27;
    return tu_rng_state * 2685821657736338717ULL;
}
static inline uint64_t tu_rand_below(uint64_t n)
{
    return n ? tu_rand() % n : 0;
}

/* The plain closing line CI reads. */
#define TU_DONE(name)                                                                              \
    do {                                                                                           \
        printf("%s: %d checks passed, 0 failed\n", name, tu_checks);                               \
        return 0;                                                                                  \
    } while (0)

#endif
