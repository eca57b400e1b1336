/* A growable byte buffer with a hard cap, so a broken or hostile peer cannot
 * make the process grow without bound (curl's dynbuf idea). */
#ifndef GM_BUF_H
#define GM_BUF_H

#include <stddef.h>

struct gm_buf {
    char *data; /* owned; always NUL-terminated when non-NULL */
    size_t len;
    size_t cap;
    size_t max; /* appends that would pass this fail with -E2BIG */
};

void gm_buf_init(struct gm_buf *b, size_t max);
/* Returns 0, -E2BIG past the cap, or -ENOMEM. */
int gm_buf_append(struct gm_buf *b, const void *p, size_t n);
int gm_buf_appendf(struct gm_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Drops the first n bytes, keeping the rest (used by stream decoders). */
void gm_buf_consume(struct gm_buf *b, size_t n);
void gm_buf_reset(struct gm_buf *b);
void gm_buf_free(struct gm_buf *b);
/* Hands the data to the caller (free() it) and resets the buffer. Never NULL
 * unless allocation fails. */
char *gm_buf_steal(struct gm_buf *b);

#endif
