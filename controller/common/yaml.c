#include "common/yaml.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "common/buf.h"
#include "common/map.h"

#define MAX_DEPTH 64
#define MAX_FILE (8u * 1024 * 1024)
/* Nodes that aliases may add to a document, all aliases together. An alias
 * shares its anchor's tree rather than copying it, but whoever walks the
 * result (printing it, decoding a policy) visits every copy: without a cap,
 * ten lines of nested aliases ("billion laughs") make a tree of 10^9 nodes.
 * Real configs alias a few small maps. */
#define MAX_ALIAS_NODES 100000

struct ctx {
    yaml_parser_t parser;
    struct gm_map anchors; /* anchor -> json_object (one reference held) */
    size_t alias_budget;   /* nodes aliases may still add */
    char *err;
    size_t err_len;
};

static int fail(struct ctx *c, const yaml_mark_t *m, const char *what)
{
    snprintf(c->err, c->err_len, "line %zu, column %zu: %s", m->line + 1,
             m->column + 1, what);
    return -EINVAL;
}

static int parser_fail(struct ctx *c)
{
    yaml_mark_t m = c->parser.problem_mark;
    return fail(c, &m, c->parser.problem ? c->parser.problem : "bad YAML");
}

static int is_int(const char *s)
{
    if (*s == '-' || *s == '+')
        s++;
    if (!*s)
        return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return 0;
    return 1;
}

/* One scalar's value: plain ones are typed, others are strings. NULL for
 * null (and when out of memory). */
static json_object *typed_scalar(const char *v, size_t len, int plain)
{
    if (!plain)
        return json_object_new_string_len(v, (int)len);
    if (len == 0 || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
        strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0)
        return NULL;
    if (strcmp(v, "true") == 0 || strcmp(v, "True") == 0 ||
        strcmp(v, "TRUE") == 0)
        return json_object_new_boolean(1);
    if (strcmp(v, "false") == 0 || strcmp(v, "False") == 0 ||
        strcmp(v, "FALSE") == 0)
        return json_object_new_boolean(0);
    if (is_int(v) && len < 19)
        return json_object_new_int64(strtoll(v, NULL, 10));
    /* Decimal floats only: "0x20B010DE" (a PCI id) stays a string. */
    if (strspn(v, "0123456789+-.eE") == len && strpbrk(v, "0123456789")) {
        char *end;
        double d = strtod(v, &end);
        if (*end == '\0')
            return json_object_new_double(d);
    }
    return json_object_new_string_len(v, (int)len);
}

/* Plain and not tagged !!str: only those get a type other than string. */
static int is_plain(yaml_scalar_style_t style, const yaml_char_t *tag)
{
    return style == YAML_PLAIN_SCALAR_STYLE &&
           !(tag && strcmp((const char *)tag, YAML_STR_TAG) == 0);
}

static json_object *scalar(const yaml_event_t *ev)
{
    return typed_scalar((const char *)ev->data.scalar.value,
                        ev->data.scalar.length,
                        is_plain(ev->data.scalar.style, ev->data.scalar.tag));
}

static int parse_node(struct ctx *c, yaml_event_t *ev, json_object **out,
                      int depth);

static int next_event(struct ctx *c, yaml_event_t *ev)
{
    if (!yaml_parser_parse(&c->parser, ev))
        return parser_fail(c);
    return 0;
}

static int remember_anchor(struct ctx *c, const yaml_char_t *anchor,
                           json_object *o)
{
    void *old = NULL;
    if (anchor == NULL)
        return 0;
    json_object_get(o);
    if (gm_map_put(&c->anchors, (const char *)anchor, o, &old) != 0) {
        json_object_put(o); /* the reference taken for the map */
        return -ENOMEM;
    }
    json_object_put(old);
    return 0;
}

/* Collections remember their anchor once complete, not at their start: an
 * alias inside its own anchor's node would otherwise put the node inside
 * itself, a reference cycle that is never freed and that printing follows
 * forever. Such an alias is "unknown", as in most YAML loaders. */
static int parse_mapping(struct ctx *c, yaml_event_t *start, json_object **out,
                         int depth)
{
    json_object *obj = json_object_new_object();
    int err = 0;

    while (!err) {
        yaml_event_t kev;
        err = next_event(c, &kev);
        if (err)
            break;
        if (kev.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&kev);
            err = remember_anchor(c, start->data.mapping_start.anchor, obj);
            if (err)
                break;
            *out = obj;
            return 0;
        }
        if (kev.type != YAML_SCALAR_EVENT) {
            err = fail(c, &kev.start_mark, "mapping keys must be scalars");
            yaml_event_delete(&kev);
            break;
        }
        char *key = strdup((const char *)kev.data.scalar.value);
        yaml_event_delete(&kev);
        yaml_event_t vev;
        json_object *val = NULL;
        err = key ? next_event(c, &vev) : -ENOMEM;
        if (!err) {
            err = parse_node(c, &vev, &val, depth + 1);
            yaml_event_delete(&vev);
        }
        if (!err && key)
            json_object_object_add(obj, key, val);
        free(key);
    }
    json_object_put(obj);
    return err;
}

