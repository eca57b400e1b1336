#include "server/metrics.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One series: its rendered label text is also its identity, because the
 * pairs are sorted by key before rendering, so equal sets give equal text. */
struct series {
    char *labels;     /* owned; `k="v",k2="v2"` or "" */
    double value;     /* counter or gauge; a histogram's sum */
    uint64_t count;   /* histogram observations */
    uint64_t *counts; /* owned; per bucket, not cumulative, +Inf last */
};

struct metric {
    char *name; /* owned */
    char *help; /* owned */
    enum gm_metric_type type;
    double *bounds; /* owned */
    size_t n_bounds;
    struct series *series; /* owned, sorted by labels */
    size_t n_series, cap_series;
};

struct gm_metrics {
    struct metric *metrics; /* owned, sorted by name */
    size_t n, cap;
};

int gm_metrics_new(struct gm_metrics **out)
{
    *out = calloc(1, sizeof(**out));
    return *out ? 0 : -ENOMEM;
}

static void series_free(struct series *s)
{
    free(s->labels);
    free(s->counts);
}

static void metric_clear(struct metric *mt)
{
    for (size_t i = 0; i < mt->n_series; i++)
        series_free(&mt->series[i]);
    mt->n_series = 0;
}

void gm_metrics_free(struct gm_metrics *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->n; i++) {
        struct metric *mt = &m->metrics[i];
        metric_clear(mt);
        free(mt->series);
        free(mt->name);
        free(mt->help);
        free(mt->bounds);
    }
    free(m->metrics);
    free(m);
}

static int name_ok(const char *s, int colon)
{
    if (s == NULL || *s == '\0')
        return 0;
    for (const char *p = s; *p; p++) {
        int alpha = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                    *p == '_' || (colon && *p == ':');
        int digit = *p >= '0' && *p <= '9';
        if (!alpha && !(digit && p != s))
            return 0;
    }
    return 1;
}

