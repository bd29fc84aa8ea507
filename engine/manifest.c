/*
 * manifest.c -- version edits, their MANIFEST encoding, and the durable half of the version
 * set: vset_open (CURRENT, replay, fresh MANIFEST), vset_log_and_apply and manifest rotation.
 * Byte-level format and the recovery protocol: docs/format.md.
 *
 * Files:
 *   CURRENT          "MANIFEST-" digits "\n" -- names the live MANIFEST; replaced atomically
 *                    (CURRENT.tmp, fsync, rename, fsync dir).
 *   MANIFEST-NNNNNN  a log.h log whose log number is NNNNNN; every record is one edit. The
 *                    first record of every MANIFEST this code writes holds the whole state.
 *
 * Invariants:
 *  - An edit reaches memory only after its record is fsynced (version.h invariant 1); a
 *    failed write or fsync is sticky (invariant 2).
 *  - CURRENT only ever names a MANIFEST that is complete and fsynced; the old MANIFEST is
 *    deleted only after CURRENT has moved on.
 *  - Replay treats a torn tail as the end (that edit never happened) and any damage before
 *    it, or a record that does not decode or does not fit the state, as -EUCLEAN naming the
 *    file and offset.
 *  - Compact pointers have no field in version_edit: every edit that deletes files (i.e.
 *    every compaction) carries the current pointer of each level, and a full-state record
 *    carries all of them.
 */
#include "version.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dbformat.h"
#include "kvio.h"
#include "version_int.h"

#define MF_ROTATE_BYTES (4u << 20) /* start a new MANIFEST beyond this size */

/*
 * record := field*
 * field  := tag:varint payload
 *
 *   tag  name             payload
 *    1   LOG_NUMBER       number:varint
 *    2   NEXT_FILE        number:varint
 *    3   LAST_SEQ         seq:varint
 *    4   NEW_FILE         level:varint number:varint file_bytes:varint entries:varint
 *                         min_seq:varint max_seq:varint smallest:lenbytes largest:lenbytes
 *    5   DELETED_FILE     level:varint number:varint
 *    6   SNAPSHOT_ADD     name:lenbytes seq:varint time_ms:varint
 *    7   SNAPSHOT_DEL     name:lenbytes
 *    8   TIME_SAMPLE      sec:varint max_seq:varint
 *    9   COMPACT_POINTER  level:varint key:lenbytes
 *   10   HISTORY_MS       ms:varint  (the store's history-retention window)
 *   11   DROP_ADD         seq:varint lo:lenbytes hi:lenbytes  (a range deletion, drops.h)
 *   12   DROP_DEL         seq:varint  (that range deletion retires)
 *
 * lenbytes := len:varint bytes[len]. Keys are internal keys (dbformat.h), except the user
 * keys of DROP_ADD.
 * DO NOT CHANGE THESE ENUM VALUES: they are embedded in every MANIFEST. Never reuse a retired
 * tag; 0 is never valid.
 */
enum mf_tag {
    MF_LOG_NUMBER = 1,
    MF_NEXT_FILE = 2,
    MF_LAST_SEQ = 3,
    MF_NEW_FILE = 4,
    MF_DELETED_FILE = 5,
    MF_SNAPSHOT_ADD = 6,
    MF_SNAPSHOT_DEL = 7,
    MF_TIME_SAMPLE = 8,
    MF_COMPACT_POINTER = 9,
    MF_HISTORY_MS = 10,
    MF_DROP_ADD = 11,
    MF_DROP_DEL = 12,
};

/* ---------------------------------------------------------------------- edits ---- */

void edit_init(version_edit *e)
{
    memset(e, 0, sizeof *e);
}

void edit_free(version_edit *e)
{
    for (size_t i = 0; i < e->nadded; i++)
        file_unref(e->added[i].f);
    free(e->added);
    free(e->deleted);
    for (size_t i = 0; i < e->nsnap_add; i++)
        free(e->snap_add[i].name);
    free(e->snap_add);
    for (size_t i = 0; i < e->nsnap_del; i++)
        free(e->snap_del[i]);
    free(e->snap_del);
    free(e->samples);
    drops_unref(e->drop_add);
    free(e->drop_del);
    memset(e, 0, sizeof *e);
}

void edit_set_log_number(version_edit *e, uint64_t n)
{
    e->has_log_number = 1;
    e->log_number = n;
}

void edit_set_next_file(version_edit *e, uint64_t n)
{
    e->has_next_file = 1;
    e->next_file = n;
}

void edit_set_history_ms(version_edit *e, uint64_t ms)
{
    e->has_history_ms = 1;
    e->history_ms = ms;
}

void edit_set_last_seq(version_edit *e, uint64_t s)
{
    e->has_last_seq = 1;
    e->last_seq = s;
}

/* Makes room for one more element of size sz in *arr (count n, capacity *cap): kv_grow. */
static int grow(void **arr, size_t n, size_t *cap, size_t sz)
{
    void *p = kv_grow(*arr, cap, n + 1, sz, 4);
    if (!p)
        return -ENOMEM;
    *arr = p;
    return 0;
}

