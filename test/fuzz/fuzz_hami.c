/* HAMi's per-node config (config.json of its ConfigMap): parsed as HAMi's
 * Go decoder reads it, each node's view, and the writer's merge. After
 * gm_hami_set_entry the entry must be there (the writer would otherwise
 * write for ever), HAMi must still read the config, and no other node's
 * entry may change. The marks (GM_HAMI_MARKS) are computed over each list,
 * with the input itself as the old marks a person could have written:
 * sorted, each name once, within the cap, and naming only entries. */
#include <errno.h>
#include <stdbool.h>
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

/* The marks' callback: the node merged into is gpumode's; others are
 * gpumode's, left alone or unknown by their first byte. */
static int mark_of(const char *node, const char *name)
{
    if (strcmp(name, node) == 0)
        return 1;
    return (unsigned char)name[0] % 3 - 1;
}

static int mark(void *ud, const char *name)
{
    return mark_of(ud, name);
}

/* True when name is an entry's name in list. */
static bool named(json_object *list, const char *name, size_t len)
{
    for (size_t i = 0; i < gm_json_len(list); i++) {
        const char *e = gm_hami_entry_name(json_object_array_get_idx(list, i));
        if (e && strlen(e) == len && memcmp(e, name, len) == 0)
            return true;
    }
    return false;
}

/* True when name is one of old's comma-separated names. */
static bool token_in(const char *old, const char *name)
{
    size_t len = strlen(name);
    for (const char *p = old; *p;) {
        size_t n = strcspn(p, ",");
        if (n == len && memcmp(p, name, len) == 0)
            return true;
        p += n + (p[n] == ',');
    }
    return false;
}

/* Computes the marks of list from old and checks them; node must be
 * marked when must (its entry holds gpumode's keys) and none was left
 * out for the cap. */
static void check_marks(json_object *list, const char *old, const char *node,
                        bool must)
{
    char *out = NULL, self[64];
    snprintf(self, sizeof(self), "%s", node);
    int left = gm_hami_marks(list, old, mark, self, &out);
    if (left == -ENOMEM)
        return;
    gmf_assert(left >= 0 && out != NULL);
    gmf_assert(strlen(out) <= GM_HAMI_MARKS_MAX);
    const char *prev = NULL;
    size_t prev_len = 0;
    bool seen = false;
    for (const char *p = out; *p;) {
        size_t len = strcspn(p, ",");
        gmf_assert(len > 0);
        gmf_assert(named(list, p, len));
        if (prev != NULL) {
            int c = memcmp(prev, p, prev_len < len ? prev_len : len);
            gmf_assert(c < 0 || (c == 0 && prev_len < len));
        }
        char *name = strndup(p, len);
        gmf_assert(name != NULL);
        int m = mark_of(node, name);
        gmf_assert(m >= 0);
        /* An unknown node is marked only when old named it. */
        if (m == 0)
            gmf_assert(old != NULL && token_in(old, name));
        seen = seen || strcmp(name, node) == 0;
        free(name);
        prev = p;
        prev_len = len;
        p += len + (p[len] == ',');
    }
    if (must && left == 0 && node[0] != '\0' && strchr(node, ',') == NULL)
        gmf_assert(seen);
    free(out);
}

static void merge(json_object *cfg, const char *node, json_object *want,
                  const char *old)
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
    check_marks(list, old, node, want != NULL);
    json_object *back = NULL;
    const char *text = json_object_to_json_string_ext(
        copy, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    gmf_assert(gm_hami_config_parse(text, &back, why, sizeof(why)) == 0);
    json_object_put(back);
    free(before);
    free(after);
    json_object_put(copy);
}

/* Old marks a person could have written: the names of every other entry,
 * then the input itself (commas split it into odd names). Caller frees. */
static char *old_marks(json_object *list, const char *text)
{
    size_t cap = strlen(text) + 1, at = 0;
    for (size_t i = 1; i < gm_json_len(list); i += 2) {
        const char *e = gm_hami_entry_name(json_object_array_get_idx(list, i));
        cap += e ? strlen(e) + 1 : 0;
    }
    char *old = malloc(cap);
    gmf_assert(old != NULL);
    for (size_t i = 1; i < gm_json_len(list); i += 2) {
        const char *e = gm_hami_entry_name(json_object_array_get_idx(list, i));
        if (e)
            at += (size_t)snprintf(old + at, cap - at, "%s,", e);
    }
    snprintf(old + at, cap - at, "%s", text);
    return old;
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
    char *old = old_marks(list, text);
    check_marks(list, old, node, false);
    merge(cfg, node, want, old);
    merge(cfg, node, NULL, old);
    free(old);
    json_object_put(want);
    json_object_put(cfg);
    free(text);
    return 0;
}
