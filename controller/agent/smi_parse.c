#include "agent/smi_parse.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* A view into the caller's text; we never copy or modify the input, so a
 * parser can run on a const buffer of any size. */
struct span {
    const char *p;
    size_t len;
};

#define MAX_TOKENS 32

/* Returns the next line (without "\n" or "\r") and advances *pos; 0 at the
 * end of the text. */
static int next_line(const char **pos, struct span *line)
{
    const char *s = *pos;
    if (s == NULL || *s == '\0')
        return 0;
    const char *e = strchr(s, '\n');
    size_t len = e ? (size_t)(e - s) : strlen(s);
    *pos = e ? e + 1 : s + len;
    while (len > 0 && s[len - 1] == '\r')
        len--;
    line->p = s;
    line->len = len;
    return 1;
}

static struct span trim(struct span s)
{
    while (s.len > 0 && isspace((unsigned char)s.p[0])) {
        s.p++;
        s.len--;
    }
    while (s.len > 0 && isspace((unsigned char)s.p[s.len - 1]))
        s.len--;
    return s;
}

static int span_eq(struct span s, const char *lit)
{
    size_t n = strlen(lit);
    return s.len == n && memcmp(s.p, lit, n) == 0;
}

static int span_starts(struct span s, const char *lit)
{
    size_t n = strlen(lit);
    return s.len >= n && memcmp(s.p, lit, n) == 0;
}

/* Substring search bounded by the span, since a line is not NUL-terminated
 * where it ends. */
static int span_contains(struct span s, const char *lit)
{
    size_t n = strlen(lit);
    if (n == 0)
        return 1;
    for (size_t i = 0; i + n <= s.len; i++) {
        if (memcmp(s.p + i, lit, n) == 0)
            return 1;
    }
    return 0;
}

/* Splits on runs of whitespace. -E2BIG when there are more than max tokens,
 * which no line we parse has, so a junk line fails instead of truncating. */
static int tokenize(struct span line, struct span *tok, size_t max, size_t *n)
{
    size_t i = 0;
    *n = 0;
    while (i < line.len) {
        while (i < line.len && isspace((unsigned char)line.p[i]))
            i++;
        if (i == line.len)
            break;
        size_t start = i;
        while (i < line.len && !isspace((unsigned char)line.p[i]))
            i++;
        if (*n == max)
            return -E2BIG;
        tok[*n].p = line.p + start;
        tok[*n].len = i - start;
        (*n)++;
    }
    return 0;
}

static int copy_span(char *dst, size_t cap, struct span s)
{
    if (s.len >= cap)
        return -ENAMETOOLONG;
    memcpy(dst, s.p, s.len);
    dst[s.len] = '\0';
    return 0;
}

/* Parses digits only (no sign, no spaces) into an int; rejects overflow. */
static int span_int(struct span s, int *out)
{
    long v = 0;
    if (s.len == 0 || s.len > 9)
        return -EBADMSG;
    for (size_t i = 0; i < s.len; i++) {
        if (!isdigit((unsigned char)s.p[i]))
            return -EBADMSG;
        v = v * 10 + (s.p[i] - '0');
    }
    *out = (int)v;
    return 0;
}

/* Matches one token against a pattern piece such as "%d", "%d:%d", "(ID",
 * "%d)" or "%s)". %d takes an int * and needs at least one digit; %s takes
 * a char * and a size_t capacity and consumes everything up to the literal
 * that ends the piece. */
static int match_token(struct span t, const char *pat, size_t plen, va_list *ap)
{
    size_t ti = 0;
    size_t pi = 0;
    while (pi < plen) {
        if (pat[pi] == '%' && pi + 1 < plen && pat[pi + 1] == 'd') {
            size_t start = ti;
            while (ti < t.len && isdigit((unsigned char)t.p[ti]))
                ti++;
            struct span d = {t.p + start, ti - start};
            int *dst = va_arg(*ap, int *);
            if (span_int(d, dst) != 0)
                return -EBADMSG;
            pi += 2;
        } else if (pat[pi] == '%' && pi + 1 < plen && pat[pi + 1] == 's') {
            size_t tail = plen - (pi + 2);
            char *dst = va_arg(*ap, char *);
            size_t cap = va_arg(*ap, size_t);
            if (t.len - ti < tail + 1)
                return -EBADMSG;
            struct span w = {t.p + ti, t.len - ti - tail};
            int err = copy_span(dst, cap, w);
            if (err)
                return err;
            ti += w.len;
            pi += 2;
        } else {
            if (ti >= t.len || t.p[ti] != pat[pi])
                return -EBADMSG;
            ti++;
            pi++;
        }
    }
    return ti == t.len ? 0 : -EBADMSG;
}