static int edit_add_meta(version_edit *e, int level, file_meta *f)
{
    if (!f)
        return -ENOMEM;
    if (grow((void **)&e->added, e->nadded, &e->capadded, sizeof *e->added)) {
        file_unref(f);
        return -ENOMEM;
    }
    e->added[e->nadded].level = level;
    e->added[e->nadded].f = f;
    e->nadded++;
    return 0;
}

int edit_add_file(version_edit *e, int level, uint64_t number, const sst_props *props)
{
    if (level < 0 || level >= KV_MAX_LEVELS)
        return kv_error(-EINVAL, "edit_add_file: bad level %d", level);
    return edit_add_meta(e, level,
                         vset_file_new(number, props->file_bytes, props->entries, props->min_seq,
                                       props->max_seq, kv_buf_slice(&props->smallest),
                                       kv_buf_slice(&props->largest)));
}

int edit_move_file(version_edit *e, int from_level, int to_level, file_meta *f)
{
    if (to_level < 0 || to_level >= KV_MAX_LEVELS)
        return kv_error(-EINVAL, "edit_move_file: bad level %d", to_level);
    int rc = edit_delete_file(e, from_level, f->number);
    if (rc)
        return rc;
    file_ref(f);
    return edit_add_meta(e, to_level, f);
}

int edit_delete_file(version_edit *e, int level, uint64_t number)
{
    if (grow((void **)&e->deleted, e->ndeleted, &e->capdeleted, sizeof *e->deleted))
        return -ENOMEM;
    e->deleted[e->ndeleted].level = level;
    e->deleted[e->ndeleted].number = number;
    e->ndeleted++;
    return 0;
}

static int edit_add_snapshot_n(version_edit *e, const char *name, size_t len, uint64_t seq,
                               uint64_t time_ms)
{
    if (grow((void **)&e->snap_add, e->nsnap_add, &e->capsnap_add, sizeof *e->snap_add))
        return -ENOMEM;
    char *copy = strndup(name, len);
    if (!copy)
        return -ENOMEM;
    e->snap_add[e->nsnap_add++] = (vset_snapshot){copy, seq, time_ms};
    return 0;
}

int edit_add_snapshot(version_edit *e, const char *name, uint64_t seq, uint64_t time_ms)
{
    return edit_add_snapshot_n(e, name, strlen(name), seq, time_ms);
}

static int edit_delete_snapshot_n(version_edit *e, const char *name, size_t len)
{
    if (grow((void **)&e->snap_del, e->nsnap_del, &e->capsnap_del, sizeof *e->snap_del))
        return -ENOMEM;
    char *copy = strndup(name, len);
    if (!copy)
        return -ENOMEM;
    e->snap_del[e->nsnap_del++] = copy;
    return 0;
}

int edit_delete_snapshot(version_edit *e, const char *name)
{
    return edit_delete_snapshot_n(e, name, strlen(name));
}

int edit_add_sample(version_edit *e, uint64_t sec, uint64_t max_seq)
{
    if (grow((void **)&e->samples, e->nsamples, &e->capsamples, sizeof *e->samples))
        return -ENOMEM;
    e->samples[e->nsamples++] = (timemap_sample){sec, max_seq};
    return 0;
}

int edit_add_drop(version_edit *e, uint64_t seq, kv_slice lo, kv_slice hi)
{
    kv_drop d = {seq, lo, hi};
    drop_set *next;
    if (drops_make(e->drop_add, &d, 1, NULL, 0, &next))
        return -ENOMEM;
    drops_unref(e->drop_add);
    e->drop_add = next;
    return 0;
}

int edit_add_drops(version_edit *e, const drop_set *set)
{
    drop_set *next;
    if (drops_merge(e->drop_add, set, NULL, 0, &next))
        return -ENOMEM;
    drops_unref(e->drop_add);
    e->drop_add = next;
    return 0;
}

int edit_delete_drop(version_edit *e, uint64_t seq)
{
    if (grow((void **)&e->drop_del, e->ndrop_del, &e->capdrop_del, sizeof *e->drop_del))
        return -ENOMEM;
    e->drop_del[e->ndrop_del++] = seq;
    return 0;
}

/* ------------------------------------------------------------------- encoding ---- */

static int put_u(kv_buf *b, enum mf_tag tag, uint64_t v)
{
    int rc = kv_buf_put_varint(b, tag);
    return rc ? rc : kv_buf_put_varint(b, v);
}

static int put_file(kv_buf *b, int level, const file_meta *f)
{
    int rc = put_u(b, MF_NEW_FILE, (uint64_t)level);
    uint64_t nums[] = {f->number, f->file_bytes, f->entries, f->min_seq, f->max_seq};
    for (size_t i = 0; i < sizeof nums / sizeof nums[0] && rc == 0; i++)
        rc = kv_buf_put_varint(b, nums[i]);
    if (rc == 0)
        rc = kv_buf_put_lenbytes(b, f->smallest.data, f->smallest.len);
    if (rc == 0)
        rc = kv_buf_put_lenbytes(b, f->largest.data, f->largest.len);
    return rc;
}

