/* Options: the RFC 7252 §5.10 table (plus Observe, Block, Size, No-Response),
 * adding and finding options, names of codes and content formats, and the
 * request path as one string. */
#include <string.h>

#include "base/cursor.h"
#include "m2m/coap.h"

enum opt_format { F_EMPTY, F_OPAQUE, F_UINT, F_STRING };

struct opt_def {
    uint16_t num;
    uint8_t format;
    uint16_t min, max;
};

static const struct opt_def opt_defs[] = {
    {M2M_COAP_OPT_IF_MATCH, F_OPAQUE, 0, 8},
    {M2M_COAP_OPT_URI_HOST, F_STRING, 1, 255},
    {M2M_COAP_OPT_ETAG, F_OPAQUE, 1, 8},
    {M2M_COAP_OPT_IF_NONE_MATCH, F_EMPTY, 0, 0},
    {M2M_COAP_OPT_OBSERVE, F_UINT, 0, 3},
    {M2M_COAP_OPT_URI_PORT, F_UINT, 0, 2},
    {M2M_COAP_OPT_LOCATION_PATH, F_STRING, 0, 255},
    {M2M_COAP_OPT_URI_PATH, F_STRING, 0, 255},
    {M2M_COAP_OPT_CONTENT_FORMAT, F_UINT, 0, 2},
    {M2M_COAP_OPT_MAX_AGE, F_UINT, 0, 4},
    {M2M_COAP_OPT_URI_QUERY, F_STRING, 0, 255},
    {M2M_COAP_OPT_ACCEPT, F_UINT, 0, 2},
    {M2M_COAP_OPT_LOCATION_QUERY, F_STRING, 0, 255},
    {M2M_COAP_OPT_BLOCK2, F_UINT, 0, 3},
    {M2M_COAP_OPT_BLOCK1, F_UINT, 0, 3},
    {M2M_COAP_OPT_SIZE2, F_UINT, 0, 4},
    {M2M_COAP_OPT_PROXY_URI, F_STRING, 1, 1034},
    {M2M_COAP_OPT_PROXY_SCHEME, F_STRING, 1, 255},
    {M2M_COAP_OPT_SIZE1, F_UINT, 0, 4},
    {M2M_COAP_OPT_NO_RESPONSE, F_UINT, 0, 1},
};

static const struct opt_def *opt_def(uint16_t num)
{
    for (size_t i = 0; i < sizeof opt_defs / sizeof opt_defs[0]; i++)
        if (opt_defs[i].num == num)
            return &opt_defs[i];
    return NULL;
}

bool m2m_coap_opt_known(const struct m2m_coap_opt *o)
{
    const struct opt_def *d = opt_def(o->num);
    return d && o->len >= d->min && o->len <= d->max;
}

const struct m2m_coap_opt *m2m_coap_bad_critical(const struct m2m_coap_msg *m)
{
    for (uint16_t i = 0; i < m->nopt; i++) {
        const struct m2m_coap_opt *o = &m->opt[i];
        if (!m2m_coap_opt_critical(o->num))
            continue;
        if (!m2m_coap_opt_known(o))
            return o;
        /* Proxying is not offered: Proxy-Uri/Scheme get 5.05, handled by
         * the server, so they are "known" here. */
    }
    return NULL;
}

int m2m_coap_add_opt(struct m2m_coap_msg *m, uint16_t num, const void *val, size_t len)
{
    if (m->nopt >= M2M_COAP_MAX_OPTS || len > 0xffff)
        return M2M_ENOBUFS;
    m->opt[m->nopt].num = num;
    m->opt[m->nopt].len = (uint16_t)len;
    m->opt[m->nopt].val = val;
    m->nopt++;
    return 0;
}

int m2m_coap_add_uint(struct m2m_coap_msg *m, uint16_t num, uint32_t v)
{
    if (m->scratch_used + 4 > M2M_COAP_SCRATCH)
        return M2M_ENOBUFS;
    uint8_t *dst = m->scratch + m->scratch_used;
    size_t n = m2m_uint_min_be(v, dst);
    int rc = m2m_coap_add_opt(m, num, dst, n);
    if (!rc)
        m->scratch_used = (uint8_t)(m->scratch_used + n);
    return rc;
}