/* A tiny scanf over whitespace tokens: the pattern's space-separated pieces
 * must match the tokens one for one. Keeps every line format readable in
 * one place instead of index arithmetic. */
static int match_tokens(const struct span *tok, size_t ntok, const char *pat,
                        ...)
{
    va_list ap;
    size_t i = 0;
    int err = 0;
    const char *p = pat;

    va_start(ap, pat);
    while (*p) {
        while (*p == ' ')
            p++;
        if (*p == '\0')
            break;
        const char *e = strchr(p, ' ');
        size_t plen = e ? (size_t)(e - p) : strlen(p);
        if (i == ntok) {
            err = -EBADMSG;
            break;
        }
        err = match_token(tok[i], p, plen, &ap);
        if (err)
            break;
        i++;
        p += plen;
    }
    va_end(ap);
    if (err == 0 && i != ntok)
        err = -EBADMSG;
    return err;
}

/* Strips the "|" borders of a boxed table row. Returns 0 when the line is
 * not a row ("+---+" borders, blank lines). */
static int table_row(struct span line, struct span *inner)
{
    struct span s = trim(line);
    if (s.len < 2 || s.p[0] != '|')
        return 0;
    s.p++;
    s.len--;
    if (s.len > 0 && s.p[s.len - 1] == '|')
        s.len--;
    *inner = trim(s);
    return 1;
}

static int all_digits(struct span s)
{
    if (s.len == 0)
        return 0;
    for (size_t i = 0; i < s.len; i++) {
        if (!isdigit((unsigned char)s.p[i]))
            return 0;
    }
    return 1;
}

const char *gm_mig_mode_name(enum gm_mig_mode m)
{
    switch (m) {
    case GM_MIG_DISABLED:
        return "Disabled";
    case GM_MIG_ENABLED:
        return "Enabled";
    case GM_MIG_NA:
        break;
    }
    return "[N/A]";
}

/* ---- CSV queries ---- */

#define MAX_FIELDS 16

enum field_id {
    F_INDEX,
    F_UUID,
    F_NAME,
    F_BUS_ID,
    F_DEVICE_ID,
    F_MIG_CURRENT,
    F_MIG_PENDING,
    F_MEMORY_TOTAL,
    F_PID,
    F_GPU_UUID,
    F_USED_MEMORY,
};

static const struct {
    const char *name;
    enum field_id id;
} field_names[] = {
    {"index", F_INDEX},
    {"uuid", F_UUID},
    {"name", F_NAME},
    {"pci.bus_id", F_BUS_ID},
    {"pci.device_id", F_DEVICE_ID},
    {"mig.mode.current", F_MIG_CURRENT},
    {"mig.mode.pending", F_MIG_PENDING},
    {"memory.total", F_MEMORY_TOTAL},
    {"pid", F_PID},
    {"gpu_uuid", F_GPU_UUID},
    {"used_memory", F_USED_MEMORY},
};

/* Turns "a,b,c" into field ids. Unknown names are -EINVAL: that is a bug in
 * the caller, not in nvidia-smi's output. */
static int parse_field_list(const char *fields, enum field_id *ids,
                            struct span *names, size_t *n)
{
    const char *p = fields;
    *n = 0;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        struct span s = {p, len};
        size_t k;
        for (k = 0; k < sizeof(field_names) / sizeof(field_names[0]); k++) {
            if (span_eq(s, field_names[k].name))
                break;
        }
        if (k == sizeof(field_names) / sizeof(field_names[0]) ||
            *n == MAX_FIELDS)
            return -EINVAL;
        ids[*n] = field_names[k].id;
        names[*n] = s;
        (*n)++;
        p += len;
        if (*p == ',')
            p++;
    }
    return *n ? 0 : -EINVAL;
}

