#include "server/coap_service.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "net/addr.h"
#include "net/coap_wire.h"
#include "net/dtls.h"

#define WELL_KNOWN "/.well-known/core"
#define MAX_AGE_S 60

static void reply(struct m2m_coap_ep *ep, uint32_t id, uint8_t code, const char *diag)
{
    struct m2m_coap_msg m;
    m2m_coap_msg_init(&m, 0, code);
    if (diag) {
        m.payload = (const uint8_t *)diag;
        m.payload_len = strlen(diag);
    }
    m2m_coap_respond(ep, id, &m);
}

static size_t etag_of(const struct m2m_resource *r, uint8_t out[8])
{
    uint64_t v = r->version;
    size_t n = 0;
    do {
        out[n++] = (uint8_t)v;
        v >>= 8;
    } while (v && n < 8);
    return n;
}

/* The representation of `r` as an answer or a notification. */
static void representation(const struct m2m_resource *r, struct m2m_coap_msg *m, uint8_t etag[8])
{
    m2m_coap_msg_init(m, 0, M2M_COAP_CONTENT);
    if (r->ct >= 0)
        m2m_coap_add_uint(m, M2M_COAP_OPT_CONTENT_FORMAT, (uint32_t)r->ct);
    m2m_coap_add_opt(m, M2M_COAP_OPT_ETAG, etag, etag_of(r, etag));
    m2m_coap_add_uint(m, M2M_COAP_OPT_MAX_AGE, MAX_AGE_S);
    m->payload = r->data;
    m->payload_len = r->len;
}

static void notify_all(struct m2m_coap_service *svc, const char *path, const struct m2m_coap_msg *state)
{
    for (int i = 0; i < svc->n; i++) {
        m2m_coap_notify(svc->ep[i], path, state, false);
        m2m_udp_pump_flush(&svc->pump[i]);
    }
}

static void notify_resource(struct m2m_coap_service *svc, const struct m2m_resource *r)
{
    struct m2m_coap_msg m;
    uint8_t etag[8];
    representation(r, &m, etag);
    notify_all(svc, r->path, &m);
}

static void link_of(const struct m2m_resource *r, struct m2m_coap_link *l)
{
    l->href = r->path;
    l->rt = r->rt;
    l->ifd = r->ifd;
    l->title = r->title;
    l->ct = r->ct;
    l->sz = r->len > 1024 ? (long)r->len : -1; /* RFC 6690: sz helps for big ones */
    l->obs = r->obs;
}

static bool link_selected(const struct m2m_coap_link *l, const struct m2m_coap_msg *req)
{
    for (uint16_t i = 0; i < req->nopt; i++) {
        const struct m2m_coap_opt *o = &req->opt[i];
        if (o->num == M2M_COAP_OPT_URI_QUERY && !m2m_coap_link_match(l, (const char *)o->val, o->len))
            return false;
    }
    return true;
}

static void discover(struct m2m_coap_service *svc, struct m2m_coap_ep *ep, const struct m2m_coap_event *ev)
{
    if (ev->msg.code != M2M_COAP_GET) {
        reply(ep, ev->id, M2M_COAP_METHOD_NOT_ALLOWED, NULL);
        return;
    }
    size_t n = 0;
    struct m2m_resource **all = m2m_restree_sorted(&svc->tree, &n);
    size_t cap = 1024, len = 0;
    char *doc = malloc(cap);
    if (!all || !doc) {
        free(all);
        free(doc);
        reply(ep, ev->id, M2M_COAP_INTERNAL_SERVER_ERROR, NULL);
        return;
    }
    doc[0] = 0;
    for (size_t i = 0; i < n; i++) {
        struct m2m_coap_link l;
        link_of(all[i], &l);
        if (!link_selected(&l, &ev->msg))
            continue;
        while (m2m_coap_link_append(doc, cap, &len, &l) == M2M_ENOBUFS) {
            char *nd = realloc(doc, cap * 2);
            if (!nd)
                break;
            doc = nd;
            cap *= 2;
        }
    }
    struct m2m_coap_msg m;
    m2m_coap_msg_init(&m, 0, M2M_COAP_CONTENT);
    m2m_coap_add_uint(&m, M2M_COAP_OPT_CONTENT_FORMAT, M2M_COAP_FMT_LINK);
    m.payload = (const uint8_t *)doc;
    m.payload_len = len;
    m2m_coap_respond(ep, ev->id, &m);
    free(doc);
    free(all);
}

