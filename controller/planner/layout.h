/* MIG layouts: mig-parted v1 configs (a ConfigMap's config.yaml) and inline
 * layouts, resolved for one node's GPU model into the JSON the agent takes:
 *
 *   [{"devices":[0,1],"migEnabled":true,"migDevices":{"1g.10gb":7}},
 *    {"devices":"all","migEnabled":true,"migDevices":{"3g.40gb":2}}]
 *
 * "all" means every GPU that no other entry names. Entries whose
 * device-filter does not list the node's PCI device id are dropped first,
 * the way mig-parted drops them for a GPU that does not match.
 *
 * Profiles are checked against the model's table: the profile must exist,
 * each count must be within the profile's maximum, and the instances must
 * fit the GPU's 7 compute and 8 memory slices. Placement (which slice an
 * instance may start on) can still refuse a mix that fits these sums; the
 * agent reports that as InsufficientResources. */
#ifndef GM_PLANNER_LAYOUT_H
#define GM_PLANNER_LAYOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "planner/policy.h"

struct gm_mig_profile {
    const char *name; /* "1g.10gb" */
    int max_count;    /* instances of it a GPU can hold */
    int compute;      /* compute slices, of 7 */
    int memory;       /* memory slices, of 8 */
};

struct gm_gpu_model {
    const char *name;   /* canonical product, e.g. "NVIDIA-A100-SXM4-40GB" */
    uint32_t device_id; /* PCI device and vendor id as mig-parted writes it:
                         * 0x20B010DE */
    const struct gm_mig_profile *profiles;
    size_t n_profiles;
};

/* Looks up a nvidia.com/gpu.product label value. Tolerant of the spellings
 * feature discovery uses over versions: with or without "NVIDIA-", spaces
 * for dashes, any case, and the "-SHARED" and "-MIG-<profile>" suffixes it
 * appends under time-slicing and the single MIG strategy. NULL: unknown. */
const struct gm_gpu_model *gm_gpu_model_find(const char *product);

/* A config of the document that gpumode cannot use: its content breaks a
 * rule (a profile it cannot lay out, a count, devices, device-filter,
 * mig-enabled, mig-devices, no entries). The GPU Operator's own ConfigMap
 * holds configs for profiles gpumode does not support ("1g.24gb+gfx" on
 * an RTX PRO 6000); kept apart, such a config fails only the policies
 * that name it, with its own message, rather than the whole document. */
struct gm_migparted_invalid {
    char *name;  /* owned */
    char *error; /* owned; for the user: source, line, config and reason */
};

/* A parsed mig-parted v1 document. names and layouts hold only the configs
 * gpumode can use, so whoever walks them needs no check; the others are in
 * invalid. */
struct gm_migparted {
    char **names;                  /* owned; config names in document order */
    struct gm_mig_layout *layouts; /* owned; layouts[i] is names[i] */
    size_t n;
    struct gm_migparted_invalid *invalid; /* owned; in document order */
    size_t n_invalid;
};

/* Parses config.yaml. source names the ConfigMap in messages
 * ("ConfigMap gpumode-system/gpumode-mig-layouts"). A config whose content
 * is wrong does not fail the parse: it goes to m->invalid with its message.
 * Returns 0 with *out the caller's (gm_migparted_free); -EINVAL with a
 * message naming the line in err when the document as a whole is wrong
 * (malformed YAML, not a mapping, version not v1, mig-configs not a
 * mapping, a config name that is not a scalar); or -ENOMEM. */
int gm_migparted_parse(const char *yaml, size_t len, const char *source,
                       struct gm_migparted **out, char *err, size_t errlen);
void gm_migparted_free(struct gm_migparted *m);
/* Looks a config up. Returns 0 with *layout borrowed from m; -EINVAL when
 * the config is there but gpumode cannot use it, with *why (borrowed from
 * m) the config's own message; -ENOENT when it is not there. The outputs
 * not named are set to NULL. */
int gm_migparted_lookup(const struct gm_migparted *m, const char *name,
                        const struct gm_mig_layout **layout, const char **why);
/* Borrowed from m; NULL when the config is not there or cannot be used
 * (gm_migparted_lookup tells the two apart). */
const struct gm_mig_layout *gm_migparted_find(const struct gm_migparted *m,
                                              const char *name);

/* Resolves a layout for a node. The JSON's exact text is part of
 * gpumode.io/settings on every MIG node (planner/plan.h): keep its form
 * stable. what names the layout in messages
 * (`layout "all-1g.10gb"`, `inline layout`); product is the node's
 * nvidia.com/gpu.product (NULL when absent); mig_capable whether feature
 * discovery labelled it nvidia.com/mig.capable=true, which lets a model
 * missing from the table through with its profile counts left to the
 * node's own nvidia-smi (the agent checks them against mig -lgip before it
 * creates anything); gpu_count its GPU count, or 0
 * when unknown (device indexes are then not range-checked). Returns 0 with
 * *json the caller's (free()), -EINVAL with a message for the user in err,
 * or -ENOMEM. */
int gm_layout_resolve(const struct gm_mig_layout *l, const char *what,
                      const char *product, bool mig_capable, int gpu_count,
                      char **json, char *err, size_t errlen);

/* Whether json, a layout gm_layout_resolve gave, suits the device
 * plugin's single MIG strategy, which serves every instance as
 * nvidia.com/gpu and refuses a node whose GPUs are not uniform: one GPU
 * with MIG off (an entry says so, or, of gpu_count GPUs when it is
 * known, one no entry covers: the agent leaves it as it is), or two MIG
 * device types, and the plugin does not start ("More than one MIG device
 * type present on node"). 0, or -EINVAL with a message for the user
 * (naming what) in err. */
int gm_layout_check_single(const char *json, int gpu_count, const char *what,
                           char *err, size_t errlen);

#endif