static int parse_sequence(struct ctx *c, yaml_event_t *start, json_object **out,
                          int depth)
{
    json_object *arr = json_object_new_array();
    int err = 0;

    while (!err) {
        yaml_event_t ev;
        err = next_event(c, &ev);
        if (err)
            break;
        if (ev.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&ev);
            err = remember_anchor(c, start->data.sequence_start.anchor, arr);
            if (err)
                break;
            *out = arr;
            return 0;
        }
        json_object *val = NULL;
        err = parse_node(c, &ev, &val, depth + 1);
        yaml_event_delete(&ev);
        if (!err)
            json_object_array_add(arr, val);
    }
    json_object_put(arr);
    return err;
}

/* Charges the nodes of an aliased tree placed at depth against the alias
 * budget. Returns -1 when the budget runs out or the copy would nest deeper
 * than MAX_DEPTH (aliases of aliases can each add a level). The walk stops
 * there, so all walks together visit at most MAX_ALIAS_NODES + 1 nodes. */
static int charge_alias(struct ctx *c, json_object *o, int depth)
{
    if (depth > MAX_DEPTH || c->alias_budget == 0)
        return -1;
    c->alias_budget--;
    if (json_object_is_type(o, json_type_object)) {
        json_object_object_foreach(o, k, v)
        {
            (void)k;
            if (charge_alias(c, v, depth + 1) != 0)
                return -1;
        }
    } else if (json_object_is_type(o, json_type_array)) {
        size_t n = json_object_array_length(o);
        for (size_t i = 0; i < n; i++)
            if (charge_alias(c, json_object_array_get_idx(o, i), depth + 1))
                return -1;
    }
    return 0;
}

static int parse_node(struct ctx *c, yaml_event_t *ev, json_object **out,
                      int depth)
{
    if (depth > MAX_DEPTH)
        return fail(c, &ev->start_mark, "nested too deeply");
    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        *out = scalar(ev);
        return remember_anchor(c, ev->data.scalar.anchor, *out);
    case YAML_MAPPING_START_EVENT:
        return parse_mapping(c, ev, out, depth);
    case YAML_SEQUENCE_START_EVENT:
        return parse_sequence(c, ev, out, depth);
    case YAML_ALIAS_EVENT: {
        json_object *o =
            gm_map_get(&c->anchors, (const char *)ev->data.alias.anchor);
        if (o == NULL)
            return fail(c, &ev->start_mark, "unknown alias");
        if (charge_alias(c, o, depth) != 0)
            return fail(c, &ev->start_mark,
                        "aliases expand too much or nest too deeply");
        *out = json_object_get(o);
        return 0;
    }
    default:
        return fail(c, &ev->start_mark, "unexpected YAML event");
    }
}

/* first_only: the first document is read and the rest of the stream is
 * not looked at; else a second document is an error. */
static int parse(const char *text, size_t len, bool first_only,
                 json_object **out, char *err, size_t err_len)
{
    struct ctx c = {
        .err = err, .err_len = err_len, .alias_budget = MAX_ALIAS_NODES};
    yaml_event_t ev;
    int rc = 0;

    *out = NULL;
    if (err_len)
        err[0] = '\0';
    if (!yaml_parser_initialize(&c.parser))
        return -ENOMEM;
    yaml_parser_set_input_string(&c.parser, (const unsigned char *)text, len);
    gm_map_init(&c.anchors);
    for (;;) {
        rc = next_event(&c, &ev);
        if (rc)
            break;
        yaml_event_type_t t = ev.type;
        if (t == YAML_STREAM_END_EVENT) {
            yaml_event_delete(&ev);
            break;
        }
        if (t == YAML_DOCUMENT_END_EVENT && first_only) {
            yaml_event_delete(&ev);
            break;
        } else if (t != YAML_STREAM_START_EVENT &&
                   t != YAML_DOCUMENT_START_EVENT &&
                   t != YAML_DOCUMENT_END_EVENT) {
            /* An empty document (a leading or trailing "---", as editors
             * and generators leave) is skipped, as kubectl skips it. */
            json_object *doc = NULL;
            rc = parse_node(&c, &ev, &doc, 0);
            if (rc == 0 && doc != NULL && *out != NULL) {
                json_object_put(doc);
                rc = fail(&c, &ev.start_mark,
                          "only one YAML document is allowed");
            } else if (rc == 0 && doc != NULL) {
                *out = doc;
            }
        }
        yaml_event_delete(&ev);
        if (rc)
            break;
    }
    for (struct gm_map_entry *e = gm_map_first(&c.anchors); e;
         e = gm_map_next(&c.anchors, e))
        json_object_put(e->value);
    gm_map_free(&c.anchors);
    yaml_parser_delete(&c.parser);
    if (rc) {
        json_object_put(*out);
        *out = NULL;
    }
    return rc;
}

