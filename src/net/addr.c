#include "net/addr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "m2m/err.h"

void m2m_addr_from_sockaddr(struct m2m_addr *a, const struct sockaddr *sa)
{
    size_t len = sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    memset(a, 0, sizeof *a);
    /* Only family, port and address take part in comparisons: the rest of
     * the sockaddr (padding, flow info) is zeroed. */
    if (sa->sa_family == AF_INET6) {
        struct sockaddr_in6 s6;
        memcpy(&s6, sa, sizeof s6);
        s6.sin6_flowinfo = 0;
        memcpy(a->b, &s6, sizeof s6);
    } else {
        struct sockaddr_in s4;
        memcpy(&s4, sa, sizeof s4);
        memset(s4.sin_zero, 0, sizeof s4.sin_zero);
        memcpy(a->b, &s4, sizeof s4);
    }
    a->len = (uint8_t)len;
}

socklen_t m2m_addr_to_sockaddr(const struct m2m_addr *a, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    memcpy(ss, a->b, a->len);
    return a->len;
}

const char *m2m_addr_format(const struct m2m_addr *a, char *buf, size_t cap)
{
    struct sockaddr_storage ss;
    char ip[INET6_ADDRSTRLEN] = "?";
    if (!m2m_addr_to_sockaddr(a, &ss)) {
        snprintf(buf, cap, "-");
        return buf;
    }
    if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof ip);
        snprintf(buf, cap, "[%s]:%u", ip, ntohs(s6->sin6_port));
    } else {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof ip);
        snprintf(buf, cap, "%s:%u", ip, ntohs(s4->sin_port));
    }
    return buf;
}

int m2m_sockaddr_parse(const char *host, int port, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0)
        return 0;
    if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss) == 0)
        return 0;
    return M2M_EINVAL;
}
