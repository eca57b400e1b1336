#include "planner/layout.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "agent/layout.h"

/* ---- GPU models (FACTS.md: MIG profiles by model) ---- */

static const struct gm_mig_profile a100_40gb[] = {
    {"1g.5gb", 7, 1, 1},  {"1g.5gb+me", 1, 1, 1}, {"1g.10gb", 4, 1, 2},
    {"2g.10gb", 3, 2, 2}, {"3g.20gb", 2, 3, 4},   {"4g.20gb", 1, 4, 4},
    {"7g.40gb", 1, 7, 8},
};

/* A100-80GB and H100-80GB share the table. */
static const struct gm_mig_profile gpu_80gb[] = {
    {"1g.10gb", 7, 1, 1}, {"1g.10gb+me", 1, 1, 1}, {"1g.20gb", 4, 1, 2},
    {"2g.20gb", 3, 2, 2}, {"3g.40gb", 2, 3, 4},    {"4g.40gb", 1, 4, 4},
    {"7g.80gb", 1, 7, 8},
};

static const struct gm_mig_profile h200[] = {
    {"1g.18gb", 7, 1, 1},  {"1g.18gb+me", 1, 1, 1}, {"1g.35gb", 4, 1, 2},
    {"2g.35gb", 3, 2, 2},  {"3g.71gb", 2, 3, 4},    {"4g.71gb", 1, 4, 4},
    {"7g.141gb", 1, 7, 8},
};

#define TABLE(t) t, sizeof(t) / sizeof(t[0])

static const struct gm_gpu_model models[] = {
    {"NVIDIA-A100-SXM4-40GB", 0x20B010DE, TABLE(a100_40gb)},
    {"NVIDIA-A100-PCIE-40GB", 0x20F110DE, TABLE(a100_40gb)},
    {"NVIDIA-A100-SXM4-80GB", 0x20B210DE, TABLE(gpu_80gb)},
    {"NVIDIA-A100-80GB-PCIe", 0x20B510DE, TABLE(gpu_80gb)},
    {"NVIDIA-H100-80GB-HBM3", 0x233010DE, TABLE(gpu_80gb)},
    {"NVIDIA-H100-PCIe", 0x233110DE, TABLE(gpu_80gb)},
    {"NVIDIA-H200", 0x233510DE, TABLE(h200)},
};

/* Other product spellings seen in the field for the same boards. */
static const struct {
    const char *alias;
    const char *name;
} aliases[] = {
    {"H200-141GB-HBM3e", "NVIDIA-H200"},
    {"H100-SXM5-80GB", "NVIDIA-H100-80GB-HBM3"},
};

#define MAX_COMPUTE 7
#define MAX_MEMORY 8

/* Reduces a product string to a comparable form: uppercase, dashes for
 * spaces, no "NVIDIA-" prefix, no "-SHARED" or "-MIG-..." suffix. */
static void normalize(const char *in, char *out, size_t outlen)
{
    size_t n = 0;

    if (strncasecmp(in, "NVIDIA-", 7) == 0 ||
        strncasecmp(in, "NVIDIA ", 7) == 0)
        in += 7;
    for (; *in && n + 1 < outlen; in++) {
        char c = *in == ' ' ? '-' : *in;
        if (c >= 'a' && c <= 'z')
            c = (char)(c - 'a' + 'A');
        out[n++] = c;
    }
    out[n] = '\0';
    char *mig = strstr(out, "-MIG-");
    if (mig != NULL)
        *mig = '\0';
    size_t len = strlen(out);
    if (len >= 7 && strcmp(out + len - 7, "-SHARED") == 0)
        out[len - 7] = '\0';
}

const struct gm_gpu_model *gm_gpu_model_find(const char *product)
{
    char want[128];
    char have[128];

    if (product == NULL)
        return NULL;
    normalize(product, want, sizeof(want));
    for (size_t i = 0; i < sizeof(aliases) / sizeof(aliases[0]); i++) {
        normalize(aliases[i].alias, have, sizeof(have));
        if (strcmp(want, have) == 0)
            return gm_gpu_model_find(aliases[i].name);
    }
    for (size_t i = 0; i < sizeof(models) / sizeof(models[0]); i++) {
        normalize(models[i].name, have, sizeof(have));
        if (strcmp(want, have) == 0)
            return &models[i];
    }
    return NULL;
}

