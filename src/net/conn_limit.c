#include "net/conn_limit.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "m2m/err.h"
#include "net/addr.h"

struct addr_count {
    struct m2m_hnode hn;
    size_t n;
    uint8_t len;
    uint8_t ip[16];
};

/* The peer's IP address without the port. */
static uint8_t ip_of(const struct m2m_addr *peer, uint8_t ip[16])
{
    struct sockaddr_storage ss;
    if (!m2m_addr_to_sockaddr(peer, &ss))
        return 0;
    if (ss.ss_family == AF_INET) {
        memcpy(ip, &((const struct sockaddr_in *)&ss)->sin_addr, 4);
        return 4;
    }
    memcpy(ip, &((const struct sockaddr_in6 *)&ss)->sin6_addr, 16);
    return 16;
}

static struct addr_count *find(const struct m2m_conn_limit *l, const uint8_t *ip, uint8_t len, uint64_t h)
{
    for (struct m2m_hnode *it = m2m_hmap_first(&l->by_addr, h); it; it = m2m_hmap_next(it)) {
        struct addr_count *a = M2M_CONTAINER_OF(it, struct addr_count, hn);
        if (a->len == len && memcmp(a->ip, ip, len) == 0)
            return a;
    }
    return NULL;
}

int m2m_conn_limit_init(struct m2m_conn_limit *l, size_t max_total, size_t max_per_addr, uint64_t key)
{
    memset(l, 0, sizeof *l);
    l->max_total = max_total;
    l->max_per_addr = max_per_addr;
    l->key = key;
    return m2m_hmap_init(&l->by_addr, 64);
}

void m2m_conn_limit_cleanup(struct m2m_conn_limit *l)
{
    if (!l->by_addr.b)
        return;
    for (size_t i = 0; i <= l->by_addr.mask; i++) {
        struct m2m_hnode *h = l->by_addr.b[i];
        while (h) {
            struct m2m_hnode *next = h->next;
            free(M2M_CONTAINER_OF(h, struct addr_count, hn));
            h = next;
        }
    }
    m2m_hmap_cleanup(&l->by_addr);
}

bool m2m_conn_limit_admit(struct m2m_conn_limit *l, const struct m2m_addr *peer, const char **why)
{
    if (l->max_total && l->total >= l->max_total) {
        *why = "too many connections";
        return false;
    }
    uint8_t ip[16];
    uint8_t len = ip_of(peer, ip);
    uint64_t h = m2m_hash_keyed(l->key, ip, len);
    struct addr_count *a = find(l, ip, len, h);
    if (a && l->max_per_addr && a->n >= l->max_per_addr) {
        *why = "too many connections from this address";
        return false;
    }
    if (!a) {
        a = calloc(1, sizeof *a);
        if (!a) {
            *why = "out of memory";
            return false;
        }
        a->len = len;
        memcpy(a->ip, ip, len);
        m2m_hmap_insert(&l->by_addr, &a->hn, h);
    }
    a->n++;
    l->total++;
    return true;
}

void m2m_conn_limit_release(struct m2m_conn_limit *l, const struct m2m_addr *peer)
{
    uint8_t ip[16];
    uint8_t len = ip_of(peer, ip);
    uint64_t h = m2m_hash_keyed(l->key, ip, len);
    struct addr_count *a = find(l, ip, len, h);
    if (!a)
        return;
    if (l->total)
        l->total--;
    if (--a->n == 0) {
        m2m_hmap_remove(&l->by_addr, &a->hn);
        free(a);
    }
}
