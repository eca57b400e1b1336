/* A device plugin config (one key of devicePluginConfigMap) read as the
 * planner reads it (and the same bytes as binaryData), then checked for each
 * strategy and for full mode: messages always end within their buffers, and a
 * config the reader took as loadable passes unless it names another strategy
 * than the one asked or none.
 */
#include <stdio.h>

#include <openssl/evp.h>

#include "fuzz.h"
#include "planner/pluginconfig.h"

static const char *const strategies[] = {"mixed", "single", NULL};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct gm_plugin_configs c;
    char *text = gmf_cstr(data, size);
    json_object *cm = json_object_new_object();
    json_object *d = json_object_new_object();

    json_object_object_add(d, "k", json_object_new_string_len(text, (int)size));
    json_object_object_add(cm, "data", d);
    /* The same bytes as binaryData (base64, as the API server sends
     * them), and as is, for the decoder to refuse. */
    unsigned char *enc = malloc(4 * ((size + 2) / 3) + 1);
    gmf_assert(enc != NULL);
    EVP_EncodeBlock(enc, data, (int)size);
    json_object *b = json_object_new_object();
    json_object_object_add(b, "b", json_object_new_string((const char *)enc));
    json_object_object_add(b, "raw",
                           json_object_new_string_len(text, (int)size));
    json_object_object_add(cm, "binaryData", b);
    free(enc);
    gmf_assert(gm_plugin_configs_parse(cm, &c) == 0);
    const struct gm_plugin_config *pc = gm_map_get(&c.m, "k");
    gmf_assert(pc != NULL);
    gmf_assert(memchr(pc->error, '\0', sizeof(pc->error)) != NULL);
    const struct gm_plugin_config *pb = gm_map_get(&c.m, "b");
    const struct gm_plugin_config *pr = gm_map_get(&c.m, "raw");
    gmf_assert(pb != NULL && pr != NULL);
    gmf_assert(memchr(pr->error, '\0', sizeof(pr->error)) != NULL);
    /* Decoded, the bytes read as they do under data. */
    gmf_assert(strcmp(pb->error, pc->error) == 0);
    gmf_assert(strcmp(pb->mig_strategy, pc->mig_strategy) == 0);
    for (size_t i = 0; i < sizeof(strategies) / sizeof(*strategies); i++) {
        char msg[512];
        int rc = gm_plugin_config_check(&c, "ConfigMap fuzz/dp", "k",
                                        strategies[i], msg, sizeof(msg));
        /* A strategy's key must set that strategy (without one the
         * plugin runs none). */
        bool other =
            strategies[i] && strcmp(pc->mig_strategy, strategies[i]) != 0;
        gmf_assert((rc == 0) == (pc->error[0] == '\0' && !other));
        gmf_assert(rc == 0 || memchr(msg, '\0', sizeof(msg)) != NULL);
    }
    gm_plugin_configs_free(&c);
    json_object_put(cm);
    free(text);
    return 0;
}
