#include "server/mqtt_service.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"
#include "m2m/mqtt_session.h"
#include "net/addr.h"
#include "net/conn_limit.h"
#include "net/tls.h"
#include "net/ws.h"
#include "server/mqtt_auth.h"
#include "server/mqtt_broker.h"
#include "store/mqtt_store.h"

struct mqtt_io {
    struct m2m_mqtt_service *svc;
    struct m2m_tcp_conn *tcp;
    struct m2m_mqtt_conn *conn;
    struct m2m_ws *ws;   /* MQTT over WebSocket, else NULL */
    struct m2m_tls *tls; /* MQTT over TLS (or secure WebSocket), else NULL */
    bool identity_told;  /* the TLS peer identity went to the broker */
    struct m2m_broker_client *bc;
    struct mqtt_io *prev, *next; /* svc->clients */
    struct mqtt_io *woken_next;
    bool woken;
    uint64_t rx_counted, tx_counted;
};

/* Adds the bytes moved since last time to the broker's statistics. */
static void count_bytes(struct mqtt_io *io)
{
    struct m2m_broker_stats *st = m2m_broker_stats(io->svc->broker);
    st->bytes_received += io->tcp->meter.rx_bytes - io->rx_counted;
    st->bytes_sent += io->tcp->meter.tx_bytes - io->tx_counted;
    io->rx_counted = io->tcp->meter.rx_bytes;
    io->tx_counted = io->tcp->meter.tx_bytes;
}

static int feed(void *core, m2m_time now, const uint8_t *p, size_t n)
{
    return m2m_mqtt_conn_feed(core, now, p, n);
}
static bool poll_output(void *core, const uint8_t **p, size_t *n)
{
    return m2m_mqtt_conn_poll_output(core, p, n);
}
static m2m_time next_timeout(const void *core)
{
    return m2m_mqtt_conn_next_timeout(core);
}
static void on_timeout(void *core, m2m_time now)
{
    m2m_mqtt_conn_on_timeout(core, now);
}

static const struct m2m_stream_ops mqtt_stream_ops = {
    .name = "mqtt",
    .feed = feed,
    .poll_output = poll_output,
    .next_timeout = next_timeout,
    .on_timeout = on_timeout,
};

static m2m_time now_of(struct m2m_mqtt_service *svc)
{
    return (m2m_time)uv_now(svc->loop);
}

/* The broker is done with this client: the filters end their own
 * protocol after the MQTT output (a WebSocket close frame, close_notify). */
static void close_filters(struct mqtt_io *io)
{
    if (io->ws)
        m2m_ws_close(io->ws, 1000);
    if (io->tls)
        m2m_tls_close(io->tls);
}

static bool filters_closed(const struct mqtt_io *io)
{
    return (io->ws && m2m_ws_closed(io->ws)) || (io->tls && m2m_tls_closed(io->tls));
}

static bool on_react(struct m2m_tcp_conn *tcp, void *ctx)
{
    struct mqtt_io *io = ctx;
    (void)tcp;
    count_bytes(io);
    if (io->tls && !io->identity_told && m2m_tls_established(io->tls)) {
        io->identity_told = true; /* before the CONNECT it carried is handled */
        m2m_broker_client_set_identity(io->bc, m2m_tls_peer_identity(io->tls));
    }
    bool close = m2m_broker_process(io->svc->broker, io->bc, now_of(io->svc));
    if (close)
        close_filters(io);
    return close || filters_closed(io);
}

/* The broker produced output for this client while serving another one:
 * write it now, and let the client's own events be handled soon after. */
static void on_wake(void *ctx)
{
    struct mqtt_io *io = ctx;
    m2m_tcp_conn_flush(io->tcp);
    if (!io->woken) {
        io->woken = true;
        io->woken_next = io->svc->woken;
        io->svc->woken = io;
        uv_async_send(&io->svc->kick);
    }
}

static void unwake(struct mqtt_io *io)
{
    if (!io->woken)
        return;
    struct mqtt_io **pp = &io->svc->woken;
    while (*pp && *pp != io)
        pp = &(*pp)->woken_next;
    if (*pp)
        *pp = io->woken_next;
    io->woken = false;
}

