#include "nodeswitch/helperpod.h"

#include <ctype.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

void gm_helper_pod_name(const struct gm_helper_step *s, char *out,
                        size_t out_len)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    char attempt[16];
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();

    snprintf(attempt, sizeof(attempt), "%d", s->attempt);
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    EVP_DigestUpdate(ctx, s->node, strlen(s->node) + 1);
    EVP_DigestUpdate(ctx, s->step, strlen(s->step) + 1);
    EVP_DigestUpdate(ctx, attempt, strlen(attempt) + 1);
    for (size_t i = 0; i < s->argc; i++)
        EVP_DigestUpdate(ctx, s->argv[i], strlen(s->argv[i]) + 1);
    EVP_DigestFinal_ex(ctx, md, &md_len);
    EVP_MD_CTX_free(ctx);

    /* Node names are DNS subdomains up to 253 characters; keep the name a
     * DNS label by cutting the node part, the hash keeps it unique. */
    char node[36];
    snprintf(node, sizeof(node), "%s", s->node);
    size_t n = strlen(node);
    while (n > 0 && (node[n - 1] == '.' || node[n - 1] == '-'))
        node[--n] = '\0';
    for (char *p = node; *p; p++)
        if (*p == '.')
            *p = '-';
    snprintf(out, out_len, "gpumode-%s-%s-%02x%02x%02x%02x%02x", node, s->step,
             md[0], md[1], md[2], md[3], md[4]);
}

static json_object *str(const char *s)
{
    return json_object_new_string(s);
}

static json_object *env_var(const char *name, const char *value)
{
    json_object *e = json_object_new_object();
    json_object_object_add(e, "name", str(name));
    json_object_object_add(e, "value", str(value));
    return e;
}

