#include "cli/status.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/mode.h"
#include "planner/labels.h"
#include "planner/policy.h"

#define RED "\033[31m"
#define GREEN "\033[32m"
#define YELLOW "\033[33m"
#define BOLD "\033[1m"
#define RESET "\033[0m"

void gm_status_bar(int done, int total, int width, char *buf, size_t len)
{
    char cells[130];
    int filled = 0;

    if (width <= 0 || width > 128)
        width = 10;
    if (total > 0 && done > 0)
        filled = (int)((long long)done * width / total);
    if (filled > width)
        filled = width;
    /* Some progress shows as one cell, so 1/100 does not look like none. */
    if (done > 0 && filled == 0)
        filled = 1;
    for (int i = 0; i < width; i++)
        cells[i] = i < filled ? '#' : '-';
    cells[width] = '\0';
    snprintf(buf, len, "[%s]", cells);
}

void gm_status_duration(long long s, char *buf, size_t len)
{
    if (s < 0)
        snprintf(buf, len, "-");
    else if (s < 60)
        snprintf(buf, len, "%llds", s);
    else if (s < 3600)
        snprintf(buf, len, "%lldm%02llds", s / 60, s % 60);
    else if (s < 86400)
        snprintf(buf, len, "%lldh%02lldm", s / 3600, s % 3600 / 60);
    else
        snprintf(buf, len, "%lldd%lldh", s / 86400, s % 86400 / 3600);
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar; avoids
 * timegm, which is not in C11. */
static long long days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    long long era = (y >= 0 ? y : y - 399) / 400;
    long long yoe = y - era * 400;
    long long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    long long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

long long gm_status_parse_time(const char *s)
{
    int y, mo, d, h, mi, se;
    char z = 0;

    if (s == NULL || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%c", &y, &mo, &d, &h,
                            &mi, &se, &z) != 7)
        return -1;
    if (z != 'Z' && z != '.')
        return -1;
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60)
        return -1;
    return days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se;
}

/* ---- a small table ---- */

#define MAX_COLS 6

struct table {
    char *cells[300][MAX_COLS]; /* owned */
    const char *colour[300];    /* per row, or NULL */
    size_t rows;
    size_t cols;
};

static int row_add(struct table *t, const char *colour, ...)
{
    va_list ap;

    if (t->rows == sizeof(t->cells) / sizeof(t->cells[0]))
        return -E2BIG;
    va_start(ap, colour);
    for (size_t c = 0; c < t->cols; c++) {
        const char *v = va_arg(ap, const char *);
        t->cells[t->rows][c] = strdup(v ? v : "");
        if (t->cells[t->rows][c] == NULL) {
            va_end(ap);
            return -ENOMEM;
        }
    }
    va_end(ap);
    t->colour[t->rows++] = colour;
    return 0;
}

/* Columns padded to the widest cell; the last column is not padded, so
 * long messages do not push trailing blanks. */
static int table_print(struct table *t, const char *indent, bool color,
                       struct gm_buf *out)
{
    size_t w[MAX_COLS] = {0};
    int err = 0;

    for (size_t r = 0; r < t->rows; r++)
        for (size_t c = 0; c < t->cols; c++)
            if (strlen(t->cells[r][c]) > w[c])
                w[c] = strlen(t->cells[r][c]);
    for (size_t r = 0; r < t->rows && !err; r++) {
        const char *col = color ? t->colour[r] : NULL;
        err = gm_buf_appendf(out, "%s%s", indent, col ? col : "");
        for (size_t c = 0; c < t->cols && !err; c++) {
            bool last = c + 1 == t->cols;
            err = gm_buf_appendf(out, "%-*s%s", last ? 0 : (int)w[c],
                                 t->cells[r][c], last ? "" : "  ");
        }
        if (!err)
            err = gm_buf_appendf(out, "%s\n", col ? RESET : "");
    }
    return err;
}

static void table_free(struct table *t)
{
    for (size_t r = 0; r < t->rows; r++)
        for (size_t c = 0; c < t->cols; c++)
            free(t->cells[r][c]);
    t->rows = 0;
}

/* ---- one policy ---- */

