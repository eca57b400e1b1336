/* A tiny log API in the spirit of OpenBSD's log.c: one line per event, text or
 * JSON, with node= and policy= fields when the line is about one of them. */
#ifndef GM_LOG_H
#define GM_LOG_H

enum gm_log_level {
    GM_LOG_DEBUG = 0,
    GM_LOG_INFO = 1,
    GM_LOG_WARN = 2,
    GM_LOG_ERROR = 3,
};

/* Both are process-wide; call once at start-up. Parses "debug", "info",
 * "warn", "error"; returns -EINVAL for anything else. */
int gm_log_parse_level(const char *s, enum gm_log_level *out);
void gm_log_setup(enum gm_log_level level, int json);
int gm_log_enabled(enum gm_log_level level);

/* node and policy may be NULL. The message is formatted like printf. */
void gm_log_kv(enum gm_log_level level, const char *node, const char *policy,
               const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#define gm_debug(...) gm_log_kv(GM_LOG_DEBUG, NULL, NULL, __VA_ARGS__)
#define gm_info(...) gm_log_kv(GM_LOG_INFO, NULL, NULL, __VA_ARGS__)
#define gm_warn(...) gm_log_kv(GM_LOG_WARN, NULL, NULL, __VA_ARGS__)
#define gm_error(...) gm_log_kv(GM_LOG_ERROR, NULL, NULL, __VA_ARGS__)

#endif
