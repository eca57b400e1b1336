/* Entries of HAMi's per-node ConfigMap (config.json's nodeconfig list),
 * written for every vgpu switch by one writer. The ConfigMap is a single
 * object: when each switch wrote its own entry, switches that reached the
 * step together met each other's resourceVersion (409) and retried; 50 at
 * once took 3.5 writes and 4.9 s each. The writer queues entries and sends
 * one PATCH with every entry queued while the last one was on its way. */
#ifndef GM_APP_HAMI_H
#define GM_APP_HAMI_H

#include <json-c/json.h>

#include "app/controller.h"

struct gm_hami;

/* An annotation on HAMi's ConfigMap naming, comma-separated and sorted,
 * the nodes gpumode manages whose entries hold keys of the kinds it sets:
 * when one of them is deleted while no controller runs, the next one to
 * lead takes those keys out (gm_hami_sweep). No other writer's entry is
 * touched, as none is named. At most GM_HAMI_MARKS_MAX bytes, a quarter
 * of the API server's limit for all of an object's annotations; nodes
 * past it are left unnamed (their keys are then taken out only when a
 * controller sees the node deleted). */
#define GM_HAMI_MARKS "gpumode.io/hami-nodes"
#define GM_HAMI_MARKS_MAX 65536

/* ctl is borrowed and must outlive the writer's use (gm_hami_free). */
int gm_hami_new(struct gm_ctl *ctl, struct gm_hami **out);

/* A write still in flight keeps the writer until its answer comes. */
void gm_hami_free(struct gm_hami *h);

/* Asks that node's entry have entry's values for the four keys gpumode
 * sets (entry consumed; NULL: none of them, so HAMi's defaults apply).
 * Returns 1 when the cached ConfigMap has it already, 0 when it is queued
 * (the node is enqueued once the cache shows a write), or -ENOMEM. The
 * ConfigMap must exist in the cache. */
int gm_hami_want(struct gm_hami *h, const char *node, json_object *entry);

/* node, which gpumode switched, was deleted: the keys gpumode sets go from
 * its entry (the entry too when nothing else is left), so the entries of
 * an autoscaled pool's nodes do not pile up in the ConfigMap. Sent while
 * leading; dropped when a node of that name is in the cache by then (it
 * came back, and its switch writes the entry it needs). 0 or -ENOMEM. */
int gm_hami_prune(struct gm_hami *h, const char *node);

/* Takes gpumode's keys out of the entries of the nodes the cached
 * ConfigMap's GM_HAMI_MARKS names that are gone: nodes deleted while no
 * controller saw it. A named node the node cache does not hold is listed
 * by name from the API server (the cache may lag behind), and only an
 * empty list counts. Also writes GM_HAMI_MARKS alone when it is not what
 * the entries say. Does nothing unless leading with the node and
 * ConfigMap caches synced; a dry run only logs. */
void gm_hami_sweep(struct gm_hami *h);

/* The GM_HAMI_MARKS value for nodeconfig list, into *out (the caller
 * frees it; "" for none): each node an entry of which holds a key
 * gpumode sets, when mark(ud, node) says 1 (gpumode's node), or 0
 * (unknown: a deleted node) and old names it; not when it says -1 (a node
 * gpumode leaves alone). Names that would take the value past
 * GM_HAMI_MARKS_MAX are left out. Returns how many were, or -ENOMEM. */
int gm_hami_marks(json_object *list, const char *old,
                  int (*mark)(void *ud, const char *node), void *ud,
                  char **out);

/* Drops node's queued entry, if any (its switch ended another way); not
 * a deleted node's (gm_hami_prune). An entry already sent stays sent. */
void gm_hami_forget(struct gm_hami *h, const char *node);

/* The cached ConfigMap changed: entries may have arrived, or a write that
 * met a newer ConfigMap can be sent again. */
void gm_hami_changed(struct gm_hami *h);

/* What HAMi's plugin on a node takes from config.json: each entry named
 * the node in turn, a value above 0 (or a filter that names a GPU)
 * replacing the one before, as HAMi reads them. */
struct gm_hami_view {
    bool named;          /* an entry names the node */
    int split;           /* devicesplitcount; 0: none sets it (default 10) */
    double memory;       /* devicememoryscaling; 0: none sets it (1) */
    double core;         /* devicecorescaling; 0: none sets it (1) */
    json_object *filter; /* owned: filterdevices, GPUs HAMi leaves out */
};

/* Parses config.json's text (NULL or blank: an empty config) into *out
 * (the caller's) as HAMi reads it: strict JSON, one object, nodeconfig a
 * list of entries whose known fields have HAMi's types (a split of 4.0 or
 * a scaling in quotes fails the whole config for HAMi). 0, -ENOMEM, or
 * -EINVAL with why saying what is wrong. */
int gm_hami_config_parse(const char *text, json_object **out, char *why,
                         size_t len);

/* Whether nodeconfig list gives node the entry want asks (NULL: HAMi's
 * defaults): one entry with the keys gpumode sets as wanted (the split an
 * integer, the scalings numbers alike), or, for NULL, none of them in
 * any entry of the node's. */
bool gm_hami_has_entry(json_object *list, const char *node, json_object *want);

/* Makes node's entries in list (an array) one with the keys gpumode sets
 * from want (NULL: those keys go, and the entry when only its name is
 * left); every other key is kept from the entries it had, merged as HAMi
 * reads them. After it gm_hami_has_entry holds. 0 or -ENOMEM (list may
 * then be half changed: not to be sent). */
int gm_hami_set_entry(json_object *list, const char *node, json_object *want);

/* A parsed config's nodeconfig list, and an entry's name (NULL when it
 * has none), found as HAMi's decoder finds them: keys match without
 * regard to case, and of several the last wins. Borrowed. */
json_object *gm_hami_list(json_object *cfg);
const char *gm_hami_entry_name(json_object *entry);

/* Reads node's view from config.json's text (NULL: no such key, so no
 * entry). 0, -EINVAL when HAMi cannot read the text (its defaults then
 * apply), or -ENOMEM. Clear *out after a 0. */
int gm_hami_view_parse(const char *text, const char *node,
                       struct gm_hami_view *out);
/* Applies one entry (already known to name the node) to *v. */
void gm_hami_view_apply(struct gm_hami_view *v, json_object *entry);
void gm_hami_view_clear(struct gm_hami_view *v);

/* How many of a node's gpus GPUs v's filter leaves out: those whose index
 * it lists, and those whose uuid it lists (uuids[i]: GPU i's, or uuids
 * NULL when unknown; each uuid listed then counts as one GPU more, up to
 * gpus, as a filter is written for the node's own GPUs). */
int gm_hami_filtered(const struct gm_hami_view *v, int gpus,
                     const char *const *uuids);

/* Why the last write failed ("" after a success), for status messages. */
const char *gm_hami_error(const struct gm_hami *h);

#endif