/* ---- mig-parted v1 parsing (libyaml document API) ---- */

/* Entries, devices, device filters and profile counts a document may
 * expand to. libyaml keeps an alias as one shared node, but every
 * reference is parsed into its own copy (and an entry's keys are searched
 * per reference): without a cap, a few KiB of nested aliases would make
 * gigabytes of layouts, again at every restart. Real configs have a few
 * thousand. */
#define MAX_ITEMS 100000

struct yp {
    yaml_document_t *doc;
    const char *source;
    char *err;
    size_t errlen;
    size_t *left; /* of MAX_ITEMS, shared by every config's walk */
};

__attribute__((format(printf, 3, 4))) static int
yfail(struct yp *y, const yaml_node_t *at, const char *fmt, ...)
{
    char msg[384];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (at != NULL)
        snprintf(y->err, y->errlen, "%s: config.yaml line %lu: %s", y->source,
                 (unsigned long)at->start_mark.line + 1, msg);
    else
        snprintf(y->err, y->errlen, "%s: config.yaml: %s", y->source, msg);
    return -EINVAL;
}

/* Takes n items from the document's budget; -E2BIG fails the whole
 * document, not one config. */
static int spend(struct yp *y, const yaml_node_t *at, size_t n)
{
    if (*y->left < n) {
        yfail(y, at,
              "the document expands, through its aliases, to more than %d "
              "entries, devices and profiles",
              MAX_ITEMS);
        return -E2BIG;
    }
    *y->left -= n;
    return 0;
}

static const char *scalar(const yaml_node_t *n)
{
    if (n == NULL || n->type != YAML_SCALAR_NODE)
        return NULL;
    return (const char *)n->data.scalar.value;
}

static yaml_node_t *map_get(struct yp *y, yaml_node_t *map, const char *key)
{
    if (map == NULL || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start;
         p < map->data.mapping.pairs.top; p++) {
        const char *k = scalar(yaml_document_get_node(y->doc, p->key));
        if (k != NULL && strcmp(k, key) == 0)
            return yaml_document_get_node(y->doc, p->value);
    }
    return NULL;
}

static int parse_int(const char *s, long lo, long hi, long *out)
{
    char *end = NULL;

    if (s == NULL || *s == '\0')
        return -EINVAL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end != '\0' || v < lo || v > hi)
        return -EINVAL;
    *out = v;
    return 0;
}

static bool is_profile(const char *s)
{
    /* Same shape as the CRD pattern ^[1-9]g\.[0-9]+gb(\+me)?$ */
    if (s[0] < '1' || s[0] > '9' || s[1] != 'g' || s[2] != '.')
        return false;
    s += 3;
    if (*s < '0' || *s > '9')
        return false;
    while (*s >= '0' && *s <= '9')
        s++;
    if (s[0] != 'g' || s[1] != 'b')
        return false;
    return s[2] == '\0' || strcmp(s + 2, "+me") == 0;
}

static int add_string(char ***arr, size_t *n, const char *s)
{
    char **a = realloc(*arr, (*n + 1) * sizeof(**arr));
    if (a == NULL)
        return -ENOMEM;
    *arr = a;
    a[*n] = strdup(s);
    if (a[*n] == NULL)
        return -ENOMEM;
    (*n)++;
    return 0;
}

static int parse_devices(struct yp *y, yaml_node_t *dev, const char *cfg,
                         struct gm_mig_entry *e)
{
    const char *s = scalar(dev);

    if (dev == NULL)
        return yfail(y, NULL, "config \"%s\": an entry has no devices", cfg);
    if (s != NULL) {
        if (strcmp(s, "all") != 0)
            return yfail(y, dev,
                         "config \"%s\": devices must be \"all\" or a "
                         "list of GPU indexes",
                         cfg);
        e->all_devices = true;
        return 0;
    }
    if (dev->type != YAML_SEQUENCE_NODE)
        return yfail(y, dev, "config \"%s\": devices must be \"all\" or a list",
                     cfg);
    size_t n =
        (size_t)(dev->data.sequence.items.top - dev->data.sequence.items.start);
    if (n == 0)
        return yfail(y, dev, "config \"%s\": devices must not be empty", cfg);
    int err = spend(y, dev, n);
    if (err)
        return err;
    e->devices = calloc(n, sizeof(*e->devices));
    if (e->devices == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *it =
            yaml_document_get_node(y->doc, dev->data.sequence.items.start[i]);
        long v;
        if (parse_int(scalar(it), 0, 63, &v))
            return yfail(y, it,
                         "config \"%s\": devices[%zu] is not a GPU index "
                         "from 0 to 63",
                         cfg, i);
        e->devices[e->n_devices++] = (int)v;
    }
    return 0;
}