static json_object *find_node(json_object *nodes, const char *name)
{
    for (size_t i = 0; nodes && i < json_object_array_length(nodes); i++) {
        json_object *n = json_object_array_get_idx(nodes, i);
        const char *nn = gm_json_str(gm_json_get(n, "metadata"), "name");
        if (nn && strcmp(nn, name) == 0)
            return n;
    }
    return NULL;
}

static const char *node_label(json_object *node, const char *key)
{
    return gm_json_str(gm_json_get(gm_json_get(node, "metadata"), "labels"),
                       key);
}

static int render_nodes(const struct gm_policy *p, json_object *nodes,
                        const struct gm_status_opts *o, struct gm_buf *out)
{
    json_object *list = gm_json_get(p->status, "nodes");
    struct table *t;
    int err = 0;

    if (list == NULL || !json_object_is_type(list, json_type_array) ||
        json_object_array_length(list) == 0)
        return 0;
    t = calloc(1, sizeof(*t));
    if (t == NULL)
        return -ENOMEM;
    t->cols = 6;
    err =
        row_add(t, NULL, "NODE", "MODE", "STATE", "PHASE", "SINCE", "MESSAGE");
    for (size_t i = 0; !err && i < json_object_array_length(list); i++) {
        json_object *e = json_object_array_get_idx(list, i);
        const char *name = gm_json_str(e, "name");
        const char *phase = gm_json_str(e, "phase");
        const char *from = gm_json_str(e, "from");
        const char *to = gm_json_str(e, "to");
        json_object *node = name ? find_node(nodes, name) : NULL;
        const char *mode = node ? node_label(node, GM_LABEL_MODE) : NULL;
        const char *state = node ? node_label(node, GM_LABEL_STATE) : NULL;
        char modes[64], since[32] = "-";
        long long t0 = gm_status_parse_time(gm_json_str(e, "since"));

        /* The label is the mode verified on the node; from -> to is the
         * switch, when there is one. */
        snprintf(modes, sizeof(modes), "%s->%s",
                 mode ? mode : (from ? from : "?"), to ? to : "?");
        if (t0 >= 0)
            gm_status_duration((long long)o->now - t0, since, sizeof(since));
        if (state == NULL)
            state = phase && strcmp(phase, "Failed") == 0 ? "failed" : "-";
        const char *colour = NULL;
        if (strcmp(state, "failed") == 0 ||
            (phase && strcmp(phase, "Failed") == 0))
            colour = RED;
        else if (phase && strcmp(phase, "Conflict") == 0)
            colour = RED;
        else if (phase && strcmp(phase, "Pending") != 0)
            colour = YELLOW;
        err = row_add(t, colour, name ? name : "?", modes, state,
                      phase ? phase : "-", since, gm_json_str(e, "message"));
    }
    if (!err)
        err = table_print(t, "  ", o->color, out);
    json_object *omitted = gm_json_get(p->status, "nodesOmitted");
    if (!err && omitted && json_object_get_int(omitted) > 0)
        err = gm_buf_appendf(out, "  ... and %d more nodes not converged\n",
                             json_object_get_int(omitted));
    table_free(t);
    free(t);
    return err;
}