/* Link attributes given as Uri-Query on PUT/POST: ?rt=temperature&if=sensor&obs */
static void apply_query_attrs(struct m2m_resource *r, const struct m2m_coap_msg *req)
{
    for (uint16_t i = 0; i < req->nopt; i++) {
        const struct m2m_coap_opt *o = &req->opt[i];
        if (o->num != M2M_COAP_OPT_URI_QUERY || o->len >= 256)
            continue;
        char q[256];
        memcpy(q, o->val, o->len);
        q[o->len] = 0;
        char *eq = strchr(q, '=');
        if (eq)
            *eq++ = 0;
        m2m_restree_set_attr(r, q, eq);
    }
}

static bool preconditions_fail(const struct m2m_resource *r, const struct m2m_coap_msg *req)
{
    if (m2m_coap_has_opt(req, M2M_COAP_OPT_IF_NONE_MATCH) && r)
        return true;
    bool any_match = false, matched = false;
    uint8_t etag[8];
    size_t elen = r ? etag_of(r, etag) : 0;
    for (uint16_t i = 0; i < req->nopt; i++) {
        const struct m2m_coap_opt *o = &req->opt[i];
        if (o->num != M2M_COAP_OPT_IF_MATCH)
            continue;
        any_match = true;
        /* An empty If-Match matches any current representation. */
        if (r && (o->len == 0 || (o->len == elen && !memcmp(o->val, etag, elen))))
            matched = true;
    }
    return any_match && !matched;
}

static void store(struct m2m_coap_service *svc, struct m2m_coap_ep *ep, const struct m2m_coap_event *ev,
                  const char *path, bool location)
{
    const struct m2m_coap_msg *req = &ev->msg;
    if (req->payload_len > svc->max_payload) {
        struct m2m_coap_msg m;
        m2m_coap_msg_init(&m, 0, M2M_COAP_REQUEST_ENTITY_TOO_LARGE);
        m2m_coap_add_uint(&m, M2M_COAP_OPT_SIZE1, (uint32_t)svc->max_payload);
        m2m_coap_respond(ep, ev->id, &m);
        return;
    }
    struct m2m_resource *r = m2m_restree_find(&svc->tree, path);
    if (r && r->builtin) {
        reply(ep, ev->id, M2M_COAP_METHOD_NOT_ALLOWED, NULL);
        return;
    }
    if (preconditions_fail(r, req)) {
        reply(ep, ev->id, M2M_COAP_PRECONDITION_FAILED, NULL);
        return;
    }
    int ct = (int)m2m_coap_get_uint(req, M2M_COAP_OPT_CONTENT_FORMAT, UINT32_MAX);
    if (ct > 0xffff)
        ct = -1;
    bool created;
    int rc = m2m_restree_put(&svc->tree, path, req->payload, req->payload_len, ct, &r, &created);
    if (rc) {
        reply(ep, ev->id, M2M_COAP_SERVICE_UNAVAILABLE, rc == M2M_ELIMIT ? "resource limit reached" : NULL);
        return;
    }
    apply_query_attrs(r, req);
    struct m2m_coap_msg m;
    m2m_coap_msg_init(&m, 0, created ? M2M_COAP_CREATED : M2M_COAP_CHANGED);
    uint8_t etag[8];
    m2m_coap_add_opt(&m, M2M_COAP_OPT_ETAG, etag, etag_of(r, etag));
    if (location)
        m2m_coap_add_path(&m, M2M_COAP_OPT_LOCATION_PATH, path);
    m2m_coap_respond(ep, ev->id, &m);
    if (m2m_log_on(svc->log, M2M_LOG_DEBUG))
        m2m_log(svc->log, M2M_LOG_DEBUG, "coap", &ev->peer, "%s %s (%zu bytes)",
                created ? "created" : "updated", path, req->payload_len);
    if (!created)
        notify_resource(svc, r);
}

