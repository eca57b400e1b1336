#include "kube/watch.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct gm_watch_decoder {
    json_tokener *tok; /* owned */
    size_t max_event;
    size_t event_bytes; /* bytes of the event in progress */
    gm_watch_event_cb cb;
    void *data;
};

static const char *const type_names[] = {"ADDED",    "MODIFIED", "DELETED",
                                         "BOOKMARK", "ERROR",    "OPENED"};

const char *gm_watch_type_name(enum gm_watch_type t)
{
    return type_names[t];
}

int gm_watch_decoder_new(size_t max_event, gm_watch_event_cb cb, void *data,
                         struct gm_watch_decoder **out)
{
    struct gm_watch_decoder *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return -ENOMEM;
    d->tok = json_tokener_new_ex(64);
    if (d->tok == NULL) {
        free(d);
        return -ENOMEM;
    }
    d->max_event = max_event;
    d->cb = cb;
    d->data = data;
    *out = d;
    return 0;
}

static int dispatch(struct gm_watch_decoder *d, json_object *ev)
{
    json_object *type_o, *obj;

    if (!json_object_is_type(ev, json_type_object) ||
        !json_object_object_get_ex(ev, "type", &type_o) ||
        !json_object_object_get_ex(ev, "object", &obj))
        return -EPROTO;
    const char *type = json_object_get_string(type_o);
    for (int i = 0; i <= GM_WATCH_ERROR; i++)
        if (type && strcmp(type, type_names[i]) == 0)
            return d->cb(d->data, (enum gm_watch_type)i, obj);
    return -EPROTO;
}

static int is_space(char c)
{
    return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

int gm_watch_decoder_feed(struct gm_watch_decoder *d, const char *p, size_t n)
{
    while (n > 0) {
        /* Whitespace between events never starts an event. */
        if (d->event_bytes == 0 && is_space(*p)) {
            p++;
            n--;
            continue;
        }
        size_t chunk = n;
        if (chunk > (size_t)INT32_MAX)
            chunk = INT32_MAX;
        json_object *ev = json_tokener_parse_ex(d->tok, p, (int)chunk);
        enum json_tokener_error jerr = json_tokener_get_error(d->tok);
        if (ev == NULL && jerr == json_tokener_continue) {
            d->event_bytes += chunk;
            if (d->event_bytes > d->max_event)
                return -E2BIG;
            return 0;
        }
        if (ev == NULL) {
            json_tokener_reset(d->tok);
            d->event_bytes = 0;
            return -EPROTO;
        }
        size_t used = json_tokener_get_parse_end(d->tok);
        json_tokener_reset(d->tok);
        d->event_bytes = 0;
        int rc = dispatch(d, ev);
        json_object_put(ev);
        if (rc)
            return rc;
        p += used;
        n -= used;
    }
    return 0;
}

void gm_watch_decoder_reset(struct gm_watch_decoder *d)
{
    json_tokener_reset(d->tok);
    d->event_bytes = 0;
}

void gm_watch_decoder_free(struct gm_watch_decoder *d)
{
    if (d == NULL)
        return;
    json_tokener_free(d->tok);
    free(d);
}
