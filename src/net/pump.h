/* The one generic driver between libuv and a sans-IO core: read -> feed ->
 * (the service reacts) -> drain poll_output -> write; next deadline ->
 * uv_timer. A protocol plugs in with one const m2m_wire_ops table. This file
 * drives datagram cores over UDP, IPv4 or IPv6. */
#ifndef M2M_NET_PUMP_H
#define M2M_NET_PUMP_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "m2m/types.h"

struct m2m_dgram {
    struct m2m_addr peer;
    const uint8_t *data;
    size_t len;
};

/* What the pump needs from any datagram core. */
struct m2m_wire_ops {
    const char *name;
    int (*feed)(void *core, m2m_time now, const struct m2m_addr *from, const uint8_t *p, size_t n);
    /* 1: got one, 0: none left. The data stays valid until the next feed or
     * on_timeout, so the pump may gather several before sending. */
    int (*poll_output)(void *core, struct m2m_dgram *out);
    m2m_time (*next_timeout)(const void *core);
    void (*on_timeout)(void *core, m2m_time now);
};

struct m2m_udp_pump;
/* Called after input or a timer has been fed to the core: the owner polls
 * the core's events here. Outputs are flushed after it returns. */
typedef void (*m2m_pump_react_cb)(struct m2m_udp_pump *pump, void *ctx);

struct m2m_pump_meter {
    uint64_t rx_dgrams, rx_bytes, tx_dgrams, tx_bytes, tx_dropped;
};

struct m2m_udp_pump {
    uv_udp_t udp;
    uv_timer_t timer;
    uv_loop_t *loop;
    const struct m2m_wire_ops *ops;
    void *core;
    m2m_pump_react_cb react;
    void *ctx;
    m2m_time armed_at;
    struct m2m_pump_meter meter;
    int open_handles;
    void (*closed_cb)(struct m2m_udp_pump *pump);
    uint8_t *rxbuf;
    size_t rxcap;
    const struct m2m_logger *log;
};

/* Binds to `addr` (port 0 for an ephemeral port) and starts reading.
 * Returns 0 or a negative libuv error. The pump must stay at a fixed
 * address until closed. */
int m2m_udp_pump_start(struct m2m_udp_pump *pump, uv_loop_t *loop, const struct sockaddr *addr,
                       const struct m2m_wire_ops *ops, void *core, m2m_pump_react_cb react, void *ctx,
                       const struct m2m_logger *log);
/* Sends what the core has queued and re-arms the timer: call after acting
 * on the core outside the pump's callbacks (a request, a notify ...). */
void m2m_udp_pump_flush(struct m2m_udp_pump *pump);
/* The local address the pump is bound to. */
int m2m_udp_pump_local(const struct m2m_udp_pump *pump, struct sockaddr_storage *ss);
/* Stops and closes both handles; `cb` runs once they are closed. */
void m2m_udp_pump_close(struct m2m_udp_pump *pump, void (*cb)(struct m2m_udp_pump *pump));

#endif