/* Splits one CSV line on commas and trims each value. -EBADMSG unless
 * exactly `want` values are present. */
static int split_csv(struct span line, struct span *vals, size_t want)
{
    size_t n = 0;
    size_t start = 0;
    for (size_t i = 0; i <= line.len; i++) {
        if (i < line.len && line.p[i] != ',')
            continue;
        if (n == want)
            return -EBADMSG;
        struct span v = {line.p + start, i - start};
        vals[n++] = trim(v);
        start = i + 1;
    }
    return n == want ? 0 : -EBADMSG;
}

/* A header cell is the field name, maybe followed by " [MiB]". */
static int is_header(const struct span *vals, const struct span *names,
                     size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct span v = vals[i];
        for (size_t k = 0; k < v.len; k++) {
            if (v.p[k] == ' ') {
                v.len = k;
                break;
            }
        }
        if (v.len != names[i].len || memcmp(v.p, names[i].p, v.len) != 0)
            return 0;
    }
    return 1;
}

static int is_na(struct span v)
{
    return span_eq(v, "[N/A]") || span_eq(v, "N/A") ||
           span_eq(v, "[Not Supported]") || span_eq(v, "[Unknown Error]") ||
           span_eq(v, "[Insufficient Permissions]");
}

/* A MIG mode of N/A or Not Supported: the GPU cannot do MIG. An error in
 * its place ([Unknown Error], [Insufficient Permissions]) says nothing of
 * the kind: taken for "not capable", a MIG GPU would be left as it is and
 * called done. */
static int parse_mig_mode(struct span v, enum gm_mig_mode *out)
{
    if (span_eq(v, "Enabled"))
        *out = GM_MIG_ENABLED;
    else if (span_eq(v, "Disabled"))
        *out = GM_MIG_DISABLED;
    else if (span_eq(v, "[N/A]") || span_eq(v, "N/A") ||
             span_eq(v, "[Not Supported]"))
        *out = GM_MIG_NA;
    else
        return -EBADMSG;
    return 0;
}

/* "40960 MiB" (csv) or "40960" (nounits). */
static int parse_mib(struct span v, long *out)
{
    int x;
    if (is_na(v)) {
        *out = -1;
        return 0;
    }
    if (v.len > 4 && memcmp(v.p + v.len - 4, " MiB", 4) == 0)
        v.len -= 4;
    if (span_int(v, &x) != 0)
        return -EBADMSG;
    *out = x;
    return 0;
}

static int parse_device_id(struct span v, char *dst, size_t cap)
{
    if (is_na(v)) {
        dst[0] = '\0';
        return 0;
    }
    if (v.len < 3 || v.len > 10 || v.p[0] != '0' ||
        (v.p[1] != 'x' && v.p[1] != 'X'))
        return -EBADMSG;
    for (size_t i = 2; i < v.len; i++) {
        if (!isxdigit((unsigned char)v.p[i]))
            return -EBADMSG;
    }
    return copy_span(dst, cap, v);
}

/* Text fields must not be empty and must not carry control bytes: a uuid
 * or name ends up in JSON and in argument vectors. */
static int parse_text(struct span v, char *dst, size_t cap, int na_ok)
{
    if (na_ok && is_na(v)) {
        dst[0] = '\0';
        return 0;
    }
    if (v.len == 0)
        return -EBADMSG;
    for (size_t i = 0; i < v.len; i++) {
        if ((unsigned char)v.p[i] < 0x20 || v.p[i] == 0x7f)
            return -EBADMSG;
    }
    return copy_span(dst, cap, v);
}

static void gpu_defaults(struct gm_smi_gpu *g)
{
    memset(g, 0, sizeof(*g));
    g->index = -1;
    g->mig_current = GM_MIG_NA;
    g->mig_pending = GM_MIG_NA;
    g->memory_mib = -1;
}

