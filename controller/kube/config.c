/* Kubeconfig loading. Each file is parsed with libyaml's document API (JSON
 * kubeconfigs are YAML too); the documents stay alive while the clusters,
 * users and contexts of all files are indexed by name, first file wins, the
 * way kubectl merges KUBECONFIG. Only the entries the chosen context names
 * are then decoded, so a broken entry nobody uses does not stop us. */
#include "kube/config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <yaml.h>

#include "common/base64.h"
#include "common/buf.h"
#include "common/yaml.h"

/* A kubeconfig holding more than this is not a kubeconfig. */
#define KUBECONFIG_MAX (16u << 20)
/* Service-account files are small; the cap only guards against mistakes. */
#define SA_FILE_MAX (1u << 20)
/* A client certificate chain or key file; the same kind of guard. */
#define PEM_FILE_MAX (1u << 20)

struct kfile {
    char *path; /* owned; as the user spelled it, for messages */
    char *dir;  /* owned; absolute directory, for relative paths */
    yaml_document_t doc;
    int have_doc;
};

/* One cluster, user or context entry; points into a kfile's document. */
struct entry {
    const char *name; /* borrowed from the document */
    struct kfile *file;
    yaml_node_t *body; /* the inner "cluster"/"user"/"context" mapping */
    int index;         /* position in that file's list, for messages */
};

struct table {
    struct entry *v; /* owned array */
    size_t n;
};

struct loader {
    struct kfile *files; /* owned array */
    size_t nfiles;
    struct table clusters, users, contexts;
    const char *current; /* borrowed; first non-empty current-context */
    struct kfile *current_file;
    char *err; /* owned message, handed to the caller */
};

/* Formats "<where>: <message>" into L->err. Returns -EINVAL so callers can
 * write `return fail(...)`; a different errno is passed through fail_errno. */
static int fail_errno(struct loader *L, int err, const char *where,
                      const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail_errno(struct loader *L, int err, const char *where,
                      const char *fmt, ...)
{
    struct gm_buf b;
    va_list ap;
    char msg[512];

    if (L->err)
        return err;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    gm_buf_init(&b, 4096);
    gm_buf_appendf(&b, "%s: %s", where, msg);
    L->err = gm_buf_steal(&b);
    return err;
}

#define fail(L, where, ...) fail_errno((L), -EINVAL, (where), __VA_ARGS__)

/* ---- small helpers over libyaml's document ---- */

static const char *scalar_value(const yaml_node_t *n)
{
    return (const char *)n->data.scalar.value;
}

/* A plain `~`, `null` or empty scalar means "not set", as in YAML 1.1. */
static int is_null(const yaml_node_t *n)
{
    if (n == NULL)
        return 1;
    if (n->type != YAML_SCALAR_NODE)
        return 0;
    if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return 0;
    const char *v = scalar_value(n);
    return v[0] == '\0' || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
           strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0;
}

static yaml_node_t *map_get(yaml_document_t *d, yaml_node_t *map,
                            const char *key)
{
    if (map == NULL || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start;
         p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(d, p->key);
        if (k && k->type == YAML_SCALAR_NODE &&
            strcmp(scalar_value(k), key) == 0) {
            yaml_node_t *v = yaml_document_get_node(d, p->value);
            return is_null(v) ? NULL : v;
        }
    }
    return NULL;
}

static size_t seq_len(const yaml_node_t *seq)
{
    return (size_t)(seq->data.sequence.items.top -
                    seq->data.sequence.items.start);
}

static yaml_node_t *seq_at(yaml_document_t *d, yaml_node_t *seq, size_t i)
{
    return yaml_document_get_node(d, seq->data.sequence.items.start[i]);
}

/* The index of the first of seq's items before `before` named name (one
 * without a name is named ""), or -1. */
static long earlier_named(yaml_document_t *d, yaml_node_t *seq, size_t before,
                          const char *name)
{
    for (size_t j = 0; j < before; j++) {
        yaml_node_t *n = map_get(d, seq_at(d, seq, j), "name");
        const char *s = n && n->type == YAML_SCALAR_NODE ? scalar_value(n) : "";
        if (strcmp(s, name) == 0)
            return (long)j;
    }
    return -1;
}

/* Reads an optional string field; *out stays NULL when it is absent. The
 * string is borrowed from the document. */
static int get_str(struct loader *L, struct kfile *f, yaml_node_t *map,
                   const char *prefix, const char *key, const char **out)
{
    yaml_node_t *v = map_get(&f->doc, map, key);
    *out = NULL;
    if (v == NULL)
        return 0;
    if (v->type != YAML_SCALAR_NODE)
        return fail(L, f->path, "%s%s%s: expected a string", prefix,
                    prefix[0] ? "." : "", key);
    /* "" is unset, as Go's zero value is to client-go: templated
     * kubeconfigs write certificate-authority-data: "" and the like. */
    *out = scalar_value(v)[0] ? scalar_value(v) : NULL;
    return 0;
}

static int get_bool(struct loader *L, struct kfile *f, yaml_node_t *map,
                    const char *prefix, const char *key, int *out)
{
    static const char *const yes[] = {"true", "yes", "on"};
    static const char *const no[] = {"false", "no", "off"};
    const char *s;
    int err = get_str(L, f, map, prefix, key, &s);

    *out = 0;
    if (err || s == NULL)
        return err;
    for (size_t i = 0; i < 3; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0)
            return 0;
    }
    return fail(L, f->path, "%s.%s: expected true or false, got \"%s\"", prefix,
                key, s);
}

