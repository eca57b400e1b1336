/* gpumode-agent's logic: read the node's GPU state (probe) and bring it to a
 * mode (apply), talking to nvidia-smi only through a gm_smi_runner.
 *
 * apply, step by step (each step is skipped when it has nothing to do):
 *  1. read: --query-gpu, --query-compute-apps, and when any GPU has MIG on,
 *     `mig -lgi` and `mig -lci`.
 *  2. decide per GPU: full/vgpu want MIG disabled on every MIG-capable GPU;
 *     mig wants each GPU the layout covers in the entry's state. A GPU whose
 *     current and pending modes and instances already match is left alone;
 *     when every GPU matches, apply changes nothing and succeeds, so a
 *     repeated or resumed apply is harmless.
 *  3. refuse (GPUInUse) when a compute process runs on a GPU that must
 *     change, still after in_use_wait_ms (looked at again each second);
 *     nothing has been touched yet.
 *  4. when MIG is already on, check the layout against `mig -lgip`/-lgipp
 *     before destroying anything (UnknownProfile, InsufficientResources).
 *  5. destroy compute instances, then GPU instances (`mig -i N -dci`, then
 *     `mig -i N -dgi`).
 *  6. set the mode (`-i N -mig 0|1`) where the pending mode differs, then
 *     re-query: a GPU whose current mode still differs is pending (Ampere).
 *     With allow_reset, `-i N -r` and re-query; still pending or reset
 *     refused: needs=reboot, RebootRequired. Without: needs=reset,
 *     ResetRequired. Pending is read from the query, never the exit code.
 *  7. create each layout, largest placement first, in one call per GPU:
 *     `mig -i N -cgi 3g.40gb,1g.10gb,... -C`.
 *  8. read back (query, -lgi, -lci, -L) and verify counts per profile per
 *     GPU, one full-size compute instance per GPU instance, and that -L
 *     lists one MIG device per instance (VerifyFailed otherwise). */
#ifndef GM_AGENT_AGENT_H
#define GM_AGENT_AGENT_H

#include <stdbool.h>
#include <stddef.h>

#include "agent/layout.h"
#include "agent/smi_parse.h"
#include "agent/smi_run.h"

#define GM_AGENT_MAX_GPUS 16
#define GM_AGENT_MAX_INSTANCES 128
#define GM_AGENT_MAX_PROCS 64
#define GM_AGENT_MESSAGE_MAX 2048
/* gpumode-agent apply's default --in-use-wait, in seconds: covers the
 * kubelet's default terminationGracePeriodSeconds (30 s) for a pod deleted
 * with --force, and the CUDA teardown after it. */
#define GM_AGENT_IN_USE_WAIT_S 60
/* The kubelet keeps at most 4096 bytes of a termination message. */
#define GM_AGENT_RESULT_MAX 4096

enum gm_agent_mode {
    GM_AGENT_FULL,
    GM_AGENT_VGPU,
    GM_AGENT_MIG,
};

enum gm_agent_needs {
    GM_NEEDS_NONE,
    GM_NEEDS_RESET,
    GM_NEEDS_REBOOT,
};

/* "full"/"vgpu"/"mig" and back; parse returns -EINVAL for anything else. */
const char *gm_agent_mode_name(enum gm_agent_mode m);
int gm_agent_parse_mode(const char *s, enum gm_agent_mode *out);

/* Everything read from nvidia-smi at one moment. nprocs counts the
 * processes kept, at most GM_AGENT_MAX_PROCS: when more were listed, the
 * rest are left out (the GPUs are busy either way) and the messages say
 * the list was cut. */
struct gm_agent_snapshot {
    size_t ngpus;
    struct gm_smi_gpu gpus[GM_AGENT_MAX_GPUS];
    size_t ngis;
    struct gm_smi_gi gis[GM_AGENT_MAX_INSTANCES];
    size_t ncis;
    struct gm_smi_ci cis[GM_AGENT_MAX_INSTANCES];
    size_t nprocs;
    struct gm_smi_proc procs[GM_AGENT_MAX_PROCS];
    size_t ndevs;
    struct gm_smi_mig_dev devs[GM_AGENT_MAX_INSTANCES];
};

struct gm_agent_req {
    enum gm_agent_mode mode;
    const struct gm_layout *layout; /* borrowed; required for mig only */
    int allow_reset;
    /* Recorded in the result only: the agent never reboots during apply;
     * the controller runs `gpumode-agent reboot --confirm` as its own
     * step when it sees needs=reboot and the policy allows it. */
    int allow_reboot;
    /* A compute process on a GPU that must change is waited for this long
     * before GPUInUse: a pod deleted with --force is gone from the API
     * while the kubelet still stops its containers, for up to their
     * terminationGracePeriodSeconds. 0: refuse at once. */
    int in_use_wait_ms;
    /* Sleeps between looks at the processes; NULL: nanosleep. */
    void (*sleep_ms)(void *ctx, int ms);
    void *sleep_ctx;
};

/* Plain data (no pointers to free), large: allocate it on the heap. */
struct gm_agent_result {
    const char *command; /* "probe", "apply", "reboot"; static */
    int has_mode;
    enum gm_agent_mode mode;
    int ok;
    enum gm_agent_needs needs;
    const char *reason; /* static CamelCase string; NULL when ok */
    char message[GM_AGENT_MESSAGE_MAX];
    int changed; /* apply ran at least one command that changes state */
    int detail;  /* probe: include instances and processes in detail */
    struct gm_agent_snapshot snap;
};

/* Sets command and clears the rest. */
void gm_agent_result_init(struct gm_agent_result *res, const char *command);

/* Whether id looks like a boot ID as the kernel writes it (hex digits and
 * dashes, at most 64): what `reboot --boot-id` accepts, so the controller
 * reboots no node whose status.nodeInfo.bootID is not one. */
bool gm_agent_boot_id_valid(const char *id);

/* Marks the result failed. The message is formatted like printf, folded to
 * printable ASCII and cut to GM_AGENT_MESSAGE_MAX. Returns -EIO so callers
 * can `return gm_agent_fail(...)`. */
int gm_agent_fail(struct gm_agent_result *res, const char *reason,
                  enum gm_agent_needs needs, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Both return 0 when res->ok, else a negative errno with res->reason set. */
int gm_agent_probe(const struct gm_smi_runner *r, struct gm_agent_result *res);
int gm_agent_apply(const struct gm_smi_runner *r,
                   const struct gm_agent_req *req, struct gm_agent_result *res);

/* Renders the result as one line of JSON into buf (cap >=
 * GM_AGENT_RESULT_MAX) and returns its length, always below
 * GM_AGENT_RESULT_MAX: when the full form is too long, instance details,
 * then the message, then GPU names and uuids, then the GPU list are
 * dropped, in that order. See gpumode-agent.c for the schema. */
size_t gm_agent_result_json(const struct gm_agent_result *res, char *buf,
                            size_t cap);

#endif
