/* m2mkit.conf: `[section]` headers, `key = value` lines, `#` or `;`
 * comments. Keys are addressed as "section.key". A schema table maps each key
 * to a typed field of the caller's struct, with default, bounds and doc line,
 * so the file, the command line (--section.key=value) and the docs all come
 * from one list. */
#ifndef M2M_BASE_CONFIG_H
#define M2M_BASE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum m2m_conf_type {
    M2M_CONF_INT,      /* int64_t */
    M2M_CONF_BOOL,     /* bool: true/false, yes/no, on/off, 1/0 */
    M2M_CONF_STR,      /* char[size] */
    M2M_CONF_DURATION, /* int64_t milliseconds; "250ms", "2s", "5m", "24h", "1d"; bare = seconds */
    M2M_CONF_SIZE,     /* int64_t bytes; "512", "64k", "16M" */
    M2M_CONF_RATIO     /* double */
};

struct m2m_conf_key {
    const char *name; /* "coap.port" */
    enum m2m_conf_type type;
    size_t offset; /* offsetof the field in the caller's struct */
    size_t size;   /* for M2M_CONF_STR: the field's capacity */
    const char *def;
    double min, max; /* inclusive bounds for numbers */
    const char *doc;
};

/* Calls `cb` for every key/value pair in `text`. On a syntax error returns
 * M2M_EMALFORMED and sets *err_line; a non-zero return of `cb` stops the walk
 * and is returned, with *err_line set to that line. */
int m2m_conf_parse(const char *text, size_t n, int (*cb)(void *ctx, const char *key, const char *val),
                   void *ctx, int *err_line);

/* Sets every key of the schema to its default. */
int m2m_conf_defaults(const struct m2m_conf_key *keys, size_t nkeys, void *obj);
/* Parses `val` for `key` and stores it. M2M_ENOTFOUND for an unknown key,
 * M2M_EINVAL for a bad value or one out of bounds; `err` gets a message. */
int m2m_conf_set(const struct m2m_conf_key *keys, size_t nkeys, void *obj, const char *key, const char *val,
                 char *err, size_t errcap);
const struct m2m_conf_key *m2m_conf_find(const struct m2m_conf_key *keys, size_t nkeys, const char *key);
int m2m_conf_parse_duration(const char *s, int64_t *ms);
int m2m_conf_parse_size(const char *s, int64_t *bytes);

#endif