static int parse_filter(struct yp *y, yaml_node_t *f, const char *cfg,
                        struct gm_mig_entry *e)
{
    const char *s = scalar(f);

    if (f == NULL)
        return 0;
    if (s != NULL)
        return add_string(&e->device_filter, &e->n_device_filter, s);
    if (f->type != YAML_SEQUENCE_NODE)
        return yfail(y, f, "config \"%s\": device-filter must be a list", cfg);
    int err = spend(
        y, f,
        (size_t)(f->data.sequence.items.top - f->data.sequence.items.start));
    if (err)
        return err;
    for (yaml_node_item_t *i = f->data.sequence.items.start;
         i < f->data.sequence.items.top; i++) {
        const char *id = scalar(yaml_document_get_node(y->doc, *i));
        if (id == NULL)
            return yfail(y, f,
                         "config \"%s\": device-filter must list PCI "
                         "device ids",
                         cfg);
        err = add_string(&e->device_filter, &e->n_device_filter, id);
        if (err)
            return err;
    }
    return 0;
}

static int parse_mig_devices(struct yp *y, yaml_node_t *md, const char *cfg,
                             struct gm_mig_entry *e)
{
    if (md->type != YAML_MAPPING_NODE)
        return yfail(y, md,
                     "config \"%s\": mig-devices must map profiles to counts",
                     cfg);
    size_t n =
        (size_t)(md->data.mapping.pairs.top - md->data.mapping.pairs.start);
    int err = spend(y, md, n);
    if (err)
        return err;
    e->counts = calloc(n ? n : 1, sizeof(*e->counts));
    if (e->counts == NULL)
        return -ENOMEM;
    for (yaml_node_pair_t *p = md->data.mapping.pairs.start;
         p < md->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = yaml_document_get_node(y->doc, p->key);
        yaml_node_t *vn = yaml_document_get_node(y->doc, p->value);
        const char *k = scalar(kn);
        long v;
        if (k == NULL)
            return yfail(y, kn,
                         "config \"%s\": mig-devices keys must be profile "
                         "names",
                         cfg);
        /* go-nvlib's profiles also carry attributes ("1g.24gb+gfx",
         * "1g.24gb-me", "1g.24gb+me.all"), which neither the agent nor
         * the CRD know; say so rather than call them not profiles. */
        if (!is_profile(k))
            return yfail(y, kn,
                         "config \"%s\": profile \"%s\" is not one gpumode "
                         "can lay out (it supports <n>g.<m>gb and "
                         "<n>g.<m>gb+me)",
                         cfg, k);
        if (parse_int(scalar(vn), 0, 7, &v))
            return yfail(y, vn,
                         "config \"%s\": the count of %s must be an integer "
                         "from 0 to 7",
                         cfg, k);
        if (v == 0)
            continue; /* mig-parted treats a zero count as absent */
        e->counts[e->n_counts].profile = strdup(k);
        if (e->counts[e->n_counts].profile == NULL)
            return -ENOMEM;
        e->counts[e->n_counts++].count = (int)v;
    }
    return 0;
}

static int parse_entry(struct yp *y, yaml_node_t *en, const char *cfg,
                       struct gm_mig_entry *e)
{
    int err;