/* A node of a loaded document. libyaml's document shares an aliased node
 * between its references, so the walk charges every node it visits against
 * *budget: a copy, unlike json-c's shared references, costs memory. */
static int node_json(yaml_document_t *d, yaml_node_t *n, int depth,
                     size_t *budget, json_object **out)
{
    *out = NULL;
    if (n == NULL)
        return 0;
    if (depth > MAX_DEPTH || *budget == 0)
        return -E2BIG;
    (*budget)--;
    if (n->type == YAML_SCALAR_NODE) {
        /* The loader tags every untagged scalar !!str, so only the style
         * tells: an explicit !!str on a plain scalar is not seen here. */
        *out = typed_scalar((const char *)n->data.scalar.value,
                            n->data.scalar.length,
                            n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE);
        return 0;
    }
    json_object *o = n->type == YAML_MAPPING_NODE ? json_object_new_object()
                                                  : json_object_new_array();
    int err = o ? 0 : -ENOMEM;

    if (n->type == YAML_MAPPING_NODE) {
        for (yaml_node_pair_t *p = n->data.mapping.pairs.start;
             !err && p < n->data.mapping.pairs.top; p++) {
            yaml_node_t *k = yaml_document_get_node(d, p->key);
            json_object *v = NULL;
            if (k == NULL || k->type != YAML_SCALAR_NODE) {
                err = -EINVAL;
                break;
            }
            err = node_json(d, yaml_document_get_node(d, p->value), depth + 1,
                            budget, &v);
            if (!err && json_object_object_add(
                            o, (const char *)k->data.scalar.value, v) != 0) {
                json_object_put(v); /* not taken */
                err = -ENOMEM;
            }
        }
    } else {
        for (yaml_node_item_t *i = n->data.sequence.items.start;
             !err && i < n->data.sequence.items.top; i++) {
            json_object *v = NULL;
            err = node_json(d, yaml_document_get_node(d, *i), depth + 1, budget,
                            &v);
            if (!err && json_object_array_add(o, v) != 0) {
                json_object_put(v);
                err = -ENOMEM;
            }
        }
    }
    if (err) {
        json_object_put(o);
        return err;
    }
    *out = o;
    return 0;
}

int gm_yaml_node_json(yaml_document_t *d, yaml_node_t *n, json_object **out)
{
    size_t budget = MAX_ALIAS_NODES;
    return node_json(d, n, 0, &budget, out);
}

int gm_yaml_parse(const char *text, size_t len, json_object **out, char *err,
                  size_t err_len)
{
    return parse(text, len, false, out, err, err_len);
}

int gm_yaml_parse_first(const char *text, size_t len, json_object **out,
                        char *err, size_t err_len)
{
    return parse(text, len, true, out, err, err_len);
}

int gm_yaml_parse_file(const char *path, json_object **out, char *err,
                       size_t err_len)
{
    /* "-" is standard input, as in kubectl's -f - */
    bool in = strcmp(path, "-") == 0;
    FILE *f = in ? stdin : fopen(path, "rb");
    struct gm_buf b;
    char chunk[8192];
    size_t n;
    int rc = 0;

    if (in)
        path = "stdin";
    *out = NULL;
    if (f == NULL) {
        rc = -errno;
        snprintf(err, err_len, "%s: %s", path, strerror(errno));
        return rc;
    }
    gm_buf_init(&b, MAX_FILE);
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        rc = gm_buf_append(&b, chunk, n);
        if (rc) {
            snprintf(err, err_len, "%s: larger than %u bytes", path, MAX_FILE);
            break;
        }
    }
    if (!in)
        fclose(f);
    if (rc == 0) {
        char inner[512];
        rc = gm_yaml_parse(b.data ? b.data : "", b.len, out, inner,
                           sizeof(inner));
        if (rc)
            snprintf(err, err_len, "%s: %s", path, inner);
    }
    gm_buf_free(&b);
    return rc;
}