static int set_gpu_field(struct gm_smi_gpu *g, enum field_id id, struct span v)
{
    switch (id) {
    case F_INDEX:
        if (span_int(v, &g->index) != 0 || g->index > GM_SMI_MAX_INDEX)
            return -EBADMSG;
        return 0;
    case F_UUID:
        return parse_text(v, g->uuid, sizeof(g->uuid), 0);
    case F_NAME:
        return parse_text(v, g->name, sizeof(g->name), 0);
    case F_BUS_ID:
        return parse_text(v, g->bus_id, sizeof(g->bus_id), 0);
    case F_DEVICE_ID:
        return parse_device_id(v, g->device_id, sizeof(g->device_id));
    case F_MIG_CURRENT:
        return parse_mig_mode(v, &g->mig_current);
    case F_MIG_PENDING:
        return parse_mig_mode(v, &g->mig_pending);
    case F_MEMORY_TOTAL:
        return parse_mib(v, &g->memory_mib);
    default:
        return -EINVAL;
    }
}

int gm_smi_parse_gpus(const char *text, const char *fields,
                      struct gm_smi_gpu *gpus, size_t max, size_t *n)
{
    enum field_id ids[MAX_FIELDS];
    struct span names[MAX_FIELDS];
    struct span vals[MAX_FIELDS];
    struct span line;
    size_t nf;
    int first = 1;
    const char *pos = text;

    *n = 0;
    int err = parse_field_list(fields, ids, names, &nf);
    if (err)
        return err;
    while (next_line(&pos, &line)) {
        line = trim(line);
        if (line.len == 0)
            continue;
        err = split_csv(line, vals, nf);
        if (err)
            return err;
        if (first && is_header(vals, names, nf)) {
            first = 0;
            continue;
        }
        first = 0;
        if (*n == max)
            return -E2BIG;
        struct gm_smi_gpu *g = &gpus[*n];
        gpu_defaults(g);
        for (size_t i = 0; i < nf; i++) {
            err = set_gpu_field(g, ids[i], vals[i]);
            if (err)
                return err;
        }
        (*n)++;
    }
    return *n ? 0 : -ENODATA;
}

int gm_smi_parse_procs(const char *text, struct gm_smi_proc *procs, size_t max,
                       size_t *n)
{
    enum field_id ids[MAX_FIELDS];
    struct span names[MAX_FIELDS];
    struct span vals[3];
    struct span line;
    size_t nf;
    int first = 1;
    const char *pos = text;

    *n = 0;
    int err = parse_field_list(GM_SMI_PROC_FIELDS, ids, names, &nf);
    if (err)
        return err;
    while (next_line(&pos, &line)) {
        line = trim(line);
        if (line.len == 0)
            continue;
        /* Older drivers print this instead of nothing. */
        if (span_starts(line, "No running processes found"))
            continue;
        err = split_csv(line, vals, 3);
        if (err)
            return err;
        if (first && is_header(vals, names, nf)) {
            first = 0;
            continue;
        }
        first = 0;
        if (*n == max)
            return -E2BIG;
        struct gm_smi_proc *p = &procs[*n];
        memset(p, 0, sizeof(*p));
        if (span_int(vals[0], &p->pid) != 0)
            return -EBADMSG;
        err = parse_text(vals[1], p->gpu_uuid, sizeof(p->gpu_uuid), 0);
        if (err)
            return err;
        err = parse_mib(vals[2], &p->used_mib);
        if (err)
            return err;
        (*n)++;
    }
    return 0;
}

/* ---- nvidia-smi -L ---- */

/* "GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-...)". The name may contain
 * spaces ("NVIDIA GeForce RTX 3090"), so it is cut at the last " (UUID: ". */
