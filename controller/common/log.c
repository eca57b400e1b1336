#include "common/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

static enum gm_log_level g_level = GM_LOG_INFO;
static int g_json;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

int gm_log_parse_level(const char *s, enum gm_log_level *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (enum gm_log_level)i;
            return 0;
        }
    }
    return -EINVAL;
}

void gm_log_setup(enum gm_log_level level, int json)
{
    g_level = level;
    g_json = json;
}

int gm_log_enabled(enum gm_log_level level)
{
    return level >= g_level;
}

static void timestamp(char *out, size_t n)
{
    struct timespec ts;
    struct tm tm;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t len = strftime(out, n, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + len, n - len, ".%03ldZ", ts.tv_nsec / 1000000);
}

/* Text values with spaces or quotes are quoted so a line stays one record. */
static void put_text_field(FILE *f, const char *key, const char *val)
{
    if (strpbrk(val, " \"=\t\n") == NULL && val[0] != '\0') {
        fprintf(f, " %s=%s", key, val);
        return;
    }
    fprintf(f, " %s=\"", key);
    for (const char *p = val; *p; p++) {
        if (*p == '"' || *p == '\\')
            fputc('\\', f);
        fputc(*p == '\n' ? ' ' : *p, f);
    }
    fputc('"', f);
}

void gm_log_kv(enum gm_log_level level, const char *node, const char *policy,
               const char *fmt, ...)
{
    char msg[2048];
    char ts[40];
    va_list ap;

    if (!gm_log_enabled(level))
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    timestamp(ts, sizeof(ts));

    if (g_json) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "ts", json_object_new_string(ts));
        json_object_object_add(o, "level",
                               json_object_new_string(level_names[level]));
        json_object_object_add(o, "msg", json_object_new_string(msg));
        if (node)
            json_object_object_add(o, "node", json_object_new_string(node));
        if (policy)
            json_object_object_add(o, "policy", json_object_new_string(policy));
        fprintf(stderr, "%s\n",
                json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
        json_object_put(o);
        return;
    }
    fprintf(stderr, "%s %-5s", ts, level_names[level]);
    put_text_field(stderr, "msg", msg);
    if (node)
        put_text_field(stderr, "node", node);
    if (policy)
        put_text_field(stderr, "policy", policy);
    fputc('\n', stderr);
}