    if (en->type != YAML_MAPPING_NODE)
        return yfail(y, en, "config \"%s\": each entry must be a mapping", cfg);
    /* Its keys are searched four times below: spend them too. */
    err = spend(y, en,
                1 + (size_t)(en->data.mapping.pairs.top -
                             en->data.mapping.pairs.start));
    if (!err)
        err = parse_devices(y, map_get(y, en, "devices"), cfg, e);
    if (!err)
        err = parse_filter(y, map_get(y, en, "device-filter"), cfg, e);
    if (err)
        return err;
    yaml_node_t *me = map_get(y, en, "mig-enabled");
    const char *s = scalar(me);
    if (s == NULL)
        return yfail(y, en, "config \"%s\": mig-enabled is required", cfg);
    if (strcmp(s, "true") == 0)
        e->mig_enabled = true;
    else if (strcmp(s, "false") == 0)
        e->mig_enabled = false;
    else
        return yfail(y, me, "config \"%s\": mig-enabled must be true or false",
                     cfg);
    yaml_node_t *md = map_get(y, en, "mig-devices");
    if (e->mig_enabled && md == NULL)
        return yfail(y, en,
                     "config \"%s\": mig-devices is required when "
                     "mig-enabled is true",
                     cfg);
    if (!e->mig_enabled && md != NULL)
        return yfail(y, md,
                     "config \"%s\": mig-devices is not allowed when "
                     "mig-enabled is false",
                     cfg);
    return md ? parse_mig_devices(y, md, cfg, e) : 0;
}

/* Parses one config's list of entries into l, which the caller clears
 * when this fails. */
static int parse_config(struct yp *y, yaml_node_t *kn, yaml_node_t *vn,
                        const char *name, struct gm_mig_layout *l)
{
    if (vn == NULL || vn->type != YAML_SEQUENCE_NODE)
        return yfail(y, vn ? vn : kn, "config \"%s\" must be a list of entries",
                     name);
    size_t ne =
        (size_t)(vn->data.sequence.items.top - vn->data.sequence.items.start);
    if (ne == 0)
        return yfail(y, vn, "config \"%s\" has no entries", name);
    l->entries = calloc(ne, sizeof(*l->entries));
    if (l->entries == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < ne; i++) {
        yaml_node_t *en =
            yaml_document_get_node(y->doc, vn->data.sequence.items.start[i]);
        /* Counted first, so gm_mig_layout_clear frees what a failed
         * entry allocated. */
        l->n_entries++;
        int err = parse_entry(y, en, name, &l->entries[i]);
        if (err)
            return err;
    }
    return 0;
}

/* Keeps a config gpumode cannot use, with why, in m->invalid. */
static int add_invalid(struct gm_migparted *m, const char *name,
                       const char *why)
{
    struct gm_migparted_invalid *v = &m->invalid[m->n_invalid];

    v->name = strdup(name);
    v->error = strdup(why);
    if (v->name == NULL || v->error == NULL) {
        free(v->name);
        free(v->error);
        v->name = v->error = NULL;
        return -ENOMEM;
    }
    m->n_invalid++;
    return 0;
}

static int parse_configs(struct yp *y, yaml_node_t *cfgs,
                         struct gm_migparted *m)
{
    size_t n =
        (size_t)(cfgs->data.mapping.pairs.top - cfgs->data.mapping.pairs.start);

    m->names = calloc(n ? n : 1, sizeof(*m->names));
    m->layouts = calloc(n ? n : 1, sizeof(*m->layouts));
    m->invalid = calloc(n ? n : 1, sizeof(*m->invalid));
    if (m->names == NULL || m->layouts == NULL || m->invalid == NULL)
        return -ENOMEM;
    for (yaml_node_pair_t *p = cfgs->data.mapping.pairs.start;
         p < cfgs->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = yaml_document_get_node(y->doc, p->key);
        yaml_node_t *vn = yaml_document_get_node(y->doc, p->value);
        const char *name = scalar(kn);
        if (name == NULL)
            return yfail(y, kn, "mig-configs keys must be config names");
        /* A config's own errors go to its own message, not to the
         * document's: the other configs stay usable. */
        char why[512] = "";
        struct yp cy = *y;
        cy.err = why;
        cy.errlen = sizeof(why);
        struct gm_mig_layout l = {0};
        int err = parse_config(&cy, kn, vn, name, &l);
        if (err) {
            gm_mig_layout_clear(&l);
            if (err == -E2BIG) {
                snprintf(y->err, y->errlen, "%s", why);
                return -EINVAL;
            }
            if (err != -EINVAL)
                return err;
            err = add_invalid(m, name, why);
            if (err)
                return err;
            continue;
        }
        m->names[m->n] = strdup(name);
        if (m->names[m->n] == NULL) {
            gm_mig_layout_clear(&l);
            return -ENOMEM;
        }
        m->layouts[m->n++] = l;
    }
    return 0;
}