/* Resolves p against dir unless it is absolute, as kubectl does for every
 * path in a kubeconfig. */
static char *resolve(const char *dir, const char *p)
{
    struct gm_buf b;

    if (p == NULL)
        return NULL;
    if (p[0] == '/')
        return strdup(p);
    gm_buf_init(&b, PATH_MAX * 2);
    if (gm_buf_appendf(&b, "%s/%s", dir, p) != 0) {
        gm_buf_free(&b);
        return NULL;
    }
    return gm_buf_steal(&b);
}

static int decode_field(struct loader *L, struct kfile *f, yaml_node_t *map,
                        const char *prefix, const char *key, char **out,
                        size_t *out_len)
{
    const char *s;
    int err = get_str(L, f, map, prefix, key, &s);

    if (err || s == NULL)
        return err;
    err = gm_base64_decode(s, out, out_len);
    if (err == -EINVAL)
        return fail(L, f->path, "%s.%s: invalid base64", prefix, key);
    if (err)
        return fail_errno(L, err, f->path, "%s.%s: %s", prefix, key,
                          strerror(-err));
    return 0;
}

/* ---- reading and indexing files ---- */

/* Reads a whole file with a size cap. Returns a negative errno. */
static int read_file(const char *path, size_t max, char **out, size_t *len)
{
    struct gm_buf b;
    char chunk[8192];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    int err = 0;

    if (fd < 0)
        return -errno;
    gm_buf_init(&b, max);
    for (;;) {
        ssize_t r = read(fd, chunk, sizeof(chunk));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            err = -errno;
            break;
        }
        if (r == 0)
            break;
        err = gm_buf_append(&b, chunk, (size_t)r);
        if (err)
            break;
    }
    close(fd);
    if (err) {
        gm_buf_free(&b);
        return err;
    }
    *len = b.len;
    *out = gm_buf_steal(&b);
    return *out ? 0 : -ENOMEM;
}

static char *abs_dir(const char *path)
{
    char cwd[PATH_MAX];
    const char *slash = strrchr(path, '/');
    struct gm_buf b;

    gm_buf_init(&b, PATH_MAX * 2);
    if (path[0] != '/') {
        if (getcwd(cwd, sizeof(cwd)) == NULL)
            return NULL;
        gm_buf_appendf(&b, "%s", cwd);
        if (slash)
            gm_buf_append(&b, "/", 1);
    }
    if (slash == path)
        gm_buf_append(&b, "/", 1);
    else if (slash)
        gm_buf_append(&b, path, (size_t)(slash - path));
    return gm_buf_steal(&b);
}

static int parse_file(struct loader *L, struct kfile *f, const char *text,
                      size_t len)
{
    yaml_parser_t p;
    int err = 0;

    if (!yaml_parser_initialize(&p))
        return fail_errno(L, -ENOMEM, f->path, "out of memory");
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    if (!yaml_parser_load(&p, &f->doc)) {
        const char *problem = p.problem ? p.problem : "invalid YAML";
        if (p.context)
            err = fail(L, f->path, "line %zu: %s %s", p.problem_mark.line + 1,
                       problem, p.context);
        else
            err = fail(L, f->path, "line %zu: %s", p.problem_mark.line + 1,
                       problem);
    } else {
        f->have_doc = 1;
    }
    yaml_parser_delete(&p);
    return err;
}

/* An earlier file's entry of the same name wins, as kubectl merges
 * files. */
static int table_add(struct table *t, const struct entry *e)
{
    for (size_t i = 0; i < t->n; i++) {
        if (strcmp(t->v[i].name, e->name) == 0)
            return 0;
    }
    struct entry *v = realloc(t->v, (t->n + 1) * sizeof(*v));
    if (v == NULL)
        return -ENOMEM;
    t->v = v;
    t->v[t->n++] = *e;
    return 0;
}

static const struct entry *table_find(const struct table *t, const char *name)
{
    for (size_t i = 0; i < t->n; i++) {
        if (strcmp(t->v[i].name, name) == 0)
            return &t->v[i];
    }
    return NULL;
}

/* Adds every entry of one list ("clusters", "users", "contexts"); each item
 * is {name: ..., <inner>: {...}}. */
