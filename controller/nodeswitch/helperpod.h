/* The short-lived privileged pod that runs gpumode-agent on a node. Its name
 * is deterministic (node, step, attempt and arguments hashed), so a
 * restarted controller finds the pod it created before instead of starting
 * a second one. */
#ifndef GM_NODESWITCH_HELPERPOD_H
#define GM_NODESWITCH_HELPERPOD_H

#include <json-c/json.h>
#include <stddef.h>

#define GM_HELPER_LABEL_KEY "app.kubernetes.io/name"
#define GM_HELPER_LABEL_VALUE "gpumode-agent"
#define GM_HELPER_NODE_LABEL "gpumode.io/node"

struct gm_helper_config {
    const char *namespace;     /* where helper pods live */
    const char *image;         /* the controller's own image */
    const char *driver_root;   /* host path mounted at /driver-root */
    const char *nvidia_smi;    /* path under the driver root */
    const char *runtime_class; /* NULL or e.g. "nvidia" */
    long deadline_s;           /* activeDeadlineSeconds */
};

struct gm_helper_step {
    const char *node;
    const char *step; /* "probe", "apply", "rollback", "reboot" */
    int attempt;
    const char *const *argv; /* agent arguments after the program name */
    size_t argc;
};

/* Writes the pod name ("gpumode-<node>-<step>-<hash>", at most 63
 * characters) into out. */
void gm_helper_pod_name(const struct gm_helper_step *s, char *out,
                        size_t out_len);
/* The Pod object; the caller owns it (json_object_put). */
json_object *gm_helper_pod(const struct gm_helper_config *c,
                           const struct gm_helper_step *s);

#endif