json_object *gm_helper_pod(const struct gm_helper_config *c,
                           const struct gm_helper_step *s)
{
    char name[64];
    char smi[512];
    json_object *pod = json_object_new_object();
    json_object *meta = json_object_new_object();
    json_object *labels = json_object_new_object();
    json_object *spec = json_object_new_object();
    json_object *ctr = json_object_new_object();
    json_object *cmd = json_object_new_array();
    json_object *env = json_object_new_array();
    json_object *tol = json_object_new_object();
    json_object *tols = json_object_new_array();
    json_object *sc = json_object_new_object();

    gm_helper_pod_name(s, name, sizeof(name));
    json_object_object_add(pod, "apiVersion", str("v1"));
    json_object_object_add(pod, "kind", str("Pod"));
    json_object_object_add(meta, "name", str(name));
    json_object_object_add(meta, "namespace", str(c->namespace));
    json_object_object_add(labels, GM_HELPER_LABEL_KEY,
                           str(GM_HELPER_LABEL_VALUE));
    json_object_object_add(labels, "app.kubernetes.io/managed-by",
                           str("gpumode"));
    /* A label value is at most 63 characters, a node name up to 253: a
     * longer name is cut (the API server refuses the pod otherwise), and
     * the controller finds a node's helpers by spec.nodeName. */
    char node[64];
    snprintf(node, sizeof(node), "%s", s->node);
    for (size_t n = strlen(node); n > 0 && !isalnum((unsigned char)node[n - 1]);
         n--)
        node[n - 1] = '\0';
    json_object_object_add(labels, GM_HELPER_NODE_LABEL, str(node));
    json_object_object_add(labels, "gpumode.io/step", str(s->step));
    json_object_object_add(meta, "labels", labels);
    json_object_object_add(pod, "metadata", meta);

    /* Pinned with nodeName: the scheduler is bypassed, so a cordoned node
     * still runs it; every taint is tolerated for the same reason. */
    json_object_object_add(spec, "nodeName", str(s->node));
    json_object_object_add(spec, "restartPolicy", str("Never"));
    json_object_object_add(spec, "automountServiceAccountToken",
                           json_object_new_boolean(0));
    json_object_object_add(spec, "priorityClassName",
                           str("system-node-critical"));
    json_object_object_add(
        spec, "activeDeadlineSeconds",
        json_object_new_int64(c->deadline_s > 0 ? c->deadline_s : 900));
    json_object_object_add(spec, "terminationGracePeriodSeconds",
                           json_object_new_int(5));
    /* The host's PID namespace, as NVIDIA's mig-manager runs: the driver
     * names the processes on a GPU by their host PIDs, which nvidia-smi in
     * a PID namespace of its own cannot resolve (NVIDIA/nvidia-docker
     * #179, #1483), so the agent's check for a GPU in use would see
     * nothing; and reboot(2) in a container's namespace would only end
     * that namespace. */
    json_object_object_add(spec, "hostPID", json_object_new_boolean(1));
    json_object_object_add(tol, "operator", str("Exists"));
    json_object_array_add(tols, tol);
    json_object_object_add(spec, "tolerations", tols);
    if (c->runtime_class && c->runtime_class[0])
        json_object_object_add(spec, "runtimeClassName", str(c->runtime_class));

    json_object_object_add(ctr, "name", str("agent"));
    json_object_object_add(ctr, "image", str(c->image));
    json_object_object_add(ctr, "imagePullPolicy", str("IfNotPresent"));
    /* No shell anywhere: the agent is the entrypoint and takes argv. */
    json_object_array_add(cmd, str("gpumode-agent"));
    for (size_t i = 0; i < s->argc; i++)
        json_object_array_add(cmd, str(s->argv[i]));
    json_object_object_add(ctr, "command", cmd);
    /* nvidia-smi needs its driver's libraries (libnvidia-ml), which the
     * image does not have. With a runtime class the NVIDIA runtime injects
     * the tools and, for MIG, the config and monitor capabilities; with
     * the driver root mounted the agent runs nvidia-smi chrooted there. The
     * path is the one inside the root either way. */
    snprintf(smi, sizeof(smi), "%s",
             c->nvidia_smi ? c->nvidia_smi : "/usr/bin/nvidia-smi");
    json_object_array_add(env, env_var("NVIDIA_SMI", smi));
    if (c->runtime_class && c->runtime_class[0]) {
        json_object_array_add(env, env_var("NVIDIA_VISIBLE_DEVICES", "all"));
        json_object_array_add(env,
                              env_var("NVIDIA_DRIVER_CAPABILITIES", "utility"));
        json_object_array_add(env, env_var("NVIDIA_MIG_CONFIG_DEVICES", "all"));
        json_object_array_add(env,
                              env_var("NVIDIA_MIG_MONITOR_DEVICES", "all"));
    } else {
        json_object_array_add(env,
                              env_var("GPUMODE_DRIVER_ROOT", "/driver-root"));
    }
    json_object_object_add(ctr, "env", env);
    json_object_object_add(ctr, "terminationMessagePath",
                           str("/dev/termination-log"));
    /* The agent writes its result to the file; an agent that leaves none
     * (killed midway, out of memory) is failed with the tail of its log,
     * which the kubelet puts there instead. */
    json_object_object_add(ctr, "terminationMessagePolicy",
                           str("FallbackToLogsOnError"));
    /* Root, whatever user the image runs as (the controller's image runs
     * as 65532): changing MIG mode, resetting and creating instances need
     * it, and so does chroot. */
    json_object_object_add(sc, "privileged", json_object_new_boolean(1));
    json_object_object_add(sc, "runAsUser", json_object_new_int(0));
    json_object_object_add(sc, "runAsGroup", json_object_new_int(0));
    json_object_object_add(ctr, "securityContext", sc);
    if (!c->runtime_class || !c->runtime_class[0]) {
        json_object *vm = json_object_new_object();
        json_object *vms = json_object_new_array();
        json_object_object_add(vm, "name", str("driver-root"));
        json_object_object_add(vm, "mountPath", str("/driver-root"));
        json_object_object_add(vm, "readOnly", json_object_new_boolean(1));
        /* A driver container's root is a mount made after the node booted
         * (and again when that container restarts): see it as it is. */
        json_object_object_add(vm, "mountPropagation", str("HostToContainer"));
        json_object_array_add(vms, vm);
        json_object_object_add(ctr, "volumeMounts", vms);

        json_object *hp = json_object_new_object();
        json_object *vol = json_object_new_object();
        json_object *vols = json_object_new_array();
        json_object_object_add(hp, "path",
                               str(c->driver_root ? c->driver_root : "/"));
        json_object_object_add(hp, "type", str("Directory"));
        json_object_object_add(vol, "name", str("driver-root"));
        json_object_object_add(vol, "hostPath", hp);
        json_object_array_add(vols, vol);
        json_object_object_add(spec, "volumes", vols);
    }
    json_object *ctrs = json_object_new_array();
    json_object_array_add(ctrs, ctr);
    json_object_object_add(spec, "containers", ctrs);
    json_object_object_add(pod, "spec", spec);
    return pod;
}