static int index_list(struct loader *L, struct kfile *f, yaml_node_t *root,
                      const char *list, const char *inner, struct table *t)
{
    yaml_node_t *seq = map_get(&f->doc, root, list);

    if (seq == NULL)
        return 0;
    if (seq->type != YAML_SEQUENCE_NODE)
        return fail(L, f->path, "%s: expected a list", list);
    for (size_t i = 0; i < seq_len(seq); i++) {
        yaml_node_t *item = seq_at(&f->doc, seq, i);
        char prefix[64];
        struct entry e = {.file = f, .index = (int)i};

        snprintf(prefix, sizeof(prefix), "%s[%zu]", list, i);
        if (item == NULL || item->type != YAML_MAPPING_NODE)
            return fail(L, f->path, "%s: expected a mapping", prefix);
        int err = get_str(L, f, item, prefix, "name", &e.name);
        if (err)
            return err;
        if (e.name == NULL || e.name[0] == '\0')
            return fail(L, f->path, "%s.name: missing", prefix);
        e.body = map_get(&f->doc, item, inner);
        if (e.body == NULL)
            return fail(L, f->path, "%s.%s: missing", prefix, inner);
        if (e.body->type != YAML_MAPPING_NODE)
            return fail(L, f->path, "%s.%s: expected a mapping", prefix, inner);
        /* A name given twice in one file: client-go refuses the file. */
        long dup = earlier_named(&f->doc, seq, i, e.name);
        if (dup >= 0)
            return fail(L, f->path, "%s.name: \"%s\" is also %s[%ld]", prefix,
                        e.name, list, dup);
        err = table_add(t, &e);
        if (err)
            return fail_errno(L, err, f->path, "out of memory");
    }
    return 0;
}

static int index_file(struct loader *L, struct kfile *f)
{
    yaml_node_t *root = yaml_document_get_root_node(&f->doc);
    int err;

    if (root == NULL || is_null(root))
        return 0; /* an empty file is an empty config, as for kubectl */
    if (root->type != YAML_MAPPING_NODE)
        return fail(L, f->path, "expected a mapping at the top level");
    err = index_list(L, f, root, "clusters", "cluster", &L->clusters);
    if (!err)
        err = index_list(L, f, root, "users", "user", &L->users);
    if (!err)
        err = index_list(L, f, root, "contexts", "context", &L->contexts);
    if (err)
        return err;
    if (L->current == NULL) {
        const char *cc;
        err = get_str(L, f, root, "", "current-context", &cc);
        if (err)
            return err;
        if (cc && cc[0]) {
            L->current = cc;
            L->current_file = f;
        }
    }
    return 0;
}

/* Loads one file. Returns 1 when it was skipped as missing. */
static int load_file(struct loader *L, struct kfile *f, int skip_missing)
{
    char *text = NULL;
    size_t len = 0;
    int err = read_file(f->path, KUBECONFIG_MAX, &text, &len);

    if (err == -ENOENT && skip_missing)
        return 1;
    if (err == -E2BIG)
        return fail_errno(L, err, f->path, "larger than %u bytes",
                          KUBECONFIG_MAX);
    if (err)
        return fail_errno(L, err, f->path, "cannot read: %s", strerror(-err));
    f->dir = abs_dir(f->path);
    if (f->dir == NULL)
        err = fail_errno(L, -ENOMEM, f->path, "cannot resolve directory");
    if (!err)
        err = parse_file(L, f, text, len);
    /* The text may hold client-key-data; only the decoded copy lives on. */
    OPENSSL_cleanse(text, len);
    free(text);
    if (!err)
        err = index_file(L, f);
    return err;
}

/* Splits the colon-separated list, skipping empty and repeated entries.
 * from_defaults: the list is $KUBECONFIG or ~/.kube/config, not one the
 * user named, so no file in it has to exist. */
static int load_all(struct loader *L, const char *paths, int from_defaults)
{
    char *copy = strdup(paths);
    size_t count = 0;
    int err = 0;

    if (copy == NULL)
        return -ENOMEM;
    for (char *s = copy; *s; s++)
        count += *s == ':';
    L->files = calloc(count + 1, sizeof(*L->files));
    if (L->files == NULL) {
        free(copy);
        return -ENOMEM;
    }
    size_t nonempty = 0;
    for (char *save = NULL, *tok = strtok_r(copy, ":", &save); tok;
         tok = strtok_r(NULL, ":", &save))
        nonempty++;
    free(copy);
    copy = strdup(paths);
    if (copy == NULL)
        return -ENOMEM;
    /* kubectl skips missing files in a list but not a file named alone
     * (--kubeconfig); its default files may all be missing. */
    int skip_missing = from_defaults || nonempty > 1;
    for (char *save = NULL, *tok = strtok_r(copy, ":", &save); tok && !err;
         tok = strtok_r(NULL, ":", &save)) {
        int dup = 0;
        for (size_t i = 0; i < L->nfiles; i++)
            dup |= strcmp(L->files[i].path, tok) == 0;
        if (dup)
            continue;
        struct kfile *f = &L->files[L->nfiles];
        f->path = strdup(tok);
        if (f->path == NULL) {
            err = -ENOMEM;
            break;
        }
        L->nfiles++;
        err = load_file(L, f, skip_missing);
        if (err == 1) {
            /* Keep the slot (its path is freed with the rest) but mark it
             * as not loaded. */
            err = 0;
        }
    }
    free(copy);
    return err;
}

static void loader_free(struct loader *L)
{
    for (size_t i = 0; i < L->nfiles; i++) {
        if (L->files[i].have_doc)
            yaml_document_delete(&L->files[i].doc);
        free(L->files[i].path);
        free(L->files[i].dir);
    }
    free(L->files);
    free(L->clusters.v);
    free(L->users.v);
    free(L->contexts.v);
}