static int parse_list_gpu(struct span s, struct gm_smi_list_gpu *g)
{
    size_t i = 4;
    size_t k;
    static const char tag[] = " (UUID: ";

    while (i < s.len && isdigit((unsigned char)s.p[i]))
        i++;
    struct span idx = {s.p + 4, i - 4};
    if (span_int(idx, &g->index) != 0 || g->index > GM_SMI_MAX_INDEX)
        return -EBADMSG;
    if (i + 2 > s.len || s.p[i] != ':' || s.p[i + 1] != ' ')
        return -EBADMSG;
    i += 2;
    if (s.len < sizeof(tag) || s.p[s.len - 1] != ')')
        return -EBADMSG;
    for (k = s.len - sizeof(tag) + 1; k > i; k--) {
        if (memcmp(s.p + k, tag, sizeof(tag) - 1) == 0)
            break;
    }
    if (k <= i)
        return -EBADMSG;
    struct span name = {s.p + i, k - i};
    size_t u = k + sizeof(tag) - 1;
    struct span uuid = {s.p + u, s.len - 1 - u};
    int err = parse_text(name, g->name, sizeof(g->name), 0);
    if (err)
        return err;
    return parse_text(uuid, g->uuid, sizeof(g->uuid), 0);
}

int gm_smi_parse_list(const char *text, struct gm_smi_list_gpu *gpus,
                      size_t max_gpus, size_t *ngpus,
                      struct gm_smi_mig_dev *devs, size_t max_devs,
                      size_t *ndevs)
{
    struct span line;
    struct span tok[MAX_TOKENS];
    size_t ntok;
    const char *pos = text;
    int err;

    *ngpus = 0;
    *ndevs = 0;
    while (next_line(&pos, &line)) {
        struct span s = trim(line);
        if (s.len == 0)
            continue;
        if (span_starts(s, "GPU ")) {
            if (*ngpus == max_gpus)
                return -E2BIG;
            err = parse_list_gpu(s, &gpus[*ngpus]);
            if (err)
                return err;
            (*ngpus)++;
        } else if (span_starts(s, "MIG ")) {
            if (*ngpus == 0)
                return -EBADMSG;
            if (*ndevs == max_devs)
                return -E2BIG;
            struct gm_smi_mig_dev *d = &devs[*ndevs];
            err = tokenize(s, tok, MAX_TOKENS, &ntok);
            if (err)
                return -EBADMSG;
            err = match_tokens(tok, ntok, "MIG %s Device %d: (UUID: %s)",
                               d->profile, sizeof(d->profile), &d->device,
                               d->uuid, sizeof(d->uuid));
            if (err)
                return err;
            d->gpu = gpus[*ngpus - 1].index;
            (*ndevs)++;
        } else {
            return -EBADMSG;
        }
    }
    return *ngpus ? 0 : -ENODATA;
}

/* ---- mig -lgip / -lgipp / -lgi / -lci ---- */

/* nvidia-smi prints these instead of a table; the caller decides whether
 * "none" is an error. */
static int no_mig_line(struct span s)
{
    return span_starts(s, "No MIG-supported devices found") ||
           span_starts(s, "No MIG-enabled devices found");
}

static int no_instances_line(struct span s)
{
    return span_starts(s, "No GPU instances found") ||
           span_starts(s, "No compute instances found");
}

/* Splits a boxed table row into tokens and says whether it is a data row:
 * one whose first token is a number. Header rows ("GPU  Name ...") and
 * borders return 0. */
static int data_row(struct span line, struct span *tok, size_t *ntok, int *err)
{
    struct span inner;
    *err = 0;
    if (!table_row(line, &inner))
        return 0;
    if (tokenize(inner, tok, MAX_TOKENS, ntok) != 0) {
        *err = -EBADMSG;
        return 0;
    }
    return *ntok > 0 && all_digits(tok[0]);
}

/* Non-table lines other than the known "none" messages are junk. */
static int check_other_line(struct span line, int *no_mig)
{
    struct span s = trim(line);
    if (s.len == 0 || s.p[0] == '+' || s.p[0] == '|')
        return 0;
    if (no_mig_line(s)) {
        *no_mig = 1;
        return 0;
    }
    return -EBADMSG;
}

