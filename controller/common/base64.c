#include "common/base64.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

/* EVP_DecodeBlock does not check padding placement and counts padding in
 * its result, so both are checked here. */
int gm_base64_decode(const char *in, char **out, size_t *out_len)
{
    size_t n = strlen(in), m = 0, pad = 0;
    unsigned char *clean = malloc(n + 1);
    unsigned char *dec = NULL;
    int err = -EINVAL;

    if (clean == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)in[i];
        if (isspace(c))
            continue;
        if (pad && c != '=')
            goto out;
        if (c == '=') {
            pad++;
        } else if (!isalnum(c) && c != '+' && c != '/') {
            goto out;
        }
        clean[m++] = c;
    }
    if (m == 0 || m % 4 != 0 || pad > 2)
        goto out;
    dec = malloc(m / 4 * 3 + 1);
    if (dec == NULL) {
        err = -ENOMEM;
        goto out;
    }
    int r = EVP_DecodeBlock(dec, clean, (int)m);
    if (r < 0 || (size_t)r < pad)
        goto out;
    dec[r - (int)pad] = '\0';
    *out = (char *)dec;
    *out_len = (size_t)r - pad;
    dec = NULL;
    err = 0;
out:
    OPENSSL_cleanse(clean, n + 1);
    free(clean);
    if (dec)
        OPENSSL_cleanse(dec, m / 4 * 3 + 1);
    free(dec);
    return err;
}

int gm_base64_encode(const void *in, size_t len, char **out)
{
    /* EVP_EncodeBlock takes an int; no kubeconfig field comes near it. */
    if (len > (size_t)1 << 30)
        return -ENOMEM;
    *out = malloc((len + 2) / 3 * 4 + 1);
    if (*out == NULL)
        return -ENOMEM;
    EVP_EncodeBlock((unsigned char *)*out, in, (int)len);
    return 0;
}