int gm_migparted_parse(const char *text, size_t len, const char *source,
                       struct gm_migparted **out, char *err, size_t errlen)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    size_t left = MAX_ITEMS;
    struct yp y = {&doc, source, err, errlen, &left};
    int rc;

    *out = NULL;
    if (!yaml_parser_initialize(&parser))
        return -ENOMEM;
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        snprintf(err, errlen, "%s: config.yaml line %lu: %s", source,
                 (unsigned long)parser.problem_mark.line + 1,
                 parser.problem ? parser.problem : "malformed YAML");
        yaml_parser_delete(&parser);
        return -EINVAL;
    }
    struct gm_migparted *m = calloc(1, sizeof(*m));
    if (m == NULL) {
        rc = -ENOMEM;
        goto done;
    }
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root == NULL || root->type != YAML_MAPPING_NODE) {
        rc = yfail(&y, root, "the document must be a mapping");
        goto done;
    }
    const char *version = scalar(map_get(&y, root, "version"));
    if (version == NULL || strcmp(version, "v1") != 0) {
        rc = yfail(&y, root, "version must be v1 (found %s)",
                   version ? version : "none");
        goto done;
    }
    yaml_node_t *cfgs = map_get(&y, root, "mig-configs");
    if (cfgs == NULL || cfgs->type != YAML_MAPPING_NODE) {
        rc = yfail(&y, cfgs ? cfgs : root, "mig-configs must be a mapping");
        goto done;
    }
    rc = parse_configs(&y, cfgs, m);
done:
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    if (rc) {
        gm_migparted_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

void gm_migparted_free(struct gm_migparted *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->n; i++) {
        free(m->names[i]);
        gm_mig_layout_clear(&m->layouts[i]);
    }
    for (size_t i = 0; i < m->n_invalid; i++) {
        free(m->invalid[i].name);
        free(m->invalid[i].error);
    }
    free(m->names);
    free(m->layouts);
    free(m->invalid);
    free(m);
}

/* A name the document repeats (libyaml lets duplicate keys through) finds
 * its first usable config before any invalid one, as find always did. */
int gm_migparted_lookup(const struct gm_migparted *m, const char *name,
                        const struct gm_mig_layout **layout, const char **why)
{
    *layout = NULL;
    *why = NULL;
    for (size_t i = 0; i < m->n; i++) {
        if (strcmp(m->names[i], name) == 0) {
            *layout = &m->layouts[i];
            return 0;
        }
    }
    for (size_t i = 0; i < m->n_invalid; i++) {
        if (strcmp(m->invalid[i].name, name) == 0) {
            *why = m->invalid[i].error;
            return -EINVAL;
        }
    }
    return -ENOENT;
}

const struct gm_mig_layout *gm_migparted_find(const struct gm_migparted *m,
                                              const char *name)
{
    const struct gm_mig_layout *l;
    const char *why;

    gm_migparted_lookup(m, name, &l, &why);
    return l;
}

/* ---- resolution ---- */

static bool filter_matches(const struct gm_mig_entry *e,
                           const struct gm_gpu_model *model)
{
    if (e->n_device_filter == 0)
        return true;
    if (model == NULL)
        return false;
    for (size_t i = 0; i < e->n_device_filter; i++) {
        char *end = NULL;
        unsigned long id = strtoul(e->device_filter[i], &end, 16);
        if (end != e->device_filter[i] && *end == '\0' &&
            id == model->device_id)
            return true;
    }
    return false;
}

static const struct gm_mig_profile *
find_profile(const struct gm_gpu_model *model, const char *name)
{
    for (size_t i = 0; i < model->n_profiles; i++)
        if (strcmp(model->profiles[i].name, name) == 0)
            return &model->profiles[i];
    return NULL;
}

__attribute__((format(printf, 4, 5))) static int
rfail(char *err, size_t errlen, const char *what, const char *fmt, ...)
{
    char msg[384];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(err, errlen, "%s: %s", what, msg);
    return -EINVAL;
}

