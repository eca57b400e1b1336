/* The switch record: the JSON in the gpumode.io/switch annotation. It is
 * written before any action and updated as each phase completes, so a
 * restarted controller rebuilds all progress from the node alone. */
#ifndef GM_NODESWITCH_RECORD_H
#define GM_NODESWITCH_RECORD_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>

#include "app/profile.h"
#include "planner/labels.h"

#define GM_ANN_SWITCH "gpumode.io/switch"
#define GM_ANN_BOOT_ID "gpumode.io/boot-id"
#define GM_ANN_RETRY "gpumode.io/retry"
#define GM_ANN_SETTINGS "gpumode.io/settings"
#define GM_ANN_RESOURCES "gpumode.io/resources"
#define GM_ANN_PLUGIN_CONFIG "gpumode.io/plugin-config"
#define GM_ANN_GPUS "gpumode.io/gpus"

enum gm_phase {
    GM_PHASE_CORDON,
    GM_PHASE_DRAIN,
    GM_PHASE_STOP_CLIENTS,
    GM_PHASE_RECONFIGURE,
    GM_PHASE_REBOOT,
    GM_PHASE_START_CLIENTS,
    GM_PHASE_VERIFY,
    GM_PHASE_FINISH,
    GM_PHASE_FAILED, /* waiting for a person (Hold) or for a retry */
    GM_PHASE_COUNT,
};

/* CamelCase names, as in status.nodes[].phase. */
const char *gm_phase_name(enum gm_phase p);
int gm_phase_parse(const char *s, enum gm_phase *out);

#define GM_RECORD_MAX_LABELS 16

/* A label we changed and its value before we did (NULL: it was absent). */
struct gm_saved_label {
    char *key;   /* owned */
    char *value; /* owned or NULL */
};

struct gm_switch_record {
    char *policy;      /* owned */
    enum gm_mode from; /* GM_MODE_UNKNOWN when the node had no verified mode */
    enum gm_mode to;
    char *layout;      /* owned agent layout JSON for mig, or NULL */
    char *strategy;    /* owned, "single" or "mixed" for mig, or NULL */
    char *settings;    /* owned gpumode.io/settings to write on success
                        * (gm_plan_settings), or NULL: remove it */
    char *from_layout; /* owned: the layout found before, for rollback */
    enum gm_phase phase;
    long long since;   /* unix seconds when the phase began */
    long long started; /* unix seconds when the switch began */
    int attempt;       /* 1 on the first try, +1 per retry */
    bool cordoned;     /* we cordoned the node (it was schedulable) */
    bool rolling_back;
    bool reconfigured; /* the hardware may differ from `from` */
    /* No policy selects the node any more (a retry released it, or the
     * policy went while a retry drained): the rollback ends with the
     * record removed and the node back in service, not Failed. */
    bool releasing;
    /* In Rebooting: the rest of the node is drained, the reboot may go
     * (its timeout counts from then). */
    bool reboot_drained;
    /* GPUs the agent reported when it changed the hardware; 0: unknown.
     * Verification counts with it rather than nvidia.com/gpu.count, which
     * feature discovery sets to the MIG devices under the single strategy. */
    int gpus;
    /* Owned: those GPUs' uuids in index order, joined with commas, when
     * the switch is to or from vgpu (HAMi's filterdevices may name them),
     * or NULL: unknown. */
    char *gpu_uuids;
    char *boot_id; /* owned; bootID when the reboot was asked, or NULL */
    char *reason;  /* owned CamelCase failure reason, or NULL */
    char *message; /* owned human message, or NULL */
    struct gm_saved_label saved[GM_RECORD_MAX_LABELS];
    size_t n_saved;
};

/* Parses the annotation. Errors name the field ("switch.phase: ..."). */
int gm_record_parse(const char *json, struct gm_switch_record *out, char *err,
                    size_t err_len);
/* Serialises to a malloc'd string the caller frees. */
char *gm_record_format(const struct gm_switch_record *r);
void gm_record_clear(struct gm_switch_record *r);

/* Remembers key's value before the first change we make to it; a key
 * already saved keeps its first value. Returns -E2BIG when full. */
int gm_record_save_label(struct gm_switch_record *r, const char *key,
                         const char *old_value);
const struct gm_saved_label *gm_record_saved(const struct gm_switch_record *r,
                                             const char *key);
/* Forgets every saved label: once they are all restored, a later attempt
 * must save the values a person may have set since, not these. */
void gm_record_forget_labels(struct gm_switch_record *r);

/* Replaces *dst (owned) with a copy of src (may be NULL). */
int gm_set_str(char **dst, const char *src);

#endif
