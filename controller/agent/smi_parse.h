/* Pure parsers for nvidia-smi's text output: no I/O, no allocation, so every
 * sample we have ever seen can be replayed in a unit test.
 *
 * Every parser takes the whole NUL-terminated output and fills a caller-owned
 * array of at most `max` rows, setting *n to the rows written. They return 0,
 * or a negative errno:
 *   -EBADMSG      a line that should be data but does not parse
 *   -ENODATA      empty output where at least one row is required
 *   -E2BIG        more rows than `max`
 *   -ENAMETOOLONG a field longer than its destination
 *   -ENODEV       "No MIG-supported devices found."
 * On error the array and *n hold whatever parsed before the bad line and
 * must not be trusted. Columns are padded with spaces, so tables are split
 * on runs of whitespace, never on fixed offsets. */
#ifndef GM_AGENT_SMI_PARSE_H
#define GM_AGENT_SMI_PARSE_H

#include <stddef.h>

#define GM_SMI_NAME_MAX 96
#define GM_SMI_UUID_MAX 64
#define GM_SMI_PROFILE_MAX 32
#define GM_SMI_MAX_INDEX 63 /* the largest GPU index we accept anywhere */

enum gm_mig_mode {
    GM_MIG_NA = 0, /* "[N/A]": the GPU cannot do MIG, or the field was absent */
    GM_MIG_DISABLED = 1,
    GM_MIG_ENABLED = 2,
};

/* "Enabled", "Disabled" or "[N/A]", as nvidia-smi prints them. */
const char *gm_mig_mode_name(enum gm_mig_mode m);

/* One row of --query-gpu. Fields the query did not ask for stay at their
 * defaults: index -1, empty strings, GM_MIG_NA, memory_mib -1. */
struct gm_smi_gpu {
    int index;
    char uuid[GM_SMI_UUID_MAX];
    char name[GM_SMI_NAME_MAX];
    char bus_id[32];
    char device_id[16]; /* "0x20B010DE"; empty when [N/A] */
    enum gm_mig_mode mig_current;
    enum gm_mig_mode mig_pending;
    long memory_mib;
};

/* The field list the agent always queries, in this order. */
#define GM_SMI_GPU_FIELDS                                                      \
    "index,uuid,name,pci.bus_id,pci.device_id,mig.mode.current,"               \
    "mig.mode.pending,memory.total"

/* Parses `--query-gpu=<fields> --format=csv[,noheader][,nounits]`. `fields`
 * is the comma-separated list that was queried (any subset of the names in
 * GM_SMI_GPU_FIELDS, in any order); a header line naming those fields is
 * recognised and skipped. Values are ", "-separated and may be padded.
 * Requires at least one row (-ENODATA otherwise). */
int gm_smi_parse_gpus(const char *text, const char *fields,
                      struct gm_smi_gpu *gpus, size_t max, size_t *n);

/* One row of --query-compute-apps=pid,gpu_uuid,used_memory. */
struct gm_smi_proc {
    int pid;
    char gpu_uuid[GM_SMI_UUID_MAX];
    long used_mib; /* -1 when [N/A] */
};

#define GM_SMI_PROC_FIELDS "pid,gpu_uuid,used_memory"

/* Parses --query-compute-apps=GM_SMI_PROC_FIELDS --format=csv[,noheader].
 * Empty output means no processes and is not an error. */
int gm_smi_parse_procs(const char *text, struct gm_smi_proc *procs, size_t max,
                       size_t *n);

/* `nvidia-smi -L`: GPU lines and the MIG device lines under them. */
struct gm_smi_list_gpu {
    int index;
    char name[GM_SMI_NAME_MAX];
    char uuid[GM_SMI_UUID_MAX];
};
struct gm_smi_mig_dev {
    int gpu; /* index of the GPU line above it */
    int device;
    char profile[GM_SMI_PROFILE_MAX]; /* "3g.20gb", or "1c.3g.20gb" */
    char uuid[GM_SMI_UUID_MAX];
};
/* Requires at least one GPU line. A MIG line before any GPU line is
 * -EBADMSG. */
int gm_smi_parse_list(const char *text, struct gm_smi_list_gpu *gpus,
                      size_t max_gpus, size_t *ngpus,
                      struct gm_smi_mig_dev *devs, size_t max_devs,
                      size_t *ndevs);

/* `nvidia-smi mig -lgip`: one entry per profile per GPU (the second row
 * nvidia-smi prints for each profile is skipped). */
struct gm_smi_gip {
    int gpu;
    char profile[GM_SMI_PROFILE_MAX]; /* without the "MIG " prefix */
    int id;
    int free;
    int total;
};
/* Requires at least one profile; "No MIG-supported devices found." and
 * "No MIG-enabled devices found." give -ENODEV. */
int gm_smi_parse_gip(const char *text, struct gm_smi_gip *out, size_t max,
                     size_t *n);