static void on_kick(uv_async_t *a)
{
    struct m2m_mqtt_service *svc = a->data;
    while (svc->woken) {
        struct mqtt_io *io = svc->woken;
        svc->woken = io->woken_next;
        io->woken = false;
        if (m2m_broker_process(svc->broker, io->bc, now_of(svc))) {
            close_filters(io);
            m2m_tcp_conn_close(io->tcp, io->tcp->closed_cb);
        } else
            m2m_tcp_conn_flush(io->tcp);
    }
}

static void maybe_stopped(struct m2m_mqtt_service *svc);

static void on_conn_closed(struct m2m_tcp_conn *tcp)
{
    struct mqtt_io *io = tcp->ctx;
    struct m2m_mqtt_service *svc = io->svc;
    unwake(io);
    count_bytes(io);
    m2m_conn_limit_release(&svc->limit, &tcp->peer);
    m2m_broker_detach(svc->broker, io->bc, now_of(svc));
    if (io->tls) {
        /* What security cost this connection (m2mkit compare reads the same meter). */
        struct m2m_tls_meter m;
        m2m_tls_meter(io->tls, &m);
        m2m_log(svc->log, M2M_LOG_DEBUG, "mqtt", &tcp->peer,
                "tls %s %s%s: handshake %llu B in / %llu B out in %u/%u flights, wire %llu/%llu B, "
                "application %llu/%llu B%s%s",
                m.version[0] ? m.version : "-", m.cipher[0] ? m.cipher : "-", m.resumed ? " resumed" : "",
                (unsigned long long)m.hs_in, (unsigned long long)m.hs_out, m.hs_flights_in, m.hs_flights_out,
                (unsigned long long)m.wire_in, (unsigned long long)m.wire_out, (unsigned long long)m.app_in,
                (unsigned long long)m.app_out, m2m_tls_reason(io->tls) ? ", " : "",
                m2m_tls_reason(io->tls) ? m2m_tls_reason(io->tls) : "");
    }
    m2m_tls_free(io->tls);
    m2m_ws_free(io->ws);
    m2m_mqtt_conn_free(io->conn);
    if (io->prev)
        io->prev->next = io->next;
    else
        svc->clients = io->next;
    if (io->next)
        io->next->prev = io->prev;
    free(io);
    maybe_stopped(svc);
}

