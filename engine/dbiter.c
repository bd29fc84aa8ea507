/*
 * dbiter.c -- user iterators: turn the merged stream of internal entries (memtables and every
 * table, all versions of every key) into the user's view at one sequence: for each user key the
 * newest version at or below the read sequence, skipped when it is a deletion, lies under a
 * newer range deletion (drops.h) or is expired at the read time, clipped to [lower, upper).
 *
 * Moving forward, the iterator stands on the entry it shows and key()/value() point into the
 * internal iterator. Moving backward (LevelDB's DBIter scheme) it walks past all versions of a
 * key, so it keeps the key and value it shows in its own buffers and stands just before them.
 * The read view (memtables and version) is pinned for the iterator's life, so compaction never
 * changes what it sees.
 */
#include <errno.h>
#include <stdlib.h>

#include "db_impl.h"
#include "dbformat.h"

enum dbiter_dir { DBITER_FORWARD, DBITER_REVERSE };

struct kv_iter {
    kv_db *db;
    db_readview rv;
    iter *in;
    kv_buf lower, upper; /* upper.len == 0 && !has_upper: unbounded */
    int has_lower, has_upper;
    int valid;
    int status;
    enum dbiter_dir dir;
    kv_buf saved_key, saved_value; /* reverse: what is shown; forward: the key to skip */
    uint64_t cur_seq, cur_expire;
    kv_slice cur_key, cur_value; /* forward: into the internal iterator */
    kv_buf seek_key;
};

/* The smallest key greater than every key with prefix p, or 0 if there is none. */
static int prefix_successor(kv_slice p, kv_buf *out)
{
    size_t n = p.len;
    while (n > 0 && p.data[n - 1] == 0xff)
        n--;
    if (n == 0)
        return 0;
    if (kv_buf_set(out, p.data, n) != 0)
        return -ENOMEM;
    out->data[n - 1]++;
    return 1;
}

static int dbiter_set_bounds(kv_iter *it, const kv_iter_opts *o)
{
    if (o->lower && kv_buf_set(&it->lower, o->lower, o->lower_len) != 0)
        return -ENOMEM;
    it->has_lower = o->lower != NULL;
    if (o->upper && kv_buf_set(&it->upper, o->upper, o->upper_len) != 0)
        return -ENOMEM;
    it->has_upper = o->upper != NULL;
    if (o->prefix && o->prefix_len > 0) {
        kv_slice p = kv_slice_of(o->prefix, o->prefix_len);
        if (!it->has_lower || kv_slice_cmp(p, kv_buf_slice(&it->lower)) > 0) {
            if (kv_buf_set(&it->lower, p.data, p.len) != 0)
                return -ENOMEM;
            it->has_lower = 1;
        }
        kv_buf succ = {0};
        int rc = prefix_successor(p, &succ);
        if (rc < 0)
            return rc;
        if (rc == 1 &&
            (!it->has_upper || kv_slice_cmp(kv_buf_slice(&succ), kv_buf_slice(&it->upper)) < 0)) {
            kv_buf_free(&it->upper);
            it->upper = succ;
            it->has_upper = 1;
        } else {
            kv_buf_free(&succ);
        }
    }
    return 0;
}

static int dbiter_below_upper(const kv_iter *it, kv_slice ukey)
{
    return !it->has_upper || kv_slice_cmp(ukey, kv_buf_slice(&it->upper)) < 0;
}

static int dbiter_above_lower(const kv_iter *it, kv_slice ukey)
{
    return !it->has_lower || kv_slice_cmp(ukey, kv_buf_slice(&it->lower)) >= 0;
}

static void dbiter_fail(kv_iter *it, int rc)
{
    it->valid = 0;
    if (!it->status)
        it->status = rc;
}

/* Is the entry (pk, stored value) a live value at the read time: not a deletion, not under
 * a newer range deletion, not expired? Fills user_val/expire. */
static int dbiter_live(kv_iter *it, const kv_parsed_key *pk, kv_slice stored, kv_slice *user_val,
                       uint64_t *expire)
{
    if (pk->type == KV_TYPE_DELETE)
        return 0;
    if (it->rv.drops && drops_next_above(it->rv.drops, pk->user_key, pk->seq) <= it->rv.seq)
        return 0;
    if (kv_value_decode(pk->type, stored, expire, user_val) != 0) {
        dbiter_fail(it, kv_error(-EUCLEAN, "%s: malformed TTL value", it->db->dir));
        return 0;
    }
    return !(*expire && *expire <= it->rv.time_ms);
}

/* Parses the internal iterator's current key: 1 if its version is visible at the read
 * sequence, 0 if newer, -1 (iterator failed) if the key is malformed. */