static int check_counts(const struct gm_mig_entry *e,
                        const struct gm_gpu_model *model, const char *product,
                        const char *what, char *err, size_t errlen)
{
    int compute = 0;
    int memory = 0;

    for (size_t i = 0; i < e->n_counts; i++) {
        const struct gm_mig_count *c = &e->counts[i];
        const struct gm_mig_profile *p = find_profile(model, c->profile);
        if (p == NULL) {
            char avail[256] = "";
            size_t off = 0;
            for (size_t j = 0; j < model->n_profiles && off < sizeof(avail);
                 j++)
                off +=
                    (size_t)snprintf(avail + off, sizeof(avail) - off, "%s%s",
                                     j ? ", " : "", model->profiles[j].name);
            return rfail(err, errlen, what,
                         "profile %s is not available on %s (available: %s)",
                         c->profile, product, avail);
        }
        if (c->count > p->max_count)
            return rfail(err, errlen, what,
                         "%d instances of %s requested per GPU; %s holds at "
                         "most %d",
                         c->count, c->profile, product, p->max_count);
        compute += p->compute * c->count;
        memory += p->memory * c->count;
    }
    if (compute > MAX_COMPUTE || memory > MAX_MEMORY)
        return rfail(err, errlen, what,
                     "the instances need %d compute and %d memory slices per "
                     "GPU; %s has %d and %d",
                     compute, memory, product, MAX_COMPUTE, MAX_MEMORY);
    return 0;
}

static int check_devices(const struct gm_mig_entry *const *use, size_t n,
                         int gpu_count, const char *what, char *err,
                         size_t errlen)
{
    uint64_t seen = 0;
    size_t all = 0;

    for (size_t i = 0; i < n; i++) {
        if (use[i]->all_devices) {
            all++;
            continue;
        }
        for (size_t j = 0; j < use[i]->n_devices; j++) {
            int d = use[i]->devices[j];
            if (seen & (UINT64_C(1) << d))
                return rfail(err, errlen, what,
                             "GPU %d is named by more than one entry", d);
            if (gpu_count > 0 && d >= gpu_count)
                return rfail(err, errlen, what,
                             "GPU %d does not exist on a node with %d GPUs", d,
                             gpu_count);
            seen |= UINT64_C(1) << d;
        }
    }
    if (all > 1)
        return rfail(err, errlen, what,
                     "more than one entry covers all GPUs of this model");
    return 0;
}

static int emit(const struct gm_mig_entry *const *use, size_t n, char **json)
{
    json_object *arr = json_object_new_array();
    int rc = -ENOMEM;

    if (arr == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const struct gm_mig_entry *e = use[i];
        json_object *o = json_object_new_object();
        if (o == NULL || json_object_array_add(arr, o)) {
            json_object_put(o);
            goto out;
        }
        json_object *dev;
        if (e->all_devices) {
            dev = json_object_new_string("all");
        } else {
            dev = json_object_new_array();
            for (size_t j = 0; dev && j < e->n_devices; j++)
                json_object_array_add(dev, json_object_new_int(e->devices[j]));
        }
        json_object_object_add(o, "devices", dev);
        json_object_object_add(o, "migEnabled",
                               json_object_new_boolean(e->mig_enabled));
        if (e->mig_enabled) {
            json_object *md = json_object_new_object();
            for (size_t j = 0; md && j < e->n_counts; j++)
                json_object_object_add(md, e->counts[j].profile,
                                       json_object_new_int(e->counts[j].count));
            json_object_object_add(o, "migDevices", md);
        }
    }
    const char *s = json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PLAIN);
    *json = s ? strdup(s) : NULL;
    rc = *json ? 0 : -ENOMEM;
out:
    json_object_put(arr);
    return rc;
}

