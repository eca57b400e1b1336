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

/* ctl is borrowed and must outlive the writer's use (gm_hami_free). */
int gm_hami_new(struct gm_ctl *ctl, struct gm_hami **out);

/* A write still in flight keeps the writer until its answer comes. */
void gm_hami_free(struct gm_hami *h);

/* Asks that node's entry be entry (consumed; NULL: the node has none, so
 * HAMi's defaults apply). Returns 1 when the cached ConfigMap has it
 * already, 0 when it is queued (the node is enqueued once the cache shows
 * a write), or -ENOMEM. The ConfigMap must exist in the cache. */
int gm_hami_want(struct gm_hami *h, const char *node, json_object *entry);

/* Drops node's queued entry, if any (its switch ended another way). An
 * entry already sent stays sent. */
void gm_hami_forget(struct gm_hami *h, const char *node);

/* The cached ConfigMap changed: entries may have arrived, or a write that
 * met a newer ConfigMap can be sent again. */
void gm_hami_changed(struct gm_hami *h);

/* Why the last write failed ("" after a success), for status messages. */
const char *gm_hami_error(const struct gm_hami *h);

#endif