static void handle_request(struct m2m_coap_service *svc, struct m2m_coap_ep *ep,
                           const struct m2m_coap_event *ev)
{
    const char *path = ev->path;
    const struct m2m_coap_msg *req = &ev->msg;
    if (!strcmp(path, WELL_KNOWN)) {
        discover(svc, ep, ev);
        return;
    }
    struct m2m_resource *r = m2m_restree_find(&svc->tree, path);
    switch (req->code) {
    case M2M_COAP_GET: {
        if (!r) {
            reply(ep, ev->id, M2M_COAP_NOT_FOUND, NULL);
            return;
        }
        uint32_t accept = m2m_coap_get_uint(req, M2M_COAP_OPT_ACCEPT, UINT32_MAX);
        if (accept != UINT32_MAX && (int)accept != r->ct) {
            reply(ep, ev->id, M2M_COAP_NOT_ACCEPTABLE, NULL);
            return;
        }
        struct m2m_coap_msg m;
        uint8_t etag[8];
        representation(r, &m, etag);
        if (r->obs && m2m_coap_get_uint(req, M2M_COAP_OPT_OBSERVE, UINT32_MAX) == 0)
            m2m_coap_add_uint(&m, M2M_COAP_OPT_OBSERVE, 0);
        int rc = m2m_coap_respond(ep, ev->id, &m);
        if (rc == M2M_ELIMIT)
            m2m_log(svc->log, M2M_LOG_WARN, "coap", &ev->peer, "observer limit reached, %s served once",
                    path);
        return;
    }
    case M2M_COAP_PUT: store(svc, ep, ev, path, false); return;
    case M2M_COAP_POST: {
        /* POST to a resource creates a child; to a free path, creates it. */
        char child[1100];
        if (r) {
            snprintf(child, sizeof child, "%s/%llu", strcmp(path, "/") ? path : "",
                     (unsigned long long)svc->tree.next_child++);
            path = child;
        }
        store(svc, ep, ev, path, true);
        return;
    }
    case M2M_COAP_DELETE: {
        if (!r) {
            reply(ep, ev->id, M2M_COAP_NOT_FOUND, NULL);
            return;
        }
        if (r->builtin) {
            reply(ep, ev->id, M2M_COAP_METHOD_NOT_ALLOWED, NULL);
            return;
        }
        m2m_restree_delete(&svc->tree, path);
        reply(ep, ev->id, M2M_COAP_DELETED, NULL);
        /* RFC 7641 §3.2: observers learn that the resource is gone. */
        struct m2m_coap_msg gone;
        m2m_coap_msg_init(&gone, 0, M2M_COAP_NOT_FOUND);
        notify_all(svc, path, &gone);
        return;
    }
    default: reply(ep, ev->id, M2M_COAP_METHOD_NOT_ALLOWED, NULL); return;
    }
}

static void on_react(struct m2m_udp_pump *pump, void *ctx)
{
    struct m2m_coap_service *svc = ctx;
    struct m2m_coap_ep *ep = svc->ep[pump - svc->pump];
    struct m2m_coap_event ev;
    while (m2m_coap_ep_poll_event(ep, &ev)) {
        switch (ev.type) {
        case M2M_COAP_EV_REQUEST: handle_request(svc, ep, &ev); break;
        case M2M_COAP_EV_OBSERVER_GONE:
            m2m_log(svc->log, M2M_LOG_DEBUG, "coap", &ev.peer, "observer of %s gone", ev.path);
            break;
        default: break;
        }
    }
}

static void seed_builtins(struct m2m_coap_service *svc)
{
    static const char info[] = "m2mkit " M2M_VERSION_STRING;
    struct m2m_resource *r;
    bool created;
    if (!m2m_restree_put(&svc->tree, "/m2mkit/version", (const uint8_t *)info, sizeof info - 1,
                         M2M_COAP_FMT_TEXT, &r, &created)) {
        r->builtin = true;
        r->obs = false;
        m2m_restree_set_attr(r, "rt", "m2mkit.version");
        m2m_restree_set_attr(r, "title", "m2mkit version");
    }
}

static int port_of(const struct m2m_udp_pump *pump)
{
    struct sockaddr_storage ss;
    if (m2m_udp_pump_local(pump, &ss))
        return -1;
    return ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                          : ((struct sockaddr_in *)&ss)->sin_port);
}

/* The DTLS context from the [tls] keys; 0 with *out NULL when there is
 * neither a certificate nor a PSK file (CoAPS stays off). */
