/* A TLS transport filter: a stream core that wraps another stream core
 * (MQTT, WebSocket, ...) and speaks TLS on the wire, so TCP -> TLS -> MQTT
 * and TCP -> TLS -> WebSocket -> MQTT stack without the TCP layer knowing.
 *
 * OpenSSL 3 runs on memory BIOs: the filter owns no socket and no clock;
 * time comes in through feed and on_timeout, so tests and fuzzers drive it
 * with bytes and virtual time like any core.
 *
 * Policy (issue 4): TLS 1.2 and 1.3 only, renegotiation off, OpenSSL's
 * modern default suites plus the TLS 1.2 PSK suites (PSK-AES128-GCM-SHA256,
 * PSK-AES128-CCM8) and ECDHE-ECDSA-AES128-CCM8. Bytes that are not a TLS
 * record (plaintext MQTT on a TLS port) are answered with a fatal alert and
 * the filter closes. A handshake not complete within handshake_timeout_ms
 * closes. The inner core sees bytes and timers only once the handshake is
 * complete. Memory per connection is bounded: OpenSSL's record buffers, the
 * memory BIOs (input is consumed at once, output is capped per poll), and
 * one plaintext chunk of the inner core's output. */
#ifndef M2M_NET_TLS_H
#define M2M_NET_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "m2m/types.h"
#include "net/tcp.h"

/* Server: NONE asks for no client certificate; OPTIONAL asks, and one that
 * is sent must verify against ca_file; REQUIRE refuses a client without one.
 * Client: NONE skips verifying the server (tests only). */
enum m2m_tls_verify { M2M_TLS_VERIFY_NONE, M2M_TLS_VERIFY_OPTIONAL, M2M_TLS_VERIFY_REQUIRE };

/* ALPN: a server selects its first protocol the client offers; a client
 * that offers none of them is served without ALPN (not refused). The PSK
 * file holds "identity:hexkey" lines (key up to 64 bytes, '#' comments);
 * the same keys serve TLS 1.3 external PSK. */
struct m2m_tls_ctx_config {
    bool server;
    const char *cert_file, *key_file; /* PEM; server: required unless PSK only; client: for mTLS */
    const char *ca_file; /* server: client-cert CAs; client: server CAs (NULL: system default paths) */
    enum m2m_tls_verify verify;
    const char *psk_file;     /* server: "identity:hexkey" lines (TLS 1.2 PSK) */
    const char *psk_identity; /* client PSK */
    const uint8_t *psk_key;
    size_t psk_key_len;
    const char *alpn;              /* comma list, e.g. "mqtt" or "coap"; NULL: none */
    const char *server_name;       /* client: SNI and host name verification */
    int min_version;               /* 0x0303 (TLS 1.2, default) or 0x0304 */
    int max_version;               /* 0 (TLS 1.3) or 0x0303: a client that must use TLS 1.2 PSK */
    bool session_tickets;          /* resumption */
    uint32_t handshake_timeout_ms; /* [10000] */
};

/* One SSL_CTX, shared by many connections and immutable after creation,
 * but for one thing: a client context with session_tickets keeps the last
 * session its server issued and offers it on the next connection (so one
 * client context should talk to one server).
 * Returns 0, or a negative m2m_err with a readable message in err. Files
 * are read during the call; the config strings need not outlive it. */
struct m2m_tls_ctx;
int m2m_tls_ctx_new(const struct m2m_tls_ctx_config *cfg, struct m2m_tls_ctx **out, char *err, size_t errcap);
/* Frees the context once no connection uses it any more (reference counted
 * by OpenSSL). NULL is a no-op. */
void m2m_tls_ctx_free(struct m2m_tls_ctx *ctx);

/* One connection. Wraps `inner_core` (driven through `inner`); the context
 * and the inner core must outlive it. `start` is when the connection was
 * accepted (or opened): the handshake deadline counts from it. A client
 * filter sends its ClientHello at the first poll_output. NULL on out of
 * memory. */
struct m2m_tls;
struct m2m_tls *m2m_tls_new(struct m2m_tls_ctx *ctx, const struct m2m_stream_ops *inner, void *inner_core,
                            m2m_time start);
/* Frees the filter, not the inner core. NULL is a no-op. */
void m2m_tls_free(struct m2m_tls *t);

/* The filter as a stream core: core = struct m2m_tls *. poll_output first
 * drains and encrypts the inner core's output; the bytes it hands out stay
 * valid until the next call on the filter. */
extern const struct m2m_stream_ops m2m_tls_stream_ops;

/* True once the filter wants the connection closed after its pending output
 * is written: a refused handshake (alert queued), a timeout, close_notify
 * sent or received, a fatal record error. */
bool m2m_tls_closed(const struct m2m_tls *t);
/* True once the handshake completed (the inner core sees bytes from then). */
bool m2m_tls_established(const struct m2m_tls *t);
/* Why the filter closes ("handshake timeout", "not TLS", the OpenSSL
 * reason ...), for the log; NULL while it does not. Lives as long as t. */
const char *m2m_tls_reason(const struct m2m_tls *t);
/* Ends the connection from our side: the inner core's pending output is
 * encrypted first, then close_notify. Before the handshake completes it
 * just closes. */
void m2m_tls_close(struct m2m_tls *t);

/* The protocol ALPN selected ("mqtt"); NULL if none. Lives as long as t. */
const char *m2m_tls_alpn(const struct m2m_tls *t);

/* The authenticated peer: the client certificate's subject CN (or first DNS
 * SAN) or the PSK identity; NULL if none. Lives as long as t. */
const char *m2m_tls_peer_identity(const struct m2m_tls *t);

struct m2m_tls_meter {
    uint64_t app_in, app_out;   /* plaintext bytes to/from the inner core */
    uint64_t wire_in, wire_out; /* TLS bytes on the wire */
    uint64_t hs_in,
        hs_out; /* of which handshake records (TLS 1.3 tickets included), and alerts until established */
    uint32_t hs_flights_in,
        hs_flights_out; /* handshake flights each way (a round trip = one flight out and one in) */
    char version[16], cipher[64];
    bool resumed;
};
void m2m_tls_meter(const struct m2m_tls *t, struct m2m_tls_meter *out);

#endif