int gm_smi_parse_gip(const char *text, struct gm_smi_gip *out, size_t max,
                     size_t *n)
{
    struct span line;
    struct span tok[MAX_TOKENS];
    size_t ntok;
    const char *pos = text;
    int no_mig = 0;
    int err;

    *n = 0;
    while (next_line(&pos, &line)) {
        if (!data_row(line, tok, &ntok, &err)) {
            if (err)
                return err;
            err = check_other_line(line, &no_mig);
            if (err)
                return err;
            continue;
        }
        /* The second row of each profile holds only numbers (CE, JPEG,
         * OFA). */
        if (ntok < 2 || !span_eq(tok[1], "MIG")) {
            for (size_t i = 0; i < ntok; i++) {
                if (!all_digits(tok[i]))
                    return -EBADMSG;
            }
            continue;
        }
        if (*n == max)
            return -E2BIG;
        struct gm_smi_gip *g = &out[*n];
        /* Only the leading columns matter to us; later drivers add
         * columns at the end, so a row needs at least the memory one. */
        if (ntok < 6)
            return -EBADMSG;
        err = match_tokens(tok, 5, "%d MIG %s %d %d/%d", &g->gpu, g->profile,
                           sizeof(g->profile), &g->id, &g->free, &g->total);
        if (err)
            return err;
        if (g->free > g->total)
            return -EBADMSG;
        (*n)++;
    }
    if (*n == 0)
        return no_mig ? -ENODEV : -ENODATA;
    return 0;
}

/* "{0,4}:4" */
static int parse_placements(struct span t, struct gm_smi_gipp *g)
{
    size_t i = 1;
    g->nstarts = 0;
    if (t.len < 4 || t.p[0] != '{')
        return -EBADMSG;
    for (;;) {
        size_t start = i;
        while (i < t.len && isdigit((unsigned char)t.p[i]))
            i++;
        struct span d = {t.p + start, i - start};
        if (g->nstarts == GM_SMI_MAX_STARTS)
            return -EBADMSG;
        if (span_int(d, &g->starts[g->nstarts]) != 0)
            return -EBADMSG;
        g->nstarts++;
        if (i < t.len && t.p[i] == ',') {
            i++;
            continue;
        }
        break;
    }
    if (i + 2 > t.len || t.p[i] != '}' || t.p[i + 1] != ':')
        return -EBADMSG;
    struct span sz = {t.p + i + 2, t.len - i - 2};
    if (span_int(sz, &g->size) != 0 || g->size < 1 || g->size > 8)
        return -EBADMSG;
    return 0;
}

int gm_smi_parse_gipp(const char *text, struct gm_smi_gipp *out, size_t max,
                      size_t *n)
{
    struct span line;
    struct span tok[MAX_TOKENS];
    size_t ntok;
    const char *pos = text;
    int no_mig = 0;
    int err;

    *n = 0;
    while (next_line(&pos, &line)) {
        struct span s = trim(line);
        if (s.len == 0)
            continue;
        if (no_mig_line(s)) {
            no_mig = 1;
            continue;
        }
        if (tokenize(s, tok, MAX_TOKENS, &ntok) != 0)
            return -EBADMSG;
        if (*n == max)
            return -E2BIG;
        struct gm_smi_gipp *g = &out[*n];
        char placements[64];
        /* A profile with one placement prints "Placement :". */
        err = match_tokens(tok, ntok, "GPU %d Profile ID %d Placements: %s",
                           &g->gpu, &g->profile_id, placements,
                           sizeof(placements));
        if (err)
            err = match_tokens(tok, ntok, "GPU %d Profile ID %d Placement : %s",
                               &g->gpu, &g->profile_id, placements,
                               sizeof(placements));
        if (err)
            return err == -ENAMETOOLONG ? -EBADMSG : err;
        struct span p = {placements, strlen(placements)};
        err = parse_placements(p, g);
        if (err)
            return err;
        (*n)++;
    }
    if (*n == 0)
        return no_mig ? -ENODEV : -ENODATA;
    return 0;
}

/* Shared by -lgi and -lci: accepts the "none" messages, rejects junk. */
static int instance_other_line(struct span line)
{
    struct span s = trim(line);
    int no_mig = 0;
    if (no_instances_line(s))
        return 0;
    return check_other_line(line, &no_mig);
}

