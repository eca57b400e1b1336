#include "app/profile.h"

#include <stdio.h>
#include <string.h>

#define DP "nvidia.com/gpu.deploy.device-plugin"
#define VDP "nvidia.com/vgpu.deploy.device-plugin"
#define GFD "nvidia.com/gpu.deploy.gpu-feature-discovery"
#define DCGME "nvidia.com/gpu.deploy.dcgm-exporter"
#define DCGM "nvidia.com/gpu.deploy.dcgm"
#define MIGM "nvidia.com/gpu.deploy.mig-manager"
/* The GPU Operator's driver DaemonSet pods: app=nvidia-driver-daemonset
 * (the ClusterPolicy's), app.kubernetes.io/component=nvidia-driver (also
 * the NVIDIADriver resource's). */
#define DRIVERS                                                                \
    {                                                                          \
        {"gpu-operator", "app=nvidia-driver-daemonset"},                       \
            {"gpu-operator", "app.kubernetes.io/component=nvidia-driver"},     \
    }

/* The NVIDIA GPU Operator plus HAMi as DaoCloud ships them: the operator's
 * operand labels switch each DaemonSet on and off per node, and HAMi's
 * plugin follows nvidia.com/vgpu.deploy.device-plugin. A mode sets only
 * the plugin labels (and keeps mig-manager off, so it cannot undo a layout
 * gpumode applied); feature discovery, DCGM and the exporter, stopped while
 * the hardware changes, get back the values they had with the plugin
 * (StartingClients restores every label the target does not set), so a
 * person's gpu.deploy.dcgm-exporter=false survives a switch. */
static const struct gm_profile preset_operator =
    {
        .name = "gpu-operator-hami",
        .modes =
            {
                [GM_MODE_FULL] =
                    {
                        .start = {.key = {DP, VDP, MIGM},
                                  .value = {"true", "false", "false"},
                                  .n = 3},
                        .plugins = {{"gpu-operator",
                                     "app=nvidia-device-plugin-daemonset"}},
                        .n_plugins = 1,
                    },
                [GM_MODE_VGPU] =
                    {
                        .start = {.key = {DP, VDP, MIGM},
                                  .value = {"false", "true", "false"},
                                  .n = 3},
                        .plugins = {{"kube-system",
                                     "app.kubernetes.io/component=hami-device-"
                                     "plugin"}},
                        .n_plugins = 1,
                    },
                [GM_MODE_MIG] =
                    {
                        .start = {.key = {DP, VDP, MIGM},
                                  .value = {"true", "false", "false"},
                                  .n = 3},
                        .plugins = {{"gpu-operator",
                                     "app=nvidia-device-plugin-daemonset"}},
                        .n_plugins = 1,
                    },
            },
        .stop = {.key = {DP, VDP, GFD, DCGME, DCGM, MIGM},
                 .value = {"false", "false", "false", "false", "false",
                           "false"},
                 .n = 6},
        .clients =
            {
                {"gpu-operator", "app=nvidia-device-plugin-daemonset"},
                {"kube-system",
                 "app.kubernetes.io/component=hami-device-plugin"},
                {"gpu-operator", "app=gpu-feature-discovery"},
                {"gpu-operator", "app=nvidia-dcgm-exporter"},
                {"gpu-operator", "app=nvidia-dcgm"},
                {"gpu-operator", "app=nvidia-mig-manager"},
            },
        .n_clients = 6,
        .drivers = DRIVERS,
        .n_drivers = 2,
        .mig_config_label = "nvidia.com/device-plugin.config",
        .vgpu_resource = "nvidia.com/vgpu",
};

/* Upstream HAMi's chart: its plugin DaemonSet selects gpu=on; the NVIDIA
 * plugin is deployed by the GPU Operator's operand label. So the operator
 * runs its other operands here too: feature discovery, DCGM and the
 * exporter hold the GPUs (a MIG mode change fails "In use by another
 * client" under them) and are stopped while the hardware changes, and
 * mig-manager stays off so it cannot undo a layout, as in
 * gpu-operator-hami. */
static const struct gm_profile preset_hami =
    {
        .name = "hami",
        .modes =
            {
                [GM_MODE_FULL] =
                    {
                        .start = {.key = {DP, "gpu", MIGM},
                                  .value = {"true", NULL, "false"},
                                  .n = 3},
                        .plugins = {{"gpu-operator",
                                     "app=nvidia-device-plugin-daemonset"}},
                        .n_plugins = 1,
                    },
                [GM_MODE_VGPU] =
                    {
                        .start = {.key = {DP, "gpu", MIGM},
                                  .value = {"false", "on", "false"},
                                  .n = 3},
                        .plugins = {{"kube-system",
                                     "app.kubernetes.io/component=hami-device-"
                                     "plugin"}},
                        .n_plugins = 1,
                    },
                [GM_MODE_MIG] =
                    {
                        .start = {.key = {DP, "gpu", MIGM},
                                  .value = {"true", NULL, "false"},
                                  .n = 3},
                        .plugins = {{"gpu-operator",
                                     "app=nvidia-device-plugin-daemonset"}},
                        .n_plugins = 1,
                    },
            },
        .stop = {.key = {DP, "gpu", GFD, DCGME, DCGM, MIGM},
                 .value = {"false", NULL, "false", "false", "false", "false"},
                 .n = 6},
        .clients =
            {
                {"gpu-operator", "app=nvidia-device-plugin-daemonset"},
                {"kube-system",
                 "app.kubernetes.io/component=hami-device-plugin"},
                {"gpu-operator", "app=gpu-feature-discovery"},
                {"gpu-operator", "app=nvidia-dcgm-exporter"},
                {"gpu-operator", "app=nvidia-dcgm"},
                {"gpu-operator", "app=nvidia-mig-manager"},
            },
        .n_clients = 6,
        .drivers = DRIVERS,
        .n_drivers = 2,
        .mig_config_label = "nvidia.com/device-plugin.config",
        .vgpu_resource = "nvidia.com/gpu",
};

const struct gm_profile *gm_profile_preset(const char *name)
{
    if (name == NULL || strcmp(name, preset_operator.name) == 0)
        return &preset_operator;
    if (strcmp(name, preset_hami.name) == 0)
        return &preset_hami;
    return NULL;
}

size_t gm_profile_start_labels(const struct gm_profile *p, enum gm_mode m,
                               const char *strategy, const char *own_config,
                               const char **keys, const char **values)
{
    const struct gm_label_set *s = &p->modes[m].start;
    size_t n = 0;

    for (size_t i = 0; i < s->n; i++) {
        keys[n] = s->key[i];
        values[n++] = s->value[i];
    }
    if (p->mig_config_label) {
        keys[n] = p->mig_config_label;
        /* Outside mig the plugin runs with the node's own config, or
         * plain when it has none. */
        values[n++] =
            m == GM_MODE_MIG ? (strategy ? strategy : "mixed") : own_config;
    }
    return n;
}