static int put_snapshot(kv_buf *b, const vset_snapshot *s)
{
    int rc = kv_buf_put_varint(b, MF_SNAPSHOT_ADD);
    if (rc == 0)
        rc = kv_buf_put_lenbytes(b, s->name, strlen(s->name));
    if (rc == 0)
        rc = kv_buf_put_varint(b, s->seq);
    return rc ? rc : kv_buf_put_varint(b, s->time_ms);
}

static int put_sample(kv_buf *b, timemap_sample s)
{
    int rc = put_u(b, MF_TIME_SAMPLE, s.sec);
    return rc ? rc : kv_buf_put_varint(b, s.max_seq);
}

static int put_drops(kv_buf *b, const drop_set *set)
{
    int rc = 0;
    for (size_t i = 0; i < drops_count(set) && rc == 0; i++) {
        const kv_drop *d = drops_at(set, i);
        rc = put_u(b, MF_DROP_ADD, d->seq);
        if (rc == 0)
            rc = kv_buf_put_lenbytes(b, d->lo.data, d->lo.len);
        if (rc == 0)
            rc = kv_buf_put_lenbytes(b, d->hi.data, d->hi.len);
    }
    return rc;
}

static int put_compact_pointers(kv_buf *b, const vset *vs)
{
    int rc = 0;
    for (int l = 0; l < KV_MAX_LEVELS && rc == 0; l++) {
        if (vs->compact_pointer[l].len == 0)
            continue;
        rc = put_u(b, MF_COMPACT_POINTER, (uint64_t)l);
        if (rc == 0)
            rc = kv_buf_put_lenbytes(b, vs->compact_pointer[l].data, vs->compact_pointer[l].len);
    }
    return rc;
}

/* Appends the fields of e (vs->mu held: compact pointers come from vs). */
static int mf_put_edit(kv_buf *b, const vset *vs, const version_edit *e)
{
    int rc = 0;
    if (e->has_log_number)
        rc = put_u(b, MF_LOG_NUMBER, e->log_number);
    if (rc == 0 && e->has_next_file)
        rc = put_u(b, MF_NEXT_FILE, e->next_file);
    if (rc == 0 && e->has_last_seq)
        rc = put_u(b, MF_LAST_SEQ, e->last_seq);
    if (rc == 0 && e->has_history_ms)
        rc = put_u(b, MF_HISTORY_MS, e->history_ms);
    for (size_t i = 0; i < e->ndeleted && rc == 0; i++) {
        rc = put_u(b, MF_DELETED_FILE, (uint64_t)e->deleted[i].level);
        if (rc == 0)
            rc = kv_buf_put_varint(b, e->deleted[i].number);
    }
    for (size_t i = 0; i < e->nadded && rc == 0; i++)
        rc = put_file(b, e->added[i].level, e->added[i].f);
    for (size_t i = 0; i < e->nsnap_del && rc == 0; i++) {
        rc = kv_buf_put_varint(b, MF_SNAPSHOT_DEL);
        if (rc == 0)
            rc = kv_buf_put_lenbytes(b, e->snap_del[i], strlen(e->snap_del[i]));
    }
    for (size_t i = 0; i < e->nsnap_add && rc == 0; i++)
        rc = put_snapshot(b, &e->snap_add[i]);
    for (size_t i = 0; i < e->nsamples && rc == 0; i++)
        rc = put_sample(b, e->samples[i]);
    for (size_t i = 0; i < e->ndrop_del && rc == 0; i++)
        rc = put_u(b, MF_DROP_DEL, e->drop_del[i]);
    if (rc == 0)
        rc = put_drops(b, e->drop_add);
    if (rc == 0 && e->ndeleted)
        rc = put_compact_pointers(b, vs);
    return rc;
}

/* Appends one record holding the whole durable state of vs (vs->mu held). */
static int mf_put_full_state(kv_buf *b, const vset *vs)
{
    int rc = put_u(b, MF_LOG_NUMBER, vs->log_number);
    if (rc == 0)
        rc = put_u(b, MF_NEXT_FILE, vs->next_file);
    if (rc == 0)
        rc = put_u(b, MF_LAST_SEQ, vs->last_seq);
    if (rc == 0)
        rc = put_u(b, MF_HISTORY_MS, vs->history_ms);
    for (int l = 0; l < KV_MAX_LEVELS && rc == 0; l++)
        for (size_t i = 0; i < vs->current->nfiles[l] && rc == 0; i++)
            rc = put_file(b, l, vs->current->files[l][i]);
    for (size_t i = 0; i < vs->nsnaps && rc == 0; i++)
        rc = put_snapshot(b, &vs->snaps[i]);
    for (size_t i = 0; i < vs->npersisted_samples && rc == 0; i++)
        rc = put_sample(b, vs->samples[i]);
    if (rc == 0)
        rc = put_drops(b, vs->current->drops);
    return rc ? rc : put_compact_pointers(b, vs);
}

/* ------------------------------------------------------------------- decoding ---- */

/* Where a record came from, for messages. */
typedef struct mf_src {
    const char *name; /* "MANIFEST-000005" */
    uint64_t offset;  /* file offset of the record */
    const uint8_t *start;
} mf_src;

static int mf_bad(const mf_src *src, const kv_reader *r, const char *what)
{
    return kv_error(-EUCLEAN, "%s: %s in record at offset %llu (record byte %llu)", src->name, what,
                    (unsigned long long)src->offset, (unsigned long long)(r->p - src->start));
}

