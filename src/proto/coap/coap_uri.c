/* coap:// and coaps:// URIs decomposed into options (RFC 7252 §6.4). */
#include <string.h>

#include "m2m/coap.h"

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static char lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
}

/* Percent-decodes s[0..n) into u->buf at *used, NUL-terminated. §6.4
 * step 5 lower-cases the host before decoding it, so only literal
 * characters are lower-cased: "%41" stays "A". */
static int decode_into(struct m2m_coap_uri *u, size_t *used, const char *s, size_t n, bool to_lower,
                       uint16_t *off, uint16_t *len)
{
    size_t start = *used;
    /* Room for the NUL even when the segment is empty. */
    if (start >= sizeof u->buf)
        return M2M_EINVAL;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%') {
            if (n - i < 3)
                return M2M_EINVAL;
            int h = hexval(s[i + 1]), l = hexval(s[i + 2]);
            if (h < 0 || l < 0)
                return M2M_EINVAL;
            c = (char)(h * 16 + l);
            i += 2;
        } else if ((unsigned char)c <= 0x20 || (unsigned char)c >= 0x7f) {
            return M2M_EINVAL; /* not a URI character */
        } else if (to_lower) {
            c = lower(c);
        }
        if (*used + 2 > sizeof u->buf)
            return M2M_EINVAL;
        u->buf[(*used)++] = c;
    }
    u->buf[(*used)++] = 0;
    *off = (uint16_t)start;
    *len = (uint16_t)(*used - start - 1);
    return 0;
}

static bool prefix_nocase(const char *s, const char *prefix)
{
    for (; *prefix; s++, prefix++)
        if (lower(*s) != *prefix)
            return false; /* also stops at the NUL of a shorter s */
    return true;
}

static bool is_ipv4(const char *s, size_t n)
{
    int dots = 0, digits = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '.') {
            if (!digits)
                return false;
            dots++;
            digits = 0;
        } else if (s[i] >= '0' && s[i] <= '9') {
            if (++digits > 3)
                return false;
        } else {
            return false;
        }
    }
    return dots == 3 && digits;
}

int m2m_coap_uri_parse(const char *s, struct m2m_coap_uri *u)
{
    memset(u, 0, sizeof *u);
    size_t used = 0;
    /* Schemes are case-insensitive (RFC 3986 §3.1). */
    if (prefix_nocase(s, "coaps://")) {
        u->secure = true;
        s += 8;
    } else if (prefix_nocase(s, "coap://")) {
        s += 7;
    } else {
        return M2M_EINVAL;
    }
    if (strchr(s, '#'))
        return M2M_EINVAL; /* §6.4 step 4: fragments are not allowed */
    const char *auth_end = s + strcspn(s, "/?");
    const char *host = s, *host_end;
    const char *port = NULL;
    if (*s == '[') {
        const char *rb = memchr(s, ']', (size_t)(auth_end - s));
        if (!rb)
            return M2M_EINVAL;
        host = s + 1;
        host_end = rb;
        u->ip_literal = true;
        if (rb + 1 < auth_end) {
            if (rb[1] != ':')
                return M2M_EINVAL;
            port = rb + 2;
        }
        for (const char *c = host; c < host_end; c++)
            if (hexval(*c) < 0 && *c != ':' && *c != '.' && *c != '%')
                return M2M_EINVAL;
    } else {
        const char *colon = memchr(s, ':', (size_t)(auth_end - s));
        host_end = colon ? colon : auth_end;
        if (colon)
            port = colon + 1;
        u->ip_literal = is_ipv4(host, (size_t)(host_end - host));
    }
    if (host_end == host || memchr(host, '@', (size_t)(host_end - host)))
        return M2M_EINVAL;
    uint16_t off, len;
    if (decode_into(u, &used, host, (size_t)(host_end - host), !u->ip_literal, &off, &len) ||
        len >= sizeof u->host || memchr(u->buf + off, 0, len))
        return M2M_EINVAL; /* "%00" would cut the host short in u->host */
    memcpy(u->host, u->buf + off, (size_t)len + 1);
    used = 0; /* the host lives in u->host; reuse buf for segments */

    u->port = u->secure ? 5684 : 5683;
    if (port && port < auth_end) {
        uint32_t v = 0;
        for (const char *c = port; c < auth_end; c++) {
            if (*c < '0' || *c > '9' || c - port >= 5)
                return M2M_EINVAL;
            v = v * 10 + (uint32_t)(*c - '0');
        }
        if (v > 65535 || v == 0)
            return M2M_EINVAL;
        u->port = (uint16_t)v;
    }

    const char *p = auth_end;
    const char *q = strchr(p, '?');
    const char *path_end = q ? q : p + strlen(p);
    /* §6.4 step 8: an empty path or "/" alone gives no Uri-Path. */
    if (path_end - p > 1) {
        const char *seg = p + 1;
        for (;;) {
            const char *e = memchr(seg, '/', (size_t)(path_end - seg));
            if (!e)
                e = path_end;
            if (u->npath == 32)
                return M2M_EINVAL;
            if (decode_into(u, &used, seg, (size_t)(e - seg), false, &u->path_off[u->npath],
                            &u->path_len[u->npath]) ||
                u->path_len[u->npath] > 255)
                return M2M_EINVAL;
            u->npath++;
            if (e == path_end)
                break;
            seg = e + 1;
        }
    }
    if (q && q[1]) {
        const char *seg = q + 1;
        const char *end = seg + strlen(seg);
        for (;;) {
            const char *e = memchr(seg, '&', (size_t)(end - seg));
            if (!e)
                e = end;
            if (u->nquery == 32)
                return M2M_EINVAL;
            if (decode_into(u, &used, seg, (size_t)(e - seg), false, &u->query_off[u->nquery],
                            &u->query_len[u->nquery]) ||
                u->query_len[u->nquery] > 255)
                return M2M_EINVAL;
            u->nquery++;
            if (e == end)
                break;
            seg = e + 1;
        }
    }
    return 0;
}

int m2m_coap_uri_to_opts(const struct m2m_coap_uri *u, struct m2m_coap_msg *m)
{
    int rc = 0;
    if (!u->ip_literal)
        rc = m2m_coap_add_str(m, M2M_COAP_OPT_URI_HOST, u->host);
    if (!rc && u->port != (u->secure ? 5684 : 5683))
        rc = m2m_coap_add_uint(m, M2M_COAP_OPT_URI_PORT, u->port);
    for (uint8_t i = 0; !rc && i < u->npath; i++)
        rc = m2m_coap_add_opt(m, M2M_COAP_OPT_URI_PATH, u->buf + u->path_off[i], u->path_len[i]);
    for (uint8_t i = 0; !rc && i < u->nquery; i++)
        rc = m2m_coap_add_opt(m, M2M_COAP_OPT_URI_QUERY, u->buf + u->query_off[i], u->query_len[i]);
    return rc;
}
