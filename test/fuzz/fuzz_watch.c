/* The watch stream decoder fed the input in two chunks, split where the
 * first two bytes say; the third picks the per-event cap. ADDED and
 * MODIFIED objects go through gm_node_from_json, as the reflector does.
 *
 * Input: split_hi split_lo cap_shift stream... */
#include <errno.h>

#include "fuzz.h"
#include "kube/node.h"
#include "kube/watch.h"

struct seen {
    size_t events;
};

static int on_event(void *data, enum gm_watch_type type, json_object *obj)
{
    struct seen *s = data;
    struct gm_node *n = NULL;

    s->events++;
    gmf_assert(gm_watch_type_name(type) != NULL);
    if (type != GM_WATCH_ADDED && type != GM_WATCH_MODIFIED)
        return 0;
    if (gm_node_from_json(obj, &n) == 0) {
        gmf_assert(n->name != NULL);
        (void)gm_node_label(n, "nvidia.com/gpu.product");
        (void)gm_node_allocatable(n, "nvidia.com/gpu");
        (void)gm_node_footprint(n);
        gm_node_free(n);
    }
    return 0;
}

/* Feeds one chunk; after an error the reflector reconnects, which resets
 * the decoder, so do the same and go on with the next chunk. */
static void feed(struct gm_watch_decoder *d, const char *p, size_t n)
{
    int rc = gm_watch_decoder_feed(d, p, n);

    gmf_assert(rc == 0 || rc == -EPROTO || rc == -E2BIG);
    if (rc)
        gm_watch_decoder_reset(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct gm_watch_decoder *d = NULL;
    struct seen s = {0};

    if (size < 3)
        return 0;
    size_t split = ((size_t)data[0] << 8 | data[1]) % (size - 3 + 1);
    size_t max_event = (size_t)256 << (data[2] % 10); /* 256 B .. 128 KiB */
    /* A heap copy sized exactly, so reads past the end are caught. */
    char *text = gmf_cstr(data + 3, size - 3);
    size_t len = size - 3;

    if (gm_watch_decoder_new(max_event, on_event, &s, &d) != 0)
        abort();
    feed(d, text, split);
    feed(d, text + split, len - split);
    gm_watch_decoder_free(d);
    free(text);
    return 0;
}