static int get_uvars(kv_reader *r, uint64_t *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (kv_get_varint(r, &v[i]))
            return -EUCLEAN;
    return 0;
}

static int get_level(kv_reader *r, int *level)
{
    uint64_t l;
    if (kv_get_varint(r, &l) || l >= KV_MAX_LEVELS)
        return -EUCLEAN;
    *level = (int)l;
    return 0;
}

static int decode_new_file(kv_reader *r, version_edit *e)
{
    int level;
    uint64_t v[5];
    kv_slice lo, hi;
    if (get_level(r, &level) || get_uvars(r, v, 5) || kv_get_lenbytes(r, &lo) ||
        kv_get_lenbytes(r, &hi))
        return -EUCLEAN;
    if (lo.len < KV_TAG_BYTES || hi.len < KV_TAG_BYTES || ikey_cmp(lo, hi) > 0 || v[3] > v[4])
        return -EUCLEAN;
    return edit_add_meta(e, level, vset_file_new(v[0], v[1], v[2], v[3], v[4], lo, hi));
}

/* A snapshot name must be non-empty, short and free of NUL bytes. */
static int get_name(kv_reader *r, kv_slice *name)
{
    if (kv_get_lenbytes(r, name) || name->len == 0 || name->len > KV_SNAPSHOT_NAME_MAX ||
        memchr(name->data, 0, name->len))
        return -EUCLEAN;
    return 0;
}

static int decode_field(kv_reader *r, uint64_t tag, version_edit *e, kv_buf *cptr, int *has_cptr)
{
    uint64_t v[2];
    kv_slice s;
    int level;
    switch (tag) {
    case MF_LOG_NUMBER:
        if (get_uvars(r, v, 1))
            return -EUCLEAN;
        edit_set_log_number(e, v[0]);
        return 0;
    case MF_NEXT_FILE:
        if (get_uvars(r, v, 1))
            return -EUCLEAN;
        edit_set_next_file(e, v[0]);
        return 0;
    case MF_LAST_SEQ:
        if (get_uvars(r, v, 1) || v[0] > KV_MAX_SEQ)
            return -EUCLEAN;
        edit_set_last_seq(e, v[0]);
        return 0;
    case MF_NEW_FILE:
        return decode_new_file(r, e);
    case MF_DELETED_FILE:
        if (get_level(r, &level) || get_uvars(r, v, 1))
            return -EUCLEAN;
        return edit_delete_file(e, level, v[0]);
    case MF_SNAPSHOT_ADD:
        if (get_name(r, &s) || get_uvars(r, v, 2))
            return -EUCLEAN;
        return edit_add_snapshot_n(e, (const char *)s.data, s.len, v[0], v[1]);
    case MF_SNAPSHOT_DEL:
        if (get_name(r, &s))
            return -EUCLEAN;
        return edit_delete_snapshot_n(e, (const char *)s.data, s.len);
    case MF_TIME_SAMPLE:
        if (get_uvars(r, v, 2))
            return -EUCLEAN;
        return edit_add_sample(e, v[0], v[1]);
    case MF_HISTORY_MS:
        if (get_uvars(r, v, 1))
            return -EUCLEAN;
        edit_set_history_ms(e, v[0]);
        return 0;
    case MF_DROP_ADD: {
        kv_slice lo, hi;
        if (get_uvars(r, v, 1) || v[0] == 0 || v[0] > KV_MAX_SEQ || kv_get_lenbytes(r, &lo) ||
            kv_get_lenbytes(r, &hi) || lo.len == 0 || lo.len > KV_MAX_KEY_BYTES ||
            hi.len > KV_MAX_KEY_BYTES || kv_slice_cmp(lo, hi) >= 0)
            return -EUCLEAN;
        return edit_add_drop(e, v[0], lo, hi);
    }
    case MF_DROP_DEL:
        if (get_uvars(r, v, 1))
            return -EUCLEAN;
        return edit_delete_drop(e, v[0]);
    case MF_COMPACT_POINTER:
        if (get_level(r, &level) || kv_get_lenbytes(r, &s) || s.len < KV_TAG_BYTES)
            return -EUCLEAN;
        has_cptr[level] = 1;
        return kv_buf_set(&cptr[level], s.data, s.len);
    default:
        return -ENOTSUP;
    }
}

/* Decodes rec into e (initialised by the caller) and the compact pointers it carries. */
static int mf_decode(const mf_src *src, kv_slice rec, version_edit *e, kv_buf *cptr, int *has_cptr)
{
    kv_reader r = {rec.data, rec.data + rec.len};
    if (rec.len == 0)
        return mf_bad(src, &r, "empty record");
    while (r.p < r.end) {
        kv_reader at = r;
        uint64_t tag;
        if (kv_get_varint(&r, &tag))
            return mf_bad(src, &at, "truncated tag");
        int rc = decode_field(&r, tag, e, cptr, has_cptr);
        if (rc == -ENOTSUP)
            return kv_error(-EUCLEAN,
                            "%s: unknown record tag %llu at offset %llu (record byte %llu)",
                            src->name, (unsigned long long)tag, (unsigned long long)src->offset,
                            (unsigned long long)(at.p - src->start));
        if (rc == -ENOMEM)
            return kv_error(-ENOMEM, "%s: out of memory during replay", src->name);
        if (rc)
            return mf_bad(src, &at, "malformed field");
    }
    return 0;
}