int gm_smi_parse_gi(const char *text, struct gm_smi_gi *out, size_t max,
                    size_t *n)
{
    struct span line;
    struct span tok[MAX_TOKENS];
    size_t ntok;
    const char *pos = text;
    int err;

    *n = 0;
    while (next_line(&pos, &line)) {
        if (!data_row(line, tok, &ntok, &err)) {
            if (err)
                return err;
            err = instance_other_line(line);
            if (err)
                return err;
            continue;
        }
        if (*n == max)
            return -E2BIG;
        struct gm_smi_gi *g = &out[*n];
        err = match_tokens(tok, ntok, "%d MIG %s %d %d %d:%d", &g->gpu,
                           g->profile, sizeof(g->profile), &g->profile_id,
                           &g->id, &g->start, &g->size);
        if (err)
            return err;
        (*n)++;
    }
    return 0;
}

int gm_smi_parse_ci(const char *text, struct gm_smi_ci *out, size_t max,
                    size_t *n)
{
    struct span line;
    struct span tok[MAX_TOKENS];
    size_t ntok;
    const char *pos = text;
    int err;

    *n = 0;
    while (next_line(&pos, &line)) {
        if (!data_row(line, tok, &ntok, &err)) {
            if (err)
                return err;
            err = instance_other_line(line);
            if (err)
                return err;
            continue;
        }
        if (*n == max)
            return -E2BIG;
        struct gm_smi_ci *c = &out[*n];
        err = match_tokens(tok, ntok, "%d %d MIG %s %d %d %d:%d", &c->gpu,
                           &c->gi, c->profile, sizeof(c->profile),
                           &c->profile_id, &c->id, &c->start, &c->size);
        if (err)
            return err;
        (*n)++;
    }
    return 0;
}

/* ---- create / destroy ---- */

static int parse_event(const struct span *tok, size_t ntok,
                       struct gm_smi_event *e)
{
    memset(e, 0, sizeof(*e));
    e->ci = -1;
    e->profile_id = -1;
    if (match_tokens(tok, ntok,
                     "Successfully created GPU instance ID %d on GPU %d "
                     "using profile MIG %s (ID %d)",
                     &e->gi, &e->gpu, e->profile, sizeof(e->profile),
                     &e->profile_id) == 0) {
        e->kind = GM_SMI_GI_CREATED;
        return 0;
    }
    if (match_tokens(tok, ntok,
                     "Successfully created compute instance ID %d on GPU %d "
                     "GPU instance ID %d using profile MIG %s (ID %d)",
                     &e->ci, &e->gpu, &e->gi, e->profile, sizeof(e->profile),
                     &e->profile_id) == 0) {
        e->kind = GM_SMI_CI_CREATED;
        return 0;
    }
    if (match_tokens(tok, ntok,
                     "Successfully destroyed compute instance ID %d from "
                     "GPU %d GPU instance ID %d",
                     &e->ci, &e->gpu, &e->gi) == 0) {
        e->kind = GM_SMI_CI_DESTROYED;
        return 0;
    }
    e->ci = -1;
    if (match_tokens(tok, ntok,
                     "Successfully destroyed GPU instance ID %d from GPU %d",
                     &e->gi, &e->gpu) == 0) {
        e->kind = GM_SMI_GI_DESTROYED;
        return 0;
    }
    return -EBADMSG;
}

int gm_smi_parse_events(const char *text, struct gm_smi_event *out, size_t max,
                        size_t *n)
{
    struct span line;
    struct span tok[MAX_TOKENS];
    size_t ntok;
    const char *pos = text;

    *n = 0;
    while (next_line(&pos, &line)) {
        struct span s = trim(line);
        if (!span_starts(s, "Successfully"))
            continue;
        if (tokenize(s, tok, MAX_TOKENS, &ntok) != 0)
            return -EBADMSG;
        if (*n == max)
            return -E2BIG;
        int err = parse_event(tok, ntok, &out[*n]);
        if (err)
            return err;
        (*n)++;
    }
    return 0;
}

/* ---- messages ---- */

