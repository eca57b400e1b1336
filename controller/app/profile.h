/* Mode profiles: which node labels start and stop which GPU software, and how
 * to see that the target's device plugin is serving. Clusters deploy device
 * plugins differently, so this is configuration with built-in presets
 * (SPEC.md, "Mode profiles"). */
#ifndef GM_APP_PROFILE_H
#define GM_APP_PROFILE_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/mode.h"

#define GM_PROFILE_MAX_LABELS 12
#define GM_PROFILE_MAX_PLUGINS 4

/* value NULL means the label is removed. */
struct gm_label_set {
    const char *key[GM_PROFILE_MAX_LABELS];
    const char *value[GM_PROFILE_MAX_LABELS];
    size_t n;
};

/* Pods that must be Running and Ready on the node for the mode to count as
 * served, e.g. the device plugin DaemonSet's pods. */
struct gm_plugin_ref {
    const char *namespace;
    const char *selector; /* label selector, "k=v,k2=v2" (equality only) */
};

struct gm_mode_profile {
    struct gm_label_set start; /* set to serve the mode */
    struct gm_plugin_ref plugins[GM_PROFILE_MAX_PLUGINS];
    size_t n_plugins;
};

struct gm_profile {
    const char *name;
    struct gm_mode_profile modes[GM_MODE_COUNT];
    /* Set while the hardware changes: every GPU client stopped. */
    struct gm_label_set stop;
    /* Where GPU client pods live, to wait for them to go. */
    struct gm_plugin_ref clients[8];
    size_t n_clients;
    /* The GPU driver's pods (the GPU Operator's driver container), when
     * the driver runs in one: the agent's nvidia-smi needs the driver, so
     * no helper starts while such a pod on the node is not Ready (after a
     * reboot the node is Ready long before the driver is built and
     * loaded). A driver installed on the host has none. */
    struct gm_plugin_ref drivers[2];
    size_t n_drivers;
    /* The label whose value selects the device plugin's config; the
     * strategy (single|mixed) is written to it in mig mode, and outside
     * mig it carries the node's own value (say a time-slicing config).
     * NULL: none. */
    const char *mig_config_label;
    /* The resource the vgpu plugin advertises: GPUs x split of it. */
    const char *vgpu_resource;
};

/* The built-in preset by name ("gpu-operator-hami", "hami"), or NULL. */
const struct gm_profile *gm_profile_preset(const char *name);

/* Labels that a mode sets, with the MIG strategy filled in and, outside
 * mig, the config label set to own_config (NULL: removed). Returns the
 * count written to keys/values (at most GM_PROFILE_MAX_LABELS + 1). The
 * strings are borrowed from the profile, strategy or own_config. */
size_t gm_profile_start_labels(const struct gm_profile *p, enum gm_mode m,
                               const char *strategy, const char *own_config,
                               const char **keys, const char **values);

/* Which value of mig_config_label is the node's own, outside mig:
 * gm_plugin_config_own in planner/pluginconfig.h. */

#endif
