/* MQTT topic names, topic filters and matching (§4.7, shared subscriptions
 * §4.8.2). Levels are split on '/'; an empty level is a level. */
#include <string.h>

#include "base/utf8.h"
#include "m2m/mqtt.h"

static bool utf8_ok(struct m2m_slice s)
{
    /* [MQTT-4.7.3-1] at least one character; [MQTT-4.7.3-2] no U+0000;
     * [MQTT-4.7.3-3] at most 65535 bytes. */
    return s.n > 0 && s.n <= UINT16_MAX && m2m_utf8_valid(s.p, s.n, M2M_UTF8_NO_NUL);
}

bool m2m_mqtt_topic_valid(struct m2m_slice name)
{
    if (!utf8_ok(name))
        return false;
    /* [MQTT-3.3.2-2]: a Topic Name holds no wildcard characters. */
    return !memchr(name.p, '+', name.n) && !memchr(name.p, '#', name.n);
}

/* Wildcard rules of §4.7.1 on a filter without the $share prefix. */
static bool plain_filter_valid(struct m2m_slice f)
{
    if (f.n == 0)
        return false;
    for (size_t i = 0; i < f.n; i++) {
        uint8_t ch = f.p[i];
        if (ch != '+' && ch != '#')
            continue;
        /* Alone in its level ([MQTT-4.7.1-2], [MQTT-4.7.1-3]). */
        if ((i > 0 && f.p[i - 1] != '/') || (i + 1 < f.n && f.p[i + 1] != '/'))
            return false;
        /* '#' is the last character ([MQTT-4.7.1-2]). */
        if (ch == '#' && i + 1 != f.n)
            return false;
    }
    return true;
}

static const char SHARE[] = "$share/";
#define SHARE_LEN (sizeof SHARE - 1)

bool m2m_mqtt_filter_shared(struct m2m_slice f, struct m2m_slice *group, struct m2m_slice *inner)
{
    if (f.n < SHARE_LEN || memcmp(f.p, SHARE, SHARE_LEN) != 0)
        return false;
    const uint8_t *g = f.p + SHARE_LEN;
    size_t rest = f.n - SHARE_LEN;
    const uint8_t *slash = memchr(g, '/', rest);
    size_t glen = slash ? (size_t)(slash - g) : rest;
    if (group) {
        group->p = g;
        group->n = glen;
    }
    if (inner) {
        inner->p = slash ? slash + 1 : g + rest;
        inner->n = slash ? rest - glen - 1 : 0;
    }
    return true;
}

bool m2m_mqtt_filter_valid(struct m2m_slice f)
{
    if (!utf8_ok(f))
        return false;
    struct m2m_slice group, inner;
    if (!m2m_mqtt_filter_shared(f, &group, &inner))
        return plain_filter_valid(f);
    /* [MQTT-4.8.2-1] the ShareName is at least one character and
     * [MQTT-4.8.2-2] holds no '/', '+' or '#'; a filter must follow. */
    if (group.n == 0 || memchr(group.p, '+', group.n) || memchr(group.p, '#', group.n))
        return false;
    return plain_filter_valid(inner);
}

bool m2m_mqtt_topic_match(struct m2m_slice filter, struct m2m_slice name)
{
    struct m2m_slice inner;
    if (m2m_mqtt_filter_shared(filter, NULL, &inner))
        filter = inner;
    const uint8_t *f = filter.p, *t = name.p;
    size_t fn = filter.n, tn = name.n;
    if (fn == 0 || tn == 0)
        return false;
    /* [MQTT-4.7.2-1]: names starting with '$' do not match wildcards in the
     * first level. */
    if (t[0] == '$' && (f[0] == '+' || f[0] == '#'))
        return false;
    size_t fi = 0, ti = 0;
    bool tend = false;
    for (;;) {
        size_t fe = fi;
        while (fe < fn && f[fe] != '/')
            fe++;
        /* '#' matches the parent level and any number of children
         * (§4.7.1.2: "sport/#" matches "sport"). */
        if (fe - fi == 1 && f[fi] == '#')
            return true;
        if (tend)
            return false;
        size_t te = ti;
        while (te < tn && t[te] != '/')
            te++;
        bool plus = fe - fi == 1 && f[fi] == '+';
        if (!plus && (fe - fi != te - ti || memcmp(f + fi, t + ti, fe - fi) != 0))
            return false;
        if (fe == fn)
            return te == tn;
        fi = fe + 1;
        if (te == tn)
            tend = true;
        else
            ti = te + 1;
    }
}