/* ---- turning the chosen entries into a gm_kube_config ---- */

static int set_str(struct loader *L, struct kfile *f, char **dst, const char *s)
{
    if (s == NULL)
        return 0;
    *dst = strdup(s);
    return *dst ? 0 : fail_errno(L, -ENOMEM, f->path, "out of memory");
}

static int set_path(struct loader *L, struct kfile *f, char **dst,
                    const char *s)
{
    if (s == NULL || s[0] == '\0')
        return 0;
    *dst = resolve(f->dir, s);
    return *dst ? 0 : fail_errno(L, -ENOMEM, f->path, "out of memory");
}

#define EXEC_EXTENSION "client.authentication.k8s.io/exec"

/* extensions[name=client.authentication.k8s.io/exec].extension, kept as
 * JSON: what provideClusterInfo hands the plugin as spec.cluster.config,
 * as client-go does. Other extensions are not ours to read. */
static int get_exec_extension(struct loader *L, struct kfile *f,
                              yaml_node_t *body, const char *pfx, char **out)
{
    yaml_node_t *list = map_get(&f->doc, body, "extensions");

    if (list == NULL)
        return 0;
    if (list->type != YAML_SEQUENCE_NODE)
        return fail(L, f->path, "%s.extensions: expected a list", pfx);
    for (size_t i = 0; i < seq_len(list); i++) {
        yaml_node_t *item = seq_at(&f->doc, list, i);
        char ipfx[128];
        const char *name;
        json_object *ext = NULL;
        int err;

        snprintf(ipfx, sizeof(ipfx), "%s.extensions[%zu]", pfx, i);
        if (item == NULL || item->type != YAML_MAPPING_NODE)
            return fail(L, f->path, "%s: expected a map", ipfx);
        err = get_str(L, f, item, ipfx, "name", &name);
        if (err)
            return err;
        if (name == NULL)
            name = ""; /* client-go takes it as "" */
        /* A name given twice fails the kubeconfig in client-go. */
        long dup = earlier_named(&f->doc, list, i, name);
        if (dup >= 0)
            return fail(L, f->path, "%s.name: \"%s\" is also extensions[%ld]",
                        ipfx, name, dup);
        if (strcmp(name, EXEC_EXTENSION) != 0)
            continue;
        err = gm_yaml_node_json(&f->doc, map_get(&f->doc, item, "extension"),
                                &ext);
        if (err == -ENOMEM)
            return fail_errno(L, err, f->path, "out of memory");
        if (err)
            return fail(L, f->path, "%s.extension: %s", ipfx,
                        err == -E2BIG ? "nested too deeply or too large"
                                      : "map keys must be strings");
        if (ext == NULL)
            continue;
        *out =
            strdup(json_object_to_json_string_ext(ext, JSON_C_TO_STRING_PLAIN));
        json_object_put(ext);
        if (*out == NULL)
            return fail_errno(L, -ENOMEM, f->path, "out of memory");
    }
    return 0;
}

static int build_cluster(struct loader *L, const struct entry *e,
                         struct gm_kube_config *c)
{
    struct kfile *f = e->file;
    char pfx[64];
    const char *server, *ca, *sni, *proxy;
    int err;

    snprintf(pfx, sizeof(pfx), "clusters[%d].cluster", e->index);
    err = get_str(L, f, e->body, pfx, "server", &server);
    if (!err)
        err = get_str(L, f, e->body, pfx, "certificate-authority", &ca);
    if (!err)
        err = get_str(L, f, e->body, pfx, "tls-server-name", &sni);
    if (!err)
        err = get_str(L, f, e->body, pfx, "proxy-url", &proxy);
    if (!err)
        err = get_bool(L, f, e->body, pfx, "insecure-skip-tls-verify",
                       &c->insecure);
    if (!err)
        err = decode_field(L, f, e->body, pfx, "certificate-authority-data",
                           &c->ca_data, &c->ca_data_len);
    if (!err)
        err = get_exec_extension(L, f, e->body, pfx, &c->exec_extension);
    if (err)
        return err;
    if (server == NULL || server[0] == '\0')
        return fail(L, f->path, "%s.server: missing", pfx);
    if (strncmp(server, "https://", 8) != 0 &&
        strncmp(server, "http://", 7) != 0)
        return fail(L, f->path, "%s.server: \"%s\" is not an http(s) URL", pfx,
                    server);
    if (c->insecure && (ca || c->ca_data))
        return fail(L, f->path,
                    "%s.insecure-skip-tls-verify: cannot be combined with a "
                    "certificate authority",
                    pfx);
    err = set_str(L, f, &c->server, server);
    if (err)
        return err;
    /* Paths are appended to the server, so a trailing slash would double. */
    size_t n = strlen(c->server);
    while (n > 0 && c->server[n - 1] == '/')
        c->server[--n] = '\0';
    if (!c->ca_data)
        err = set_path(L, f, &c->ca_file, ca);
    if (!err)
        err = set_str(L, f, &c->tls_server_name, sni);
    if (!err)
        err = set_str(L, f, &c->proxy_url, proxy);
    return err;
}

