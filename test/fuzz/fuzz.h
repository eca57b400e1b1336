/* Small helpers shared by the libFuzzer targets in this directory. Each
 * target is one file, fuzz_<name>.c, with one LLVMFuzzerTestOneInput. */
#ifndef GM_FUZZ_H
#define GM_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The parsers under test take NUL-terminated text; libFuzzer's buffer is not.
 * The copy is exactly size + 1 bytes so ASan sees any read past the end. */
static inline char *gmf_cstr(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);

    if (s == NULL)
        abort();
    if (size)
        memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

/* A property the target checks failed: crash so libFuzzer keeps the input. */
#define gmf_assert(cond)                                                       \
    do {                                                                       \
        if (!(cond))                                                           \
            __builtin_trap();                                                  \
    } while (0)

#endif
