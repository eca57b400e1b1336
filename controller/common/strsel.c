#include "common/strsel.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum op { OP_EQ, OP_NE, OP_EXISTS, OP_NOT_EXISTS, OP_IN, OP_NOTIN };

#define MAX_TERMS 32
#define MAX_VALUES 16

struct term {
    enum op op;
    char *key;                /* owned */
    char *values[MAX_VALUES]; /* owned */
    size_t n_values;
};

struct gm_strsel {
    struct term terms[MAX_TERMS];
    size_t n;
};

static int valid_key_char(char c)
{
    return isalnum((unsigned char)c) || c == '-' || c == '_' || c == '.' ||
           c == '/';
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

static int check_token(const char *t, const char *what, const char *term,
                       char *err, size_t err_len, int allow_empty)
{
    if (!allow_empty && t[0] == '\0') {
        snprintf(err, err_len, "selector term \"%s\": empty %s", term, what);
        return -EINVAL;
    }
    for (const char *p = t; *p; p++) {
        if (!valid_key_char(*p)) {
            snprintf(err, err_len, "selector term \"%s\": invalid %s \"%s\"",
                     term, what, t);
            return -EINVAL;
        }
    }
    return 0;
}

/* Splits on commas outside parentheses. */
static int split_terms(char *s, char **out, size_t *n)
{
    int depth = 0;
    char *start = s;
    *n = 0;
    for (char *p = s;; p++) {
        if (*p == '(')
            depth++;
        else if (*p == ')')
            depth--;
        if ((*p == ',' && depth == 0) || *p == '\0') {
            int end = *p == '\0';
            *p = '\0';
            if (*n >= MAX_TERMS)
                return -E2BIG;
            out[(*n)++] = start;
            start = p + 1;
            if (end)
                break;
        }
    }
    return depth == 0 ? 0 : -EINVAL;
}

static int parse_set(struct term *t, char *list, const char *term, char *err,
                     size_t err_len)
{
    char *open = strchr(list, '(');
    char *close = strrchr(list, ')');
    if (open == NULL || close == NULL || close < open ||
        trim(close + 1)[0] != '\0' || trim(list)[0] != '(') {
        snprintf(err, err_len, "selector term \"%s\": expected (v1,v2)", term);
        return -EINVAL;
    }
    *close = '\0';
    char *save = NULL;
    for (char *v = strtok_r(open + 1, ",", &save); v;
         v = strtok_r(NULL, ",", &save)) {
        v = trim(v);
        int rc = check_token(v, "value", term, err, err_len, 1);
        if (rc)
            return rc;
        if (t->n_values >= MAX_VALUES) {
            snprintf(err, err_len, "selector term \"%s\": too many values",
                     term);
            return -EINVAL;
        }
        t->values[t->n_values] = strdup(v);
        if (t->values[t->n_values++] == NULL)
            return -ENOMEM;
    }
    if (t->n_values == 0) {
        snprintf(err, err_len, "selector term \"%s\": empty value set", term);
        return -EINVAL;
    }
    return 0;
}

static int parse_term(struct term *t, char *s, char *err, size_t err_len)
{
    char term[256];
    snprintf(term, sizeof(term), "%s", s);
    s = trim(s);
    char *p;
    if (s[0] == '!') {
        t->op = OP_NOT_EXISTS;
        char *k = trim(s + 1);
        t->key = strdup(k);
        return t->key ? check_token(k, "key", term, err, err_len, 0) : -ENOMEM;
    }
    if ((p = strstr(s, "!=")) != NULL) {
        t->op = OP_NE;
    } else if ((p = strstr(s, "==")) != NULL) {
        t->op = OP_EQ;
    } else if ((p = strchr(s, '=')) != NULL) {
        t->op = OP_EQ;
    }
    if (p) {
        size_t oplen = (p[0] == '!' || p[1] == '=') ? 2 : 1;
        *p = '\0';
        char *k = trim(s), *v = trim(p + oplen);
        int rc = check_token(k, "key", term, err, err_len, 0);
        if (!rc)
            rc = check_token(v, "value", term, err, err_len, 1);
        if (rc)
            return rc;
        t->key = strdup(k);
        t->values[0] = strdup(v);
        t->n_values = 1;
        return t->key && t->values[0] ? 0 : -ENOMEM;
    }
    /* "key in (..)", "key notin (..)" or a bare key. */
    char *sp = s;
    while (*sp && !isspace((unsigned char)*sp) && *sp != '(')
        sp++;
    char *rest = trim(sp);
    char saved = *sp;
    *sp = '\0';
    int rc = check_token(s, "key", term, err, err_len, 0);
    if (rc)
        return rc;
    t->key = strdup(s);
    if (t->key == NULL)
        return -ENOMEM;
    *sp = saved;
    if (rest[0] == '\0') {
        t->op = OP_EXISTS;
        return 0;
    }
    if (strncmp(rest, "notin", 5) == 0) {
        t->op = OP_NOTIN;
        return parse_set(t, rest + 5, term, err, err_len);
    }
    if (strncmp(rest, "in", 2) == 0) {
        t->op = OP_IN;
        return parse_set(t, rest + 2, term, err, err_len);
    }
    snprintf(err, err_len, "selector term \"%s\": unknown operator", term);
    return -EINVAL;
}

int gm_strsel_parse(const char *s, struct gm_strsel **out, char *err,
                    size_t err_len)
{
    struct gm_strsel *sel = calloc(1, sizeof(*sel));
    char *copy, *terms[MAX_TERMS];
    size_t n;
    int rc = 0;

    if (sel == NULL)
        return -ENOMEM;
    *out = NULL;
    if (s == NULL || s[0] == '\0') {
        *out = sel;
        return 0;
    }
    if (strlen(s) > 4096) {
        snprintf(err, err_len, "selector longer than 4096 characters");
        free(sel);
        return -EINVAL;
    }
    copy = strdup(s);
    if (copy == NULL) {
        free(sel);
        return -ENOMEM;
    }
    rc = split_terms(copy, terms, &n);
    if (rc) {
        snprintf(err, err_len,
                 rc == -E2BIG ? "selector \"%s\": more than 32 terms"
                              : "selector \"%s\": unbalanced parentheses",
                 s);
        rc = -EINVAL;
    }
    for (size_t i = 0; !rc && i < n; i++) {
        rc = parse_term(&sel->terms[sel->n++], terms[i], err, err_len);
    }
    free(copy);
    if (rc) {
        gm_strsel_free(sel);
        return rc;
    }
    *out = sel;
    return 0;
}

static int in_values(const struct term *t, const char *v)
{
    for (size_t i = 0; i < t->n_values; i++)
        if (strcmp(t->values[i], v) == 0)
            return 1;
    return 0;
}

int gm_strsel_match(const struct gm_strsel *sel,
                    const char *(*lookup)(const void *obj, const char *key),
                    const void *obj)
{
    for (size_t i = 0; i < sel->n; i++) {
        const struct term *t = &sel->terms[i];
        const char *v = lookup(obj, t->key);
        int ok;
        switch (t->op) {
        case OP_EQ:
        case OP_IN:
            ok = v && in_values(t, v);
            break;
        case OP_NE:
        case OP_NOTIN:
            ok = v == NULL || !in_values(t, v);
            break;
        case OP_EXISTS:
            ok = v != NULL;
            break;
        default:
            ok = v == NULL;
            break;
        }
        if (!ok)
            return 0;
    }
    return 1;
}

int gm_strsel_empty(const struct gm_strsel *sel)
{
    return sel->n == 0;
}

void gm_strsel_free(struct gm_strsel *sel)
{
    if (sel == NULL)
        return;
    for (size_t i = 0; i < sel->n; i++) {
        free(sel->terms[i].key);
        for (size_t j = 0; j < sel->terms[i].n_values; j++)
            free(sel->terms[i].values[j]);
    }
    free(sel);
}
