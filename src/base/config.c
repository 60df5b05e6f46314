#include "base/config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "m2m/err.h"

static const char *trim(char *s, char **end)
{
    while (*s == ' ' || *s == '\t')
        s++;
    char *e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
        e--;
    *e = 0;
    if (end)
        *end = e;
    return s;
}

int m2m_conf_parse(const char *text, size_t n, int (*cb)(void *ctx, const char *key, const char *val),
                   void *ctx, int *err_line)
{
    char section[64] = "";
    char line[1024];
    size_t i = 0;
    int lineno = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && text[j] != '\n')
            j++;
        lineno++;
        size_t len = j - i;
        if (len >= sizeof line || memchr(text + i, 0, len)) {
            *err_line = lineno;
            return M2M_EMALFORMED;
        }
        memcpy(line, text + i, len);
        line[len] = 0;
        i = j + 1;
        char *end;
        char *s = (char *)trim(line, &end);
        if (!*s || *s == '#' || *s == ';')
            continue;
        if (*s == '[') {
            if (end[-1] != ']' || end - s < 3 || (size_t)(end - s - 2) >= sizeof section) {
                *err_line = lineno;
                return M2M_EMALFORMED;
            }
            end[-1] = 0;
            snprintf(section, sizeof section, "%s", trim(s + 1, NULL));
            continue;
        }
        char *eq = strchr(s, '=');
        if (!eq) {
            *err_line = lineno;
            return M2M_EMALFORMED;
        }
        *eq = 0;
        const char *k = trim(s, NULL);
        const char *v = trim(eq + 1, NULL);
        if (!*k) {
            *err_line = lineno;
            return M2M_EMALFORMED;
        }
        char full[160];
        if (section[0])
            snprintf(full, sizeof full, "%s.%s", section, k);
        else
            snprintf(full, sizeof full, "%s", k);
        int rc = cb(ctx, full, v);
        if (rc) {
            *err_line = lineno;
            return rc;
        }
    }
    return 0;
}

const struct m2m_conf_key *m2m_conf_find(const struct m2m_conf_key *keys, size_t nkeys, const char *key)
{
    for (size_t i = 0; i < nkeys; i++)
        if (!strcmp(keys[i].name, key))
            return &keys[i];
    return NULL;
}

static int parse_scaled(const char *s, const char *const *units, const double *scale, size_t nunits,
                        double def_scale, double *out)
{
    /* Plain decimals only: strtod alone would also take "0x10", "1e3",
     * "inf", signs and leading blanks, none of which belongs in a config. */
    size_t digits = strspn(s, "0123456789.");
    const char *dot = memchr(s, '.', digits);
    if (!isdigit((unsigned char)s[0]))
        return M2M_EINVAL;
    if (dot && memchr(dot + 1, '.', digits - (size_t)(dot + 1 - s)))
        return M2M_EINVAL;
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (end != s + digits || errno || !isfinite(v) || v < 0)
        return M2M_EINVAL;
    while (*end == ' ')
        end++;
    double k = def_scale;
    if (*end) {
        size_t u;
        for (u = 0; u < nunits; u++)
            if (!strcmp(end, units[u]))
                break;
        if (u == nunits)
            return M2M_EINVAL;
        k = scale[u];
    }
    *out = v * k;
    return 0;
}

int m2m_conf_parse_duration(const char *s, int64_t *ms)
{
    static const char *const units[] = {"ms", "s", "m", "h", "d"};
    static const double scale[] = {1, 1000, 60000, 3600000, 86400000};
    double v;
    if (parse_scaled(s, units, scale, 5, 1000, &v) || v > 9e15)
        return M2M_EINVAL;
    *ms = (int64_t)v;
    return 0;
}

int m2m_conf_parse_size(const char *s, int64_t *bytes)
{
    static const char *const units[] = {"k", "K", "M", "G"};
    static const double scale[] = {1024, 1024, 1048576, 1073741824};
    double v;
    if (parse_scaled(s, units, scale, 4, 1, &v) || v > 9e15)
        return M2M_EINVAL;
    *bytes = (int64_t)v;
    return 0;
}

static int parse_bool(const char *s, bool *b)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (int i = 0; i < 4; i++) {
        if (!strcmp(s, yes[i])) {
            *b = true;
            return 0;
        }
        if (!strcmp(s, no[i])) {
            *b = false;
            return 0;
        }
    }
    return M2M_EINVAL;
}

int m2m_conf_set(const struct m2m_conf_key *keys, size_t nkeys, void *obj, const char *key, const char *val,
                 char *err, size_t errcap)
{
    const struct m2m_conf_key *k = m2m_conf_find(keys, nkeys, key);
    if (!k) {
        snprintf(err, errcap, "unknown key '%s'", key);
        return M2M_ENOTFOUND;
    }
    char *field = (char *)obj + k->offset;
    double num = 0;
    int rc = 0;
    switch (k->type) {
    case M2M_CONF_STR:
        if (strlen(val) >= k->size) {
            snprintf(err, errcap, "%s: value longer than %zu bytes", key, k->size - 1);
            return M2M_EINVAL;
        }
        memcpy(field, val, strlen(val) + 1);
        return 0;
    case M2M_CONF_BOOL: {
        bool b;
        if (parse_bool(val, &b)) {
            snprintf(err, errcap, "%s: '%s' is not a boolean", key, val);
            return M2M_EINVAL;
        }
        memcpy(field, &b, sizeof b);
        return 0;
    }
    case M2M_CONF_INT: {
        errno = 0;
        char *end;
        long long v = strtoll(val, &end, 10);
        if (end == val || *end || errno)
            rc = M2M_EINVAL;
        num = (double)v;
        break;
    }
    case M2M_CONF_DURATION: {
        int64_t v = 0;
        rc = m2m_conf_parse_duration(val, &v);
        num = (double)v;
        break;
    }
    case M2M_CONF_SIZE: {
        int64_t v = 0;
        rc = m2m_conf_parse_size(val, &v);
        num = (double)v;
        break;
    }
    case M2M_CONF_RATIO: {
        errno = 0;
        char *end;
        num = strtod(val, &end);
        if (end == val || *end || errno || !isfinite(num))
            rc = M2M_EINVAL;
        break;
    }
    }
    if (rc) {
        snprintf(err, errcap, "%s: cannot parse '%s'", key, val);
        return M2M_EINVAL;
    }
    if (num < k->min || num > k->max) {
        snprintf(err, errcap, "%s: %s is outside [%g, %g]", key, val, k->min, k->max);
        return M2M_EINVAL;
    }
    if (k->type == M2M_CONF_RATIO) {
        memcpy(field, &num, sizeof num);
    } else {
        int64_t v = (int64_t)num;
        memcpy(field, &v, sizeof v);
    }
    return 0;
}

int m2m_conf_defaults(const struct m2m_conf_key *keys, size_t nkeys, void *obj)
{
    char err[160];
    for (size_t i = 0; i < nkeys; i++) {
        int rc = m2m_conf_set(keys, nkeys, obj, keys[i].name, keys[i].def, err, sizeof err);
        if (rc)
            return rc;
    }
    return 0;
}
