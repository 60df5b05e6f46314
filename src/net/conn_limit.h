/* Caps on connections a listener accepts: in total and per client IP
 * address, so one host cannot take every slot. Each service keeps one and
 * asks it on accept; the same counts serve MQTT now and XMPP later. */
#ifndef M2M_NET_CONN_LIMIT_H
#define M2M_NET_CONN_LIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/hmap.h"
#include "m2m/types.h"

struct m2m_conn_limit {
    struct m2m_hmap by_addr;
    size_t total;
    size_t max_total;    /* 0: no cap */
    size_t max_per_addr; /* 0: no cap */
    uint64_t key;        /* secret hash key: peers pick their addresses */
};

int m2m_conn_limit_init(struct m2m_conn_limit *l, size_t max_total, size_t max_per_addr, uint64_t key);
void m2m_conn_limit_cleanup(struct m2m_conn_limit *l);
/* Counts a new connection from `peer` and returns true, or returns false
 * (and counts nothing) when a cap is reached; *why says which. */
bool m2m_conn_limit_admit(struct m2m_conn_limit *l, const struct m2m_addr *peer, const char **why);
/* The connection from `peer` that admit counted is gone. */
void m2m_conn_limit_release(struct m2m_conn_limit *l, const struct m2m_addr *peer);

#endif
