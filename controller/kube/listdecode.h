/* Streams a List response ({"kind":"NodeList","metadata":{...},"items":[...]})
 * as it arrives, handing each item over as soon as its closing brace is
 * read. Only one item's JSON tree exists at a time, so listing 5,000 nodes
 * costs the memory of one node, not of a page of them. */
#ifndef GM_KUBE_LISTDECODE_H
#define GM_KUBE_LISTDECODE_H

#include <json-c/json.h>
#include <stddef.h>

/* item is borrowed for the call; a non-zero return stops decoding. */
typedef int (*gm_list_item_cb)(void *data, json_object *item);

struct gm_list_decoder;

/* max_item caps one item's bytes. */
int gm_list_decoder_new(size_t max_item, gm_list_item_cb cb, void *data,
                        struct gm_list_decoder **out);
/* 0, the callback's value, -EPROTO on malformed JSON, -E2BIG past the cap. */
int gm_list_decoder_feed(struct gm_list_decoder *d, const char *p, size_t n);
/* The list's metadata object as read (borrowed; NULL when absent or the
 * list is incomplete). */
json_object *gm_list_decoder_metadata(const struct gm_list_decoder *d);
/* Did the top-level object end? */
int gm_list_decoder_complete(const struct gm_list_decoder *d);
void gm_list_decoder_free(struct gm_list_decoder *d);

#endif
