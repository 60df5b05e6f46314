/* libFuzzer: the WebSocket filter around an echoing inner core. The first
 * input byte chooses: bit 0, a valid handshake goes first (so the rest
 * fuzzes frames); bit 1, require_subprotocol; bit 7, an application close
 * at the end; bits 2-6, where the rest is cut into two feeds. */
#include <string.h>

#include "net/ws.h"

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n);

struct echo {
    uint8_t buf[4096];
    size_t n;
};

static int echo_feed(void *c, m2m_time now, const uint8_t *p, size_t n)
{
    struct echo *e = c;
    (void)now;
    n = n < sizeof e->buf - e->n ? n : sizeof e->buf - e->n;
    memcpy(e->buf + e->n, p, n);
    e->n += n;
    return 0;
}

static bool echo_poll_output(void *c, const uint8_t **p, size_t *n)
{
    struct echo *e = c;
    *p = e->buf;
    *n = e->n;
    e->n = 0;
    return *n > 0;
}

static m2m_time echo_next_timeout(const void *c)
{
    (void)c;
    return 5000;
}

static void echo_on_timeout(void *c, m2m_time now)
{
    (void)c;
    (void)now;
}

static const struct m2m_stream_ops echo_ops = {"echo", echo_feed, echo_poll_output, echo_next_timeout,
                                               echo_on_timeout};

static const char request[] = "GET /mqtt HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                              "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                              "Sec-WebSocket-Protocol: mqtt\r\n\r\n";

static void drain(struct m2m_ws *ws)
{
    const uint8_t *o;
    size_t on;
    while (m2m_ws_stream_ops.poll_output(ws, &o, &on)) {
    }
    (void)m2m_ws_closed(ws);
    (void)m2m_ws_reason(ws);
}

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n)
{
    if (!n)
        return 0;
    struct echo e = {.n = 0};
    struct m2m_ws_config cfg = {
        .max_frame = 300, .max_handshake = 1024, .subprotocol = "mqtt", .require_subprotocol = p[0] & 2};
    struct m2m_ws *ws = m2m_ws_new(&echo_ops, &e, &cfg);
    uint8_t flags = p[0];
    size_t cut = ((size_t)flags >> 2 & 0x1f) < n - 1 ? (size_t)flags >> 2 & 0x1f : n - 1;
    p++;
    n--;
    if (flags & 1)
        m2m_ws_stream_ops.feed(ws, 0, (const uint8_t *)request, sizeof request - 1);
    m2m_ws_stream_ops.feed(ws, 10, p, cut);
    drain(ws);
    m2m_ws_stream_ops.feed(ws, 20, p + cut, n - cut);
    drain(ws);
    m2m_ws_stream_ops.on_timeout(ws, m2m_ws_stream_ops.next_timeout(ws) == M2M_NEVER ? 30 : 20000);
    if (flags & 0x80)
        m2m_ws_close(ws, 1000);
    drain(ws);
    m2m_ws_free(ws);
    return 0;
}