static void on_accept(struct m2m_tcp_listener *l, struct m2m_tcp_conn *tcp)
{
    struct m2m_mqtt_service *svc = l->ctx;
    const struct m2m_conf *c = svc->conf;
    const char *why;
    if (svc->closing || !m2m_conn_limit_admit(&svc->limit, &tcp->peer, &why)) {
        m2m_log(svc->log, M2M_LOG_INFO, "mqtt", &tcp->peer, "connection refused: %s",
                svc->closing ? "shutting down" : why);
        m2m_tcp_conn_close(tcp, NULL);
        return;
    }
    struct m2m_mqtt_conn_config cc;
    memset(&cc, 0, sizeof cc);
    cc.start = now_of(svc);
    cc.max_packet_size = (uint32_t)c->mqtt_max_packet_size;
    cc.receive_maximum = (uint16_t)c->mqtt_receive_maximum;
    cc.topic_alias_maximum = (uint16_t)c->mqtt_topic_alias_maximum;
    cc.max_inflight = (uint16_t)c->mqtt_max_inflight;
    cc.connect_timeout_ms = (uint32_t)c->mqtt_connect_timeout;
    cc.out_topic_aliases = (uint16_t)c->mqtt_out_topic_aliases;
    cc.max_keep_alive = (uint16_t)c->mqtt_max_keep_alive;
    size_t li = (size_t)(l - svc->lis);
    enum m2m_mqtt_listener_kind kind = svc->kind[li];
    bool want_ws = kind == LISTEN_WS || kind == LISTEN_WSS;
    bool want_tls = kind == LISTEN_TLS || kind == LISTEN_WSS;
    struct mqtt_io *io = calloc(1, sizeof *io);
    struct m2m_mqtt_conn *conn = io && !svc->closing ? m2m_mqtt_conn_new(&cc) : NULL;
    /* The filters stack under the session core: TCP -> [TLS] -> [WebSocket] -> MQTT. */
    const struct m2m_stream_ops *ops = &mqtt_stream_ops;
    void *core = conn;
    struct m2m_ws *ws = NULL;
    struct m2m_tls *tls = NULL;
    if (core && want_ws) {
        struct m2m_ws_config wc = {
            .max_frame = (size_t)c->mqtt_max_packet_size + 16,
            .handshake_timeout_ms = (uint32_t)c->mqtt_connect_timeout,
            .subprotocol = "mqtt",
            .start = now_of(svc),
        };
        ws = m2m_ws_new(ops, core, &wc);
        ops = &m2m_ws_stream_ops;
        core = ws;
    }
    if (core && want_tls) {
        tls = m2m_tls_new(kind == LISTEN_WSS ? svc->tls_wss : svc->tls, ops, core, now_of(svc));
        ops = &m2m_tls_stream_ops;
        core = tls;
    }
    struct m2m_broker_client *bc = core ? m2m_broker_attach(svc->broker, conn, on_wake, io) : NULL;
    if (!bc) {
        m2m_conn_limit_release(&svc->limit, &tcp->peer);
        m2m_tls_free(tls);
        m2m_ws_free(ws);
        m2m_mqtt_conn_free(conn);
        free(io);
        m2m_tcp_conn_close(tcp, NULL);
        return;
    }
    m2m_broker_client_allow_anonymous(bc, svc->anonymous == ANON_ALWAYS ||
                                              (svc->anonymous == ANON_LOOPBACK && svc->loopback[li]));
    io->svc = svc;
    io->tcp = tcp;
    io->conn = conn;
    io->ws = ws;
    io->tls = tls;
    io->bc = bc;
    io->next = svc->clients;
    if (svc->clients)
        svc->clients->prev = io;
    svc->clients = io;
    tcp->closed_cb = on_conn_closed;
    m2m_log(svc->log, M2M_LOG_DEBUG, "mqtt", &tcp->peer, "connection accepted");
    m2m_tcp_conn_start(tcp, ops, core, on_react, io, (size_t)c->mqtt_max_write_queue);
}

/* Group commit: once per loop iteration, before the loop waits for I/O,
 * everything the broker wrote is committed and the acknowledgements that
 * waited for it go out. */
static void on_prepare(uv_prepare_t *h)
{
    struct m2m_mqtt_service *svc = h->data;
    m2m_broker_sync(svc->broker);
}

static void on_tick(uv_timer_t *t)
{
    struct m2m_mqtt_service *svc = t->data;
    m2m_time now = now_of(svc);
    if (now >= m2m_broker_next_timeout(svc->broker))
        m2m_broker_on_timeout(svc->broker, now);
}

static int open_store(struct m2m_mqtt_service *svc, char *err, size_t errcap)
{
    const struct m2m_conf *conf = svc->conf;
    enum m2m_store_sync sync;
    if (!strcmp(conf->mqtt_store_sync, "normal")) {
        sync = M2M_STORE_SYNC_NORMAL;
    } else if (!strcmp(conf->mqtt_store_sync, "full")) {
        sync = M2M_STORE_SYNC_FULL;
    } else {
        snprintf(err, errcap, "mqtt.store_sync must be normal or full, not '%s'", conf->mqtt_store_sync);
        return M2M_ECONFIG;
    }
    char path[512];
    snprintf(path, sizeof path, "%s/mqtt.db", conf->data_dir);
    char why[256] = "";
    int rc = m2m_sqlite_mqtt_store_open(path, sync, &svc->store, why, sizeof why);
    if (rc)
        snprintf(err, errcap, "cannot open %s: %s", path, why[0] ? why : m2m_strerror(rc));
    return rc;
}