/* ------------------------------------------------------------- CURRENT file ---- */

static int mf_path(const vset *vs, uint64_t number, char *out, size_t cap)
{
    return kvio_path(out, cap, "%s/MANIFEST-%06llu", vs->dir, (unsigned long long)number);
}

/* Parses "MANIFEST-<digits>\n" exactly. */
static int current_parse(const char *path, const uint8_t *data, size_t len, uint64_t *number)
{
    static const char prefix[] = "MANIFEST-";
    size_t plen = sizeof prefix - 1, i;
    uint64_t n = 0;
    if (len < plen + 2 || memcmp(data, prefix, plen) != 0 || data[len - 1] != '\n')
        goto bad;
    for (i = plen; i < len - 1; i++) {
        if (data[i] < '0' || data[i] > '9' || n > (UINT64_MAX - 9) / 10)
            goto bad;
        n = n * 10 + (uint64_t)(data[i] - '0');
    }
    if (len - 1 - plen > 20)
        goto bad;
    *number = n;
    return 0;
bad:
    return kv_error(-EUCLEAN, "%s: malformed (expected \"MANIFEST-NNNNNN\\n\", %zu bytes)", path,
                    len);
}

static int current_write(vset *vs, uint64_t number)
{
    char path[PATH_MAX], tmp[PATH_MAX], text[64];
    int rc = kvio_path(path, sizeof path, "%s/CURRENT", vs->dir);
    if (rc == 0)
        rc = kvio_path(tmp, sizeof tmp, "%s/CURRENT.tmp", vs->dir);
    if (rc)
        return rc;
    int n = snprintf(text, sizeof text, "MANIFEST-%06llu\n", (unsigned long long)number);
    return kvio_replace_atomic(vs->dir, path, tmp, text, (size_t)n);
}

/* -------------------------------------------------------------------- replay ---- */

typedef struct mf_replay {
    version_edit acc; /* log number, next file, last seq seen so far */
    kv_buf cptr[KV_MAX_LEVELS];
} mf_replay;

/* Applies one decoded record to vs (single-threaded: during open). */
static int replay_apply(vset *vs, const mf_src *src, version_edit *e, mf_replay *st)
{
    version *nv;
    char **names;
    int rc = vset_version_build(vs, vs->current, e, &nv);
    if (rc == -EINVAL) {
        char why[256];
        snprintf(why, sizeof why, "%s", kv_last_error());
        return kv_error(-EUCLEAN, "%s: record at offset %llu does not fit: %s", src->name,
                        (unsigned long long)src->offset, why);
    }
    if (rc)
        return rc;
    rc = vset_meta_prepare(vs, e, &names);
    if (rc) {
        version_unref(nv);
        return rc;
    }
    vset_meta_commit(vs, e, names, 1);
    version_unref(vs->current); /* replay marks nothing obsolete: it deletes no file */
    vs->current = nv;
    if (e->has_log_number)
        edit_set_log_number(&st->acc, e->log_number);
    if (e->has_next_file)
        edit_set_next_file(&st->acc, e->next_file);
    if (e->has_last_seq)
        edit_set_last_seq(&st->acc, e->last_seq);
    if (e->has_history_ms)
        vs->history_ms = e->history_ms;
    return 0;
}

static int replay_record(vset *vs, const mf_src *src, kv_slice rec, mf_replay *st)
{
    version_edit e;
    int has_cptr[KV_MAX_LEVELS] = {0};
    kv_buf cptr[KV_MAX_LEVELS] = {{0}};
    edit_init(&e);
    int rc = mf_decode(src, rec, &e, cptr, has_cptr);
    if (rc == 0)
        rc = replay_apply(vs, src, &e, st);
    for (int l = 0; l < KV_MAX_LEVELS; l++) {
        if (rc == 0 && has_cptr[l]) {
            kv_buf t = st->cptr[l];
            st->cptr[l] = cptr[l];
            cptr[l] = t;
        }
        kv_buf_free(&cptr[l]);
    }
    edit_free(&e);
    return rc;
}

/* Sets the counters from what replay saw; next_file stays above every number in use. */
static int replay_finish(vset *vs, const char *name, mf_replay *st)
{
    if (!st->acc.has_next_file || !st->acc.has_log_number || !st->acc.has_last_seq)
        return kv_error(-EUCLEAN, "%s: no %s record", name,
                        !st->acc.has_next_file    ? "next-file"
                        : !st->acc.has_log_number ? "log-number"
                                                  : "last-sequence");
    vs->log_number = st->acc.log_number;
    vs->last_seq = st->acc.last_seq;
    vs->next_file = KV_MAX(st->acc.next_file, vs->manifest_number + 1);
    for (int l = 0; l < KV_MAX_LEVELS; l++) {
        for (size_t i = 0; i < vs->current->nfiles[l]; i++)
            vs->next_file = KV_MAX(vs->next_file, vs->current->files[l][i]->number + 1);
        vs->compact_pointer[l] = st->cptr[l];
        memset(&st->cptr[l], 0, sizeof st->cptr[l]);
    }
    return 0;
}

