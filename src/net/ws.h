/* A WebSocket (RFC 6455) server transport filter: a stream core that wraps
 * another stream core (MQTT, ...) and speaks WebSocket on the wire.
 *
 * It answers the HTTP/1.1 Upgrade request, then unwraps the client's binary
 * messages into the inner core's feed and wraps the inner core's output into
 * binary messages. Framing is wslay's; the filter owns no socket and no clock,
 * so tests and fuzzers drive it with bytes and virtual time like any core.
 *
 * Handshake rules (RFC 6455 §4.2.1, MQTT 5.0 / 3.1.1 §6):
 * - a GET request line with HTTP/1.1, any request target;
 * - Host, Upgrade (a list with "websocket"), Connection (a list with
 *   "Upgrade"), Sec-WebSocket-Version 13, Sec-WebSocket-Key (base64 of 16
 *   bytes); names and list tokens are compared without case;
 * - Sec-WebSocket-Protocol: when the client offers a list, it must hold the
 *   configured subprotocol, which the answer selects; a request without the
 *   header is accepted unless require_subprotocol is set, and answered
 *   without one (RFC 6455 §4.2.2 forbids selecting what was not offered);
 * - extensions are never negotiated (no permessage-deflate).
 * A bad request is answered with 400 (426 with Sec-WebSocket-Version: 13 for
 * another version, 431 when the header block exceeds max_handshake, 408 when
 * it is not complete within handshake_timeout_ms) and Connection: close.
 *
 * After the handshake: binary messages, fragmented or not, reach the inner
 * core as their bytes arrive (an MQTT packet may span frames and a frame may
 * hold several). A text message closes with 1003, a message longer than
 * max_frame with 1009, a protocol error (unmasked frame, RSV bits, bad
 * opcode or fragmentation) with 1002; a ping is answered with a pong, a close
 * with a close. Memory per connection is bounded: max_handshake during the
 * handshake, then wslay's fixed buffers, one queued inner chunk and an output
 * buffer that grows to at most 64 KiB per poll_output. */
#ifndef M2M_NET_WS_H
#define M2M_NET_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "m2m/types.h"
#include "net/tcp.h"

struct m2m_ws_config {
    size_t max_frame;              /* longest message accepted, summed over its frames [1 MiB] */
    size_t max_handshake;          /* longest HTTP request header block [8192] */
    uint32_t handshake_timeout_ms; /* from start to a complete request [10000] */
    const char *subprotocol;       /* selected when offered ("mqtt"); NULL: none is negotiated */
    bool require_subprotocol;      /* refuse a request that offers no subprotocol at all */
    m2m_time start;                /* when the connection was accepted */
};

struct m2m_ws;

/* Wraps `inner_core` (driven through `inner`); both must outlive the filter.
 * The config is copied; `subprotocol` must stay valid. NULL on a bad
 * configuration or out of memory. */
struct m2m_ws *m2m_ws_new(const struct m2m_stream_ops *inner, void *inner_core,
                          const struct m2m_ws_config *cfg);
/* Frees the filter, not the inner core. NULL is a no-op. */
void m2m_ws_free(struct m2m_ws *ws);

/* The filter as a stream core: core = struct m2m_ws *. poll_output first
 * drains and frames the inner core's output; the bytes it hands out stay
 * valid until the next call on the filter. */
extern const struct m2m_stream_ops m2m_ws_stream_ops;

/* True once the filter wants the connection closed after its pending output
 * is written: a refused handshake, a close frame sent or queued, a timeout. */
bool m2m_ws_closed(const struct m2m_ws *ws);
/* True once the handshake succeeded (the inner core sees bytes from then). */
bool m2m_ws_open(const struct m2m_ws *ws);
/* Why the filter closes ("handshake: no Sec-WebSocket-Key", "text frame",
 * ...), a static string for the log; NULL while it does not. */
const char *m2m_ws_reason(const struct m2m_ws *ws);

/* Ends the connection from our side: the inner core's pending output is
 * framed first, then a close frame with `code` (1000 normal, 1001 going away,
 * 1008 policy ...). Before the handshake completes it just closes. */
void m2m_ws_close(struct m2m_ws *ws, uint16_t code);

#endif