/* NULL-terminated vector of owned strings. */
static void strv_free(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

static void exec_free(struct gm_kube_exec *x)
{
    if (x == NULL)
        return;
    free(x->api_version);
    free(x->command);
    strv_free(x->args);
    strv_free(x->env);
    free(x->source);
    free(x->install_hint);
    free(x);
}

/* installHint, provideClusterInfo and interactiveMode. */
static int build_exec_options(struct loader *L, struct kfile *f,
                              yaml_node_t *body, const char *pfx,
                              struct gm_kube_exec *x)
{
    static const char *const modes[] = {
        [GM_EXEC_IF_AVAILABLE] = "IfAvailable",
        [GM_EXEC_NEVER] = "Never",
        [GM_EXEC_ALWAYS] = "Always",
    };
    const char *hint, *mode;
    int err = get_str(L, f, body, pfx, "installHint", &hint);

    if (!err)
        err = get_bool(L, f, body, pfx, "provideClusterInfo",
                       &x->provide_cluster_info);
    if (!err)
        err = get_str(L, f, body, pfx, "interactiveMode", &mode);
    if (err)
        return err;
    if (hint && (x->install_hint = strdup(hint)) == NULL)
        return fail_errno(L, -ENOMEM, f->path, "out of memory");
    x->interactive = GM_EXEC_IF_AVAILABLE;
    if (mode == NULL)
        return 0;
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
        if (strcmp(mode, modes[i]) == 0) {
            x->interactive = (enum gm_exec_interactive)i;
            return 0;
        }
    return fail(L, f->path,
                "%s.interactiveMode: \"%s\" is not Never, IfAvailable or "
                "Always",
                pfx, mode);
}

static int build_exec_args(struct loader *L, struct kfile *f, yaml_node_t *body,
                           const char *pfx, struct gm_kube_exec *x)
{
    yaml_node_t *args = map_get(&f->doc, body, "args");
    size_t n = 0;

    if (args && args->type != YAML_SEQUENCE_NODE)
        return fail(L, f->path, "%s.args: expected a list", pfx);
    if (args)
        n = seq_len(args);
    x->args = calloc(n + 2, sizeof(char *));
    if (x->args == NULL)
        return fail_errno(L, -ENOMEM, f->path, "out of memory");
    x->args[0] = strdup(x->command);
    if (x->args[0] == NULL)
        return fail_errno(L, -ENOMEM, f->path, "out of memory");
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *a = seq_at(&f->doc, args, i);
        if (a == NULL || a->type != YAML_SCALAR_NODE)
            return fail(L, f->path, "%s.args[%zu]: expected a string", pfx, i);
        x->args[i + 1] = strdup(scalar_value(a));
        if (x->args[i + 1] == NULL)
            return fail_errno(L, -ENOMEM, f->path, "out of memory");
    }
    return 0;
}

static int build_exec_env(struct loader *L, struct kfile *f, yaml_node_t *body,
                          const char *pfx, struct gm_kube_exec *x)
{
    yaml_node_t *env = map_get(&f->doc, body, "env");
    size_t n = 0;

    if (env && env->type != YAML_SEQUENCE_NODE)
        return fail(L, f->path, "%s.env: expected a list", pfx);
    if (env)
        n = seq_len(env);
    x->env = calloc(n + 1, sizeof(char *));
    if (x->env == NULL)
        return fail_errno(L, -ENOMEM, f->path, "out of memory");
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = seq_at(&f->doc, env, i);
        char ipfx[128];
        const char *name, *value;
        struct gm_buf b;

        snprintf(ipfx, sizeof(ipfx), "%s.env[%zu]", pfx, i);
        if (item == NULL || item->type != YAML_MAPPING_NODE)
            return fail(L, f->path, "%s: expected a mapping", ipfx);
        int err = get_str(L, f, item, ipfx, "name", &name);
        if (!err)
            err = get_str(L, f, item, ipfx, "value", &value);
        if (err)
            return err;
        if (name == NULL || name[0] == '\0' || strchr(name, '='))
            return fail(L, f->path, "%s.name: missing or invalid", ipfx);
        gm_buf_init(&b, 1u << 20);
        err = gm_buf_appendf(&b, "%s=%s", name, value ? value : "");
        if (err) {
            gm_buf_free(&b);
            return fail_errno(L, err, f->path, "%s: too long", ipfx);
        }
        x->env[i] = gm_buf_steal(&b);
    }
    return 0;
}

