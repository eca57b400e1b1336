/* The MIG layout the controller hands to `gpumode-agent apply --mode mig
 * --layout JSON`: one mig-parted (v1) config, resolved to GPU indices, in
 * JSON with camelCase keys.
 *
 *   [ { "devices": [0, 1] | "all" | omitted,
 *       "migEnabled": true | false,            optional, default true
 *       "migDevices": { "<profile>": <count>, ... } },
 *     ... ]
 *
 * Rules (anything else is rejected, reason InvalidArgument):
 * - The top level is an array of 1..GM_LAYOUT_MAX_ENTRIES objects; an object
 *   has no keys other than the three above. The text is at most
 *   GM_LAYOUT_JSON_MAX bytes.
 * - "devices" is "all", or an array of 1..64 distinct GPU indices
 *   (integers 0..GM_SMI_MAX_INDEX). "all" and an omitted "devices" mean the
 *   same: the entry applies to every GPU that no other entry names. At most
 *   one such default entry; no index may be named by two entries.
 * - "migDevices" maps a profile name (^[1-9]g\.[0-9]+gb(\+me)?$) to an
 *   integer count 0..7; counts of 0 are dropped. At most
 *   GM_LAYOUT_MAX_PROFILES names and at most 7 instances per entry (no GPU
 *   has more). It must be non-empty when migEnabled is true and absent or
 *   empty when false.
 * - Device filters (PCI ids) are not part of this format: the controller
 *   resolves them to indices before calling the agent.
 * GPUs no entry covers are left exactly as they are and are not verified.
 * Whether a profile exists on the GPU model is checked later, against
 * `nvidia-smi mig -lgip` (reason UnknownProfile). */
#ifndef GM_AGENT_LAYOUT_H
#define GM_AGENT_LAYOUT_H

#include <stddef.h>

#include "agent/smi_parse.h"

#define GM_LAYOUT_MAX_ENTRIES 16
#define GM_LAYOUT_MAX_PROFILES 8
#define GM_LAYOUT_MAX_INSTANCES 7
#define GM_LAYOUT_JSON_MAX 65536

struct gm_layout_profile {
    char name[GM_SMI_PROFILE_MAX];
    int count;
};

struct gm_layout_entry {
    int is_default; /* "devices" omitted or "all" */
    int ndevices;
    int devices[GM_SMI_MAX_INDEX + 1];
    int mig_enabled;
    int nprofiles;
    struct gm_layout_profile profiles[GM_LAYOUT_MAX_PROFILES];
};

/* Plain data; no cleanup needed. */
struct gm_layout {
    int nentries;
    struct gm_layout_entry entries[GM_LAYOUT_MAX_ENTRIES];
};

/* Parses and validates. Returns 0 or -EINVAL, with a one-line reason in msg
 * (always NUL-terminated when msgcap > 0). */
int gm_layout_parse(const char *json, struct gm_layout *out, char *msg,
                    size_t msgcap);

/* The entry that applies to GPU `index`: the one naming it, else the default
 * entry, else NULL. *is_explicit (may be NULL) tells which. */
const struct gm_layout_entry *gm_layout_for_gpu(const struct gm_layout *l,
                                                int index, int *is_explicit);

#endif