/* OUT: *good_end, the end of the MANIFEST's last whole record. */
static int replay_manifest(vset *vs, const char *path, const char *name, uint64_t *good_end)
{
    mf_replay st;
    memset(&st, 0, sizeof st);
    log_reader *lr = NULL;
    int rc = log_reader_open(path, (uint32_t)vs->manifest_number, &lr);
    if (rc == -ENOENT) {
        rc = kv_error(-EUCLEAN, "%s: missing (named by CURRENT)", path);
        goto out;
    }
    if (rc)
        goto out;
    for (;;) {
        mf_src src = {name, log_reader_good_offset(lr), NULL};
        const uint8_t *rec;
        size_t len;
        rc = log_reader_next(lr, &rec, &len);
        if (rc <= 0)
            break;
        src.start = rec;
        rc = replay_record(vs, &src, kv_slice_of(rec, len), &st);
        if (rc)
            break;
    }
    if (rc == 0)
        rc = replay_finish(vs, name, &st);
out:
    if (lr) {
        *good_end = log_reader_good_offset(lr);
        log_reader_close(lr);
    }
    for (int l = 0; l < KV_MAX_LEVELS; l++)
        kv_buf_free(&st.cptr[l]);
    edit_free(&st.acc);
    return rc;
}

/* Every live table must exist with the size the MANIFEST records. */
static int check_tables(vset *vs, const char *mname)
{
    for (int l = 0; l < KV_MAX_LEVELS; l++) {
        for (size_t i = 0; i < vs->current->nfiles[l]; i++) {
            file_meta *f = vs->current->files[l][i];
            char path[PATH_MAX];
            uint64_t size = 0;
            int rc = vset_table_path(vs, f->number, path, sizeof path);
            if (rc)
                return rc;
            int fd = kvio_open(path, O_RDONLY, 0);
            if (fd == -ENOENT)
                return kv_error(-EUCLEAN, "%s: table file missing (live in %s, level %d)", path,
                                mname, l);
            if (fd < 0)
                return fd;
            rc = kvio_file_size(fd, path, &size);
            kvio_close(fd);
            if (rc)
                return rc;
            if (size != f->file_bytes)
                return kv_error(-EUCLEAN, "%s: size %llu, but %s records %llu", path,
                                (unsigned long long)size, mname, (unsigned long long)f->file_bytes);
        }
    }
    return 0;
}

/* ------------------------------------------------------------ new MANIFEST ---- */

/* Creates MANIFEST-number holding the full state of vs, plus e if given, fsynced, and points
 * CURRENT at it. On success the old manifest writer is closed and its file removed. OUT:
 * *old_current = 1 when it failed before CURRENT was touched: the old MANIFEST is still the
 * one, and the new file is gone. */
static int mf_install_new(vset *vs, uint64_t number, const version_edit *e, int *old_current)
{
    char path[PATH_MAX], old[PATH_MAX];
    kv_buf rec = {0};
    log_writer *w = NULL;
    int created = 0; /* MANIFEST-number exists and CURRENT certainly does not name it */
    *old_current = 1;
    int rc = mf_path(vs, number, path, sizeof path);
    if (rc == 0)
        rc = mf_path(vs, vs->manifest_number, old, sizeof old);
    if (rc == 0)
        rc = log_writer_create(path, (uint32_t)number, &w);
    if (rc)
        goto out;
    created = 1;
    rc = mf_put_full_state(&rec, vs);
    if (rc == 0)
        rc = log_writer_add(w, rec.data, rec.len);
    if (rc == 0 && e) {
        rec.len = 0;
        rc = mf_put_edit(&rec, vs, e);
        if (rc == 0)
            rc = log_writer_add(w, rec.data, rec.len);
    }
    if (rc == 0)
        rc = log_writer_sync(w);
    if (rc)
        goto out;
    created = 0; /* from here CURRENT may name it, even if replacing CURRENT fails */
    *old_current = 0;
    rc = current_write(vs, number);
    if (rc)
        goto out;
    if (vs->manifest)
        log_writer_close(vs->manifest);
    if (number != vs->manifest_number)
        (void)kvio_unlink(old); /* CURRENT no longer names it; a leftover is harmless */
    vs->manifest = w;
    vs->manifest_number = number;
    w = NULL;
out:
    if (w)
        log_writer_close(w);
    if (rc && created) /* never named by CURRENT: remove it, keep the first message */
        kvio_unlink_keep_error(path);
    kv_buf_free(&rec);
    return rc;
}

/* ---------------------------------------------------------------------- open ---- */

static void vset_free(vset *vs)
{
    if (!vs)
        return;
    if (vs->manifest)
        log_writer_close(vs->manifest);
    version_unref(vs->current);
    for (size_t i = 0; i < vs->nsnaps; i++)
        free(vs->snaps[i].name);
    free(vs->snaps);
    free(vs->samples);
    for (int l = 0; l < KV_MAX_LEVELS; l++)
        kv_buf_free(&vs->compact_pointer[l]);
    pthread_mutex_destroy(&vs->mu);
    pthread_mutex_destroy(&vs->apply_mu);
    free(vs->dir);
    free(vs);
}

