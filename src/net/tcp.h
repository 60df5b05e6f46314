/* TCP for stream cores (MQTT, XMPP, HTTP ...): a listener that accepts
 * connections, and a connection that runs read -> feed -> react -> write,
 * with the core's next deadline in a timer heap shared by the listener's
 * connections (one uv_timer per listener, not per connection: an idle
 * connection costs less). Like the UDP pump, a protocol plugs in with one
 * const ops table. */
#ifndef M2M_NET_TCP_H
#define M2M_NET_TCP_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "base/heap.h"
#include "m2m/types.h"

struct m2m_stream_ops {
    const char *name;
    int (*feed)(void *core, m2m_time now, const uint8_t *p, size_t n);
    /* Next bytes to write; valid until the next feed or on_timeout. */
    bool (*poll_output)(void *core, const uint8_t **p, size_t *n);
    m2m_time (*next_timeout)(const void *core);
    void (*on_timeout)(void *core, m2m_time now);
};

struct m2m_tcp_conn;
/* Called after input or a timer reached the core; return true to close the
 * connection once its output is written. */
typedef bool (*m2m_tcp_react_cb)(struct m2m_tcp_conn *c, void *ctx);

struct m2m_tcp_meter {
    uint64_t rx_bytes, tx_bytes;
};

/* The deadlines of a listener's connections (or of one outbound one). */
struct m2m_tcp_clock;

struct m2m_tcp_conn;
/* An outbound connection is up (status 0) or failed (a libuv error). */
typedef void (*m2m_tcp_connected_cb)(struct m2m_tcp_conn *c, int status);

struct m2m_tcp_conn {
    uv_tcp_t tcp;
    struct m2m_tcp_clock *clock;
    struct m2m_timer deadline; /* the core's next timeout, or the linger of a close */
    m2m_tcp_connected_cb connected;
    uv_loop_t *loop;
    const struct m2m_stream_ops *ops;
    void *core;
    m2m_tcp_react_cb react;
    void *ctx;
    struct m2m_addr peer;
    struct m2m_tcp_meter meter;
    m2m_time armed_at;
    bool closing, started;
    bool abort;          /* close without waiting for queued output */
    bool closed_handles; /* uv_close called */
    size_t max_write_queue;
    const struct m2m_logger *log;
    void (*closed_cb)(struct m2m_tcp_conn *c);
};

struct m2m_tcp_listener;
/* A new connection, accepted but not reading yet: call m2m_tcp_conn_start
 * or m2m_tcp_conn_close. */
typedef void (*m2m_tcp_accept_cb)(struct m2m_tcp_listener *l, struct m2m_tcp_conn *c);

struct m2m_tcp_listener {
    uv_tcp_t tcp;
    uv_loop_t *loop;
    struct m2m_tcp_clock *clock;
    m2m_tcp_accept_cb on_accept;
    void *ctx;
    const struct m2m_logger *log;
    void (*closed_cb)(struct m2m_tcp_listener *l);
};

int m2m_tcp_listen(struct m2m_tcp_listener *l, uv_loop_t *loop, const struct sockaddr *addr,
                   m2m_tcp_accept_cb on_accept, void *ctx, const struct m2m_logger *log);
int m2m_tcp_listener_port(const struct m2m_tcp_listener *l);
void m2m_tcp_listener_close(struct m2m_tcp_listener *l, void (*cb)(struct m2m_tcp_listener *l));

/* Opens an outbound connection to `addr`. Returns the connection (owned by
 * the net layer, like an accepted one, and freed after its close callback)
 * or NULL with *err set. `connected` runs once: with status 0, call
 * m2m_tcp_conn_start; with an error, the connection is closed already and
 * is freed when the callback returns. `ctx` lands in c->ctx. */
struct m2m_tcp_conn *m2m_tcp_connect(uv_loop_t *loop, const struct sockaddr *addr,
                                     m2m_tcp_connected_cb connected, void *ctx, const struct m2m_logger *log,
                                     int *err);

/* Starts reading into `core`. Pending output beyond max_write_queue bytes
 * (a consumer that does not read) closes the connection. */
void m2m_tcp_conn_start(struct m2m_tcp_conn *c, const struct m2m_stream_ops *ops, void *core,
                        m2m_tcp_react_cb react, void *ctx, size_t max_write_queue);
/* Writes what the core has queued and re-arms its deadline. */
void m2m_tcp_conn_flush(struct m2m_tcp_conn *c);
/* Flushes, then closes; `cb` runs when the handles are closed, and frees
 * nothing but what the net layer allocated (the conn itself). */
void m2m_tcp_conn_close(struct m2m_tcp_conn *c, void (*cb)(struct m2m_tcp_conn *c));

#endif