static int dbiter_parse(kv_iter *it, kv_parsed_key *pk)
{
    if (ikey_parse(iter_key(it->in), pk) != 0) {
        dbiter_fail(it, kv_error(-EUCLEAN, "%s: malformed internal key", it->db->dir));
        return -1;
    }
    return pk->seq <= it->rv.seq;
}

/* Forward: stand on the first visible live entry at or after the internal position; when
 * skipping, entries of saved_key are passed over. */
static void dbiter_find_next(kv_iter *it, int skipping)
{
    it->valid = 0;
    for (; iter_valid(it->in); iter_next(it->in)) {
        kv_parsed_key pk;
        int visible = dbiter_parse(it, &pk);
        if (visible < 0)
            return;
        if (!visible)
            continue;
        if (skipping && kv_slice_cmp(pk.user_key, kv_buf_slice(&it->saved_key)) <= 0)
            continue;
        if (!dbiter_below_upper(it, pk.user_key))
            return;
        kv_slice val;
        uint64_t expire;
        int live = dbiter_live(it, &pk, iter_value(it->in), &val, &expire);
        if (it->status)
            return;
        if (!live) {
            /* Hide every older version of this key. */
            if (kv_buf_set(&it->saved_key, pk.user_key.data, pk.user_key.len) != 0) {
                dbiter_fail(it, -ENOMEM);
                return;
            }
            skipping = 1;
            continue;
        }
        it->cur_key = pk.user_key;
        it->cur_value = val;
        it->cur_seq = pk.seq;
        it->cur_expire = expire;
        it->valid = 1;
        return;
    }
    if (iter_status(it->in))
        dbiter_fail(it, iter_status(it->in));
}

/* Reverse: from the internal position, walk backward to the previous user key that has a live
 * visible version; save it. Ends with the internal iterator just before that key's entries. */
static void dbiter_find_prev(kv_iter *it)
{
    int have = 0;
    it->valid = 0;
    for (; iter_valid(it->in); iter_prev(it->in)) {
        kv_parsed_key pk;
        int visible = dbiter_parse(it, &pk);
        if (visible < 0)
            return;
        if (!visible)
            continue;
        if (have && kv_slice_cmp(pk.user_key, kv_buf_slice(&it->saved_key)) < 0)
            break; /* passed to an older key; the saved one is the answer */
        if (!dbiter_above_lower(it, pk.user_key))
            break;
        kv_slice val;
        uint64_t expire;
        int live = dbiter_live(it, &pk, iter_value(it->in), &val, &expire);
        if (it->status)
            return;
        if (live) {
            if (kv_buf_set(&it->saved_key, pk.user_key.data, pk.user_key.len) != 0 ||
                kv_buf_set(&it->saved_value, val.data, val.len) != 0) {
                dbiter_fail(it, -ENOMEM);
                return;
            }
            it->cur_seq = pk.seq;
            it->cur_expire = expire;
            have = 1;
        } else {
            have = 0; /* a newer deletion hides the older versions seen so far */
        }
    }
    if (iter_status(it->in)) {
        dbiter_fail(it, iter_status(it->in));
        return;
    }
    if (have) {
        it->cur_key = kv_buf_slice(&it->saved_key);
        it->cur_value = kv_buf_slice(&it->saved_value);
        it->valid = 1;
    }
}

static void dbiter_seek_internal(kv_iter *it, kv_slice ukey)
{
    it->seek_key.len = 0;
    if (ikey_append(&it->seek_key, ukey, it->rv.seq, KV_TYPE_SEEK) != 0) {
        dbiter_fail(it, -ENOMEM);
        return;
    }
    iter_seek(it->in, kv_buf_slice(&it->seek_key));
}

void kv_iter_seek(kv_iter *it, const void *key, size_t klen)
{
    if (it->status)
        return;
    kv_slice k = kv_slice_of(key, klen);
    if (it->has_lower && kv_slice_cmp(k, kv_buf_slice(&it->lower)) < 0)
        k = kv_buf_slice(&it->lower);
    it->dir = DBITER_FORWARD;
    dbiter_seek_internal(it, k);
    if (!it->status)
        dbiter_find_next(it, 0);
}

void kv_iter_seek_first(kv_iter *it)
{
    if (it->status)
        return;
    if (it->has_lower) {
        kv_buf copy = {0};
        if (kv_buf_set(&copy, it->lower.data, it->lower.len) != 0) {
            dbiter_fail(it, -ENOMEM);
            return;
        }
        kv_iter_seek(it, copy.data, copy.len);
        kv_buf_free(&copy);
        return;
    }
    it->dir = DBITER_FORWARD;
    iter_seek_first(it->in);
    dbiter_find_next(it, 0);
}