static int render_policy(json_object *obj, json_object *nodes,
                         const struct gm_status_opts *o, struct gm_buf *out)
{
    struct gm_policy *p = NULL;
    int err;

    gm_policy_decode(obj, &p);
    if (p == NULL)
        return 0; /* no name: nothing to show */
    const struct gm_summary *s = &p->summary;
    const struct gm_condition *ready = gm_policy_condition(p, "Ready");
    const struct gm_condition *stalled = gm_policy_condition(p, "Stalled");
    const char *mode = gm_json_str(gm_json_get(obj, "spec"), "mode");
    char bar[140];
    /* A status written for an older spec says nothing of this one (kstatus
     * counts the policy in progress): shown as not yet observed. */
    bool stale =
        p->status != NULL && p->status_observed_generation < p->generation;
    if (stale)
        ready = stalled = NULL;
    bool is_ready = ready && strcmp(ready->status, "True") == 0;
    bool is_stalled = stalled && strcmp(stalled->status, "True") == 0;
    const char *col = !o->color                     ? ""
                      : is_stalled || s->failed > 0 ? RED
                      : is_ready                    ? GREEN
                                                    : YELLOW;

    gm_status_bar(s->converged, s->matched, o->bar_width, bar, sizeof(bar));
    err = gm_buf_appendf(out, "%s%s%s  %s  %s%s%s %d/%d  Ready=%s %s%s\n",
                         o->color ? BOLD : "", p->name, o->color ? RESET : "",
                         mode ? mode : "?", col, bar, o->color ? RESET : "",
                         s->converged, s->matched,
                         ready ? ready->status : "Unknown",
                         ready ? ready->reason : "NotObserved",
                         p->valid && p->spec.paused ? "  (paused)" : "");
    if (!err && p->status == NULL)
        err = gm_buf_appendf(out, "  no status yet: is gpumode-controller "
                                  "running?\n");
    if (!err && stale)
        err = gm_buf_appendf(out,
                             "  %snote: the status below is for generation "
                             "%lld; the spec is at generation %lld, not yet "
                             "seen by gpumode-controller (is it running?)%s\n",
                             o->color ? YELLOW : "",
                             (long long)p->status_observed_generation,
                             (long long)p->generation, o->color ? RESET : "");
    if (!err && p->status != NULL)
        err = gm_buf_appendf(out,
                             "  matched %d  converged %d  switching %d  "
                             "pending %d  failed %d%s",
                             s->matched, s->converged, s->switching, s->pending,
                             s->failed, s->conflicted ? "" : "\n");
    if (!err && p->status != NULL && s->conflicted)
        err = gm_buf_appendf(out, "  conflicted %d\n", s->conflicted);
    /* Notices (what the controller does not do though nothing stalls)
     * follow the progress line in Ready's message, each after ". "
     * (planner/status.c); an invalid spec's message is the error, which
     * may quote the user's text. */
    const char *note = ready && ready->message && ready->reason &&
                               strcmp(ready->reason, "InvalidSpec") != 0
                           ? strstr(ready->message, ". ")
                           : NULL;
    while (!err && note) {
        const char *text = note + 2;
        note = strstr(text, ". ");
        int len = note ? (int)(note - text) : (int)strlen(text);
        err = gm_buf_appendf(out, "  %snote: %.*s%s\n", o->color ? YELLOW : "",
                             len, text, o->color ? RESET : "");
    }
    if (!err && !p->valid)
        err =
            gm_buf_appendf(out, "  %sinvalid spec: %s%s\n", o->color ? RED : "",
                           p->error, o->color ? RESET : "");
    else if (!err && is_stalled)
        err = gm_buf_appendf(out, "  %sstalled: %s: %s%s\n",
                             o->color ? RED : "", stalled->reason,
                             stalled->message, o->color ? RESET : "");
    if (!err)
        err = render_nodes(p, nodes, o, out);
    if (!err && p->status != NULL && s->matched > 0) {
        int listed = s->matched - s->converged;
        err = gm_buf_appendf(out, "  %d nodes governed, %d converged%s\n",
                             s->matched, s->converged,
                             listed > 0 ? "" : " (all)");
    }
    gm_policy_free(p);
    return err;
}

static int cmp_policy(const void *a, const void *b)
{
    json_object *x = *(json_object *const *)a;
    json_object *y = *(json_object *const *)b;
    const char *nx = gm_json_str(gm_json_get(x, "metadata"), "name");
    const char *ny = gm_json_str(gm_json_get(y, "metadata"), "name");
    return strcmp(nx ? nx : "", ny ? ny : "");
}

int gm_status_render(json_object *policies, json_object *nodes,
                     const struct gm_status_opts *o, struct gm_buf *out)
{
    size_t n = policies ? json_object_array_length(policies) : 0;
    json_object **sorted;
    int err = 0;

    if (n == 0)
        return gm_buf_appendf(out, "no GPUModePolicies\n");
    sorted = calloc(n, sizeof(*sorted));
    if (sorted == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++)
        sorted[i] = json_object_array_get_idx(policies, i);
    qsort(sorted, n, sizeof(*sorted), cmp_policy);
    for (size_t i = 0; i < n && !err; i++) {
        if (i > 0)
            err = gm_buf_appendf(out, "\n");
        if (!err)
            err = render_policy(sorted[i], nodes, o, out);
    }
    free(sorted);
    return err;
}
