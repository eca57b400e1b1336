/* The controller's configuration file (YAML), e.g. the ConfigMap
 * gpumode-config in manifests/:
 *
 *   namespace: gpumode-system        # helper pods, leader lease
 *   profile: gpu-operator-hami       # or hami
 *   operatorNamespace: gpu-operator  # the GPU Operator's DaemonSets
 *   hamiNamespace: kube-system       # HAMi's device plugin DaemonSet
 *   agentImage: ghcr.io/gpumode/gpumode:0.1.0
 *   driverRoot: /run/nvidia/driver   # host path holding nvidia-smi
 *   nvidiaSmiPath: /usr/bin/nvidia-smi
 *   runtimeClassName: ""             # set to use the NVIDIA runtime instead
 *   migConfigMap: {namespace: gpu-operator, name: default-mig-parted-config,
 *                  key: config.yaml}
 *   hamiConfigMap: {namespace: kube-system, name: hami-device-plugin,
 *                   key: config.json}
 *   devicePluginConfigMap:           # ClusterPolicy devicePlugin.config.name:
 *     {namespace: gpu-operator,      # a switch whose node would select a
 *      name: ""}                     # config not in it waits; "": unchecked
 *   qps: 50
 *   burst: 100
 *   clientsTimeoutSeconds: 300       # stop/start of device plugins
 *   helperTimeoutSeconds: 900        # one agent run
 *   rebootTimeoutSeconds: 1200
 *   resourcesGraceSeconds: 600       # converged node offering other GPU
 *                                    # resources before status names it
 *   watchIdleSeconds: 120            # a watch silent this long (no event,
 *                                    # no bookmark) is reopened
 */
#ifndef GM_APP_CONFIG_H
#define GM_APP_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "app/profile.h"

struct gm_cm_ref {
    char *namespace; /* owned */
    char *name;      /* owned */
    char *key;       /* owned */
};

struct gm_ctl_config {
    char *namespace;    /* owned */
    char *profile_name; /* owned */
    char *operator_ns;  /* owned */
    char *hami_ns;      /* owned */
    /* The preset, with its pods looked for in operator_ns and hami_ns
     * (the namespaces borrowed from above); profile points here. */
    struct gm_profile profile_copy;
    const struct gm_profile *profile;
    char *agent_image;   /* owned */
    char *driver_root;   /* owned */
    char *nvidia_smi;    /* owned */
    char *runtime_class; /* owned or NULL */
    struct gm_cm_ref mig_cm;
    struct gm_cm_ref hami_cm;
    /* HAMi's own deviceSplitCount (its chart's devicePlugin.
     * deviceSplitCount): the vGPUs per GPU of a node without a split in its
     * entry, which a vgpu switch without spec.vgpu.splitCount verifies. */
    int hami_default_split;
    /* The device plugin's configs, one per key (key unused); name ""
     * when not checked, namespace the operator's by default. */
    struct gm_cm_ref plugin_cm;
    double qps;
    int burst;
    long clients_timeout_s;
    long helper_timeout_s;
    long reboot_timeout_s;
    long resources_grace_s;
    /* The API server bookmarks each watch about once a minute, so a
     * silence of 120 s means a dead connection, not a quiet cluster. */
    long watch_idle_s;
    /* How long a reboot helper that ended well (it did not reboot) may
     * wait for the node to report another boot before the switch fails:
     * the kubelet reports a new bootID well within it. Not in the file. */
    long reboot_unseen_s;
};

/* Defaults for every field. */
int gm_ctl_config_defaults(struct gm_ctl_config *c);

/* An object name (ConfigMaps, RuntimeClasses, nodes, GPUModePolicies): a
 * DNS subdomain of lower-case letters, digits, '-' and '.', alphanumeric at
 * both ends, at most 253. */
bool gm_ctl_name_ok(const char *s);

/* A namespace name: a DNS label (RFC 1123), as the API server requires.
 * A name that is not one fails every request, so it is refused at start. */
bool gm_ctl_namespace_ok(const char *s);
/* Loads path over the defaults; errors name the file and the field. */
int gm_ctl_config_load(struct gm_ctl_config *c, const char *path, char *err,
                       size_t err_len);
/* The same for the file's text (len bytes) read from elsewhere, e.g. the
 * controller's ConfigMap; errors name source. */
int gm_ctl_config_load_text(struct gm_ctl_config *c, const char *text,
                            size_t len, const char *source, char *err,
                            size_t err_len);
void gm_ctl_config_free(struct gm_ctl_config *c);

#endif
