#include "app/config.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/yaml.h"
#include "nodeswitch/record.h"

static int set(char **dst, const char *v)
{
    return gm_set_str(dst, v);
}

/* The presets name the namespaces the GPU Operator and HAMi install to by
 * default; clusters differ (OpenShift's nvidia-gpu-operator, hami-system). */
#define PRESET_OPERATOR_NS "gpu-operator"
#define PRESET_HAMI_NS "kube-system"

static void place(const struct gm_ctl_config *c, struct gm_plugin_ref *r)
{
    if (r->namespace && strcmp(r->namespace, PRESET_OPERATOR_NS) == 0)
        r->namespace = c->operator_ns;
    else if (r->namespace && strcmp(r->namespace, PRESET_HAMI_NS) == 0)
        r->namespace = c->hami_ns;
}

/* Copies the named preset and points its pod references at the configured
 * namespaces. Returns -ENOENT for an unknown preset. */
static int use_profile(struct gm_ctl_config *c)
{
    const struct gm_profile *preset = gm_profile_preset(c->profile_name);
    if (preset == NULL)
        return -ENOENT;
    c->profile_copy = *preset;
    for (size_t m = 0; m < GM_MODE_COUNT; m++)
        for (size_t i = 0; i < c->profile_copy.modes[m].n_plugins; i++)
            place(c, &c->profile_copy.modes[m].plugins[i]);
    for (size_t i = 0; i < c->profile_copy.n_clients; i++)
        place(c, &c->profile_copy.clients[i]);
    for (size_t i = 0; i < c->profile_copy.n_drivers; i++)
        place(c, &c->profile_copy.drivers[i]);
    c->profile = &c->profile_copy;
    return 0;
}

bool gm_ctl_namespace_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 63 || s[0] == '-' || s[n - 1] == '-')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') ||
              s[i] == '-'))
            return false;
    return true;
}

bool gm_ctl_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 253 || !isalnum((unsigned char)s[0]) ||
        !isalnum((unsigned char)s[n - 1]))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') ||
              s[i] == '-' || s[i] == '.'))
            return false;
    return true;
}

/* A ConfigMap data key: letters, digits, '-', '_' and '.', at most 253. */
static bool cm_key_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 253 || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '_' &&
            s[i] != '.')
            return false;
    return true;
}

/* Values the API server would refuse only once a switch is under way (the
 * helper pod, a ConfigMap write) or that would select nothing: the key
 * that is wrong, or NULL; *why says how. */
static const char *bad_value(const struct gm_ctl_config *c, const char **why)
{
    static const char subdomain[] =
        "must be an object name (lower-case letters, digits, '-' and '.', "
        "at most 253)";
    static const char key[] =
        "must be a ConfigMap key (letters, digits, '-', '_' and '.')";
    if (c->agent_image[0] == '\0' || strpbrk(c->agent_image, " \t\n")) {
        *why = "must be an image reference, without spaces";
        return "agentImage";
    }
    *why = "must be an absolute path";
    if (c->driver_root[0] != '/')
        return "driverRoot";
    if (c->nvidia_smi[0] != '/')
        return "nvidiaSmiPath";
    *why = subdomain;
    if (c->runtime_class && c->runtime_class[0] &&
        !gm_ctl_name_ok(c->runtime_class))
        return "runtimeClassName";
    if (!gm_ctl_name_ok(c->mig_cm.name))
        return "migConfigMap.name";
    if (!gm_ctl_name_ok(c->hami_cm.name))
        return "hamiConfigMap.name";
    if (c->plugin_cm.name[0] && !gm_ctl_name_ok(c->plugin_cm.name))
        return "devicePluginConfigMap.name";
    *why = key;
    if (!cm_key_ok(c->mig_cm.key))
        return "migConfigMap.key";
    if (!cm_key_ok(c->hami_cm.key))
        return "hamiConfigMap.key";
    return NULL;
}

