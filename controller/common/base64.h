/* Standard base64 as Kubernetes carries bytes in JSON and YAML (kubeconfig
 * *-data fields, ConfigMap binaryData). */
#ifndef GM_BASE64_H
#define GM_BASE64_H

#include <stddef.h>

/* Decodes in strictly (whitespace ignored, as a folded YAML scalar may
 * carry some; padding only at the end). *out is NUL-terminated after
 * *out_len bytes and the caller's to free; the scratch copies are wiped,
 * as in may be a key. 0, -EINVAL (not base64, or empty) or -ENOMEM. */
int gm_base64_decode(const char *in, char **out, size_t *out_len);

/* Encodes len bytes of in with padding and no line breaks. *out is
 * NUL-terminated and the caller's to free. 0 or -ENOMEM. */
int gm_base64_encode(const void *in, size_t len, char **out);

#endif