static int dtls_context(const struct m2m_conf *conf, struct m2m_dtls_ctx **out, char *err, size_t errcap)
{
    char cert_buf[300], key_buf[300], ca_buf[300], psk_buf[300];
    *out = NULL;
    struct m2m_dtls_ctx_config c = {.server = true, .session_cache = conf->tls_session_tickets};
    c.cert_file = m2m_conf_credential(conf, conf->tls_cert, "server.pem", cert_buf, sizeof cert_buf);
    c.key_file = m2m_conf_credential(conf, conf->tls_key, "server.key", key_buf, sizeof key_buf);
    c.ca_file = m2m_conf_credential(conf, conf->tls_ca, "ca.pem", ca_buf, sizeof ca_buf);
    c.psk_file = m2m_conf_credential(conf, conf->tls_psk_file, "psk.txt", psk_buf, sizeof psk_buf);
    if (!strcmp(conf->tls_verify_clients, "none"))
        c.verify = M2M_DTLS_VERIFY_NONE;
    else if (!strcmp(conf->tls_verify_clients, "require"))
        c.verify = M2M_DTLS_VERIFY_REQUIRE;
    else
        c.verify = M2M_DTLS_VERIFY_OPTIONAL;
    if (!c.cert_file && !c.psk_file)
        return 0;
    char why[200];
    int rc = m2m_dtls_ctx_new(&c, out, why, sizeof why);
    if (rc)
        snprintf(err, errcap, "coaps: %s", why);
    return rc;
}

/* A DTLS datagram must hold the CoAP message plus the record overhead, and
 * a block plus its options must fit the message. */
static void fit_to_mtu(struct m2m_coap_config *cc, size_t mtu)
{
    size_t room = mtu - 40;
    if (cc->max_message > room)
        cc->max_message = room;
    while (cc->block_szx > 0 && m2m_coap_block_size(cc->block_szx) + 64 > cc->max_message)
        cc->block_szx--;
}

static int listen_one(struct m2m_coap_service *svc, uv_loop_t *loop, const struct m2m_coap_config *cc,
                      const char *bind, int port, bool dtls, char *err, size_t errcap)
{
    struct sockaddr_storage ss;
    const char *what = dtls ? "coaps" : "coap";
    if (m2m_sockaddr_parse(bind, port, &ss)) {
        snprintf(err, errcap, "%s: '%s' is not an IP address", what, bind);
        return M2M_ECONFIG;
    }
    struct m2m_coap_ep *ep = m2m_coap_ep_new(cc);
    if (!ep) {
        snprintf(err, errcap, "%s: invalid endpoint settings", what);
        return M2M_ECONFIG;
    }
    struct m2m_dtls *filter = NULL;
    if (dtls) {
        const struct m2m_conf *conf = svc->conf;
        struct m2m_dtls_config dc;
        m2m_dtls_config_default(&dc);
        dc.mtu = (size_t)conf->coap_dtls_mtu;
        dc.max_peers = (size_t)conf->coap_dtls_max_peers;
        dc.handshake_timeout_ms = (uint32_t)conf->tls_handshake_timeout;
        dc.idle_timeout_ms = (uint32_t)conf->coap_dtls_idle_timeout;
        dc.hash_key = m2m_prng_next(&svc->prng);
        dc.log = svc->log;
        uv_random(NULL, NULL, dc.cookie_secret, sizeof dc.cookie_secret, 0, NULL);
        filter = m2m_dtls_new(svc->dtls_ctx, &dc, &m2m_coap_wire_ops, ep);
        memset(dc.cookie_secret, 0, sizeof dc.cookie_secret);
        if (!filter) {
            m2m_coap_ep_free(ep);
            snprintf(err, errcap, "coaps: invalid DTLS settings");
            return M2M_ECONFIG;
        }
    }
    int i = svc->n;
    int rc = m2m_udp_pump_start(&svc->pump[i], loop, (struct sockaddr *)&ss,
                                dtls ? &m2m_dtls_wire_ops : &m2m_coap_wire_ops, dtls ? (void *)filter : ep,
                                on_react, svc, svc->log);
    if (rc) {
        snprintf(err, errcap, "%s: cannot listen on %s port %d: %s", what, bind, port, uv_strerror(rc));
        m2m_dtls_free(filter);
        m2m_coap_ep_free(ep);
        return rc;
    }
    svc->ep[i] = ep;
    svc->dtls[i] = filter;
    svc->n++;
    return 0;
}