static int build_exec(struct loader *L, struct kfile *f, yaml_node_t *body,
                      const char *upfx, struct gm_kube_config *c)
{
    char pfx[96];
    const char *api, *cmd;
    struct gm_kube_exec *x;
    int err;

    snprintf(pfx, sizeof(pfx), "%s.exec", upfx);
    if (body->type != YAML_MAPPING_NODE)
        return fail(L, f->path, "%s: expected a mapping", pfx);
    err = get_str(L, f, body, pfx, "apiVersion", &api);
    if (!err)
        err = get_str(L, f, body, pfx, "command", &cmd);
    if (err)
        return err;
    if (api == NULL)
        return fail(L, f->path, "%s.apiVersion: missing", pfx);
    if (strcmp(api, "client.authentication.k8s.io/v1") != 0 &&
        strcmp(api, "client.authentication.k8s.io/v1beta1") != 0)
        return fail(L, f->path, "%s.apiVersion: \"%s\" is not supported", pfx,
                    api);
    if (cmd == NULL || cmd[0] == '\0')
        return fail(L, f->path, "%s.command: missing", pfx);
    x = calloc(1, sizeof(*x));
    if (x == NULL)
        return fail_errno(L, -ENOMEM, f->path, "out of memory");
    c->exec = x;
    /* Like client-go: a command with a slash is relative to the file, a
     * bare name is looked up in PATH. */
    if (strchr(cmd, '/'))
        x->command = resolve(f->dir, cmd);
    else
        x->command = strdup(cmd);
    x->api_version = strdup(api);
    x->source = strdup(f->path);
    if (!x->command || !x->api_version || !x->source)
        return fail_errno(L, -ENOMEM, f->path, "out of memory");
    err = build_exec_args(L, f, body, pfx, x);
    if (!err)
        err = build_exec_env(L, f, body, pfx, x);
    if (!err)
        err = build_exec_options(L, f, body, pfx, x);
    return err;
}

/* Replaces the file *path (key names its field, for messages) by its
 * contents in *data. */
static int inline_file(struct loader *L, struct kfile *f, const char *pfx,
                       const char *key, char **path, char **data, size_t *len)
{
    int err = read_file(*path, PEM_FILE_MAX, data, len);

    if (err == -E2BIG)
        return fail_errno(L, err, f->path, "%s.%s: %s: larger than %u bytes",
                          pfx, key, *path, PEM_FILE_MAX);
    if (err)
        return fail_errno(L, err, f->path, "%s.%s: %s: cannot read: %s", pfx,
                          key, *path, strerror(-err));
    free(*path);
    *path = NULL;
    return 0;
}

static int build_user(struct loader *L, const struct entry *e,
                      struct gm_kube_config *c)
{
    struct kfile *f = e->file;
    char pfx[64];
    const char *cert, *key, *token, *token_file, *basic;
    yaml_node_t *exec;
    int err;

    snprintf(pfx, sizeof(pfx), "users[%d].user", e->index);
    if (map_get(&f->doc, e->body, "auth-provider"))
        return fail(L, f->path,
                    "%s.auth-provider: not supported (use an exec plugin "
                    "such as kubelogin instead)",
                    pfx);
    err = get_str(L, f, e->body, pfx, "username", &basic);
    if (err)
        return err;
    if (basic)
        return fail(L, f->path, "%s.username: basic auth is not supported",
                    pfx);
    err = get_str(L, f, e->body, pfx, "client-certificate", &cert);
    if (!err)
        err = get_str(L, f, e->body, pfx, "client-key", &key);
    if (!err)
        err = get_str(L, f, e->body, pfx, "token", &token);
    if (!err)
        err = get_str(L, f, e->body, pfx, "tokenFile", &token_file);
    if (!err)
        err = decode_field(L, f, e->body, pfx, "client-certificate-data",
                           &c->cert_data, &c->cert_data_len);
    if (!err)
        err = decode_field(L, f, e->body, pfx, "client-key-data", &c->key_data,
                           &c->key_data_len);
    if (err)
        return err;
    /* As in kubectl, inline data takes precedence over the file. */
    if (!c->cert_data)
        err = set_path(L, f, &c->cert_file, cert);
    if (!err && !c->key_data)
        err = set_path(L, f, &c->key_file, key);
    /* client-go loads each half on its own, but the transport hands curl
     * either two blobs or two paths; a mixed pair would go out without a
     * certificate, so the file half is read in now. */
    if (!err && c->cert_data && c->key_file)
        err = inline_file(L, f, pfx, "client-key", &c->key_file, &c->key_data,
                          &c->key_data_len);
    if (!err && c->key_data && c->cert_file)
        err = inline_file(L, f, pfx, "client-certificate", &c->cert_file,
                          &c->cert_data, &c->cert_data_len);
    if (err)
        return err;
    int have_cert = c->cert_data || c->cert_file;
    int have_key = c->key_data || c->key_file;
    if (have_cert && !have_key)
        return fail(L, f->path,
                    "%s.client-key: missing (a client "
                    "certificate needs a key)",
                    pfx);
    if (have_key && !have_cert)
        return fail(L, f->path,
                    "%s.client-certificate: missing (a client "
                    "key needs a certificate)",
                    pfx);
    if (token && token[0])
        err = set_str(L, f, &c->token, token);
    if (!err)
        err = set_path(L, f, &c->token_file, token_file);
    if (err)
        return err;
    exec = map_get(&f->doc, e->body, "exec");
    if (exec)
        return build_exec(L, f, exec, pfx, c);
    return 0;
}

