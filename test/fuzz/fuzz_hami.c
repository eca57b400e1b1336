/* HAMi's per-node config (config.json of its ConfigMap): parsed as HAMi's
 * Go decoder reads it, each node's view, and the writer's merge. After
 * gm_hami_set_entry the entry must be there (the writer would otherwise
 * write for ever), HAMi must still read the config, and no other node's
 * entry may change. */
#include <errno.h>
#include <stdio.h>

#include "app/hami.h"
#include "common/json.h"
#include "fuzz.h"

/* The entries of list not named node, as text, in order (caller frees). */
static char *others(json_object *list, const char *node)
{
    json_object *keep = json_object_new_array();
    gmf_assert(keep != NULL);
    for (size_t i = 0; i < gm_json_len(list); i++) {
        json_object *e = json_object_array_get_idx(list, i);
        const char *name = gm_hami_entry_name(e);
        if (name == NULL || strcmp(name, node) != 0)
            json_object_array_add(keep, json_object_get(e));
    }
    char *s =
        strdup(json_object_to_json_string_ext(keep, JSON_C_TO_STRING_PLAIN));
    gmf_assert(s != NULL);
    json_object_put(keep);
    return s;
}

static void merge(json_object *cfg, const char *node, json_object *want)
{
    json_object *copy = NULL;
    char why[400];
    gmf_assert(json_object_deep_copy(cfg, &copy, NULL) == 0);
    json_object *list = gm_hami_list(copy);
    if (!json_object_is_type(list, json_type_array)) {
        list = json_object_new_array();
        json_object_object_add(copy, "nodeconfig", list);
    }
    char *before = others(list, node);
    gmf_assert(gm_hami_set_entry(list, node, want) == 0);
    gmf_assert(gm_hami_has_entry(list, node, want));
    char *after = others(list, node);
    gmf_assert(strcmp(before, after) == 0);
    json_object *back = NULL;
    const char *text = json_object_to_json_string_ext(
        copy, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    gmf_assert(gm_hami_config_parse(text, &back, why, sizeof(why)) == 0);
    json_object_put(back);
    free(before);
    free(after);
    json_object_put(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const uuids[8] = {"GPU-0", "GPU-1", "GPU-2", "GPU-3",
                                         "GPU-4", "GPU-5", "GPU-6", "GPU-7"};
    char *text = gmf_cstr(data, size);
    json_object *cfg = NULL;
    char why[400];

    int rc = gm_hami_config_parse(text, &cfg, why, sizeof(why));
    if (rc != 0) {
        gmf_assert(rc == -EINVAL || rc == -ENOMEM);
        gmf_assert(why[0] != '\0');
        free(text);
        return 0;
    }
    json_object *list = gm_json_get(cfg, "nodeconfig");
    const char *first =
        gm_json_len(list)
            ? gm_json_str(json_object_array_get_idx(list, 0), "name")
            : NULL;
    char node[64];
    snprintf(node, sizeof(node), "%s", first ? first : "n");
    struct gm_hami_view v;
    gmf_assert(gm_hami_view_parse(text, node, &v) == 0);
    int known = gm_hami_filtered(&v, 8, uuids);
    int guessed = gm_hami_filtered(&v, 8, NULL);
    gmf_assert(known >= 0 && known <= 8 && guessed >= 0 && guessed <= 8);
    gmf_assert(v.split >= 0 && v.memory >= 0 && v.core >= 0);
    gm_hami_view_clear(&v);

    json_object *want =
        json_tokener_parse("{\"name\":\"x\",\"operatingmode\":\"hami-core\","
                           "\"devicesplitcount\":3,\"devicememoryscaling\":1.5,"
                           "\"devicecorescaling\":1.0}");
    gmf_assert(want != NULL);
    merge(cfg, node, want);
    merge(cfg, node, NULL);
    json_object_put(want);
    json_object_put(cfg);
    free(text);
    return 0;
}
