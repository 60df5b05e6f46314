/* The MQTT part of `m2mkit serve`: TCP listeners on IPv4 and IPv6, one
 * session core per connection, and the broker that routes between them. */
#ifndef M2M_SERVER_MQTT_SERVICE_H
#define M2M_SERVER_MQTT_SERVICE_H

#include <uv.h>

#include "net/conn_limit.h"
#include "net/tcp.h"
#include "server/conf.h"

/* What a listener speaks under MQTT. */
enum m2m_mqtt_listener_kind { LISTEN_TCP, LISTEN_WS, LISTEN_TLS, LISTEN_WSS };
#define M2M_MQTT_LISTENERS 8 /* each kind on IPv4 and IPv6 */

struct m2m_broker;
struct m2m_mqtt_store;
struct m2m_mqtt_auth;
struct m2m_tls_ctx;
struct mqtt_io;

enum m2m_mqtt_anonymous { ANON_LOOPBACK, ANON_ALWAYS, ANON_NEVER };

struct m2m_mqtt_service {
    struct m2m_tcp_listener lis[M2M_MQTT_LISTENERS];
    bool loopback[M2M_MQTT_LISTENERS]; /* bound to a loopback address: anonymous clients by default */
    enum m2m_mqtt_listener_kind kind[M2M_MQTT_LISTENERS];
    int n;
    int closing;
    uv_loop_t *loop;
    uv_async_t kick;      /* processes clients the broker woke while serving another */
    uv_prepare_t prepare; /* group commit before the loop waits */
    uv_timer_t tick;      /* session expiry, delayed wills, $SYS */
    int handles;
    enum m2m_mqtt_anonymous anonymous;
    struct m2m_broker *broker;
    struct m2m_mqtt_store *store;
    struct m2m_mqtt_auth *auth;
    struct m2m_tls_ctx *tls;     /* MQTTS, ALPN "mqtt"; NULL: no certificate and no PSK */
    struct m2m_tls_ctx *tls_wss; /* secure WebSocket (no ALPN: browsers offer http/1.1) */
    const struct m2m_conf *conf;
    const struct m2m_logger *log;
    struct m2m_conn_limit limit; /* mqtt.max_connections[_per_address] */
    struct mqtt_io *clients;     /* every open connection */
    struct mqtt_io *woken;
    void (*stopped_cb)(struct m2m_mqtt_service *svc);
};

int m2m_mqtt_service_start(struct m2m_mqtt_service *svc, uv_loop_t *loop, const struct m2m_conf *conf,
                           const struct m2m_logger *log, char *err, size_t errcap);
/* The port of the first listener of that kind, -1 when there is none. */
int m2m_mqtt_service_port(const struct m2m_mqtt_service *svc, enum m2m_mqtt_listener_kind kind);
/* Closes the listeners and every connection (their wills are published as
 * for any lost connection); `cb` runs when all is closed. */
void m2m_mqtt_service_stop(struct m2m_mqtt_service *svc, void (*cb)(struct m2m_mqtt_service *svc));

#endif