/* The TLS contexts of the MQTTS and secure WebSocket listeners, or none
 * (not an error) when there is neither a certificate nor a PSK file. */
static int open_tls(struct m2m_mqtt_service *svc, char *err, size_t errcap)
{
    const struct m2m_conf *conf = svc->conf;
    if (!conf->mqtt_tls_enabled)
        return 0;
    char cert_buf[300], key_buf[300], ca_buf[300], psk_buf[300];
    const char *cert = m2m_conf_credential(conf, conf->tls_cert, "server.pem", cert_buf, sizeof cert_buf);
    const char *key = m2m_conf_credential(conf, conf->tls_key, "server.key", key_buf, sizeof key_buf);
    const char *ca = m2m_conf_credential(conf, conf->tls_ca, "ca.pem", ca_buf, sizeof ca_buf);
    const char *psk = m2m_conf_credential(conf, conf->tls_psk_file, "psk.txt", psk_buf, sizeof psk_buf);
    if ((!cert || !key) && !psk) {
        m2m_log(svc->log, M2M_LOG_INFO, "mqtt", NULL,
                "no certificate and no tls.psk_file: MQTTS and secure WebSocket are off "
                "(`m2mkit certs init` makes development ones)");
        return 0;
    }
    enum m2m_tls_verify verify;
    const char *v = conf->tls_verify_clients;
    if (!strcmp(v, "none"))
        verify = M2M_TLS_VERIFY_NONE;
    else if (!strcmp(v, "optional"))
        verify = M2M_TLS_VERIFY_OPTIONAL;
    else if (!strcmp(v, "require"))
        verify = M2M_TLS_VERIFY_REQUIRE;
    else {
        snprintf(err, errcap, "tls.verify_clients must be none, optional or require, not '%s'", v);
        return M2M_ECONFIG;
    }
    int min;
    if (!strcmp(conf->tls_min_version, "1.2"))
        min = 0x0303;
    else if (!strcmp(conf->tls_min_version, "1.3"))
        min = 0x0304;
    else {
        snprintf(err, errcap, "tls.min_version must be 1.2 or 1.3, not '%s'", conf->tls_min_version);
        return M2M_ECONFIG;
    }
    if (verify == M2M_TLS_VERIFY_REQUIRE && !ca) {
        snprintf(err, errcap, "tls.verify_clients = require needs tls.ca (or data_dir/certs/ca.pem)");
        return M2M_ECONFIG;
    }
    if (!ca)
        verify = M2M_TLS_VERIFY_NONE; /* optional, with no CA to check against: not asked, as DTLS does */
    struct m2m_tls_ctx_config tc = {
        .server = true,
        .cert_file = cert && key ? cert : NULL,
        .key_file = cert && key ? key : NULL,
        .ca_file = ca,
        .verify = verify,
        .psk_file = psk,
        .alpn = "mqtt",
        .min_version = min,
        .session_tickets = conf->tls_session_tickets,
        .handshake_timeout_ms = (uint32_t)conf->tls_handshake_timeout,
    };
    char why[256] = "";
    int rc = m2m_tls_ctx_new(&tc, &svc->tls, why, sizeof why);
    if (!rc) {
        tc.alpn = NULL;
        rc = m2m_tls_ctx_new(&tc, &svc->tls_wss, why, sizeof why);
    }
    if (rc)
        snprintf(err, errcap, "mqtt TLS: %s", why[0] ? why : m2m_strerror(rc));
    return rc;
}

static void free_tls(struct m2m_mqtt_service *svc)
{
    m2m_tls_ctx_free(svc->tls);
    m2m_tls_ctx_free(svc->tls_wss);
    svc->tls = svc->tls_wss = NULL;
}

static int parse_anonymous(struct m2m_mqtt_service *svc, char *err, size_t errcap)
{
    const char *v = svc->conf->mqtt_allow_anonymous;
    if (!strcmp(v, "loopback"))
        svc->anonymous = ANON_LOOPBACK;
    else if (!strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "on"))
        svc->anonymous = ANON_ALWAYS;
    else if (!strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "off"))
        svc->anonymous = ANON_NEVER;
    else {
        snprintf(err, errcap, "mqtt.allow_anonymous must be loopback, true or false, not '%s'", v);
        return M2M_ECONFIG;
    }
    return 0;
}