int m2m_coap_add_str(struct m2m_coap_msg *m, uint16_t num, const char *s)
{
    return m2m_coap_add_opt(m, num, s, strlen(s));
}

void m2m_coap_del_opt(struct m2m_coap_msg *m, uint16_t num)
{
    uint16_t j = 0;
    for (uint16_t i = 0; i < m->nopt; i++)
        if (m->opt[i].num != num)
            m->opt[j++] = m->opt[i];
    m->nopt = j;
}

const struct m2m_coap_opt *m2m_coap_find_opt(const struct m2m_coap_msg *m, uint16_t num)
{
    for (uint16_t i = 0; i < m->nopt; i++)
        if (m->opt[i].num == num)
            return &m->opt[i];
    return NULL;
}

bool m2m_coap_has_opt(const struct m2m_coap_msg *m, uint16_t num)
{
    return m2m_coap_find_opt(m, num) != NULL;
}

uint32_t m2m_coap_get_uint(const struct m2m_coap_msg *m, uint16_t num, uint32_t def)
{
    const struct m2m_coap_opt *o = m2m_coap_find_opt(m, num);
    uint32_t v;
    if (!o || m2m_uint_from_be(o->val, o->len, &v))
        return def;
    return v;
}

const char *m2m_coap_type_name(uint8_t type)
{
    static const char *names[] = {"CON", "NON", "ACK", "RST"};
    return names[type & 3];
}

const char *m2m_coap_code_name(uint8_t code)
{
    switch (code) {
    case M2M_COAP_EMPTY: return "0.00 Empty";
    case M2M_COAP_GET: return "GET";
    case M2M_COAP_POST: return "POST";
    case M2M_COAP_PUT: return "PUT";
    case M2M_COAP_DELETE: return "DELETE";
    case M2M_COAP_FETCH: return "FETCH";
    case M2M_COAP_PATCH: return "PATCH";
    case M2M_COAP_IPATCH: return "iPATCH";
    case M2M_COAP_CREATED: return "2.01 Created";
    case M2M_COAP_DELETED: return "2.02 Deleted";
    case M2M_COAP_VALID: return "2.03 Valid";
    case M2M_COAP_CHANGED: return "2.04 Changed";
    case M2M_COAP_CONTENT: return "2.05 Content";
    case M2M_COAP_CONTINUE: return "2.31 Continue";
    case M2M_COAP_BAD_REQUEST: return "4.00 Bad Request";
    case M2M_COAP_UNAUTHORIZED: return "4.01 Unauthorized";
    case M2M_COAP_BAD_OPTION: return "4.02 Bad Option";
    case M2M_COAP_FORBIDDEN: return "4.03 Forbidden";
    case M2M_COAP_NOT_FOUND: return "4.04 Not Found";
    case M2M_COAP_METHOD_NOT_ALLOWED: return "4.05 Method Not Allowed";
    case M2M_COAP_NOT_ACCEPTABLE: return "4.06 Not Acceptable";
    case M2M_COAP_REQUEST_ENTITY_INCOMPLETE: return "4.08 Request Entity Incomplete";
    case M2M_COAP_PRECONDITION_FAILED: return "4.12 Precondition Failed";
    case M2M_COAP_REQUEST_ENTITY_TOO_LARGE: return "4.13 Request Entity Too Large";
    case M2M_COAP_UNSUPPORTED_CONTENT_FORMAT: return "4.15 Unsupported Content-Format";
    case M2M_COAP_TOO_MANY_REQUESTS: return "4.29 Too Many Requests";
    case M2M_COAP_INTERNAL_SERVER_ERROR: return "5.00 Internal Server Error";
    case M2M_COAP_NOT_IMPLEMENTED: return "5.01 Not Implemented";
    case M2M_COAP_CODE(5, 2): return "5.02 Bad Gateway";
    case M2M_COAP_SERVICE_UNAVAILABLE: return "5.03 Service Unavailable";
    case M2M_COAP_CODE(5, 4): return "5.04 Gateway Timeout";
    case M2M_COAP_PROXYING_NOT_SUPPORTED: return "5.05 Proxying Not Supported";
    default: return "unknown code";
    }
}