int gm_ctl_config_defaults(struct gm_ctl_config *c)
{
    int err = 0;
    memset(c, 0, sizeof(*c));
    err |= set(&c->namespace, "gpumode-system");
    err |= set(&c->profile_name, "gpu-operator-hami");
    err |= set(&c->operator_ns, PRESET_OPERATOR_NS);
    err |= set(&c->hami_ns, PRESET_HAMI_NS);
    err |= set(&c->agent_image, "ghcr.io/gpumode/gpumode:" GM_VERSION);
    err |= set(&c->driver_root, "/run/nvidia/driver");
    err |= set(&c->nvidia_smi, "/usr/bin/nvidia-smi");
    err |= set(&c->mig_cm.namespace, "gpu-operator");
    err |= set(&c->mig_cm.name, "default-mig-parted-config");
    err |= set(&c->mig_cm.key, "config.yaml");
    err |= set(&c->hami_cm.namespace, "kube-system");
    err |= set(&c->hami_cm.name, "hami-device-plugin");
    err |= set(&c->hami_cm.key, "config.json");
    err |= set(&c->plugin_cm.name, "");
    if (!err)
        use_profile(c);
    c->qps = 50;
    c->hami_default_split = 10;
    c->burst = 100;
    c->clients_timeout_s = 300;
    c->helper_timeout_s = 900;
    c->reboot_timeout_s = 1200;
    c->resources_grace_s = 600;
    c->watch_idle_s = 120;
    c->reboot_unseen_s = 60;
    return err ? -ENOMEM : 0;
}

static json_object *get(json_object *o, const char *k)
{
    json_object *v = NULL;
    if (o && json_object_object_get_ex(o, k, &v))
        return v;
    return NULL;
}

static int read_str(json_object *o, const char *field, const char *k,
                    char **dst, const char *path, char *err, size_t err_len)
{
    json_object *v = get(o, k);
    if (v == NULL)
        return 0;
    if (!json_object_is_type(v, json_type_string)) {
        snprintf(err, err_len, "%s: %s%s: must be a string", path, field, k);
        return -EINVAL;
    }
    return set(dst, json_object_get_string(v));
}

static int read_num(json_object *o, const char *k, double min, double max,
                    double *dst, const char *path, char *err, size_t err_len)
{
    json_object *v = get(o, k);
    if (v == NULL)
        return 0;
    if (!json_object_is_type(v, json_type_int) &&
        !json_object_is_type(v, json_type_double)) {
        snprintf(err, err_len, "%s: %s: must be a number", path, k);
        return -EINVAL;
    }
    double d = json_object_get_double(v);
    if (d < min || d > max) {
        snprintf(err, err_len, "%s: %s: %g is out of range [%g, %g]", path, k,
                 d, min, max);
        return -EINVAL;
    }
    *dst = d;
    return 0;
}

/* read_num for a count or a number of seconds: 1.5 is refused rather
 * than cut to 1 without a word. */
static int read_whole(json_object *o, const char *k, double min, double max,
                      double *dst, const char *path, char *err, size_t err_len)
{
    double d = *dst;
    int rc = read_num(o, k, min, max, &d, path, err, err_len);
    if (!rc && d != (double)(long)d) {
        snprintf(err, err_len, "%s: %s: %g is not a whole number", path, k, d);
        return -EINVAL;
    }
    if (!rc)
        *dst = d;
    return rc;
}

static int read_cm(json_object *o, const char *k, struct gm_cm_ref *ref,
                   const char *path, char *err, size_t err_len)
{
    json_object *v = get(o, k);
    char field[64];
    if (v == NULL)
        return 0;
    if (!json_object_is_type(v, json_type_object)) {
        snprintf(err, err_len, "%s: %s: must be a mapping", path, k);
        return -EINVAL;
    }
    json_object_object_foreach(v, key, val)
    {
        (void)val;
        if (strcmp(key, "namespace") != 0 && strcmp(key, "name") != 0 &&
            strcmp(key, "key") != 0) {
            snprintf(err, err_len,
                     "%s: %s.%s: unknown field (known: namespace, name, key)",
                     path, k, key);
            return -EINVAL;
        }
    }
    snprintf(field, sizeof(field), "%s.", k);
    int rc =
        read_str(v, field, "namespace", &ref->namespace, path, err, err_len);
    if (!rc)
        rc = read_str(v, field, "name", &ref->name, path, err, err_len);
    if (!rc)
        rc = read_str(v, field, "key", &ref->key, path, err, err_len);
    return rc;
}