int gm_layout_resolve(const struct gm_mig_layout *l, const char *what,
                      const char *product, bool mig_capable, int gpu_count,
                      char **json, char *err, size_t errlen)
{
    const struct gm_mig_entry *use[64];
    size_t n = 0;
    bool enables = false;
    int rc;

    *json = NULL;
    if (product == NULL)
        return rfail(err, errlen, what,
                     "the node has no nvidia.com/gpu.product label, so its "
                     "GPU model is unknown");
    const struct gm_gpu_model *model = gm_gpu_model_find(product);
    for (size_t i = 0; i < l->n_entries; i++) {
        if (!filter_matches(&l->entries[i], model))
            continue;
        if (n == sizeof(use) / sizeof(use[0]))
            return rfail(err, errlen, what,
                         "more than %d entries apply to %s; gpumode-agent "
                         "takes at most %d",
                         (int)n, product, GM_LAYOUT_MAX_ENTRIES);
        use[n++] = &l->entries[i];
        enables = enables || l->entries[i].mig_enabled;
    }
    if (n == 0) {
        if (model == NULL && mig_capable)
            return rfail(err, errlen, what,
                         "no entry without a device-filter applies to %s, "
                         "a model gpumode has no device id for",
                         product);
        if (model == NULL)
            return rfail(err, errlen, what,
                         "GPU model %s is not known to support MIG", product);
        return rfail(err, errlen, what,
                     "no entry applies to %s (device id 0x%08X)", product,
                     (unsigned)model->device_id);
    }
    /* A mig policy whose layout turns MIG on nowhere (all-disabled is in
     * every GPU Operator's ConfigMap) would verify nothing and call the
     * node mig with whole GPUs served. */
    if (!enables)
        return rfail(err, errlen, what,
                     "enables MIG on no GPU of %s; a node with MIG off is "
                     "mode full",
                     product);
    if (enables && model == NULL && !mig_capable)
        return rfail(err, errlen, what,
                     "GPU model %s is not known to support MIG (and the node "
                     "is not labelled nvidia.com/mig.capable=true)",
                     product);
    rc = check_devices(use, n, gpu_count, what, err, errlen);
    if (rc)
        return rc;
    for (size_t i = 0; i < n; i++) {
        if (!use[i]->mig_enabled)
            continue;
        if (use[i]->n_counts == 0)
            return rfail(err, errlen, what,
                         "an entry enables MIG without instances, which "
                         "leaves the GPU unusable to the device plugin");
        rc =
            model ? check_counts(use[i], model, product, what, err, errlen) : 0;
        if (rc)
            return rc;
    }
    rc = emit(use, n, json);
    if (rc)
        return rc;
    /* The agent's own rules (entries, instances per GPU, name lengths),
     * checked here so that a layout it would refuse stalls the policy
     * instead of failing each node after its drain. They matter most for
     * a model outside the table, whose counts are otherwise left to the
     * node's nvidia-smi. */
    struct gm_layout agent_view;
    char why[256];
    if (gm_layout_parse(*json, &agent_view, why, sizeof(why)) != 0) {
        free(*json);
        *json = NULL;
        return rfail(err, errlen, what, "gpumode-agent would refuse it: %s",
                     why);
    }
    return 0;
}

int gm_layout_check_single(const char *json, int gpu_count, const char *what,
                           char *err, size_t errlen)
{
    struct gm_layout l;
    const char *first = NULL;
    char why[256];

    if (gm_layout_parse(json, &l, why, sizeof(why)) != 0)
        return rfail(err, errlen, what, "%s", why);
    for (int g = 0; g < gpu_count; g++)
        if (gm_layout_for_gpu(&l, g, NULL) == NULL)
            return rfail(err, errlen, what,
                         "has no entry for GPU %d of %d, which keeps MIG "
                         "as it is: strategy single needs every GPU with MIG "
                         "on and one profile; use strategy mixed",
                         g, gpu_count);
    for (int i = 0; i < l.nentries; i++) {
        const struct gm_layout_entry *e = &l.entries[i];
        if (!e->mig_enabled)
            return rfail(err, errlen, what,
                         "leaves MIG off on some GPUs, which strategy single "
                         "does not serve (every GPU must have MIG on with "
                         "one profile); use strategy mixed");
        for (int j = 0; j < e->nprofiles; j++) {
            if (first == NULL)
                first = e->profiles[j].name;
            else if (strcmp(first, e->profiles[j].name) != 0)
                return rfail(err, errlen, what,
                             "has %s and %s on one node, which strategy "
                             "single does not serve (the device plugin "
                             "takes one MIG profile a node); use strategy "
                             "mixed",
                             first, e->profiles[j].name);
        }
    }
    return 0;
}
