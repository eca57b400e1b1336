/* Where the cluster is and who we are: kubeconfig files (merged the way kubectl
 * merges KUBECONFIG) or the in-cluster service-account files. Pure parsing; the
 * credentials that change over time (token files, exec plugins) live in auth.h.
 */
#ifndef GM_KUBE_CONFIG_H
#define GM_KUBE_CONFIG_H

#include <stddef.h>

/* interactiveMode: whether the plugin may talk to a person at the terminal
 * (stdin and stderr passed through). IfAvailable when unset. */
enum gm_exec_interactive {
    GM_EXEC_IF_AVAILABLE,
    GM_EXEC_NEVER,
    GM_EXEC_ALWAYS,
};

/* An exec credential plugin (client.authentication.k8s.io v1 or v1beta1). */
struct gm_kube_exec {
    char *api_version;  /* owned */
    char *command;      /* owned; run by execvp semantics, never a shell */
    char **args;        /* owned, NULL-terminated, args[0] is command */
    char **env;         /* owned, NULL-terminated "NAME=VALUE" additions */
    char *source;       /* owned; the file that defined it, for messages */
    char *install_hint; /* owned or NULL: said when command is not found */
    int provide_cluster_info; /* the cluster goes in KUBERNETES_EXEC_INFO */
    enum gm_exec_interactive interactive;
};

struct gm_kube_config {
    char *server;  /* owned; e.g. https://127.0.0.1:6443, no slash */
    char *ca_file; /* owned or NULL */
    char *ca_data; /* owned decoded PEM or NULL */
    size_t ca_data_len;
    int insecure;          /* insecure-skip-tls-verify */
    char *tls_server_name; /* owned or NULL */
    char *proxy_url;       /* owned or NULL */
    /* owned JSON or NULL: the cluster's client.authentication.k8s.io/exec
     * extension, spec.cluster.config for provideClusterInfo */
    char *exec_extension;
    /* The client certificate and key are both files or both inline data,
     * never one of each: a mixed pair is read into memory at load. */
    char *cert_file; /* owned or NULL */
    char *key_file;  /* owned or NULL */
    char *cert_data; /* owned decoded PEM or NULL */
    size_t cert_data_len;
    char *key_data; /* owned decoded PEM or NULL */
    size_t key_data_len;
    char *token;               /* owned or NULL */
    char *token_file;          /* owned or NULL; re-read by auth.c */
    struct gm_kube_exec *exec; /* owned or NULL */
    char *namespace;           /* owned; "default" when unset */
    char *context;             /* owned; the context used, or NULL */
};

/* Where every pod's service account is mounted. */
#define GM_KUBE_SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"

/* Loads kubeconfig. paths is a colon-separated list (as in KUBECONFIG):
 * named alone, the file must exist; in a list, missing files are skipped.
 * paths NULL follows client-go's default rules: $KUBECONFIG, else
 * ~/.kube/config, every missing file skipped, and when no file gives any
 * configuration (and context is NULL) the in-cluster one from
 * GM_KUBE_SA_DIR. context NULL means current-context.
 * On error returns a negative errno and sets *err to a malloc'd message that
 * names the file and the field (or, with nothing found, what was tried);
 * the caller frees it. *out is the caller's. */
int gm_kubeconfig_load(const char *paths, const char *context,
                       struct gm_kube_config **out, char **err);

/* gm_kubeconfig_load with the service-account directory of the in-cluster
 * fallback named, so tests need no /var/run/secrets. */
int gm_kubeconfig_load_sa(const char *paths, const char *context,
                          const char *sa_dir, struct gm_kube_config **out,
                          char **err);

/* In-cluster configuration from KUBERNETES_SERVICE_HOST/PORT and the files in
 * dir (normally /var/run/secrets/kubernetes.io/serviceaccount): token file
 * (kept as token_file so it is re-read), ca.crt and namespace. */
int gm_kubeconfig_in_cluster(const char *dir, struct gm_kube_config **out,
                             char **err);

void gm_kube_config_free(struct gm_kube_config *c);

#endif
