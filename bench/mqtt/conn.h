/* One MQTT client connection of the load generator: a libuv TCP stream,
 * incoming bytes framed with m2m_mqtt_frame and decoded with m2m_mqtt_decode,
 * outgoing packets encoded into a buffer that is written once per loop turn
 * (a uv_check handle flushes every connection that has something to send),
 * so that a burst of packets costs one write.
 *
 * Ownership: the caller owns struct mb_conn and must keep it alive until the
 * closed callback has run; the connection owns its buffers and frees them
 * before that callback. Decoded packets passed to the packet callback borrow
 * from the read buffer and are valid only during the call. */
#ifndef M2M_BENCH_MQTT_CONN_H
#define M2M_BENCH_MQTT_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "m2m/mqtt.h"

/* A growable byte buffer. */
struct mb_buf {
    uint8_t *p;
    size_t len, cap;
};

/* What one loop shares between its connections. */
struct mb_loop {
    uv_loop_t *loop;
    uv_check_t flush;
    struct mb_conn *dirty; /* connections with unwritten output */
    uint8_t rbuf[65536];   /* every read lands here first */
};

struct mb_conn;
struct mb_conn_cbs {
    /* TCP connected (status 0) or failed (a libuv error; the connection is
     * closed next). */
    void (*connected_cb)(struct mb_conn *c, int status);
    /* One decoded packet. May send, and may close this or other connections. */
    void (*packet_cb)(struct mb_conn *c, const struct m2m_mqtt_packet *pkt);
    /* The handle is closed: `err` is 0 after mb_conn_close, else why the
     * connection was lost (a libuv error, or an m2m_err for bad input). */
    void (*closed_cb)(struct mb_conn *c, int err);
};

struct mb_conn {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    struct mb_loop *ml;
    const struct mb_conn_cbs *cbs;
    void *ctx;
    enum m2m_mqtt_version version;
    struct mb_buf out;  /* encoded, not yet handed to libuv */
    struct mb_buf wbuf; /* being written by libuv */
    struct mb_buf in;   /* the start of a packet that is not complete yet */
    struct mb_conn *next_dirty;
    int err;
    bool writing, dirty, open, closing, finishing;
};

/* Sets up the shared state on `loop`. */
int mb_loop_init(struct mb_loop *ml, uv_loop_t *loop);
/* Writes what is queued, then closes the flush handle (run the loop afterwards). */
void mb_loop_close(struct mb_loop *ml);

/* Starts a TCP connection to `addr`. 0, or a libuv error (nothing to close). */
int mb_conn_connect(struct mb_conn *c, struct mb_loop *ml, const struct sockaddr *addr,
                    enum m2m_mqtt_version version, const struct mb_conn_cbs *cbs, void *ctx);

/* Encodes `pkt` into the output buffer; it is written at the end of this loop
 * turn. 0, M2M_ESTATE once closing, M2M_EINVAL/M2M_ENOMEM. */
int mb_conn_send(struct mb_conn *c, const struct m2m_mqtt_packet *pkt);

/* Bytes queued and not yet written to the socket. */
static inline size_t mb_conn_pending(const struct mb_conn *c)
{
    return c->out.len + c->wbuf.len;
}

/* Closes the connection (pending output is dropped); closed_cb follows. */
void mb_conn_close(struct mb_conn *c);
/* Closes the connection once its pending output is written. */
void mb_conn_finish(struct mb_conn *c);

#endif