int m2m_coap_service_start(struct m2m_coap_service *svc, uv_loop_t *loop, const struct m2m_conf *conf,
                           const struct m2m_logger *log, uint64_t seed, char *err, size_t errcap)
{
    memset(svc, 0, sizeof *svc);
    svc->conf = conf;
    svc->log = log;
    svc->first_dtls = -1;
    svc->max_payload = (size_t)conf->coap_max_payload;
    m2m_prng_seed(&svc->prng, seed);
    int rc = m2m_restree_init(&svc->tree, m2m_prng_next(&svc->prng), (size_t)conf->coap_max_resources + 1);
    if (rc) {
        snprintf(err, errcap, "out of memory");
        return rc;
    }
    seed_builtins(svc);
    struct m2m_coap_config cc;
    m2m_conf_coap(conf, &cc);
    if (m2m_coap_cc_parse(conf->coap_congestion_control) < 0) {
        snprintf(err, errcap, "coap.congestion_control must be default or cocoa, not '%s'",
                 conf->coap_congestion_control);
        rc = M2M_ECONFIG;
        goto fail;
    }
    cc.rng = m2m_prng_rng(&svc->prng);
    cc.log = log;
    const char *binds[M2M_COAP_LISTENERS] = {conf->coap_bind, conf->coap_bind6};
    int port = (int)conf->coap_port;
    for (int i = 0; i < M2M_COAP_LISTENERS; i++) {
        if (!binds[i][0])
            continue;
        rc = listen_one(svc, loop, &cc, binds[i], port, false, err, errcap);
        if (rc)
            goto fail;
        /* With port 0, IPv6 follows the port IPv4 was given. */
        if (port == 0)
            port = m2m_coap_service_port(svc);
    }
    if (!conf->coap_dtls_enabled)
        return 0;
    rc = dtls_context(conf, &svc->dtls_ctx, err, errcap);
    if (rc)
        goto fail;
    if (!svc->dtls_ctx) {
        m2m_log(log, M2M_LOG_INFO, "coap", NULL,
                "coaps off: no certificate (tls.cert or %s/certs/server.pem) and no tls.psk_file",
                conf->data_dir);
        return 0;
    }
    fit_to_mtu(&cc, (size_t)conf->coap_dtls_mtu);
    port = (int)conf->coap_dtls_port;
    for (int i = 0; i < M2M_COAP_LISTENERS; i++) {
        if (!binds[i][0])
            continue;
        rc = listen_one(svc, loop, &cc, binds[i], port, true, err, errcap);
        if (rc)
            goto fail;
        if (svc->first_dtls < 0)
            svc->first_dtls = svc->n - 1;
        if (port == 0)
            port = m2m_coap_service_dtls_port(svc);
    }
    return 0;
fail:
    m2m_coap_service_stop(svc, NULL);
    return rc;
}

int m2m_coap_service_port(const struct m2m_coap_service *svc)
{
    if (!svc->n || svc->first_dtls == 0)
        return -1;
    return port_of(&svc->pump[0]);
}

int m2m_coap_service_dtls_port(const struct m2m_coap_service *svc)
{
    if (svc->first_dtls < 0)
        return -1;
    return port_of(&svc->pump[svc->first_dtls]);
}

static void pump_closed(struct m2m_udp_pump *pump)
{
    struct m2m_coap_service *svc = pump->ctx;
    if (--svc->closing)
        return;
    for (int i = 0; i < svc->n; i++) {
        m2m_dtls_free(svc->dtls[i]);
        m2m_coap_ep_free(svc->ep[i]);
    }
    svc->n = 0;
    m2m_dtls_ctx_free(svc->dtls_ctx);
    svc->dtls_ctx = NULL;
    m2m_restree_cleanup(&svc->tree);
    if (svc->stopped_cb)
        svc->stopped_cb(svc);
}

void m2m_coap_service_stop(struct m2m_coap_service *svc, void (*cb)(struct m2m_coap_service *svc))
{
    svc->stopped_cb = cb;
    if (!svc->n) {
        m2m_dtls_ctx_free(svc->dtls_ctx);
        svc->dtls_ctx = NULL;
        m2m_restree_cleanup(&svc->tree);
        if (cb)
            cb(svc);
        return;
    }
    svc->closing = svc->n;
    for (int i = 0; i < svc->n; i++) {
        if (svc->dtls[i]) {
            /* Sessions end with close_notify, so clients need not wait
             * for a timeout to know. */
            m2m_dtls_close_all(svc->dtls[i]);
            m2m_udp_pump_flush(&svc->pump[i]);
        }
        m2m_udp_pump_close(&svc->pump[i], pump_closed);
    }
}
