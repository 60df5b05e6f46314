/* A DTLS 1.2 datagram filter: a datagram core (struct m2m_wire_ops) that
 * wraps another datagram core (the CoAP endpoint, later LwM2M) and speaks
 * DTLS on the wire. Plaintext datagrams from each authenticated peer go to
 * the inner core with that peer's address; the inner core's datagrams to a
 * peer leave encrypted.
 *
 * OpenSSL 3 runs behind a custom BIO that carries one datagram per read and
 * packs a flight's records into datagrams of at most `mtu` bytes. The filter
 * owns no socket and no clock: time comes in through feed and on_timeout,
 * and the DTLS retransmission timer runs on that time (OpenSSL 3.0 reads the
 * wall clock for it, so the filter takes the timer over through the BIO's
 * BIO_CTRL_DGRAM_SET_NEXT_TIMEOUT hook and fires DTLSv1_handle_timeout
 * itself). Tests drive it in virtual time; fuzzers feed it garbage.
 *
 * Server side: the stateless cookie exchange (RFC 6347 §4.2.1, through
 * DTLSv1_listen and an HMAC of the peer address), so no per-peer state
 * exists until a ClientHello comes back with a valid cookie; a cap on
 * peers; handshake and idle timeouts; close_notify both ways; a new
 * ClientHello (epoch 0, valid cookie) from an address with a session
 * replaces it (RFC 6347 §4.2.8, a rebooted device). Client side: one peer,
 * the handshake starts with m2m_dtls_connect; plaintext the inner core sends
 * before it completes waits in a small queue.
 *
 * Suites: DTLS 1.2 only, AEAD only: the RFC 7252/7925 mandatory
 * TLS_PSK_WITH_AES_128_CCM_8 and TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8 next to
 * AES-GCM, ChaCha20-Poly1305 and ECDHE-PSK. Raw Public Keys (RFC 7250) are
 * not available: OpenSSL 3.0 has no RPK support (it arrived in 3.2). */
#ifndef M2M_NET_DTLS_H
#define M2M_NET_DTLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "m2m/err.h"
#include "m2m/types.h"
#include "net/pump.h"

enum m2m_dtls_verify { M2M_DTLS_VERIFY_NONE, M2M_DTLS_VERIFY_OPTIONAL, M2M_DTLS_VERIFY_REQUIRE };

struct m2m_dtls_ctx_config {
    bool server;
    const char *cert_file, *key_file; /* PEM; server: unless PSK only; client: a client certificate */
    const char *ca_file;              /* server: CAs of client certificates; client: CAs of the server */
    enum m2m_dtls_verify verify;      /* server: client certificates; client: NONE skips server checks */
    const char *psk_file;             /* server: "identity:hexkey" lines */
    const char *psk_identity;         /* client PSK (identity and key) */
    const uint8_t *psk_key;
    size_t psk_key_len;
    const char *server_name; /* client: name (or IP) the server certificate must carry */
    bool session_cache;      /* server: resume sessions by id */
};

/* One SSL_CTX shared by every filter and peer. Files are read during the
 * call. A server context is immutable once made; a client context keeps the
 * last full session it established and offers it on the next connect
 * (resumption by session id, from the server's cache). 0 or a negative m2m_err, with a readable reason
 * in err. */
struct m2m_dtls_ctx;
int m2m_dtls_ctx_new(const struct m2m_dtls_ctx_config *cfg, struct m2m_dtls_ctx **out, char *err,
                     size_t errcap);
/* NULL is a no-op; free after every filter using it. */
void m2m_dtls_ctx_free(struct m2m_dtls_ctx *ctx);
/* Number of identities in the PSK file. */
size_t m2m_dtls_ctx_psk_count(const struct m2m_dtls_ctx *ctx);

#define M2M_DTLS_COOKIE_SECRET 32