static vset *vset_alloc(const char *dir, const kv_options *opts, cache *bc)
{
    vset *vs = calloc(1, sizeof *vs);
    if (!vs)
        return NULL;
    vs->dir = strdup(dir);
    vs->opts = *opts;
    vs->block_cache = bc;
    atomic_init(&vs->filter_skips, 0);
    if (pthread_mutex_init(&vs->mu, NULL) != 0) {
        free(vs->dir);
        free(vs);
        return NULL;
    }
    pthread_mutex_init(&vs->apply_mu, NULL);
    vs->current = vset_version_new(vs);
    if (!vs->dir || !vs->current) {
        vset_free(vs);
        return NULL;
    }
    return vs;
}

/* A new store: refuses to start over on top of tables or WAL segments whose CURRENT is gone;
 * removes MANIFEST files a crash during creation may have left. */
static int open_new_store(vset *vs)
{
    char **names = NULL;
    size_t n = 0;
    int rc = kvio_mkdir_p(vs->dir, 0755);
    if (rc == 0)
        rc = kvio_list_dir(vs->dir, &names, &n);
    for (size_t i = 0; i < n && rc == 0; i++) {
        size_t len = strlen(names[i]);
        if ((len > 4 && strcmp(names[i] + len - 4, ".sst") == 0) ||
            (len > 4 && strcmp(names[i] + len - 4, ".log") == 0))
            rc = kv_error(-EUCLEAN, "%s/CURRENT: missing, but %s exists", vs->dir, names[i]);
        else if (strncmp(names[i], "MANIFEST-", 9) == 0) {
            char path[PATH_MAX];
            rc = kvio_path(path, sizeof path, "%s/%s", vs->dir, names[i]);
            if (rc == 0)
                rc = kvio_unlink(path);
        }
    }
    kvio_free_list(names, n);
    if (rc)
        return rc;
    vs->next_file = 2;
    vs->manifest_number = 1;
    int old_current;
    return mf_install_new(vs, 1, NULL, &old_current);
}

/* The number in "NNNNNN.sst", "NNNNNN.log" or "MANIFEST-NNNNNN", or 0. */
static uint64_t file_name_number(const char *name)
{
    const char *p = strncmp(name, "MANIFEST-", 9) == 0 ? name + 9 : name;
    char *end;
    if (*p < '0' || *p > '9')
        return 0;
    unsigned long long n = strtoull(p, &end, 10);
    if (p == name && strcmp(end, ".sst") != 0 && strcmp(end, ".log") != 0 &&
        strcmp(end, ".sst.tmp") != 0)
        return 0;
    if (p != name && *end != '\0')
        return 0;
    return (uint64_t)n;
}

/* Keeps next_file above every numbered file in the directory: a table or WAL segment created
 * after the last edit that recorded next_file must never see its number handed out again. */
static int bump_past_dir(vset *vs)
{
    char **names = NULL;
    size_t n = 0;
    int rc = kvio_list_dir(vs->dir, &names, &n);
    for (size_t i = 0; i < n && rc == 0; i++) {
        uint64_t num = file_name_number(names[i]);
        if (num >= vs->next_file)
            vs->next_file = num + 1;
    }
    kvio_free_list(names, n);
    return rc;
}

/* Opening on a disk with no room for a new MANIFEST: edits go on being appended to the one
 * CURRENT names, after its last whole record (path, replayed up to good_end). */
static int mf_continue(vset *vs, const char *path, const char *name, uint64_t good_end)
{
    kv_log("%s; appending to %s instead", kv_last_error(), name);
    return log_writer_continue(path, (uint32_t)vs->manifest_number, good_end, &vs->manifest);
}

static int open_existing(vset *vs, const char *cur_path, const uint8_t *text, size_t len)
{
    char path[PATH_MAX], name[64];
    int rc = current_parse(cur_path, text, len, &vs->manifest_number);
    if (rc == 0)
        rc = mf_path(vs, vs->manifest_number, path, sizeof path);
    if (rc)
        return rc;
    snprintf(name, sizeof name, "MANIFEST-%06llu", (unsigned long long)vs->manifest_number);
    uint64_t good_end = 0;
    rc = replay_manifest(vs, path, name, &good_end);
    if (rc == 0)
        rc = check_tables(vs, name);
    if (rc == 0 && vs->open_check)
        rc = vs->open_check(vs, vs->open_check_arg);
    if (rc || vs->opts.read_only)
        return rc;
    rc = bump_past_dir(vs);
    if (rc)
        return rc;
    int old_current;
    rc = mf_install_new(vs, vs->next_file++, NULL, &old_current);
    if (kv_err_is_no_space(rc) && old_current)
        rc = mf_continue(vs, path, name, good_end);
    return rc;
}

int vset_open(const char *dir, const kv_options *opts, cache *bc, vset **out)
{
    return vset_open_checked(dir, opts, bc, NULL, NULL, out);
}