void kv_iter_seek_last(kv_iter *it)
{
    if (it->status)
        return;
    it->dir = DBITER_REVERSE;
    if (it->has_upper) {
        it->seek_key.len = 0;
        if (ikey_append(&it->seek_key, kv_buf_slice(&it->upper), KV_MAX_SEQ, KV_TYPE_SEEK) != 0) {
            dbiter_fail(it, -ENOMEM);
            return;
        }
        iter_seek(it->in, kv_buf_slice(&it->seek_key));
        if (iter_valid(it->in))
            iter_prev(it->in);
        else
            iter_seek_last(it->in);
    } else {
        iter_seek_last(it->in);
    }
    dbiter_find_prev(it);
}

void kv_iter_next(kv_iter *it)
{
    if (!it->valid)
        return;
    if (it->dir == DBITER_REVERSE) {
        /* The internal iterator stands before saved_key's entries: step back onto them. */
        it->dir = DBITER_FORWARD;
        if (iter_valid(it->in))
            iter_next(it->in);
        else
            iter_seek_first(it->in);
        dbiter_find_next(it, 1);
        return;
    }
    if (kv_buf_set(&it->saved_key, it->cur_key.data, it->cur_key.len) != 0) {
        dbiter_fail(it, -ENOMEM);
        return;
    }
    iter_next(it->in);
    dbiter_find_next(it, 1);
}

void kv_iter_prev(kv_iter *it)
{
    if (!it->valid)
        return;
    if (it->dir == DBITER_FORWARD) {
        /* Step back before every entry of the current key. */
        if (kv_buf_set(&it->saved_key, it->cur_key.data, it->cur_key.len) != 0) {
            dbiter_fail(it, -ENOMEM);
            return;
        }
        for (;;) {
            iter_prev(it->in);
            if (!iter_valid(it->in))
                break;
            if (kv_slice_cmp(ikey_user_key(iter_key(it->in)), kv_buf_slice(&it->saved_key)) < 0)
                break;
        }
        it->dir = DBITER_REVERSE;
    }
    dbiter_find_prev(it);
}

int kv_iter_valid(const kv_iter *it)
{
    return it->valid;
}

const void *kv_iter_key(const kv_iter *it, size_t *klen)
{
    if (klen)
        *klen = it->valid ? it->cur_key.len : 0;
    return it->valid ? it->cur_key.data : NULL;
}

const void *kv_iter_value(const kv_iter *it, size_t *vlen)
{
    if (vlen)
        *vlen = it->valid ? it->cur_value.len : 0;
    return it->valid ? it->cur_value.data : NULL;
}

void kv_iter_info(const kv_iter *it, kv_entry_info *info)
{
    info->seq = it->valid ? it->cur_seq : 0;
    info->expire_at_ms = it->valid ? it->cur_expire : 0;
    info->value_len = it->valid ? it->cur_value.len : 0;
}

int kv_iter_status(const kv_iter *it)
{
    return it->status;
}

void kv_iter_free(kv_iter *it)
{
    if (!it)
        return;
    iter_destroy(it->in);
    db_readview_release(&it->rv);
    kv_buf_free(&it->lower);
    kv_buf_free(&it->upper);
    kv_buf_free(&it->saved_key);
    kv_buf_free(&it->saved_value);
    kv_buf_free(&it->seek_key);
    free(it);
}

int kv_iter_new(kv_db *db, const kv_iter_opts *opts, kv_iter **out)
{
    static const kv_iter_opts none;
    kv_error_clear();
    *out = NULL;
    if (!opts)
        opts = &none;
    kv_iter *it = calloc(1, sizeof *it);
    if (!it)
        return kv_error(-ENOMEM, "out of memory creating an iterator");
    it->db = db;
    int rc = db_readview_acquire(db, &opts->ro, &it->rv);
    if (rc) {
        free(it);
        return rc;
    }
    iter **children = NULL;
    size_t n = 0, cap = 0;
    rc = dbiter_set_bounds(it, opts);
    if (rc)
        goto fail;
    cap = 4;
    children = malloc(cap * sizeof *children);
    if (!children) {
        rc = -ENOMEM;
        goto fail;
    }
    children[n++] = mem_iter_new(it->rv.mem);
    if (it->rv.imm)
        children[n++] = mem_iter_new(it->rv.imm);
    for (size_t i = 0; i < n; i++)
        if (!children[i]) {
            rc = -ENOMEM;
            goto fail;
        }
    rc = version_add_iters(it->rv.v, &children, &n, &cap);
    if (rc)
        goto fail;
    it->in = iter_merge_new(children, n);
    children = NULL;
    if (!it->in) {
        rc = -ENOMEM;
        goto fail;
    }
    *out = it;
    return 0;
fail:
    if (children) {
        for (size_t i = 0; i < n; i++)
            iter_destroy(children[i]);
        free(children);
    }
    kv_iter_free(it);
    return rc == -ENOMEM ? kv_error(rc, "out of memory creating an iterator") : rc;
}