static const struct {
    const char *needle;
    unsigned flag;
} scan_table[] = {
    {"All done.", GM_SMI_F_ALL_DONE},
    {"Enabled MIG Mode for GPU", GM_SMI_F_MIG_ENABLED},
    {"Disabled MIG Mode for GPU", GM_SMI_F_MIG_DISABLED},
    {"in pending enable state", GM_SMI_F_PENDING_ENABLE},
    {"in pending disable state", GM_SMI_F_PENDING_DISABLE},
    {"In use by another client", GM_SMI_F_IN_USE},
    {"is currently being used by one or more other processes", GM_SMI_F_IN_USE},
    {"Insufficient Resources", GM_SMI_F_INSUFFICIENT},
    {"was successfully reset", GM_SMI_F_RESET_OK},
    {"No MIG-supported devices found", GM_SMI_F_NO_MIG_DEVICES},
    {"No GPU instances found", GM_SMI_F_NOT_FOUND},
    {"No compute instances found", GM_SMI_F_NOT_FOUND},
    {"No devices were found", GM_SMI_F_NO_DEVICES},
    {"Not Supported", GM_SMI_F_NOT_SUPPORTED},
    {"Insufficient Permissions", GM_SMI_F_NO_PERMISSION},
    {"couldn't communicate with the NVIDIA driver", GM_SMI_F_NO_DRIVER},
    {"Invalid GPU instance profile", GM_SMI_F_INVALID_PROFILE},
    {"Invalid profile", GM_SMI_F_INVALID_PROFILE},
};

unsigned gm_smi_scan(const char *text)
{
    struct span line;
    const char *pos = text;
    unsigned flags = 0;

    while (next_line(&pos, &line)) {
        for (size_t i = 0; i < sizeof(scan_table) / sizeof(scan_table[0]);
             i++) {
            if (span_contains(line, scan_table[i].needle))
                flags |= scan_table[i].flag;
        }
        /* "is not supported" alone is too loose; it means a reset only on
         * the line nvidia-smi -r prints. */
        if (span_starts(trim(line), "Resetting") &&
            span_contains(line, "is not supported"))
            flags |= GM_SMI_F_RESET_UNSUPPORTED;
    }
    return flags;
}

static size_t append_message(const char *text, char *dst, size_t cap,
                             size_t len)
{
    struct span line;
    const char *pos = text;

    while (text && next_line(&pos, &line)) {
        struct span s = trim(line);
        if (s.len == 0 || span_eq(s, "All done."))
            continue;
        if (len > 0 && len + 1 < cap)
            dst[len++] = ' ';
        int space = 0;
        for (size_t i = 0; i < s.len && len + 1 < cap; i++) {
            unsigned char c = (unsigned char)s.p[i];
            if (isspace(c)) {
                space = 1;
                continue;
            }
            if (space) {
                dst[len++] = ' ';
                space = 0;
                if (len + 1 >= cap)
                    break;
            }
            dst[len++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
        }
    }
    return len;
}

size_t gm_smi_message(const char *out, const char *err, char *dst, size_t cap)
{
    size_t len = 0;
    if (cap == 0)
        return 0;
    len = append_message(err, dst, cap, len);
    len = append_message(out, dst, cap, len);
    dst[len] = '\0';
    return len;
}

/* ---- input validation ---- */

int gm_smi_valid_profile(const char *name)
{
    const char *p = name;
    if (name == NULL || strlen(name) >= GM_SMI_PROFILE_MAX)
        return 0;
    if (*p < '1' || *p > '9')
        return 0;
    p++;
    if (p[0] != 'g' || p[1] != '.')
        return 0;
    p += 2;
    if (!isdigit((unsigned char)*p))
        return 0;
    while (isdigit((unsigned char)*p))
        p++;
    if (p[0] != 'g' || p[1] != 'b')
        return 0;
    p += 2;
    return *p == '\0' || strcmp(p, "+me") == 0;
}

int gm_smi_parse_index(const char *s, int *out)
{
    int v = 0;
    if (s == NULL || *s == '\0' || strlen(s) > 2)
        return -EINVAL;
    if (s[0] == '0' && s[1] != '\0')
        return -EINVAL;
    for (const char *p = s; *p; p++) {
        if (!isdigit((unsigned char)*p))
            return -EINVAL;
        v = v * 10 + (*p - '0');
    }
    if (v > GM_SMI_MAX_INDEX)
        return -EINVAL;
    *out = v;
    return 0;
}
