#include "planner_nodes.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void die(const char *what)
{
    fprintf(stderr, "test support: %s\n", what);
    abort();
}

struct gm_node *gmt_node(const char *name, ...)
{
    struct gm_node *n = calloc(1, sizeof(*n));
    va_list ap;
    const char *kv;

    if (n == NULL)
        die("out of memory");
    n->name = strdup(name);
    n->ready = true;
    va_start(ap, name);
    while ((kv = va_arg(ap, const char *)) != NULL) {
        if (strchr(kv, '=') == NULL)
            die("label without =");
        struct gm_label *l = realloc(n->labels, (n->n_labels + 1) * sizeof(*l));
        if (l == NULL)
            die("out of memory");
        n->labels = l;
        l[n->n_labels].kv = strdup(kv);
        n->n_labels++;
    }
    va_end(ap);
    /* A GPU node, as feature discovery labels one, unless the caller says
     * otherwise with a value of its own. */
    bool present = false;
    for (size_t i = 0; i < n->n_labels; i++)
        if (strncmp(n->labels[i].kv, "nvidia.com/gpu.present=", 23) == 0)
            present = true;
    if (!present) {
        struct gm_label *l = realloc(n->labels, (n->n_labels + 1) * sizeof(*l));
        if (l == NULL)
            die("out of memory");
        n->labels = l;
        l[n->n_labels].kv = strdup("nvidia.com/gpu.present=true");
        n->n_labels++;
    }
    if (n->n_labels)
        qsort(n->labels, n->n_labels, sizeof(*n->labels), gm_label_order);
    return n;
}

void gmt_node_free(struct gm_node *n)
{
    if (n == NULL)
        return;
    for (size_t i = 0; i < n->n_labels; i++) {
        /* The test made these with strdup; interned ones would be shared. */
        char *kv;
        memcpy(&kv, &n->labels[i].kv, sizeof(kv));
        free(kv);
    }
    free(n->labels);
    for (size_t i = 0; i < n->n_allocatable; i++) {
        char *name;
        memcpy(&name, &n->allocatable[i].name, sizeof(name));
        free(name);
    }
    free(n->allocatable);
    free(n->name);
    free(n->uid);
    free(n->resource_version);
    free(n->ann_switch);
    free(n->ann_boot_id);
    free(n->ann_retry);
    free(n->ann_plugin_config);
    free(n->boot_id);
    free(n);
}

void gmt_alloc(struct gm_node *n, const char *resource, int64_t count)
{
    struct gm_quantity *q =
        realloc(n->allocatable, (n->n_allocatable + 1) * sizeof(*q));
    if (q == NULL)
        die("out of memory");
    n->allocatable = q;
    q[n->n_allocatable].name = strdup(resource);
    q[n->n_allocatable].value = count;
    if (q[n->n_allocatable].name == NULL)
        die("out of memory");
    n->n_allocatable++;
}

void gmt_set(char **field, const char *value)
{
    free(*field);
    *field = value ? strdup(value) : NULL;
}

struct gm_policy *gmt_policy(const char *json, int expect_err)
{
    json_object *o = json_tokener_parse(json);
    struct gm_policy *p = NULL;

    if (o == NULL)
        die("policy JSON does not parse");
    int err = gm_policy_decode(o, &p);
    json_object_put(o);
    if (err != expect_err) {
        fprintf(stderr, "decode returned %d, want %d: %s\n", err, expect_err,
                p && p->error ? p->error : "");
        abort();
    }
    return p;
}