/* Binary search; returns the index of name or where it would go. */
static size_t find_metric(const struct gm_metrics *m, const char *name,
                          int *found)
{
    size_t lo = 0, hi = m->n;
    *found = 0;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(m->metrics[mid].name, name);
        if (c == 0) {
            *found = 1;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int buckets_ok(const struct gm_metric_def *d)
{
    if (d->n_buckets > GM_METRICS_MAX_BUCKETS ||
        (d->n_buckets && d->buckets == NULL))
        return 0;
    for (size_t i = 0; i < d->n_buckets; i++) {
        if (!isfinite(d->buckets[i]))
            return 0;
        if (i && !(d->buckets[i] > d->buckets[i - 1]))
            return 0;
    }
    return 1;
}

int gm_metrics_define(struct gm_metrics *m, const struct gm_metric_def *d)
{
    int found;

    if (!name_ok(d->name, 1) || d->help == NULL)
        return -EINVAL;
    if (d->type == GM_METRIC_HISTOGRAM && !buckets_ok(d))
        return -EINVAL;
    size_t at = find_metric(m, d->name, &found);
    if (found)
        return m->metrics[at].type == d->type ? 0 : -EEXIST;
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 16;
        struct metric *nm = realloc(m->metrics, cap * sizeof(*nm));
        if (nm == NULL)
            return -ENOMEM;
        m->metrics = nm;
        m->cap = cap;
    }
    struct metric mt = {.type = d->type};
    mt.name = strdup(d->name);
    mt.help = strdup(d->help);
    if (d->type == GM_METRIC_HISTOGRAM && d->n_buckets) {
        mt.bounds = malloc(d->n_buckets * sizeof(double));
        if (mt.bounds)
            memcpy(mt.bounds, d->buckets, d->n_buckets * sizeof(double));
        mt.n_bounds = d->n_buckets;
    }
    if (!mt.name || !mt.help || (mt.n_bounds && !mt.bounds)) {
        free(mt.name);
        free(mt.help);
        free(mt.bounds);
        return -ENOMEM;
    }
    memmove(&m->metrics[at + 1], &m->metrics[at],
            (m->n - at) * sizeof(*m->metrics));
    m->metrics[at] = mt;
    m->n++;
    return 0;
}

/* Switches take minutes (a drain alone can take ten); phases range from a
 * label patch (under a second) to a drain or a GPU reset. */
static const double switch_buckets[] = {5,   10,  30,   60,   120,  300,
                                        600, 900, 1200, 1800, 3600, 7200};
static const double phase_buckets[] = {0.1, 0.5, 1,   2.5, 5,   10,
                                       30,  60,  120, 300, 600, 1800};

int gm_metrics_define_gpumode(struct gm_metrics *m, const char *version)
{
    static const struct gm_metric_def defs[] = {
        {GM_METRIC_NODES,
         "GPU nodes (labelled by gpumode, by feature discovery, or offering "
         "a GPU resource) by verified mode and state; mode unknown and state "
         "none: never verified by gpumode.",
         GM_METRIC_GAUGE, NULL, 0},
        {GM_METRIC_RESOURCES_DIFFER,
         "Converged nodes of a policy offering other GPU resources than "
         "they were verified with, for longer than resourcesGraceSeconds.",
         GM_METRIC_GAUGE, NULL, 0},
        {GM_METRIC_SWITCHES, "Mode switches finished, by outcome.",
         GM_METRIC_COUNTER, NULL, 0},
        {GM_METRIC_SWITCH_DURATION,
         "Time from the start of a switch to its end, in seconds.",
         GM_METRIC_HISTOGRAM, switch_buckets,
         sizeof(switch_buckets) / sizeof(switch_buckets[0])},
        {GM_METRIC_PHASE_DURATION,
         "Time spent in one switch phase, in seconds.", GM_METRIC_HISTOGRAM,
         phase_buckets, sizeof(phase_buckets) / sizeof(phase_buckets[0])},
        {GM_METRIC_API_REQUESTS,
         "Kubernetes API requests by verb and HTTP status code.",
         GM_METRIC_COUNTER, NULL, 0},
        {GM_METRIC_WATCH_RESTARTS,
         "Watches started again, by resource (nodes, helper pods, HAMi's "
         "ConfigMap, PodDisruptionBudgets).",
         GM_METRIC_COUNTER, NULL, 0},
        {GM_METRIC_LEADER, "1 while this replica holds the leader lease.",
         GM_METRIC_GAUGE, NULL, 0},
        {GM_METRIC_QUEUE_DEPTH, "Keys waiting in the work queue.",
         GM_METRIC_GAUGE, NULL, 0},
        {GM_METRIC_BUILD_INFO, "Build information; the value is always 1.",
         GM_METRIC_GAUGE, NULL, 0},
    };
    for (size_t i = 0; i < sizeof(defs) / sizeof(defs[0]); i++) {
        int err = gm_metrics_define(m, &defs[i]);
        if (err)
            return err;
    }
    int err = gm_metrics_gauge_set(m, GM_METRIC_LEADER, 0, NULL);
    if (err)
        return err;
    return gm_metrics_gauge_set(m, GM_METRIC_BUILD_INFO, 1, "version",
                                version ? version : "unknown", NULL);
}

/* ---- label sets ---- */

struct pair {
    const char *k, *v;
};

static int pair_cmp(const void *a, const void *b)
{
    return strcmp(((const struct pair *)a)->k, ((const struct pair *)b)->k);
}

/* Label values escape backslash, double quote and newline (the format's
 * only three escapes). */
static int append_escaped(struct gm_buf *b, const char *s, int quote)
{
    int err = 0;
    for (const char *p = s; *p && !err; p++) {
        if (*p == '\\')
            err = gm_buf_append(b, "\\\\", 2);
        else if (*p == '\n')
            err = gm_buf_append(b, "\\n", 2);
        else if (quote && *p == '"')
            err = gm_buf_append(b, "\\\"", 2);
        else
            err = gm_buf_append(b, p, 1);
    }
    return err;
}

/* Collects the pairs from ap, checks them, sorts by key and renders the
 * label text into *out (malloc'd). reserve_le refuses "le" (histograms). */
static int labels_from(va_list ap, int reserve_le, char **out)
{
    struct pair pairs[GM_METRICS_MAX_LABELS];
    size_t n = 0;
    const char *k;

    while ((k = va_arg(ap, const char *)) != NULL) {
        const char *v = va_arg(ap, const char *);
        if (v == NULL || !name_ok(k, 0) || strncmp(k, "__", 2) == 0 ||
            (reserve_le && strcmp(k, "le") == 0))
            return -EINVAL;
        if (n == GM_METRICS_MAX_LABELS)
            return -E2BIG;
        pairs[n].k = k;
        pairs[n].v = v;
        n++;
    }
    qsort(pairs, n, sizeof(pairs[0]), pair_cmp);
    struct gm_buf b;
    gm_buf_init(&b, 64 * 1024);
    int err = gm_buf_append(&b, "", 0);
    for (size_t i = 0; i < n && !err; i++) {
        if (i && strcmp(pairs[i].k, pairs[i - 1].k) == 0)
            err = -EINVAL;
        if (!err)
            err = gm_buf_appendf(&b, "%s%s=\"", i ? "," : "", pairs[i].k);
        if (!err)
            err = append_escaped(&b, pairs[i].v, 1);
        if (!err)
            err = gm_buf_append(&b, "\"", 1);
    }
    if (err) {
        gm_buf_free(&b);
        return err;
    }
    *out = gm_buf_steal(&b);
    return *out ? 0 : -ENOMEM;
}

/* Finds or creates the series for labels (consumed: stored or freed). */
static int series_of(struct metric *mt, char *labels, struct series **out)
{
    size_t lo = 0, hi = mt->n_series;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(mt->series[mid].labels, labels);
        if (c == 0) {
            free(labels);
            *out = &mt->series[mid];
            return 0;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (mt->n_series >= GM_METRICS_MAX_SERIES) {
        free(labels);
        return -E2BIG;
    }
    if (mt->n_series == mt->cap_series) {
        size_t cap = mt->cap_series ? mt->cap_series * 2 : 4;
        struct series *ns = realloc(mt->series, cap * sizeof(*ns));
        if (ns == NULL) {
            free(labels);
            return -ENOMEM;
        }
        mt->series = ns;
        mt->cap_series = cap;
    }
    struct series s = {.labels = labels};
    if (mt->type == GM_METRIC_HISTOGRAM) {
        s.counts = calloc(mt->n_bounds + 1, sizeof(uint64_t));
        if (s.counts == NULL) {
            free(labels);
            return -ENOMEM;
        }
    }
    memmove(&mt->series[lo + 1], &mt->series[lo],
            (mt->n_series - lo) * sizeof(*mt->series));
    mt->series[lo] = s;
    mt->n_series++;
    *out = &mt->series[lo];
    return 0;
}

enum op { OP_ADD, OP_SET, OP_OBSERVE };

static int update(struct gm_metrics *m, const char *name,
                  enum gm_metric_type type, enum op op, double v, va_list ap)
{
    int found;
    size_t at = find_metric(m, name, &found);
    if (!found)
        return -ENOENT;
    struct metric *mt = &m->metrics[at];
    if (mt->type != type)
        return -EINVAL;
    /* A counter only goes up; NaN would poison its sum forever. */
    if (type == GM_METRIC_COUNTER && !(v >= 0))
        return -EINVAL;
    /* So does a histogram's sum. Durations come from wall clocks, some
     * written by another replica: after a failover between machines whose
     * clocks differ one can come out negative, and would lower the sum,
     * which Prometheus takes for a reset. Such a one counts as 0. */
    if (type == GM_METRIC_HISTOGRAM) {
        if (v != v)
            return -EINVAL;
        if (v < 0)
            v = 0;
    }
    char *labels;
    int err = labels_from(ap, type == GM_METRIC_HISTOGRAM, &labels);
    if (err)
        return err;
    struct series *s;
    err = series_of(mt, labels, &s);
    if (err)
        return err;
    switch (op) {
    case OP_ADD:
        s->value += v;
        break;
    case OP_SET:
        s->value = v;
        break;
    case OP_OBSERVE: {
        size_t i = 0;
        while (i < mt->n_bounds && !(v <= mt->bounds[i]))
            i++;
        s->counts[i]++;
        s->count++;
        s->value += v;
        break;
    }
    }
    return 0;
}

int gm_metrics_counter_add(struct gm_metrics *m, const char *name, double v,
                           ...)
{
    va_list ap;
    va_start(ap, v);
    int err = update(m, name, GM_METRIC_COUNTER, OP_ADD, v, ap);
    va_end(ap);
    return err;
}

int gm_metrics_gauge_set(struct gm_metrics *m, const char *name, double v, ...)
{
    va_list ap;
    va_start(ap, v);
    int err = update(m, name, GM_METRIC_GAUGE, OP_SET, v, ap);
    va_end(ap);
    return err;
}

int gm_metrics_gauge_add(struct gm_metrics *m, const char *name, double v, ...)
{
    va_list ap;
    va_start(ap, v);
    int err = update(m, name, GM_METRIC_GAUGE, OP_ADD, v, ap);
    va_end(ap);
    return err;
}

int gm_metrics_observe(struct gm_metrics *m, const char *name, double v, ...)
{
    va_list ap;
    va_start(ap, v);
    int err = update(m, name, GM_METRIC_HISTOGRAM, OP_OBSERVE, v, ap);
    va_end(ap);
    return err;
}

int gm_metrics_clear(struct gm_metrics *m, const char *name)
{
    int found;
    size_t at = find_metric(m, name, &found);
    if (!found)
        return -ENOENT;
    metric_clear(&m->metrics[at]);
    return 0;
}

int gm_metrics_value(const struct gm_metrics *m, const char *name, double *out,
                     ...)
{
    int found;
    size_t at = find_metric(m, name, &found);
    if (!found)
        return -ENOENT;
    const struct metric *mt = &m->metrics[at];
    char *labels;
    va_list ap;
    va_start(ap, out);
    int err = labels_from(ap, 0, &labels);
    va_end(ap);
    if (err)
        return err;
    err = -ENOENT;
    for (size_t i = 0; i < mt->n_series; i++) {
        if (strcmp(mt->series[i].labels, labels) == 0) {
            const struct series *s = &mt->series[i];
            *out =
                mt->type == GM_METRIC_HISTOGRAM ? (double)s->count : s->value;
            err = 0;
            break;
        }
    }
    free(labels);
    return err;
}

/* ---- rendering ---- */

/* The shortest text that reads back as the same double, in plain decimal
 * unless the exponent is extreme, so counts read as 1000000 and durations
 * as 0.25 rather than with 17 digits. Parsers accept either form. */
static void format_double(double v, char *out, size_t n)
{
    char e[40];
    int prec = 1;

    if (isnan(v)) {
        snprintf(out, n, "NaN");
        return;
    }
    if (isinf(v)) {
        snprintf(out, n, "%s", v > 0 ? "+Inf" : "-Inf");
        return;
    }
    for (; prec < 17; prec++) {
        snprintf(e, sizeof(e), "%.*e", prec - 1, v);
        if (strtod(e, NULL) == v)
            break;
    }
    snprintf(e, sizeof(e), "%.*e", prec - 1, v);
    int exp = atoi(strchr(e, 'e') + 1);
    if (exp < -4 || exp >= 21) {
        snprintf(out, n, "%s", e);
        return;
    }
    int decimals = prec - 1 - exp;
    snprintf(out, n, "%.*f", decimals > 0 ? decimals : 0, v);
}

static int render_sample(struct gm_buf *b, const char *name, const char *suffix,
                         const char *labels, const char *le, double v)
{
    char num[40];
    int err = gm_buf_appendf(b, "%s%s", name, suffix);
    if (!err && (labels[0] || le))
        err = gm_buf_appendf(b, "{%s%s%s%s%s}", labels,
                             labels[0] && le ? "," : "", le ? "le=\"" : "",
                             le ? le : "", le ? "\"" : "");
    format_double(v, num, sizeof(num));
    if (!err)
        err = gm_buf_appendf(b, " %s\n", num);
    return err;
}

static int render_histogram(struct gm_buf *b, const struct metric *mt,
                            const struct series *s)
{
    char le[40];
    uint64_t cum = 0;
    int err = 0;
    for (size_t i = 0; i <= mt->n_bounds && !err; i++) {
        cum += s->counts[i];
        if (i < mt->n_bounds)
            format_double(mt->bounds[i], le, sizeof(le));
        else
            snprintf(le, sizeof(le), "+Inf");
        err = render_sample(b, mt->name, "_bucket", s->labels, le, (double)cum);
    }
    if (!err)
        err = render_sample(b, mt->name, "_sum", s->labels, NULL, s->value);
    if (!err)
        err = render_sample(b, mt->name, "_count", s->labels, NULL,
                            (double)s->count);
    return err;
}

static const char *type_name(enum gm_metric_type t)
{
    switch (t) {
    case GM_METRIC_COUNTER:
        return "counter";
    case GM_METRIC_GAUGE:
        return "gauge";
    case GM_METRIC_HISTOGRAM:
        return "histogram";
    }
    return "untyped";
}

int gm_metrics_render(const struct gm_metrics *m, struct gm_buf *out)
{
    int err = 0;
    for (size_t i = 0; i < m->n && !err; i++) {
        const struct metric *mt = &m->metrics[i];
        err = gm_buf_appendf(out, "# HELP %s ", mt->name);
        if (!err)
            err = append_escaped(out, mt->help, 0);
        if (!err)
            err = gm_buf_appendf(out, "\n# TYPE %s %s\n", mt->name,
                                 type_name(mt->type));
        for (size_t j = 0; j < mt->n_series && !err; j++) {
            const struct series *s = &mt->series[j];
            if (mt->type == GM_METRIC_HISTOGRAM)
                err = render_histogram(out, mt, s);
            else
                err =
                    render_sample(out, mt->name, "", s->labels, NULL, s->value);
        }
    }
    return err;
}