struct m2m_dtls_config {
    size_t mtu;                    /* largest datagram sent: [1280], at least 256 */
    size_t max_peers;              /* sessions, established or in handshake: [10000] */
    uint32_t handshake_timeout_ms; /* [10000] */
    uint32_t idle_timeout_ms;      /* [3600000] */
    uint32_t retransmit_ms;        /* first retransmission of a flight: [1000], doubling to 60 s */
    bool no_cookie;                /* server: skip the cookie exchange (measurements only) */
    uint8_t cookie_secret[M2M_DTLS_COOKIE_SECRET];
    uint64_t hash_key; /* keys the peer table's hash */
    const struct m2m_logger *log;
};

/* Fills the defaults above; the caller sets cookie_secret and hash_key
 * from a random source. */
void m2m_dtls_config_default(struct m2m_dtls_config *cfg);

/* A filter around `inner_core` (driven through `inner`). The context and the
 * inner core must outlive it. NULL on bad settings or out of memory. */
struct m2m_dtls;
struct m2m_dtls *m2m_dtls_new(struct m2m_dtls_ctx *ctx, const struct m2m_dtls_config *cfg,
                              const struct m2m_wire_ops *inner, void *inner_core);
/* Frees every peer (without close_notify: call m2m_dtls_close_all first
 * and flush for a polite end), not the inner core. NULL is a no-op. */
void m2m_dtls_free(struct m2m_dtls *d);

/* The filter as a datagram core: core = struct m2m_dtls *. Output datagrams
 * stay valid until the next feed or on_timeout. */
extern const struct m2m_wire_ops m2m_dtls_wire_ops;

/* Client: starts the handshake with `server` (the ClientHello comes out of
 * poll_output). M2M_ESTATE on a server filter or a second call. */
int m2m_dtls_connect(struct m2m_dtls *d, m2m_time now, const struct m2m_addr *server);

/* Sends close_notify to `peer` and forgets it; M2M_ENOTFOUND. */
int m2m_dtls_close(struct m2m_dtls *d, const struct m2m_addr *peer);
/* close_notify to every peer. */
void m2m_dtls_close_all(struct m2m_dtls *d);

enum m2m_dtls_state { M2M_DTLS_NONE, M2M_DTLS_HANDSHAKE, M2M_DTLS_ESTABLISHED, M2M_DTLS_FAILED };

struct m2m_dtls_meter {
    uint64_t app_in, app_out;               /* plaintext bytes to/from the inner core */
    uint64_t wire_in, wire_out;             /* DTLS bytes (UDP payloads) */
    uint64_t hs_in, hs_out;                 /* of which handshake (records before application data) */
    uint32_t dgrams_in, dgrams_out;         /* datagrams on the wire */
    uint32_t hs_flights_in, hs_flights_out; /* a round trip is one flight out and one back */
    uint32_t retransmits;                   /* our flights sent again on a timeout */
    char version[16], cipher[64];
    bool resumed;
};

/* What the filter knows of `peer`: its state (NONE when unknown), and if
 * wanted its meter, identity (PSK identity, or the client certificate's
 * CN, else its first DNS name; "" if none) and the reason it failed. A
 * client keeps its failed peer so the reason stays readable; a server
 * forgets failed peers (and logs why). Strings live until the next call on
 * the filter. */
struct m2m_dtls_peer_info {
    enum m2m_dtls_state state;
    struct m2m_dtls_meter meter;
    const char *identity;
    const char *reason;
};
enum m2m_dtls_state m2m_dtls_peer(const struct m2m_dtls *d, const struct m2m_addr *peer,
                                  struct m2m_dtls_peer_info *info);
size_t m2m_dtls_peer_count(const struct m2m_dtls *d);

struct m2m_dtls_stats {
    uint64_t cookies_sent, cookies_ok; /* HelloVerifyRequests, ClientHellos with a valid cookie */
    uint64_t cookie_bytes_in, cookie_bytes_out;
    uint64_t handshakes, handshake_failures, handshake_timeouts;
    uint64_t idle_closed, refused_full, dropped; /* dropped: not DTLS, unknown peer, too big */
};
const struct m2m_dtls_stats *m2m_dtls_stats(const struct m2m_dtls *d);

#endif
