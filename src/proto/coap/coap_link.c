/* CoRE Link Format (RFC 6690): writing links for /.well-known/core, query
 * filtering (§4.1) and reading a link-format document. */
#include <stdio.h>
#include <string.h>

#include "m2m/coap.h"

static int put(char *buf, size_t cap, size_t *len, const char *s, size_t n)
{
    if (cap - *len < n + 1)
        return M2M_ENOBUFS;
    memcpy(buf + *len, s, n);
    *len += n;
    buf[*len] = 0;
    return 0;
}

static int put_s(char *buf, size_t cap, size_t *len, const char *s)
{
    return put(buf, cap, len, s, strlen(s));
}

/* Quoted attribute values may not hold '"' or '\'; refuse them rather than
 * emit a document others cannot parse. */
static bool quotable(const char *s)
{
    return !strpbrk(s, "\"\\");
}

int m2m_coap_link_append(char *buf, size_t cap, size_t *len, const struct m2m_coap_link *l)
{
    size_t start = *len;
    char num[32];
    int rc = 0;
    /* buf holds a NUL-terminated string of *len bytes, so *len < cap; a
     * caller that broke this must not make us write out of bounds. */
    if (start >= cap)
        return M2M_ENOBUFS;
    if (*len > 0)
        rc |= put_s(buf, cap, len, ",");
    rc |= put_s(buf, cap, len, "<");
    rc |= put_s(buf, cap, len, l->href);
    rc |= put_s(buf, cap, len, ">");
    const char *names[3] = {";rt=\"", ";if=\"", ";title=\""};
    const char *vals[3] = {l->rt, l->ifd, l->title};
    for (int i = 0; i < 3; i++) {
        if (!vals[i] || !quotable(vals[i]))
            continue;
        rc |= put_s(buf, cap, len, names[i]);
        rc |= put_s(buf, cap, len, vals[i]);
        rc |= put_s(buf, cap, len, "\"");
    }
    if (l->ct >= 0) {
        snprintf(num, sizeof num, ";ct=%d", l->ct);
        rc |= put_s(buf, cap, len, num);
    }
    if (l->sz >= 0) {
        snprintf(num, sizeof num, ";sz=%ld", l->sz);
        rc |= put_s(buf, cap, len, num);
    }
    if (l->obs)
        rc |= put_s(buf, cap, len, ";obs");
    if (rc) {
        *len = start;
        buf[start] = 0;
        return M2M_ENOBUFS;
    }
    return 0;
}

/* Value matches pattern, where a trailing '*' in pattern matches any tail. */
static bool value_match(const char *v, size_t vn, const char *pat, size_t pn)
{
    if (pn && pat[pn - 1] == '*')
        return vn >= pn - 1 && !memcmp(v, pat, pn - 1);
    return vn == pn && !memcmp(v, pat, pn);
}

/* rt and if are space-separated lists: any one entry may match. */
static bool list_match(const char *v, const char *pat, size_t pn)
{
    if (!v)
        return false;
    while (*v) {
        while (*v == ' ')
            v++;
        const char *e = v;
        while (*e && *e != ' ')
            e++;
        if (e > v && value_match(v, (size_t)(e - v), pat, pn))
            return true;
        v = e;
    }
    return false;
}

bool m2m_coap_link_match(const struct m2m_coap_link *l, const char *q, size_t qn)
{
    const char *eq = memchr(q, '=', qn);
    size_t kn = eq ? (size_t)(eq - q) : qn;
    const char *pat = eq ? eq + 1 : "";
    size_t pn = eq ? qn - kn - 1 : 0;
    char num[32];
#define KEY(s) (kn == sizeof(s) - 1 && !memcmp(q, s, kn))
    if (KEY("href"))
        return value_match(l->href, strlen(l->href), pat, pn);
    if (KEY("rt"))
        return list_match(l->rt, pat, pn);
    if (KEY("if"))
        return list_match(l->ifd, pat, pn);
    if (KEY("title"))
        return l->title && value_match(l->title, strlen(l->title), pat, pn);
    if (KEY("obs"))
        return l->obs;
    if (KEY("ct") || KEY("sz")) {
        long v = KEY("ct") ? l->ct : l->sz;
        if (v < 0)
            return false;
        int k = snprintf(num, sizeof num, "%ld", v);
        return value_match(num, (size_t)k, pat, pn);
    }
#undef KEY
    /* An attribute we do not keep cannot match. */
    return false;
}

int m2m_coap_link_next(struct m2m_coap_link_iter *it, struct m2m_slice *target, struct m2m_slice *params)
{
    const char *p = it->p;
    size_t n = it->n, i = it->off;
    while (i < n && (p[i] == ' ' || p[i] == '\n' || p[i] == '\r' || p[i] == '\t'))
        i++;
    if (i >= n)
        return 0;
    if (p[i] != '<')
        return M2M_EMALFORMED;
    const char *gt = memchr(p + i, '>', n - i);
    if (!gt)
        return M2M_EMALFORMED;
    target->p = (const uint8_t *)p + i + 1;
    target->n = (size_t)(gt - (p + i + 1));
    size_t j = (size_t)(gt - p) + 1;
    size_t ps = j;
    bool quoted = false;
    while (j < n && (quoted || p[j] != ',')) {
        if (p[j] == '"')
            quoted = !quoted;
        else if (p[j] == '\\' && quoted && j + 1 < n)
            j++;
        j++;
    }
    if (quoted)
        return M2M_EMALFORMED;
    params->p = (const uint8_t *)p + ps;
    params->n = j - ps;
    it->off = j < n ? j + 1 : j;
    return 1;
}