static const char *where_all(struct loader *L, char *buf, size_t n)
{
    size_t off = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < L->nfiles && off < n; i++) {
        if (!L->files[i].have_doc)
            continue;
        int w = snprintf(buf + off, n - off, "%s%s", off ? ":" : "",
                         L->files[i].path);
        if (w < 0)
            break;
        off += (size_t)w;
    }
    return buf;
}

static int build(struct loader *L, const char *context,
                 struct gm_kube_config *c)
{
    const struct entry *ctx, *cl, *us = NULL;
    const char *cluster, *user, *ns;
    char all[1024];
    char pfx[64];
    int err;

    where_all(L, all, sizeof(all));
    if (context == NULL) {
        if (L->current == NULL)
            return fail(L, all, "current-context: not set (name a context)");
        context = L->current;
        ctx = table_find(&L->contexts, context);
        if (ctx == NULL)
            return fail_errno(L, -ENOENT, L->current_file->path,
                              "current-context: context \"%s\" not found",
                              context);
    } else {
        ctx = table_find(&L->contexts, context);
        if (ctx == NULL)
            return fail_errno(L, -ENOENT, all, "context \"%s\" not found",
                              context);
    }
    snprintf(pfx, sizeof(pfx), "contexts[%d].context", ctx->index);
    err = get_str(L, ctx->file, ctx->body, pfx, "cluster", &cluster);
    if (!err)
        err = get_str(L, ctx->file, ctx->body, pfx, "user", &user);
    if (!err)
        err = get_str(L, ctx->file, ctx->body, pfx, "namespace", &ns);
    if (err)
        return err;
    if (cluster == NULL)
        return fail(L, ctx->file->path, "%s.cluster: missing", pfx);
    cl = table_find(&L->clusters, cluster);
    if (cl == NULL)
        return fail_errno(L, -ENOENT, ctx->file->path,
                          "%s.cluster: cluster \"%s\" not found", pfx, cluster);
    if (user) {
        us = table_find(&L->users, user);
        if (us == NULL)
            return fail_errno(L, -ENOENT, ctx->file->path,
                              "%s.user: user \"%s\" not found", pfx, user);
    }
    c->context = strdup(context);
    c->namespace = strdup(ns && ns[0] ? ns : "default");
    if (c->context == NULL || c->namespace == NULL)
        return fail_errno(L, -ENOMEM, ctx->file->path, "out of memory");
    err = build_cluster(L, cl, c);
    if (!err && us)
        err = build_user(L, us, c);
    return err;
}

static void wipe_free(char *p, size_t n)
{
    if (p)
        OPENSSL_cleanse(p, n);
    free(p);
}

void gm_kube_config_free(struct gm_kube_config *c)
{
    if (c == NULL)
        return;
    free(c->server);
    free(c->ca_file);
    free(c->ca_data);
    free(c->tls_server_name);
    free(c->proxy_url);
    free(c->exec_extension);
    free(c->cert_file);
    free(c->key_file);
    free(c->cert_data);
    /* Secrets are wiped so a later heap bug or core dump shows less. */
    wipe_free(c->key_data, c->key_data_len);
    wipe_free(c->token, c->token ? strlen(c->token) : 0);
    free(c->token_file);
    exec_free(c->exec);
    free(c->namespace);
    free(c->context);
    free(c);
}

static int set_err(char **err, const char *msg)
{
    *err = strdup(msg);
    return -ENOMEM;
}

/* True when no file read gave anything: no entry, no current-context.
 * client-go then counts the configuration as unset (an empty file too). */
static int loaded_nothing(const struct loader *L)
{
    return L->clusters.n == 0 && L->users.n == 0 && L->contexts.n == 0 &&
           L->current == NULL;
}

/* client-go's last resort when the default files give nothing: the pod's
 * service account. A failure names both what was looked for and why the
 * service account did not do. */
static int fall_back_in_cluster(const char *tried, int any_file,
                                const char *sa_dir, struct gm_kube_config **out,
                                char **errmsg)
{
    static const char ic[] = "in-cluster config: ";
    char *icerr = NULL;
    struct gm_buf b;
    int err = gm_kubeconfig_in_cluster(sa_dir, out, &icerr);

    if (err == 0)
        return 0;
    gm_buf_init(&b, 8192);
    gm_buf_appendf(&b, "%s: %s; %s%s", tried,
                   any_file ? "no configuration in it" : "no kubeconfig found",
                   icerr && strncmp(icerr, ic, strlen(ic)) == 0 ? "" : ic,
                   icerr ? icerr : strerror(-err));
    free(icerr);
    *errmsg = gm_buf_steal(&b);
    return err;
}

int gm_kubeconfig_load(const char *paths, const char *context,
                       struct gm_kube_config **out, char **errmsg)
{
    return gm_kubeconfig_load_sa(paths, context, GM_KUBE_SA_DIR, out, errmsg);
}

