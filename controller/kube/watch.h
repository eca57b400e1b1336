/* Incremental decoder for the watch stream: a sequence of JSON objects
 * {"type": ..., "object": {...}} as the apiserver writes them. Bytes are fed
 * as they arrive, split anywhere; json-c's tokener keeps its state between
 * chunks, so every byte is parsed once. */
#ifndef GM_KUBE_WATCH_H
#define GM_KUBE_WATCH_H

#include <json-c/json.h>
#include <stddef.h>

enum gm_watch_type {
    GM_WATCH_ADDED,
    GM_WATCH_MODIFIED,
    GM_WATCH_DELETED,
    GM_WATCH_BOOKMARK,
    GM_WATCH_ERROR,
    /* Not one of the stream's: gm_kube_watch's note that the server
     * answered 200 and the stream is open (object NULL). */
    GM_WATCH_OPENED,
};

/* object is borrowed for the duration of the call. A non-zero return stops
 * decoding and is returned by gm_watch_decoder_feed. */
typedef int (*gm_watch_event_cb)(void *data, enum gm_watch_type type,
                                 json_object *object);

struct gm_watch_decoder;

/* max_event caps the bytes of one event (a broken stream cannot make us
 * buffer without bound). */
int gm_watch_decoder_new(size_t max_event, gm_watch_event_cb cb, void *data,
                         struct gm_watch_decoder **out);
/* Returns 0, the callback's non-zero value, -EPROTO on malformed JSON or an
 * event without a known type, or -E2BIG when an event passes max_event. */
int gm_watch_decoder_feed(struct gm_watch_decoder *d, const char *p, size_t n);
/* Forgets a partial event (after a reconnect). */
void gm_watch_decoder_reset(struct gm_watch_decoder *d);
void gm_watch_decoder_free(struct gm_watch_decoder *d);

const char *gm_watch_type_name(enum gm_watch_type t);

#endif