/* Reads the parsed config o (owned, put here; NULL: empty) over c; errors
 * name path. */
static int load(struct gm_ctl_config *c, json_object *o, const char *path,
                char *err, size_t err_len)
{
    static const char *const known[] = {
        "namespace",
        "profile",
        "operatorNamespace",
        "hamiNamespace",
        "agentImage",
        "driverRoot",
        "nvidiaSmiPath",
        "runtimeClassName",
        "migConfigMap",
        "hamiConfigMap",
        "hamiDefaultSplitCount",
        "devicePluginConfigMap",
        "qps",
        "burst",
        "clientsTimeoutSeconds",
        "helperTimeoutSeconds",
        "rebootTimeoutSeconds",
        "resourcesGraceSeconds",
        "watchIdleSeconds",
    };
    int rc;
    if (o == NULL)
        return 0;
    if (!json_object_is_type(o, json_type_object)) {
        snprintf(err, err_len, "%s: must be a mapping", path);
        json_object_put(o);
        return -EINVAL;
    }
    json_object_object_foreach(o, key, val)
    {
        (void)val;
        size_t i;
        for (i = 0; i < sizeof(known) / sizeof(known[0]); i++)
            if (strcmp(key, known[i]) == 0)
                break;
        if (i == sizeof(known) / sizeof(known[0])) {
            snprintf(err, err_len, "%s: %s: unknown field", path, key);
            json_object_put(o);
            return -EINVAL;
        }
    }
    double qps = c->qps, burst = c->burst, ct = (double)c->clients_timeout_s,
           ht = (double)c->helper_timeout_s, rt = (double)c->reboot_timeout_s,
           rg = (double)c->resources_grace_s, wi = (double)c->watch_idle_s,
           split = (double)c->hami_default_split;
    rc = read_str(o, "", "namespace", &c->namespace, path, err, err_len);
    if (!rc)
        rc = read_str(o, "", "profile", &c->profile_name, path, err, err_len);
    if (!rc)
        rc = read_str(o, "", "operatorNamespace", &c->operator_ns, path, err,
                      err_len);
    if (!rc)
        rc = read_str(o, "", "hamiNamespace", &c->hami_ns, path, err, err_len);
    if (!rc)
        rc = read_str(o, "", "agentImage", &c->agent_image, path, err, err_len);
    if (!rc)
        rc = read_str(o, "", "driverRoot", &c->driver_root, path, err, err_len);
    if (!rc)
        rc = read_str(o, "", "nvidiaSmiPath", &c->nvidia_smi, path, err,
                      err_len);
    if (!rc)
        rc = read_str(o, "", "runtimeClassName", &c->runtime_class, path, err,
                      err_len);
    if (!rc)
        rc = read_cm(o, "migConfigMap", &c->mig_cm, path, err, err_len);
    if (!rc)
        rc = read_cm(o, "hamiConfigMap", &c->hami_cm, path, err, err_len);
    if (!rc)
        rc = read_cm(o, "devicePluginConfigMap", &c->plugin_cm, path, err,
                     err_len);
    if (!rc)
        rc = read_whole(o, "hamiDefaultSplitCount", 1, 1000, &split, path, err,
                        err_len);
    if (!rc)
        rc = read_num(o, "qps", 1, 10000, &qps, path, err, err_len);
    if (!rc)
        rc = read_whole(o, "burst", 1, 10000, &burst, path, err, err_len);
    if (!rc)
        rc = read_whole(o, "clientsTimeoutSeconds", 10, 86400, &ct, path, err,
                        err_len);
    if (!rc)
        rc = read_whole(o, "helperTimeoutSeconds", 30, 86400, &ht, path, err,
                        err_len);
    if (!rc)
        rc = read_whole(o, "rebootTimeoutSeconds", 60, 86400, &rt, path, err,
                        err_len);
    if (!rc)
        rc = read_whole(o, "resourcesGraceSeconds", 0, 86400, &rg, path, err,
                        err_len);
    if (!rc)
        rc = read_whole(o, "watchIdleSeconds", 10, 3600, &wi, path, err,
                        err_len);
    bool plugin_cm_set = get(o, "devicePluginConfigMap") != NULL;
    json_object_put(o);
    /* Re-pointed at once: the namespaces it borrowed may have been
     * replaced above, also when a later field failed. */
    int unknown_profile = use_profile(c);
    if (unknown_profile)
        c->profile = NULL;
    if (rc)
        return rc;
    c->qps = qps;
    c->burst = (int)burst;
    c->clients_timeout_s = (long)ct;
    c->helper_timeout_s = (long)ht;
    c->reboot_timeout_s = (long)rt;
    c->resources_grace_s = (long)rg;
    c->watch_idle_s = (long)wi;
    c->hami_default_split = (int)split;
    if (plugin_cm_set && (c->plugin_cm.name == NULL || !c->plugin_cm.name[0])) {
        snprintf(err, err_len,
                 "%s: devicePluginConfigMap.name: required (the ConfigMap "
                 "the ClusterPolicy's devicePlugin.config.name names); "
                 "leave devicePluginConfigMap out to check nothing",
                 path);
        return -EINVAL;
    }
    if (c->plugin_cm.key) {
        snprintf(err, err_len,
                 "%s: devicePluginConfigMap.key: not used: every key of the "
                 "ConfigMap is one device plugin config",
                 path);
        return -EINVAL;
    }
    if (c->plugin_cm.namespace == NULL &&
        set(&c->plugin_cm.namespace, c->operator_ns))
        return -ENOMEM;
    static const char *const ns_fields[] = {
        "namespace",
        "operatorNamespace",
        "hamiNamespace",
        "devicePluginConfigMap.namespace",
        "migConfigMap.namespace",
        "hamiConfigMap.namespace",
    };
    const char *const ns_values[] = {
        c->namespace,           c->operator_ns,      c->hami_ns,
        c->plugin_cm.namespace, c->mig_cm.namespace, c->hami_cm.namespace,
    };
    const char *bad_ns = NULL;
    for (size_t i = 0; i < sizeof(ns_fields) / sizeof(ns_fields[0]); i++)
        if (!gm_ctl_namespace_ok(ns_values[i])) {
            bad_ns = ns_fields[i];
            break;
        }
    if (bad_ns) {
        snprintf(err, err_len,
                 "%s: %s: not a namespace name (lower-case letters, digits "
                 "and '-', at most 63)",
                 path, bad_ns);
        return -EINVAL;
    }
    if (unknown_profile) {
        snprintf(err, err_len,
                 "%s: profile: unknown preset \"%s\" (known: "
                 "gpu-operator-hami, hami)",
                 path, c->profile_name);
        return -EINVAL;
    }
    const char *why, *bad = bad_value(c, &why);
    if (bad) {
        snprintf(err, err_len, "%s: %s: %s", path, bad, why);
        return -EINVAL;
    }
    return 0;
}

