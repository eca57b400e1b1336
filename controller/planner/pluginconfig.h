/* The NVIDIA device plugin's configs as the GPU Operator hands them out
 * (ClusterPolicy devicePlugin.config.name): one config file per key of a
 * ConfigMap, picked per node by the label nvidia.com/device-plugin.config.
 * A node whose label names a key that is not there, or a config the plugin
 * cannot load, gets a plugin (and feature discovery) that crash-loops; a
 * switch into it is found out only when the plugin never comes, after a
 * drain and clientsTimeoutSeconds. With the ConfigMap known, the planner
 * refuses such a switch before it drains anything. */
#ifndef GM_PLANNER_PLUGINCONFIG_H
#define GM_PLANNER_PLUGINCONFIG_H

#include <json-c/json.h>
#include <stdbool.h>

#include "common/map.h"
#include "common/mode.h"
#include "kube/node.h"

struct gm_plugin_config {
    char mig_strategy[8]; /* flags.migStrategy, "" when the file sets none */
    char error[256];      /* why the plugin cannot load it, "" when it can */
};

struct gm_plugin_configs {
    bool exists;     /* the ConfigMap exists */
    bool unreadable; /* it could not be listed: nothing can be checked */
    struct gm_map m; /* key -> owned struct gm_plugin_config */
};

/* Reads every key of ConfigMap cm (data and binaryData; NULL: it does
 * not exist) into out.
 * 0 or -ENOMEM; free with gm_plugin_configs_free either way. */
int gm_plugin_configs_parse(json_object *cm, struct gm_plugin_configs *out);
void gm_plugin_configs_free(struct gm_plugin_configs *c);

/* Is value one of the MIG strategies gpumode writes to the config label? */
bool gm_plugin_config_is_strategy(const char *value);

/* The node's own config label value, to keep outside mig: the one saved
 * while gpumode had the node in mig (gpumode.io/plugin-config), else the
 * label's current value unless that is a strategy gpumode wrote. Borrowed
 * from its arguments; NULL when the label should be absent. */
const char *gm_plugin_config_own(const char *saved, const char *current);

/* The key a node switched to mode `to` selects through label, as the
 * switch writes it: the strategy in mig; in full the node's own config
 * (gm_plugin_config_own), or, with nothing kept in gpumode.io/plugin-config,
 * the value a failed attempt's record saved (a retry). NULL when it selects
 * none (the operator's default) or the mode does not run the NVIDIA plugin
 * (vgpu). Returns strategy, a label or annotation value of n, or buf (len
 * bytes) holding a copy of the record's value. */
const char *gm_plugin_config_key(const struct gm_node *n, const char *label,
                                 enum gm_mode to, const char *strategy,
                                 char *buf, size_t len);

/* A full node's time-slicing as feature discovery labels it (it reads
 * the node's device plugin config): the replicas of each GPU, 1 when not
 * shared (nvidia.com/gpu.replicas). *renamed is set to
 * "nvidia.com/gpu.shared" when the plugin offers the replicas under that
 * name (renameByDefault: the product label then lacks -SHARED), else
 * left alone. */
int gm_plugin_config_replicas(const struct gm_node *n, const char **renamed);

/* 0 when the plugin can load key (with strategy set: in mig under that
 * strategy); else -EINVAL with msg naming source, the key and the fix. */
int gm_plugin_config_check(const struct gm_plugin_configs *c,
                           const char *source, const char *key,
                           const char *strategy, char *msg, size_t len);

#endif
