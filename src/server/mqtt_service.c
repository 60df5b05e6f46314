#include "server/mqtt_service.h"

#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "m2m/mqtt_session.h"
#include "net/addr.h"
#include "server/mqtt_broker.h"

struct mqtt_io {
    struct m2m_mqtt_service *svc;
    struct m2m_tcp_conn *tcp;
    struct m2m_mqtt_conn *conn;
    struct m2m_broker_client *bc;
    struct mqtt_io *prev, *next; /* svc->clients */
    struct mqtt_io *woken_next;
    bool woken;
};

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

static bool on_react(struct m2m_tcp_conn *tcp, void *ctx)
{
    struct mqtt_io *io = ctx;
    (void)tcp;
    return m2m_broker_process(io->svc->broker, io->bc, now_of(io->svc));
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
        if (m2m_broker_process(svc->broker, io->bc, now_of(svc)))
            m2m_tcp_conn_close(io->tcp, io->tcp->closed_cb);
        else
            m2m_tcp_conn_flush(io->tcp);
    }
}

static void maybe_stopped(struct m2m_mqtt_service *svc);

static void on_conn_closed(struct m2m_tcp_conn *tcp)
{
    struct mqtt_io *io = tcp->ctx;
    struct m2m_mqtt_service *svc = io->svc;
    unwake(io);
    m2m_broker_detach(svc->broker, io->bc, now_of(svc));
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
    struct m2m_mqtt_conn_config cc;
    memset(&cc, 0, sizeof cc);
    cc.start = now_of(svc);
    cc.max_packet_size = (uint32_t)c->mqtt_max_packet_size;
    cc.receive_maximum = (uint16_t)c->mqtt_receive_maximum;
    cc.topic_alias_maximum = (uint16_t)c->mqtt_topic_alias_maximum;
    cc.max_inflight = (uint16_t)c->mqtt_max_inflight;
    cc.connect_timeout_ms = (uint32_t)c->mqtt_connect_timeout;
    struct mqtt_io *io = calloc(1, sizeof *io);
    struct m2m_mqtt_conn *conn = io && !svc->closing ? m2m_mqtt_conn_new(&cc) : NULL;
    struct m2m_broker_client *bc = conn ? m2m_broker_attach(svc->broker, conn, on_wake, io) : NULL;
    if (!bc) {
        m2m_mqtt_conn_free(conn);
        free(io);
        m2m_tcp_conn_close(tcp, NULL);
        return;
    }
    io->svc = svc;
    io->tcp = tcp;
    io->conn = conn;
    io->bc = bc;
    io->next = svc->clients;
    if (svc->clients)
        svc->clients->prev = io;
    svc->clients = io;
    tcp->closed_cb = on_conn_closed;
    m2m_log(svc->log, M2M_LOG_DEBUG, "mqtt", &tcp->peer, "connection accepted");
    m2m_tcp_conn_start(tcp, &mqtt_stream_ops, conn, on_react, io, (size_t)c->mqtt_max_write_queue);
}

int m2m_mqtt_service_start(struct m2m_mqtt_service *svc, uv_loop_t *loop, const struct m2m_conf *conf,
                           const struct m2m_logger *log, char *err, size_t errcap)
{
    memset(svc, 0, sizeof *svc);
    svc->loop = loop;
    svc->conf = conf;
    svc->log = log;
    struct m2m_broker_config bcfg;
    memset(&bcfg, 0, sizeof bcfg);
    bcfg.max_queued_per_session = (size_t)conf->mqtt_max_queued;
    bcfg.max_retained = (size_t)conf->mqtt_max_retained;
    bcfg.allow_anonymous = conf->mqtt_allow_anonymous;
    svc->broker = m2m_broker_new(&bcfg);
    if (!svc->broker) {
        snprintf(err, errcap, "mqtt: out of memory");
        return M2M_ENOMEM;
    }
    uv_async_init(loop, &svc->kick, on_kick);
    svc->kick.data = svc;
    const char *binds[M2M_MQTT_LISTENERS] = {conf->mqtt_bind, conf->mqtt_bind6};
    int port = (int)conf->mqtt_port;
    for (int i = 0; i < M2M_MQTT_LISTENERS; i++) {
        if (!binds[i][0])
            continue;
        struct sockaddr_storage ss;
        int rc = m2m_sockaddr_parse(binds[i], port, &ss) ? M2M_ECONFIG : 0;
        if (!rc)
            rc = m2m_tcp_listen(&svc->lis[svc->n], loop, (struct sockaddr *)&ss, on_accept, svc, log);
        if (rc) {
            snprintf(err, errcap, "mqtt: cannot listen on %s port %d: %s", binds[i], port,
                     rc == M2M_ECONFIG ? "not an IP address" : uv_strerror(rc));
            m2m_mqtt_service_stop(svc, NULL);
            return rc;
        }
        svc->n++;
        if (port == 0)
            port = m2m_mqtt_service_port(svc);
    }
    return 0;
}

int m2m_mqtt_service_port(const struct m2m_mqtt_service *svc)
{
    return svc->n ? m2m_tcp_listener_port(&svc->lis[0]) : -1;
}

static void kick_closed(uv_handle_t *h)
{
    struct m2m_mqtt_service *svc = h->data;
    m2m_broker_free(svc->broker);
    svc->broker = NULL;
    if (svc->stopped_cb)
        svc->stopped_cb(svc);
}

static void maybe_stopped(struct m2m_mqtt_service *svc)
{
    if (svc->closing != 1 || svc->clients || svc->n)
        return;
    svc->closing = 2;
    uv_close((uv_handle_t *)&svc->kick, kick_closed);
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