int gm_kubeconfig_load_sa(const char *paths, const char *context,
                          const char *sa_dir, struct gm_kube_config **out,
                          char **errmsg)
{
    struct loader L = {0};
    struct gm_kube_config *c = NULL;
    int from_defaults = paths == NULL;
    const char *tried = paths;
    char *def = NULL;
    char all[1024];
    int err;

    *out = NULL;
    *errmsg = NULL;
    if (from_defaults) {
        paths = getenv("KUBECONFIG");
        tried = paths;
        if (paths == NULL || paths[0] == '\0') {
            const char *home = getenv("HOME");
            struct gm_buf b;
            /* No home, no default file: the in-cluster config may still
             * do, as for client-go. */
            paths = "";
            tried = "$HOME/.kube/config (HOME is not set)";
            if (home && home[0]) {
                gm_buf_init(&b, PATH_MAX);
                gm_buf_appendf(&b, "%s/.kube/config", home);
                def = gm_buf_steal(&b);
                if (def == NULL)
                    return set_err(errmsg, "out of memory");
                paths = tried = def;
            }
        }
    }
    err = load_all(&L, paths, from_defaults);
    if (err && L.err == NULL)
        fail_errno(&L, err, tried, "%s", strerror(-err));
    int any_file = where_all(&L, all, sizeof(all))[0] != '\0';
    if (!err && from_defaults && context == NULL && loaded_nothing(&L)) {
        loader_free(&L);
        err = fall_back_in_cluster(tried, any_file, sa_dir, out, errmsg);
        free(def);
        return err;
    }
    if (!err && !any_file)
        err = fail_errno(&L, -ENOENT, tried, "no kubeconfig file found");
    if (!err) {
        c = calloc(1, sizeof(*c));
        if (c == NULL)
            err = fail_errno(&L, -ENOMEM, tried, "out of memory");
    }
    if (!err)
        err = build(&L, context, c);
    if (err) {
        gm_kube_config_free(c);
        *errmsg = L.err;
        L.err = NULL;
    } else {
        *out = c;
    }
    loader_free(&L);
    free(def);
    return err;
}

/* ---- in-cluster ---- */

static char *join(const char *dir, const char *name)
{
    struct gm_buf b;

    gm_buf_init(&b, PATH_MAX * 2);
    gm_buf_appendf(&b, "%s/%s", dir, name);
    return gm_buf_steal(&b);
}

static void trim(char *s)
{
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
}

int gm_kubeconfig_in_cluster(const char *dir, struct gm_kube_config **out,
                             char **errmsg)
{
    struct loader L = {0};
    const char *host = getenv("KUBERNETES_SERVICE_HOST");
    const char *port = getenv("KUBERNETES_SERVICE_PORT");
    struct gm_kube_config *c = calloc(1, sizeof(*c));
    struct gm_buf b;
    char *ns_path = NULL, *ns = NULL;
    size_t ns_len = 0;
    int err = 0;

    *out = NULL;
    *errmsg = NULL;
    if (c == NULL)
        return set_err(errmsg, "out of memory");
    if (host == NULL || host[0] == '\0' || port == NULL || port[0] == '\0') {
        err = fail_errno(&L, -ENOENT, "in-cluster config",
                         "KUBERNETES_SERVICE_HOST and "
                         "KUBERNETES_SERVICE_PORT must be set");
        goto out;
    }
    if (strspn(port, "0123456789") != strlen(port)) {
        err = fail(&L, "in-cluster config",
                   "KUBERNETES_SERVICE_PORT: \"%s\" is not a port", port);
        goto out;
    }
    gm_buf_init(&b, 1024);
    if (strchr(host, ':'))
        err = gm_buf_appendf(&b, "https://[%s]:%s", host, port);
    else
        err = gm_buf_appendf(&b, "https://%s:%s", host, port);
    if (err) {
        gm_buf_free(&b);
        err = fail_errno(&L, err, "in-cluster config",
                         "KUBERNETES_SERVICE_HOST: too long");
        goto out;
    }
    c->server = gm_buf_steal(&b);
    c->token_file = join(dir, "token");
    c->ca_file = join(dir, "ca.crt");
    ns_path = join(dir, "namespace");
    if (!c->server || !c->token_file || !c->ca_file || !ns_path) {
        err = fail_errno(&L, -ENOMEM, dir, "out of memory");
        goto out;
    }
    /* The token is re-read by auth.c, but a pod without one is
     * misconfigured and should fail at start, not on the first request. */
    if (access(c->token_file, R_OK) != 0) {
        err = fail_errno(&L, -errno, c->token_file, "cannot read: %s",
                         strerror(errno));
        goto out;
    }
    if (access(c->ca_file, R_OK) != 0) {
        err = fail_errno(&L, -errno, c->ca_file, "cannot read: %s",
                         strerror(errno));
        goto out;
    }
    err = read_file(ns_path, SA_FILE_MAX, &ns, &ns_len);
    if (err == -ENOENT) {
        err = 0;
    } else if (err) {
        err = fail_errno(&L, err, ns_path, "cannot read: %s", strerror(-err));
        goto out;
    }
    if (ns)
        trim(ns);
    c->namespace = strdup(ns && ns[0] ? ns : "default");
    if (c->namespace == NULL)
        err = fail_errno(&L, -ENOMEM, ns_path, "out of memory");
out:
    free(ns);
    free(ns_path);
    if (err) {
        gm_kube_config_free(c);
        *errmsg = L.err;
    } else {
        *out = c;
    }
    return err;
}
