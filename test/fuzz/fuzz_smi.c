/* Every nvidia-smi parser. The first byte picks the parser, the second the
 * size of the output array (1..16, allocated exactly so ASan sees a row
 * written past it), the rest is nvidia-smi's output.
 *
 *   0 --query-gpu (agent fields)   6 mig -lgipp
 *   1 --query-gpu (two fields)     7 mig -lgi
 *   2 --query-gpu (fields on the   8 mig -lci
 *     first line, output after)    9 create/destroy lines
 *   3 --query-compute-apps        10 gm_smi_scan and gm_smi_message
 *   4 -L                          11 profile and index validation per line
 *   5 mig -lgip */
#include <errno.h>

#include "agent/smi_parse.h"
#include "fuzz.h"

#define NPARSERS 12

/* What the header promises about return values. */
static void check_rc(int rc, size_t n, size_t max)
{
    gmf_assert(rc == 0 || rc == -EBADMSG || rc == -ENODATA || rc == -E2BIG ||
               rc == -ENAMETOOLONG || rc == -ENODEV || rc == -EINVAL);
    gmf_assert(n <= max);
}

static void terminated(const char *s, size_t cap)
{
    gmf_assert(memchr(s, '\0', cap) != NULL);
}

static void *rows(size_t max, size_t size)
{
    void *p = calloc(max, size);
    if (p == NULL)
        abort();
    return p;
}

static void gpus(char *text, const char *fields, size_t max)
{
    struct gm_smi_gpu *g = rows(max, sizeof(*g));
    size_t n = 0;
    int rc = gm_smi_parse_gpus(text, fields, g, max, &n);
    check_rc(rc, n, max);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        terminated(g[i].uuid, sizeof(g[i].uuid));
        terminated(g[i].name, sizeof(g[i].name));
        terminated(g[i].bus_id, sizeof(g[i].bus_id));
        terminated(g[i].device_id, sizeof(g[i].device_id));
        (void)gm_mig_mode_name(g[i].mig_current);
        (void)gm_mig_mode_name(g[i].mig_pending);
    }
    free(g);
}

static void gpus_own_fields(char *text, size_t max)
{
    char *nl = strchr(text, '\n');
    if (nl == NULL)
        return;
    *nl = '\0';
    gpus(nl + 1, text, max);
}

static void procs(const char *text, size_t max)
{
    struct gm_smi_proc *p = rows(max, sizeof(*p));
    size_t n = 0;
    check_rc(gm_smi_parse_procs(text, p, max, &n), n, max);
    free(p);
}

static void list(const char *text, size_t max)
{
    struct gm_smi_list_gpu *g = rows(max, sizeof(*g));
    struct gm_smi_mig_dev *d = rows(max, sizeof(*d));
    size_t ng = 0;
    size_t nd = 0;
    int rc = gm_smi_parse_list(text, g, max, &ng, d, max, &nd);
    check_rc(rc, ng, max);
    check_rc(rc, nd, max);
    for (size_t i = 0; rc == 0 && i < nd; i++)
        terminated(d[i].profile, sizeof(d[i].profile));
    free(g);
    free(d);
}

static void gip(const char *text, size_t max)
{
    struct gm_smi_gip *r = rows(max, sizeof(*r));
    size_t n = 0;
    check_rc(gm_smi_parse_gip(text, r, max, &n), n, max);
    free(r);
}

static void gipp(const char *text, size_t max)
{
    struct gm_smi_gipp *r = rows(max, sizeof(*r));
    size_t n = 0;
    int rc = gm_smi_parse_gipp(text, r, max, &n);
    check_rc(rc, n, max);
    for (size_t i = 0; rc == 0 && i < n; i++)
        gmf_assert(r[i].nstarts >= 0 && r[i].nstarts <= GM_SMI_MAX_STARTS);
    free(r);
}

static void gi(const char *text, size_t max)
{
    struct gm_smi_gi *r = rows(max, sizeof(*r));
    size_t n = 0;
    check_rc(gm_smi_parse_gi(text, r, max, &n), n, max);
    free(r);
}

static void ci(const char *text, size_t max)
{
    struct gm_smi_ci *r = rows(max, sizeof(*r));
    size_t n = 0;
    check_rc(gm_smi_parse_ci(text, r, max, &n), n, max);
    free(r);
}

static void events(const char *text, size_t max)
{
    struct gm_smi_event *r = rows(max, sizeof(*r));
    size_t n = 0;
    check_rc(gm_smi_parse_events(text, r, max, &n), n, max);
    free(r);
}

/* The message is built from stdout and stderr: split the text in two. */
static void scan_and_message(char *text, size_t cap)
{
    size_t len = strlen(text);
    char *dst = rows(cap, 1);
    char *out = gmf_cstr((const uint8_t *)text + len / 2, len - len / 2);

    text[len / 2] = '\0';
    (void)gm_smi_scan(out);
    size_t n = gm_smi_message(out, text, dst, cap);
    gmf_assert(n < cap && dst[n] == '\0' && strlen(dst) == n);
    n = gm_smi_message(NULL, out, dst, cap);
    gmf_assert(n < cap && dst[n] == '\0');
    free(out);
    free(dst);
}

static void validate(char *text)
{
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        int idx = -1;
        if (gm_smi_valid_profile(line))
            gmf_assert(strlen(line) < GM_SMI_PROFILE_MAX);
        if (gm_smi_parse_index(line, &idx) == 0)
            gmf_assert(idx >= 0 && idx <= GM_SMI_MAX_INDEX);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    int which = data[0] % NPARSERS;
    size_t max = 1 + data[1] % 16;
    char *text = gmf_cstr(data + 2, size - 2);

    switch (which) {
    case 0:
        gpus(text, GM_SMI_GPU_FIELDS, max);
        break;
    case 1:
        gpus(text, "pci.bus_id,mig.mode.current", max);
        break;
    case 2:
        gpus_own_fields(text, max);
        break;
    case 3:
        procs(text, max);
        break;
    case 4:
        list(text, max);
        break;
    case 5:
        gip(text, max);
        break;
    case 6:
        gipp(text, max);
        break;
    case 7:
        gi(text, max);
        break;
    case 8:
        ci(text, max);
        break;
    case 9:
        events(text, max);
        break;
    case 10:
        scan_and_message(text, 1 + data[1]);
        break;
    default:
        validate(text);
        break;
    }
    free(text);
    return 0;
}