static int64_t wall_offset(uv_loop_t *loop)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 - (int64_t)uv_now(loop);
}

static bool is_loopback(const char *addr)
{
    return !strcmp(addr, "::1") || !strncmp(addr, "127.", 4) || !strcmp(addr, "localhost");
}

int m2m_mqtt_service_start(struct m2m_mqtt_service *svc, uv_loop_t *loop, const struct m2m_conf *conf,
                           const struct m2m_logger *log, char *err, size_t errcap)
{
    memset(svc, 0, sizeof *svc);
    svc->loop = loop;
    svc->conf = conf;
    svc->log = log;
    int rc = parse_anonymous(svc, err, errcap);
    const char *pw = conf->mqtt_password_file[0] ? conf->mqtt_password_file : NULL;
    const char *acl = conf->mqtt_acl_file[0] ? conf->mqtt_acl_file : NULL;
    if (!rc && (pw || acl))
        rc = m2m_mqtt_auth_load(&svc->auth, pw, acl, err, errcap);
    if (!rc)
        rc = open_tls(svc, err, errcap);
    if (!rc && conf->mqtt_persistence)
        rc = open_store(svc, err, errcap);
    if (rc) {
        free_tls(svc);
        m2m_mqtt_auth_free(svc->auth);
        svc->auth = NULL;
        return rc;
    }
    struct m2m_broker_config bcfg;
    memset(&bcfg, 0, sizeof bcfg);
    bcfg.max_queued_per_session = (size_t)conf->mqtt_max_queued;
    bcfg.max_queued_bytes = (size_t)conf->mqtt_max_queued_bytes;
    bcfg.max_retained = (size_t)conf->mqtt_max_retained;
    bcfg.max_subscriptions = (size_t)conf->mqtt_max_subscriptions;
    bcfg.max_keep_alive = (uint16_t)conf->mqtt_max_keep_alive;
    bcfg.max_session_expiry = (uint32_t)(conf->mqtt_max_session_expiry / 1000);
    bcfg.sys_interval_s = (uint32_t)((conf->mqtt_sys_interval + 999) / 1000);
    bcfg.version = M2M_VERSION_STRING;
    uv_random(NULL, NULL, &bcfg.hash_key, sizeof bcfg.hash_key, 0, NULL);
    bcfg.wall_offset_ms = wall_offset(loop);
    bcfg.auth = svc->auth;
    bcfg.use_identity_as_username = conf->mqtt_use_identity_as_username;
    bcfg.store = svc->store;
    svc->broker = m2m_conn_limit_init(&svc->limit, (size_t)conf->mqtt_max_connections,
                                      (size_t)conf->mqtt_max_connections_per_address, bcfg.hash_key) == 0
                      ? m2m_broker_new(&bcfg)
                      : NULL;
    if (!svc->broker) {
        snprintf(err, errcap, "mqtt: out of memory");
        rc = M2M_ENOMEM;
    } else {
        rc = m2m_broker_load(svc->broker, now_of(svc), err, errcap);
    }
    if (rc) {
        m2m_broker_free(svc->broker);
        svc->broker = NULL;
        m2m_conn_limit_cleanup(&svc->limit);
        if (svc->store)
            svc->store->ops->close(svc->store);
        svc->store = NULL;
        free_tls(svc);
        m2m_mqtt_auth_free(svc->auth);
        svc->auth = NULL;
        return rc;
    }
    uv_async_init(loop, &svc->kick, on_kick);
    svc->kick.data = svc;
    uv_prepare_init(loop, &svc->prepare);
    svc->prepare.data = svc;
    uv_prepare_start(&svc->prepare, on_prepare);
    uv_timer_init(loop, &svc->tick);
    svc->tick.data = svc;
    uv_timer_start(&svc->tick, on_tick, 0, 1000);
    svc->handles = 3;
    /* Each kind of listener on IPv4 and IPv6. */
    const char *binds[2] = {conf->mqtt_bind, conf->mqtt_bind6};
    static const char *const names[] = {"tcp", "ws", "tls", "wss"};
    for (int kind = LISTEN_TCP; kind <= LISTEN_WSS; kind++) {
        if ((kind == LISTEN_WS && !conf->mqtt_ws_enabled) || (kind == LISTEN_TLS && !svc->tls) ||
            (kind == LISTEN_WSS && (!svc->tls_wss || !conf->mqtt_ws_enabled)))
            continue;
        int port = (int)(kind == LISTEN_TCP   ? conf->mqtt_port
                         : kind == LISTEN_WS  ? conf->mqtt_ws_port
                         : kind == LISTEN_TLS ? conf->mqtt_tls_port
                                              : conf->mqtt_wss_port);
        for (int i = 0; i < 2; i++) {
            if (!binds[i][0])
                continue;
            struct sockaddr_storage ss;
            rc = m2m_sockaddr_parse(binds[i], port, &ss) ? M2M_ECONFIG : 0;
            if (!rc)
                rc = m2m_tcp_listen(&svc->lis[svc->n], loop, (struct sockaddr *)&ss, on_accept, svc, log);
            if (rc) {
                snprintf(err, errcap, "mqtt: cannot listen on %s %s port %d: %s", names[kind], binds[i], port,
                         rc == M2M_ECONFIG ? "not an IP address" : uv_strerror(rc));
                m2m_mqtt_service_stop(svc, NULL);
                return rc;
            }
            svc->loopback[svc->n] = is_loopback(binds[i]);
            svc->kind[svc->n] = (enum m2m_mqtt_listener_kind)kind;
            if (port == 0)
                port = m2m_tcp_listener_port(&svc->lis[svc->n]);
            svc->n++;
        }
    }
    return 0;
}