void gm_ctl_config_free(struct gm_ctl_config *c)
{
    free(c->namespace);
    free(c->profile_name);
    free(c->operator_ns);
    free(c->hami_ns);
    free(c->agent_image);
    free(c->driver_root);
    free(c->nvidia_smi);
    free(c->runtime_class);
    free(c->mig_cm.namespace);
    free(c->mig_cm.name);
    free(c->mig_cm.key);
    free(c->hami_cm.namespace);
    free(c->hami_cm.name);
    free(c->hami_cm.key);
    free(c->plugin_cm.namespace);
    free(c->plugin_cm.name);
    free(c->plugin_cm.key);
    memset(c, 0, sizeof(*c));
}

int gm_ctl_config_load(struct gm_ctl_config *c, const char *path, char *err,
                       size_t err_len)
{
    json_object *o = NULL;
    int rc = gm_yaml_parse_file(path, &o, err, err_len);
    return rc ? rc : load(c, o, path, err, err_len);
}

int gm_ctl_config_load_text(struct gm_ctl_config *c, const char *text,
                            size_t len, const char *source, char *err,
                            size_t err_len)
{
    json_object *o = NULL;
    char why[512];
    int rc = gm_yaml_parse(text, len, &o, why, sizeof(why));
    if (rc) {
        snprintf(err, err_len, "%s: %s", source, why);
        return rc;
    }
    return load(c, o, source, err, err_len);
}