int vset_open_checked(const char *dir, const kv_options *opts, cache *bc, vset_check_fn check,
                      void *check_arg, vset **out)
{
    char cur[PATH_MAX];
    uint8_t *text = NULL;
    size_t len = 0;
    *out = NULL;
    vset *vs = vset_alloc(dir, opts, bc);
    if (!vs)
        return kv_error(-ENOMEM, "%s: out of memory opening the version set", dir);
    vs->open_check = check;
    vs->open_check_arg = check_arg;
    int rc = kvio_path(cur, sizeof cur, "%s/CURRENT", dir);
    if (rc == 0)
        rc = kvio_read_file(cur, &text, &len);
    if (rc == -ENOENT) {
        if (!opts->create_if_missing || opts->read_only)
            rc = kv_error(-ENOENT, "%s: no store here (CURRENT missing)", dir);
        else
            rc = open_new_store(vs);
    } else if (rc == 0 && opts->error_if_exists) {
        rc = kv_error(-EEXIST, "%s: a store exists already", dir);
    } else if (rc == 0) {
        rc = open_existing(vs, cur, text, len);
    }
    free(text);
    if (rc) {
        vset_free(vs);
        return rc;
    }
    *out = vs;
    return 0;
}

void vset_close(vset *vs)
{
    vset_free(vs);
}

uint64_t vset_new_file_number(vset *vs)
{
    pthread_mutex_lock(&vs->mu);
    uint64_t n = vs->next_file++;
    pthread_mutex_unlock(&vs->mu);
    return n;
}

/* -------------------------------------------------------------- log and apply ---- */

/* Writes e to the MANIFEST (rotating it when it has grown large) and fsyncs. Called with
 * apply_mu and mu held; mu is released around the append and fsync so that readers taking
 * the current version (and commits noting their time) never wait for the disk. Only
 * vset_log_and_apply appends, and apply_mu serialises it. A rotation with no room for the new
 * MANIFEST appends to this one instead. OUT: *refused = 1 when the disk had no room for the
 * record and the MANIFEST is as it was (log.c): this edit failed, the version set did not. */
static int mf_write_edit(vset *vs, version_edit *e, int *refused)
{
    *refused = 0;
    if (log_writer_offset(vs->manifest) >= MF_ROTATE_BYTES) {
        int old_current;
        int rc = mf_install_new(vs, vs->next_file++, e, &old_current);
        if (!kv_err_is_no_space(rc) || !old_current)
            return rc;
        /* no room for a new MANIFEST: the edit goes to this one, rotation waits */
    }
    kv_buf rec = {0};
    int rc = mf_put_edit(&rec, vs, e);
    if (rc == 0) {
        pthread_mutex_unlock(&vs->mu);
        rc = log_writer_add(vs->manifest, rec.data, rec.len);
        *refused = kv_err_is_no_space(rc) && !log_writer_failed(vs->manifest);
        if (rc == 0)
            rc = log_writer_sync(vs->manifest);
        pthread_mutex_lock(&vs->mu);
    }
    kv_buf_free(&rec);
    return rc;
}

void vset_discard_added(vset *vs, const version_edit *e)
{
    for (size_t i = 0; i < e->nadded; i++) {
        char path[PATH_MAX];
        if (vset_table_path(vs, e->added[i].f->number, path, sizeof path) == 0)
            kvio_unlink_keep_error(path);
    }
}

int vset_failed(vset *vs)
{
    pthread_mutex_lock(&vs->mu);
    int rc = vs->sticky_error;
    pthread_mutex_unlock(&vs->mu);
    return rc;
}

int vset_log_and_apply(vset *vs, version_edit *e)
{
    version *nv = NULL;
    char **names = NULL;
    pthread_mutex_lock(&vs->apply_mu);
    pthread_mutex_lock(&vs->mu);
    int rc = vs->sticky_error;
    if (rc)
        goto out;
    if (!vs->manifest) {
        rc = kv_error(-EROFS, "%s: version set opened read-only", vs->dir);
        goto out;
    }
    rc = vset_version_build(vs, vs->current, e, &nv);
    if (rc == 0)
        rc = vset_meta_prepare(vs, e, &names);
    if (rc)
        goto out; /* nothing written: not sticky */
    if (e->has_next_file)
        vs->next_file = KV_MAX(vs->next_file, e->next_file);
    for (size_t i = 0; i < e->nadded; i++) /* a number in use is never handed out again */
        vs->next_file = KV_MAX(vs->next_file, e->added[i].f->number + 1);
    edit_set_next_file(e, vs->next_file);
    int refused;
    rc = mf_write_edit(vs, e, &refused);
    if (rc) {
        if (!refused)
            vs->sticky_error = rc;
        goto out;
    }
    vset_mark_obsolete(vs->current, e);
    version_unref(vs->current);
    vs->current = nv;
    nv = NULL;
    vset_meta_commit(vs, e, names, 0);
    names = NULL;
    if (e->has_log_number)
        vs->log_number = e->log_number;
    if (e->has_last_seq)
        vs->last_seq = e->last_seq;
    if (e->has_history_ms)
        vs->history_ms = e->history_ms;
out:
    if (names) {
        for (size_t i = 0; i < e->nsnap_add; i++)
            free(names[i]);
        free(names);
    }
    pthread_mutex_unlock(&vs->mu);
    pthread_mutex_unlock(&vs->apply_mu);
    version_unref(nv);
    return rc;
}
