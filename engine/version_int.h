/*
 * version_int.h -- functions shared inside the version-set module (version.c, manifest.c,
 * compaction.c) and by nothing else: building versions from edits and the two-step commit of
 * the metadata (named snapshots, time map) an edit carries.
 */
#ifndef KV_VERSION_INT_H
#define KV_VERSION_INT_H

#include "version.h"

file_meta *vset_file_new(uint64_t number, uint64_t file_bytes, uint64_t entries, uint64_t min_seq,
                         uint64_t max_seq, kv_slice smallest, kv_slice largest);
version *vset_version_new(vset *vs);
/* base + e -> *out (refcount 1); -EINVAL if e does not fit base. */
int vset_version_build(vset *vs, const version *base, const version_edit *e, version **out);
/* Marks the files e deletes from old (and does not re-add) obsolete. */
void vset_mark_obsolete(const version *old, const version_edit *e);
/* Allocates what vset_meta_commit needs, so that the commit itself cannot fail. */
int vset_meta_prepare(vset *vs, const version_edit *e, char ***names);
void vset_meta_commit(vset *vs, const version_edit *e, char **names, int replay);

#endif /* KV_VERSION_INT_H */
