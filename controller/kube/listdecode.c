#include "kube/listdecode.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"

/* A byte scanner that tracks nesting outside strings. At depth 1 (inside
 * the top-level object) it remembers the last string, which ':' turns into
 * the current key; values of "items" (elements at depth 3) and "metadata"
 * (the object at depth 2) are copied out and parsed on their own. */
struct gm_list_decoder {
    gm_list_item_cb cb;
    void *data;
    size_t max_item;
    int depth;
    int in_string;
    int escape;
    int complete;
    char key[32];          /* current key at depth 1 */
    struct gm_buf str;     /* the last string at depth 1 (keys are short) */
    int capturing;         /* 1: an item, 2: the metadata */
    struct gm_buf cap;     /* bytes of what is being captured */
    json_object *metadata; /* owned */
};

int gm_list_decoder_new(size_t max_item, gm_list_item_cb cb, void *data,
                        struct gm_list_decoder **out)
{
    struct gm_list_decoder *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return -ENOMEM;
    d->cb = cb;
    d->data = data;
    d->max_item = max_item;
    gm_buf_init(&d->str, 64);
    gm_buf_init(&d->cap, max_item);
    *out = d;
    return 0;
}

/* A captured value is complete: parse it alone. */
static int finish_capture(struct gm_list_decoder *d)
{
    json_object *o = json_tokener_parse(d->cap.data ? d->cap.data : "");
    int kind = d->capturing;
    int rc = 0;

    d->capturing = 0;
    gm_buf_reset(&d->cap);
    if (o == NULL)
        return -EPROTO;
    if (kind == 2) {
        json_object_put(d->metadata);
        d->metadata = o;
        return 0;
    }
    json_object *one = json_object_new_array();
    json_object_array_add(one, o);
    rc = d->cb(d->data, one);
    json_object_put(one);
    return rc;
}

int gm_list_decoder_feed(struct gm_list_decoder *d, const char *p, size_t n)
{
    size_t run = 0; /* start of the bytes to copy into cap */
    int err;

    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (d->in_string) {
            if (d->depth == 1 && !d->escape && c != '"' &&
                gm_buf_append(&d->str, &c, 1) != 0)
                gm_buf_reset(&d->str); /* a long value, not a key */
            if (d->escape)
                d->escape = 0;
            else if (c == '\\')
                d->escape = 1;
            else if (c == '"')
                d->in_string = 0;
            continue;
        }
        switch (c) {
        case '"':
            d->in_string = 1;
            if (d->depth == 1)
                gm_buf_reset(&d->str);
            break;
        case ':':
            if (d->depth == 1) {
                size_t len = d->str.len < sizeof(d->key) - 1
                                 ? d->str.len
                                 : sizeof(d->key) - 1;
                memcpy(d->key, d->str.data ? d->str.data : "", len);
                d->key[len] = '\0';
            }
            break;
        case '{':
        case '[':
            d->depth++;
            if (d->complete)
                return -EPROTO;
            if (!d->capturing && d->depth == 3 && c == '{' &&
                strcmp(d->key, "items") == 0) {
                d->capturing = 1;
                run = i;
            } else if (!d->capturing && d->depth == 2 && c == '{' &&
                       strcmp(d->key, "metadata") == 0) {
                d->capturing = 2;
                run = i;
            }
            break;
        case '}':
        case ']':
            d->depth--;
            if (d->depth < 0)
                return -EPROTO;
            if ((d->capturing == 1 && d->depth == 2) ||
                (d->capturing == 2 && d->depth == 1)) {
                err = gm_buf_append(&d->cap, p + run, i + 1 - run);
                if (err)
                    return err;
                err = finish_capture(d);
                if (err)
                    return err;
            }
            if (d->depth == 0)
                d->complete = 1;
            break;
        default:
            break;
        }
    }
    if (d->capturing) {
        err = gm_buf_append(&d->cap, p + run, n - run);
        if (err)
            return err;
    }
    return 0;
}

json_object *gm_list_decoder_metadata(const struct gm_list_decoder *d)
{
    return d->complete ? d->metadata : NULL;
}

int gm_list_decoder_complete(const struct gm_list_decoder *d)
{
    return d->complete;
}

void gm_list_decoder_free(struct gm_list_decoder *d)
{
    if (d == NULL)
        return;
    gm_buf_free(&d->str);
    gm_buf_free(&d->cap);
    json_object_put(d->metadata);
    free(d);
}
