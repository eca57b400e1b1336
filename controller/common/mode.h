/* The three GPU modes a node can be in (SPEC.md). */
#ifndef GM_MODE_H
#define GM_MODE_H

enum gm_mode {
    GM_MODE_UNKNOWN = 0, /* a node without a gpumode.io/mode label */
    GM_MODE_FULL,
    GM_MODE_VGPU,
    GM_MODE_MIG,
};
#define GM_MODE_COUNT 4

/* "full", "vgpu", "mig"; "unknown" for GM_MODE_UNKNOWN. Static strings. */
const char *gm_mode_name(enum gm_mode m);
/* Returns 0 or -EINVAL; "unknown" is not accepted. s may be NULL. */
int gm_mode_parse(const char *s, enum gm_mode *out);

#endif