int m2m_mqtt_service_port(const struct m2m_mqtt_service *svc, enum m2m_mqtt_listener_kind kind)
{
    for (int i = 0; i < svc->n; i++)
        if (svc->kind[i] == kind)
            return m2m_tcp_listener_port(&svc->lis[i]);
    return -1;
}

static void handle_closed(uv_handle_t *h)
{
    struct m2m_mqtt_service *svc = h->data;
    if (--svc->handles > 0)
        return;
    m2m_broker_sync(svc->broker);
    m2m_broker_free(svc->broker);
    if (svc->store)
        svc->store->ops->close(svc->store);
    svc->store = NULL;
    m2m_mqtt_auth_free(svc->auth);
    svc->auth = NULL;
    free_tls(svc);
    m2m_conn_limit_cleanup(&svc->limit);
    svc->broker = NULL;
    if (svc->stopped_cb)
        svc->stopped_cb(svc);
}

static void maybe_stopped(struct m2m_mqtt_service *svc)
{
    if (svc->closing != 1 || svc->clients || svc->n)
        return;
    svc->closing = 2;
    uv_close((uv_handle_t *)&svc->kick, handle_closed);
    uv_close((uv_handle_t *)&svc->prepare, handle_closed);
    uv_close((uv_handle_t *)&svc->tick, handle_closed);
}

static void listener_closed(struct m2m_tcp_listener *l)
{
    struct m2m_mqtt_service *svc = l->ctx;
    svc->n--;
    maybe_stopped(svc);
}

void m2m_mqtt_service_stop(struct m2m_mqtt_service *svc, void (*cb)(struct m2m_mqtt_service *svc))
{
    if (svc->closing)
        return;
    svc->closing = 1;
    svc->stopped_cb = cb;
    for (int i = 0; i < svc->n; i++)
        m2m_tcp_listener_close(&svc->lis[i], listener_closed);
    for (struct mqtt_io *io = svc->clients; io; io = io->next)
        m2m_tcp_conn_close(io->tcp, on_conn_closed);
    maybe_stopped(svc);
}