/* `nvidia-smi mig -lgipp`: "GPU  0 Profile ID  9 Placements: {0,4}:4". */
#define GM_SMI_MAX_STARTS 8
struct gm_smi_gipp {
    int gpu;
    int profile_id;
    int nstarts;
    int starts[GM_SMI_MAX_STARTS];
    int size;
};
/* Requires at least one line; -ENODEV as for gm_smi_parse_gip. */
int gm_smi_parse_gipp(const char *text, struct gm_smi_gipp *out, size_t max,
                      size_t *n);

/* `nvidia-smi mig -lgi`. */
struct gm_smi_gi {
    int gpu;
    char profile[GM_SMI_PROFILE_MAX];
    int profile_id;
    int id;
    int start;
    int size;
};
/* "No GPU instances found" and "No MIG-enabled devices found" mean zero
 * rows, not an error; so does empty output. */
int gm_smi_parse_gi(const char *text, struct gm_smi_gi *out, size_t max,
                    size_t *n);

/* `nvidia-smi mig -lci`. */
struct gm_smi_ci {
    int gpu;
    int gi;
    char profile[GM_SMI_PROFILE_MAX];
    int profile_id;
    int id;
    int start;
    int size;
};
/* Zero rows as for gm_smi_parse_gi. */
int gm_smi_parse_ci(const char *text, struct gm_smi_ci *out, size_t max,
                    size_t *n);

/* The "Successfully created/destroyed ..." lines of -cgi/-cci/-dci/-dgi. */
enum gm_smi_event_kind {
    GM_SMI_GI_CREATED,
    GM_SMI_CI_CREATED,
    GM_SMI_CI_DESTROYED,
    GM_SMI_GI_DESTROYED,
};
struct gm_smi_event {
    enum gm_smi_event_kind kind;
    int gpu;
    int gi;
    int ci;         /* -1 for GPU instance events */
    int profile_id; /* -1 for destroy events */
    char profile[GM_SMI_PROFILE_MAX];
};
/* Lines that do not start with "Successfully" are skipped (errors are read
 * with gm_smi_scan); one that does but does not parse is -EBADMSG. Zero
 * events is not an error here. */
int gm_smi_parse_events(const char *text, struct gm_smi_event *out, size_t max,
                        size_t *n);

/* Facts found in any output, as a bit set. Used to classify failures and
 * pending states by nvidia-smi's words rather than its exit code, which is
 * 0 even when the mode is left pending. */
enum {
    GM_SMI_F_ALL_DONE = 1u << 0,          /* "All done." */
    GM_SMI_F_MIG_ENABLED = 1u << 1,       /* "Enabled MIG Mode for GPU" */
    GM_SMI_F_MIG_DISABLED = 1u << 2,      /* "Disabled MIG Mode for GPU" */
    GM_SMI_F_PENDING_ENABLE = 1u << 3,    /* "in pending enable state" */
    GM_SMI_F_PENDING_DISABLE = 1u << 4,   /* "in pending disable state" */
    GM_SMI_F_IN_USE = 1u << 5,            /* "In use by another client" ... */
    GM_SMI_F_INSUFFICIENT = 1u << 6,      /* "Insufficient Resources" */
    GM_SMI_F_RESET_OK = 1u << 7,          /* "was successfully reset." */
    GM_SMI_F_RESET_UNSUPPORTED = 1u << 8, /* "Resetting ... not supported" */
    GM_SMI_F_NO_MIG_DEVICES = 1u << 9,    /* "No MIG-supported devices" */
    GM_SMI_F_NOT_FOUND = 1u << 10,        /* "No GPU/compute instances" */
    GM_SMI_F_NO_DEVICES = 1u << 11,       /* "No devices were found" */
    GM_SMI_F_NOT_SUPPORTED = 1u << 12,    /* ":Not Supported" and alike */
    GM_SMI_F_NO_PERMISSION = 1u << 13,    /* "Insufficient Permissions" */
    GM_SMI_F_NO_DRIVER = 1u << 14,        /* "couldn't communicate with" */
    GM_SMI_F_INVALID_PROFILE = 1u << 15,  /* "Invalid ... profile" */
};
unsigned gm_smi_scan(const char *text);

/* nvidia-smi's own words in one line for a result message: the lines of
 * `err` then `out` (either may be NULL), minus "All done.", runs of
 * whitespace folded to one space, bytes outside printable ASCII replaced by
 * '?'. Always NUL-terminates dst (cap > 0). Returns the length written. */
size_t gm_smi_message(const char *out, const char *err, char *dst, size_t cap);

/* Strict input checks, used on everything that reaches an argument vector.
 * A profile name is [1-9]g.<digits>gb with an optional "+me" suffix, at most
 * GM_SMI_PROFILE_MAX-1 bytes. An index is a decimal 0..GM_SMI_MAX_INDEX
 * without sign, spaces or leading zeros. */
int gm_smi_valid_profile(const char *name);
int gm_smi_parse_index(const char *s, int *out);

#endif
