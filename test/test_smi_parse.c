/* Every nvidia-smi sample in FACTS.md (test/fixtures/smi/facts-*.txt,
 * verbatim) plus fuller outputs and broken variants through the parsers. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "agent/smi_parse.h"

/* Reads a fixture into a NUL-terminated heap buffer the test frees. */
static char *fixture(const char *name)
{
    char path[256];
    snprintf(path, sizeof(path), "test/fixtures/smi/%s", name);
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        fail_msg("cannot open %s (run from the repository root)", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* ---- --query-gpu ---- */

static void test_facts_query_bus_mig(void **state)
{
    struct gm_smi_gpu g[4];
    size_t n;
    char *t = fixture("facts-query-bus-mig.txt");
    assert_int_equal(
        gm_smi_parse_gpus(t, "pci.bus_id,mig.mode.current", g, 4, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(g[0].bus_id, "00000000:36:00.0");
    assert_int_equal(g[0].mig_current, GM_MIG_ENABLED);
    assert_int_equal(g[0].mig_pending, GM_MIG_NA);
    assert_int_equal(g[0].index, -1);
    free(t);
}

static void test_query_gpu_rows(void **state)
{
    struct gm_smi_gpu g[4];
    size_t n;
    char *t = fixture("query-gpu-a100x2.txt");
    assert_int_equal(gm_smi_parse_gpus(t, GM_SMI_GPU_FIELDS, g, 4, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(g[0].index, 0);
    assert_string_equal(g[0].uuid, "GPU-e86cb44c-6756-fd30-cd4a-1e6da3caf9b0");
    assert_string_equal(g[0].name, "NVIDIA A100-SXM4-40GB");
    assert_string_equal(g[0].device_id, "0x20B010DE");
    assert_int_equal(g[0].mig_current, GM_MIG_DISABLED);
    assert_int_equal(g[0].mig_pending, GM_MIG_ENABLED);
    assert_int_equal(g[0].memory_mib, 40960);
    assert_int_equal(g[1].index, 1);
    assert_int_equal(g[1].mig_current, GM_MIG_ENABLED);
    free(t);
}

static void test_query_gpu_header_units(void **state)
{
    struct gm_smi_gpu g[4];
    size_t n;
    char *t = fixture("query-gpu-header.txt");
    assert_int_equal(gm_smi_parse_gpus(t, GM_SMI_GPU_FIELDS, g, 4, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(g[0].name, "NVIDIA H100 80GB HBM3");
    assert_int_equal(g[0].memory_mib, 81559);
    free(t);
}

static void test_query_gpu_na_padded(void **state)
{
    struct gm_smi_gpu g[4];
    size_t n;
    char *t = fixture("query-gpu-na.txt");
    assert_int_equal(gm_smi_parse_gpus(t, GM_SMI_GPU_FIELDS, g, 4, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(g[0].name, "Tesla T4");
    assert_int_equal(g[0].mig_current, GM_MIG_NA);
    assert_int_equal(g[0].mig_pending, GM_MIG_NA);
    free(t);
}

static void test_query_gpu_malformed(void **state)
{
    struct gm_smi_gpu g[2];
    size_t n;
    const char *f = GM_SMI_GPU_FIELDS;
    const char *row = "0, GPU-a, A100, 00000000:07:00.0, 0x20B010DE, "
                      "Enabled, Enabled, 40960\n";

    assert_int_equal(gm_smi_parse_gpus("", f, g, 2, &n), -ENODATA);
    assert_int_equal(gm_smi_parse_gpus("\n  \n", f, g, 2, &n), -ENODATA);
    assert_int_equal(gm_smi_parse_gpus("0, GPU-a, A100", f, g, 2, &n),
                     -EBADMSG);
    assert_int_equal(gm_smi_parse_gpus("0, GPU-a, A100, b, 0x1, Maybe, "
                                       "Enabled, 1",
                                       f, g, 2, &n),
                     -EBADMSG);
    /* An error in place of the MIG mode is not "no MIG". */
    assert_int_equal(gm_smi_parse_gpus("0, GPU-a, A100, b, 0x1, [Unknown "
                                       "Error], Enabled, 1",
                                       f, g, 2, &n),
                     -EBADMSG);
    assert_int_equal(gm_smi_parse_gpus("0, GPU-a, A100, b, 0x1, Enabled, "
                                       "[Insufficient Permissions], 1",
                                       f, g, 2, &n),
                     -EBADMSG);
    assert_int_equal(gm_smi_parse_gpus("-1, GPU-a, A100, b, 0x1, Enabled, "
                                       "Enabled, 1",
                                       f, g, 2, &n),
                     -EBADMSG);
    assert_int_equal(gm_smi_parse_gpus("64, GPU-a, A100, b, 0x1, Enabled, "
                                       "Enabled, 1",
                                       f, g, 2, &n),
                     -EBADMSG);
    assert_int_equal(gm_smi_parse_gpus("0, GPU-a, A100, b, 0xZZ, Enabled, "
                                       "Enabled, 1",
                                       f, g, 2, &n),
                     -EBADMSG);
    assert_int_equal(gm_smi_parse_gpus("0, GPU-a, A100, b, 0x1, Enabled, "
                                       "Enabled, 1, extra",
                                       f, g, 2, &n),
                     -EBADMSG);
    assert_int_equal(gm_smi_parse_gpus("0, , A100, b, 0x1, Enabled, "
                                       "Enabled, 1",
                                       f, g, 2, &n),
                     -EBADMSG);

    char three[512];
    snprintf(three, sizeof(three), "%s%s%s", row, row, row);
    assert_int_equal(gm_smi_parse_gpus(three, f, g, 2, &n), -E2BIG);
    assert_int_equal(gm_smi_parse_gpus(row, "index,bogus", g, 2, &n), -EINVAL);

    /* A name longer than the field, and a line of 100 KB. */
    char *big = malloc(100 * 1024);
    assert_non_null(big);
    memset(big, 'A', 100 * 1024 - 1);
    big[100 * 1024 - 1] = '\0';
    assert_int_equal(gm_smi_parse_gpus(big, f, g, 2, &n), -EBADMSG);
    assert_int_equal(gm_smi_parse_gpus(big, "name", g, 2, &n), -ENAMETOOLONG);
    memcpy(big, "0, ", 3);
    assert_int_equal(gm_smi_parse_gpus(big, "index,name", g, 2, &n),
                     -ENAMETOOLONG);
    free(big);

    /* A control byte inside a value. */
    assert_int_equal(gm_smi_parse_gpus("GPU\x01x", "uuid", g, 2, &n), -EBADMSG);
}

/* ---- --query-compute-apps ---- */

static void test_procs(void **state)
{
    struct gm_smi_proc p[4];
    size_t n;
    char *t = fixture("compute-apps.txt");
    assert_int_equal(gm_smi_parse_procs(t, p, 4, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(p[0].pid, 4321);
    assert_string_equal(p[0].gpu_uuid,
                        "GPU-e86cb44c-6756-fd30-cd4a-1e6da3caf9b0");
    assert_int_equal(p[0].used_mib, 1024);
    assert_int_equal(p[1].used_mib, -1);
    assert_int_equal(gm_smi_parse_procs(t, p, 1, &n), -E2BIG);
    free(t);

    assert_int_equal(gm_smi_parse_procs("", p, 4, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(
        gm_smi_parse_procs("No running processes found\n", p, 4, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(gm_smi_parse_procs("pid, gpu_uuid, used_gpu_memory "
                                        "[MiB]\n",
                                        p, 4, &n),
                     -EBADMSG);
    assert_int_equal(gm_smi_parse_procs("pid, gpu_uuid, used_memory [MiB]\n"
                                        "12, GPU-x, 5 MiB\n",
                                        p, 4, &n),
                     0);
    assert_int_equal(n, 1);
    assert_int_equal(gm_smi_parse_procs("abc, GPU-x, 5 MiB\n", p, 4, &n),
                     -EBADMSG);
    assert_int_equal(gm_smi_parse_procs("12, GPU-x\n", p, 4, &n), -EBADMSG);
}

/* ---- -L ---- */

static void test_facts_list(void **state)
{
    struct gm_smi_list_gpu g[4];
    struct gm_smi_mig_dev d[8];
    size_t ng, nd;
    char *t = fixture("facts-list.txt");
    assert_int_equal(gm_smi_parse_list(t, g, 4, &ng, d, 8, &nd), 0);
    assert_int_equal(ng, 1);
    assert_int_equal(nd, 1);
    assert_int_equal(g[0].index, 0);
    assert_string_equal(g[0].name, "A100-SXM4-40GB");
    assert_string_equal(g[0].uuid, "GPU-e86cb44c-6756-fd30-cd4a-1e6da3caf9b0");
    assert_int_equal(d[0].gpu, 0);
    assert_int_equal(d[0].device, 0);
    assert_string_equal(d[0].profile, "3g.20gb");
    assert_string_equal(d[0].uuid, "MIG-c7384736-a75d-5afc-978f-d2f1294409fd");
    free(t);
}

static void test_list_variants(void **state)
{
    struct gm_smi_list_gpu g[2];
    struct gm_smi_mig_dev d[2];
    size_t ng, nd;

    assert_int_equal(gm_smi_parse_list("GPU 3: NVIDIA GeForce RTX 3090 "
                                       "(UUID: GPU-1)\n",
                                       g, 2, &ng, d, 2, &nd),
                     0);
    assert_int_equal(g[0].index, 3);
    assert_string_equal(g[0].name, "NVIDIA GeForce RTX 3090");
    assert_int_equal(gm_smi_parse_list("", g, 2, &ng, d, 2, &nd), -ENODATA);
    assert_int_equal(gm_smi_parse_list("  MIG 1g.5gb Device 0: (UUID: M)\n", g,
                                       2, &ng, d, 2, &nd),
                     -EBADMSG);
    assert_int_equal(
        gm_smi_parse_list("GPU 0: A100 (UUID: GPU-abc", g, 2, &ng, d, 2, &nd),
        -EBADMSG);
    assert_int_equal(
        gm_smi_parse_list("GPU x: A100 (UUID: GPU-abc)", g, 2, &ng, d, 2, &nd),
        -EBADMSG);
    assert_int_equal(gm_smi_parse_list("hello world\n", g, 2, &ng, d, 2, &nd),
                     -EBADMSG);
    assert_int_equal(gm_smi_parse_list("GPU 0: A (UUID: G)\n"
                                       "  MIG 1g.5gb Device 0: (UUID: M\n",
                                       g, 2, &ng, d, 2, &nd),
                     -EBADMSG);
    assert_int_equal(gm_smi_parse_list("GPU 0: A (UUID: G)\n"
                                       "  MIG 1g.5gb Device 0: (UUID: M)\n"
                                       "  MIG 1g.5gb Device 1: (UUID: N)\n"
                                       "  MIG 1g.5gb Device 2: (UUID: O)\n",
                                       g, 2, &ng, d, 2, &nd),
                     -E2BIG);
}

/* ---- mig -lgip / -lgipp ---- */

static void test_facts_lgip(void **state)
{
    struct gm_smi_gip p[4];
    size_t n;
    char *t = fixture("facts-lgip.txt");
    assert_int_equal(gm_smi_parse_gip(t, p, 4, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(p[0].gpu, 0);
    assert_string_equal(p[0].profile, "1g.10gb");
    assert_int_equal(p[0].id, 19);
    assert_int_equal(p[0].free, 7);
    assert_int_equal(p[0].total, 7);
    free(t);
}

static void test_lgip_full_table(void **state)
{
    struct gm_smi_gip p[16];
    size_t n;
    char *t = fixture("lgip-a100.txt");
    assert_int_equal(gm_smi_parse_gip(t, p, 16, &n), 0);
    assert_int_equal(n, 6);
    assert_string_equal(p[1].profile, "1g.5gb+me");
    assert_int_equal(p[1].total, 1);
    assert_string_equal(p[5].profile, "7g.40gb");
    assert_int_equal(p[5].id, 0);
    assert_int_equal(gm_smi_parse_gip(t, p, 3, &n), -E2BIG);
    free(t);
}

static void test_lgip_malformed(void **state)
{
    struct gm_smi_gip p[4];
    size_t n;
    char *t = fixture("facts-no-mig-devices.txt");
    assert_int_equal(gm_smi_parse_gip(t, p, 4, &n), -ENODEV);
    free(t);
    assert_int_equal(gm_smi_parse_gip("", p, 4, &n), -ENODATA);
    assert_int_equal(gm_smi_parse_gip("|   0  MIG 1g.10gb   19 |", p, 4, &n),
                     -EBADMSG);
    assert_int_equal(gm_smi_parse_gip("|   0  MIG 1g.10gb 19  8/7  9.75  No  "
                                      "16  1  0 |",
                                      p, 4, &n),
                     -EBADMSG);
    assert_int_equal(gm_smi_parse_gip("|   0  MIG 1g.10gb 19  x/7  9.75  No  "
                                      "16  1  0 |",
                                      p, 4, &n),
                     -EBADMSG);
    assert_int_equal(gm_smi_parse_gip("Segmentation fault\n", p, 4, &n),
                     -EBADMSG);
    assert_int_equal(gm_smi_parse_gip("|   1   2   x  |", p, 4, &n), -EBADMSG);
}

static void test_facts_lgipp(void **state)
{
    struct gm_smi_gipp p[4];
    size_t n;
    char *t = fixture("facts-lgipp.txt");
    assert_int_equal(gm_smi_parse_gipp(t, p, 4, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(p[0].gpu, 0);
    assert_int_equal(p[0].profile_id, 9);
    assert_int_equal(p[0].nstarts, 2);
    assert_int_equal(p[0].starts[0], 0);
    assert_int_equal(p[0].starts[1], 4);
    assert_int_equal(p[0].size, 4);
    free(t);

    t = fixture("lgipp-a100.txt");
    assert_int_equal(gm_smi_parse_gipp(t, p, 4, &n), -E2BIG);
    struct gm_smi_gipp q[8];
    assert_int_equal(gm_smi_parse_gipp(t, q, 8, &n), 0);
    assert_int_equal(n, 6);
    assert_int_equal(q[0].nstarts, 7);
    assert_int_equal(q[5].profile_id, 0);
    assert_int_equal(q[5].nstarts, 1);
    assert_int_equal(q[5].size, 8);
    free(t);
}

static void test_lgipp_malformed(void **state)
{
    struct gm_smi_gipp p[4];
    size_t n;
    static const char *const bad[] = {
        "GPU  0 Profile ID  9 Placements: {0,4:4",
        "GPU  0 Profile ID  9 Placements: {}:4",
        "GPU  0 Profile ID  9 Placements: {0,4}:",
        "GPU  0 Profile ID  9 Placements: {0,4}:9",
        "GPU  0 Profile ID  9 Placements: {0,1,2,3,4,5,6,7,8}:1",
        "GPU  0 Profile ID  9 Placements:",
        "GPU  0 Profile ID",
        "GPU  0 Profile ID  9 Placements: {0,4}:4 extra",
        "random junk",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(gm_smi_parse_gipp(bad[i], p, 4, &n), -EBADMSG);
    assert_int_equal(gm_smi_parse_gipp("", p, 4, &n), -ENODATA);
    assert_int_equal(
        gm_smi_parse_gipp("No MIG-supported devices found.\n", p, 4, &n),
        -ENODEV);
}

/* ---- mig -lgi / -lci ---- */

static void test_facts_lgi(void **state)
{
    struct gm_smi_gi g[4];
    size_t n;
    char *t = fixture("facts-lgi.txt");
    assert_int_equal(gm_smi_parse_gi(t, g, 4, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(g[0].gpu, 0);
    assert_string_equal(g[0].profile, "3g.20gb");
    assert_int_equal(g[0].profile_id, 9);
    assert_int_equal(g[0].id, 1);
    assert_int_equal(g[0].start, 4);
    assert_int_equal(g[0].size, 4);
    assert_int_equal(gm_smi_parse_gi(t, g, 0, &n), -E2BIG);
    free(t);
}

static void test_lgi_variants(void **state)
{
    struct gm_smi_gi g[4];
    size_t n = 99;
    assert_int_equal(gm_smi_parse_gi("", g, 4, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(
        gm_smi_parse_gi("No GPU instances found: Not Found\n", g, 4, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(
        gm_smi_parse_gi("No MIG-enabled devices found.\n", g, 4, &n), 0);
    assert_int_equal(gm_smi_parse_gi("|   0  MIG 3g.20gb  9  1 |", g, 4, &n),
                     -EBADMSG);
    assert_int_equal(
        gm_smi_parse_gi("|   0  MIG 3g.20gb  9  1  4-4 |", g, 4, &n), -EBADMSG);
    assert_int_equal(
        gm_smi_parse_gi("|   0  GPU 3g.20gb  9  1  4:4 |", g, 4, &n), -EBADMSG);
    assert_int_equal(gm_smi_parse_gi("garbage\n", g, 4, &n), -EBADMSG);
    assert_int_equal(
        gm_smi_parse_gi("|   0  MIG 3g.20gbxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                        "xxxxxxxx  9  1  4:4 |",
                        g, 4, &n),
        -ENAMETOOLONG);
    assert_int_equal(
        gm_smi_parse_gi("|   0  MIG 3g.20gb  99999999999  1  4:4 |", g, 4, &n),
        -EBADMSG);
    /* More tokens on a line than any table has. */
    char many[400] = "|  0";
    for (int i = 0; i < 60; i++)
        strcat(many, " 1");
    assert_int_equal(gm_smi_parse_gi(many, g, 4, &n), -EBADMSG);
}

static void test_lci(void **state)
{
    struct gm_smi_ci c[4];
    size_t n;
    char *t = fixture("lci.txt");
    assert_int_equal(gm_smi_parse_ci(t, c, 4, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(c[0].gpu, 0);
    assert_int_equal(c[0].gi, 1);
    assert_string_equal(c[0].profile, "3g.20gb");
    assert_int_equal(c[0].profile_id, 2);
    assert_int_equal(c[0].id, 0);
    assert_int_equal(c[0].start, 0);
    assert_int_equal(c[0].size, 3);
    free(t);
    assert_int_equal(
        gm_smi_parse_ci("No compute instances found: Not Found\n", c, 4, &n),
        0);
    assert_int_equal(n, 0);
    assert_int_equal(gm_smi_parse_ci("|   0  1  MIG 3g.20gb  2  0 |", c, 4, &n),
                     -EBADMSG);
}

/* ---- events ---- */

static void test_facts_events(void **state)
{
    struct gm_smi_event e[4];
    size_t n;
    char *t = fixture("facts-cgi.txt");
    assert_int_equal(gm_smi_parse_events(t, e, 4, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(e[0].kind, GM_SMI_GI_CREATED);
    assert_int_equal(e[0].gi, 2);
    assert_int_equal(e[0].gpu, 0);
    assert_string_equal(e[0].profile, "3g.20gb");
    assert_int_equal(e[0].profile_id, 9);
    assert_int_equal(e[1].kind, GM_SMI_CI_CREATED);
    assert_int_equal(e[1].ci, 0);
    assert_int_equal(e[1].gi, 2);
    assert_int_equal(e[1].profile_id, 2);
    assert_int_equal(gm_smi_parse_events(t, e, 1, &n), -E2BIG);
    free(t);

    t = fixture("facts-dci.txt");
    assert_int_equal(gm_smi_parse_events(t, e, 4, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(e[0].kind, GM_SMI_CI_DESTROYED);
    assert_int_equal(e[0].ci, 0);
    assert_int_equal(e[0].gi, 1);
    free(t);

    t = fixture("facts-dgi.txt");
    assert_int_equal(gm_smi_parse_events(t, e, 4, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(e[0].kind, GM_SMI_GI_DESTROYED);
    assert_int_equal(e[0].gi, 1);
    assert_int_equal(e[0].ci, -1);
    free(t);

    t = fixture("facts-err-insufficient.txt");
    assert_int_equal(gm_smi_parse_events(t, e, 4, &n), 0);
    assert_int_equal(n, 0);
    free(t);

    assert_int_equal(
        gm_smi_parse_events("Successfully created GPU instance ID x", e, 4, &n),
        -EBADMSG);
    assert_int_equal(gm_smi_parse_events("Successfully destroyed GPU instance "
                                         "ID  1 from GPU",
                                         e, 4, &n),
                     -EBADMSG);
}

/* ---- messages ---- */

static void expect_scan(const char *file, unsigned want)
{
    char *t = fixture(file);
    unsigned got = gm_smi_scan(t);
    if (got != want)
        fail_msg("%s: flags 0x%x, want 0x%x", file, got, want);
    free(t);
}

static void test_facts_messages(void **state)
{
    expect_scan("facts-mig-enable.txt",
                GM_SMI_F_MIG_ENABLED | GM_SMI_F_ALL_DONE);
    expect_scan("facts-mig-disable.txt",
                GM_SMI_F_MIG_DISABLED | GM_SMI_F_ALL_DONE);
    expect_scan("facts-pending-enable-in-use.txt",
                GM_SMI_F_PENDING_ENABLE | GM_SMI_F_IN_USE | GM_SMI_F_ALL_DONE);
    expect_scan("facts-pending-enable-not-supported.txt",
                GM_SMI_F_PENDING_ENABLE | GM_SMI_F_NOT_SUPPORTED |
                    GM_SMI_F_ALL_DONE);
    expect_scan("facts-pending-disable-in-use.txt",
                GM_SMI_F_PENDING_DISABLE | GM_SMI_F_IN_USE);
    expect_scan("facts-err-insufficient.txt", GM_SMI_F_INSUFFICIENT);
    expect_scan("facts-err-destroy-in-use.txt", GM_SMI_F_IN_USE);
    expect_scan("facts-reset-ok.txt", GM_SMI_F_RESET_OK);
    expect_scan("facts-reset-unsupported.txt", GM_SMI_F_RESET_UNSUPPORTED);
    expect_scan("facts-no-mig-devices.txt", GM_SMI_F_NO_MIG_DEVICES);
    expect_scan("facts-cgi.txt", 0);
    assert_int_equal(gm_smi_scan(""), 0);
}

static void test_message_folding(void **state)
{
    char m[64];
    char *t = fixture("facts-mig-enable.txt");
    gm_smi_message(t, NULL, m, sizeof(m));
    assert_string_equal(m, "Enabled MIG Mode for GPU 00000000:36:00.0");
    free(t);

    gm_smi_message("out  line\n\tsecond\n", "err\r\n", m, sizeof(m));
    assert_string_equal(m, "err out line second");
    gm_smi_message("caf\xc3\xa9\x01", NULL, m, sizeof(m));
    assert_string_equal(m, "caf???");
    assert_int_equal(gm_smi_message(NULL, NULL, m, sizeof(m)), 0);
    assert_string_equal(m, "");
    size_t n = gm_smi_message("0123456789abcdef", NULL, m, 8);
    assert_int_equal(n, 7);
    assert_string_equal(m, "0123456");

    char *big = malloc(200000);
    assert_non_null(big);
    memset(big, 'x', 199999);
    big[199999] = '\0';
    gm_smi_message(big, big, m, sizeof(m));
    assert_int_equal(strlen(m), sizeof(m) - 1);
    free(big);
}

/* ---- validation ---- */

static void test_valid_profile(void **state)
{
    static const char *const good[] = {"1g.5gb",   "1g.10gb",    "3g.40gb",
                                       "7g.141gb", "1g.10gb+me", "4g.71gb",
                                       "2g.35gb"};
    static const char *const bad[] = {
        "1g.10gb;rm",    "0g.10gb",
        "10g.1gb",       "1g.gb",
        "1g.10GB",       "",
        "g.10gb",        "1g10gb",
        "1g.10gb+me+me", "1g.10gb ",
        " 1g.10gb",      "../x",
        "1g.10gb+gfx",   "1c.3g.20gb",
        "1g.-1gb",       "1g.1000000000000000000000000000000000gb"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        assert_true(gm_smi_valid_profile(good[i]));
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (gm_smi_valid_profile(bad[i]))
            fail_msg("accepted \"%s\"", bad[i]);
    }
    assert_false(gm_smi_valid_profile(NULL));
}

static void test_parse_index(void **state)
{
    int v = -5;
    assert_int_equal(gm_smi_parse_index("0", &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(gm_smi_parse_index("63", &v), 0);
    assert_int_equal(v, 63);
    static const char *const bad[] = {"-1", "64", "007", "01", " 1",
                                      "1a", "",   "+1",  "1 ", "999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(gm_smi_parse_index(bad[i], &v), -EINVAL);
    assert_int_equal(gm_smi_parse_index(NULL, &v), -EINVAL);
}

/* Random lines built from the tokens real output uses: no parser may
 * crash, hang or read out of bounds (ASan and valgrind watch). */
static void test_junk_does_not_crash(void **state)
{
    static const char *const words[] = {
        "|",   "GPU",          "MIG",     "0",        "1g.10gb",
        "19",  "7/7",          "4:4",     "{0,4}:4",  "Profile",
        "ID",  "Placements:",  "(UUID:",  "GPU-x)",   "Device",
        "0:",  "Successfully", "created", "instance", "[N/A]",
        ",",   "\n",           "  ",      "+----+",   "\xff",
        "(ID", "9)",           "No",      "found"};
    const size_t nw = sizeof(words) / sizeof(words[0]);
    uint32_t seed = 12345;
    char buf[512];

    for (int iter = 0; iter < 3000; iter++) {
        size_t len = 0;
        int nwords = (int)(seed % 24);
        for (int k = 0; k < nwords; k++) {
            seed = seed * 1103515245u + 12345u;
            const char *w = words[(seed >> 8) % nw];
            size_t wl = strlen(w);
            if (len + wl + 2 >= sizeof(buf))
                break;
            memcpy(buf + len, w, wl);
            len += wl;
            buf[len++] = (seed >> 20) & 1 ? ' ' : ',';
        }
        buf[len] = '\0';
        seed = seed * 1103515245u + 12345u;

        struct gm_smi_gpu g[4];
        struct gm_smi_proc p[4];
        struct gm_smi_list_gpu lg[4];
        struct gm_smi_mig_dev d[4];
        struct gm_smi_gip gip[4];
        struct gm_smi_gipp gipp[4];
        struct gm_smi_gi gi[4];
        struct gm_smi_ci ci[4];
        struct gm_smi_event e[4];
        char m[32];
        size_t n, n2;
        assert_true(gm_smi_parse_gpus(buf, GM_SMI_GPU_FIELDS, g, 4, &n) <= 0);
        assert_true(gm_smi_parse_procs(buf, p, 4, &n) <= 0);
        assert_true(gm_smi_parse_list(buf, lg, 4, &n, d, 4, &n2) <= 0);
        assert_true(gm_smi_parse_gip(buf, gip, 4, &n) <= 0);
        assert_true(gm_smi_parse_gipp(buf, gipp, 4, &n) <= 0);
        assert_true(gm_smi_parse_gi(buf, gi, 4, &n) <= 0);
        assert_true(gm_smi_parse_ci(buf, ci, 4, &n) <= 0);
        assert_true(gm_smi_parse_events(buf, e, 4, &n) <= 0);
        (void)gm_smi_scan(buf);
        assert_true(gm_smi_message(buf, buf, m, sizeof(m)) < sizeof(m));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_facts_query_bus_mig),
        cmocka_unit_test(test_query_gpu_rows),
        cmocka_unit_test(test_query_gpu_header_units),
        cmocka_unit_test(test_query_gpu_na_padded),
        cmocka_unit_test(test_query_gpu_malformed),
        cmocka_unit_test(test_procs),
        cmocka_unit_test(test_facts_list),
        cmocka_unit_test(test_list_variants),
        cmocka_unit_test(test_facts_lgip),
        cmocka_unit_test(test_lgip_full_table),
        cmocka_unit_test(test_lgip_malformed),
        cmocka_unit_test(test_facts_lgipp),
        cmocka_unit_test(test_lgipp_malformed),
        cmocka_unit_test(test_facts_lgi),
        cmocka_unit_test(test_lgi_variants),
        cmocka_unit_test(test_lci),
        cmocka_unit_test(test_facts_events),
        cmocka_unit_test(test_facts_messages),
        cmocka_unit_test(test_message_folding),
        cmocka_unit_test(test_valid_profile),
        cmocka_unit_test(test_parse_index),
        cmocka_unit_test(test_junk_does_not_crash),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