static const struct {
    int fmt;
    const char *name;
    const char *alias;
} formats[] = {
    {M2M_COAP_FMT_TEXT, "text/plain;charset=utf-8", "text"},
    {M2M_COAP_FMT_LINK, "application/link-format", "link"},
    {M2M_COAP_FMT_XML, "application/xml", "xml"},
    {M2M_COAP_FMT_OCTETS, "application/octet-stream", "octets"},
    {M2M_COAP_FMT_EXI, "application/exi", "exi"},
    {M2M_COAP_FMT_JSON, "application/json", "json"},
    {M2M_COAP_FMT_CBOR, "application/cbor", "cbor"},
    {M2M_COAP_FMT_SENML_JSON, "application/senml+json", "senml+json"},
    {M2M_COAP_FMT_SENML_CBOR, "application/senml+cbor", "senml+cbor"},
    {M2M_COAP_FMT_LWM2M_TLV, "application/vnd.oma.lwm2m+tlv", "tlv"},
    {M2M_COAP_FMT_LWM2M_JSON, "application/vnd.oma.lwm2m+json", "lwm2m+json"},
};

const char *m2m_coap_format_name(int fmt)
{
    for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++)
        if (formats[i].fmt == fmt)
            return formats[i].name;
    return NULL;
}

int m2m_coap_format_parse(const char *name)
{
    for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++)
        if (!strcmp(formats[i].name, name) || !strcmp(formats[i].alias, name))
            return formats[i].fmt;
    /* A bare number 0..65535 is taken as it is. */
    uint32_t v = 0;
    size_t i = 0;
    for (; name[i]; i++) {
        if (name[i] < '0' || name[i] > '9' || i >= 5)
            return M2M_COAP_FMT_NONE;
        v = v * 10 + (uint32_t)(name[i] - '0');
    }
    return (i && v <= 0xffff) ? (int)v : M2M_COAP_FMT_NONE;
}

static bool path_char_plain(uint8_t c)
{
    return c > 0x20 && c < 0x7f && c != '/' && c != '%' && c != '?' && c != '#';
}

int m2m_coap_msg_path(const struct m2m_coap_msg *m, char *buf, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    struct m2m_wcur c;
    m2m_wcur_init(&c, (uint8_t *)buf, cap);
    bool any = false;
    for (uint16_t i = 0; i < m->nopt; i++) {
        const struct m2m_coap_opt *o = &m->opt[i];
        if (o->num != M2M_COAP_OPT_URI_PATH)
            continue;
        any = true;
        if (m2m_wcur_u8(&c, '/'))
            return M2M_ENOBUFS;
        for (uint16_t k = 0; k < o->len; k++) {
            uint8_t ch = o->val[k];
            int rc = path_char_plain(ch) ? m2m_wcur_u8(&c, ch)
                                         : (m2m_wcur_u8(&c, '%') || m2m_wcur_u8(&c, (uint8_t)hex[ch >> 4]) ||
                                            m2m_wcur_u8(&c, (uint8_t)hex[ch & 15]));
            if (rc)
                return M2M_ENOBUFS;
        }
    }
    if (!any && m2m_wcur_u8(&c, '/'))
        return M2M_ENOBUFS;
    if (m2m_wcur_u8(&c, 0))
        return M2M_ENOBUFS;
    return 0;
}

int m2m_coap_add_path(struct m2m_coap_msg *m, uint16_t num, const char *path)
{
    const char *s = path;
    while (*s == '/')
        s++;
    while (*s) {
        const char *e = strchr(s, '/');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        int rc = m2m_coap_add_opt(m, num, s, len);
        if (rc)
            return rc;
        s += len;
        if (*s == '/')
            s++;
    }
    return 0;
}
