#include "common/mode.h"

#include <errno.h>
#include <string.h>

static const char *const names[GM_MODE_COUNT] = {"unknown", "full", "vgpu",
                                                 "mig"};

const char *gm_mode_name(enum gm_mode m)
{
    return (int)m >= 0 && m < GM_MODE_COUNT ? names[m] : "unknown";
}

int gm_mode_parse(const char *s, enum gm_mode *out)
{
    for (int i = GM_MODE_FULL; s && i < GM_MODE_COUNT; i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = (enum gm_mode)i;
            return 0;
        }
    }
    return -EINVAL;
}
