/* The CoAP part of `m2mkit serve`: a resource tree that clients create,
 * read, update, delete and observe, listening on IPv4 and IPv6. */
#ifndef M2M_SERVER_COAP_SERVICE_H
#define M2M_SERVER_COAP_SERVICE_H

#include <uv.h>

#include "base/prng.h"
#include "m2m/coap.h"
#include "net/pump.h"
#include "server/conf.h"
#include "server/resources.h"

#define M2M_COAP_LISTENERS 2
/* Plain listeners first, then the CoAPS (DTLS) ones. */
#define M2M_COAP_ALL_LISTENERS (2 * M2M_COAP_LISTENERS)

struct m2m_dtls;
struct m2m_dtls_ctx;

struct m2m_coap_service {
    struct m2m_restree tree;
    struct m2m_coap_ep *ep[M2M_COAP_ALL_LISTENERS];
    struct m2m_dtls *dtls[M2M_COAP_ALL_LISTENERS]; /* NULL for a plain listener */
    struct m2m_udp_pump pump[M2M_COAP_ALL_LISTENERS];
    int n;
    int first_dtls; /* index of the first DTLS listener, -1 if none */
    struct m2m_dtls_ctx *dtls_ctx;
    int closing;
    const struct m2m_conf *conf;
    const struct m2m_logger *log;
    struct m2m_prng prng;
    size_t max_payload;
    void (*stopped_cb)(struct m2m_coap_service *svc);
};

/* Binds the configured addresses and serves. `seed` feeds the PRNG behind
 * message IDs, tokens and hash keys. 0 or a negative libuv/m2m error; `err`
 * says which address failed. */
int m2m_coap_service_start(struct m2m_coap_service *svc, uv_loop_t *loop, const struct m2m_conf *conf,
                           const struct m2m_logger *log, uint64_t seed, char *err, size_t errcap);
/* Closes the listeners; `cb` runs when they are closed. */
void m2m_coap_service_stop(struct m2m_coap_service *svc, void (*cb)(struct m2m_coap_service *svc));
/* Port of the first listener (useful with coap.port = 0). */
int m2m_coap_service_port(const struct m2m_coap_service *svc);
/* Port of the CoAPS listeners; -1 when DTLS is off (coap.dtls_enabled, or
 * no certificate and no PSK file). */
int m2m_coap_service_dtls_port(const struct m2m_coap_service *svc);

#endif
