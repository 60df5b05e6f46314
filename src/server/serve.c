#include "server/serve.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <uv.h>

#include "base/hmap.h"
#include "base/log.h"
#include "server/coap_service.h"
#include "server/mqtt_service.h"

struct serve {
    uv_loop_t loop;
    uv_signal_t sigint, sigterm;
    struct m2m_coap_service coap;
    struct m2m_mqtt_service mqtt;
    bool coap_running, mqtt_running;
    int running; /* services still open */
    const struct m2m_logger *log;
};

static void close_cb(uv_handle_t *h)
{
    (void)h;
}

/* The last service gone: drop the signal handles so the loop can end. */
static void service_stopped(struct serve *s)
{
    if (--s->running > 0)
        return;
    uv_close((uv_handle_t *)&s->sigint, close_cb);
    uv_close((uv_handle_t *)&s->sigterm, close_cb);
}

static void coap_stopped(struct m2m_coap_service *svc)
{
    service_stopped(M2M_CONTAINER_OF(svc, struct serve, coap));
}

static void mqtt_stopped(struct m2m_mqtt_service *svc)
{
    service_stopped(M2M_CONTAINER_OF(svc, struct serve, mqtt));
}

static void stop_all(struct serve *s)
{
    uv_signal_stop(&s->sigint);
    uv_signal_stop(&s->sigterm);
    /* One count for this function, so that services stopping at once do not
     * close the signals twice. */
    s->running++;
    if (s->coap_running) {
        s->coap_running = false;
        m2m_coap_service_stop(&s->coap, coap_stopped);
    }
    if (s->mqtt_running) {
        s->mqtt_running = false;
        m2m_mqtt_service_stop(&s->mqtt, mqtt_stopped);
    }
    service_stopped(s);
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct serve *s = h->data;
    m2m_log(s->log, M2M_LOG_INFO, "serve", NULL, "%s received, shutting down",
            signum == SIGINT ? "SIGINT" : "SIGTERM");
    stop_all(s);
}

/* mkdir -p */
static int make_dirs(const char *path)
{
    char buf[256];
    size_t n = strlen(path);
    if (n >= sizeof buf)
        return -1;
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == 0) {
            char c = buf[i];
            buf[i] = 0;
            if (mkdir(buf, 0755) && errno != EEXIST)
                return -1;
            buf[i] = c;
        }
    }
    return 0;
}

static void listening(const struct m2m_logger *log, const char *proto, const char *kind, const char *v4,
                      const char *v6, int port)
{
    m2m_log(log, M2M_LOG_INFO, proto, NULL, "listening on %s %s%s%s port %d", kind, v4,
            v4[0] && v6[0] ? " and " : "", v6, port);
}

int m2m_serve_run(const struct m2m_conf *conf, const struct m2m_logger *log)
{
    struct serve s;
    memset(&s, 0, sizeof s);
    s.log = log;
    if (make_dirs(conf->data_dir)) {
        m2m_log(log, M2M_LOG_ERROR, "serve", NULL, "cannot create data directory %s: %s", conf->data_dir,
                strerror(errno));
        return 1;
    }
    uv_loop_init(&s.loop);
    uv_signal_init(&s.loop, &s.sigint);
    uv_signal_init(&s.loop, &s.sigterm);
    s.sigint.data = s.sigterm.data = &s;
    uv_signal_start(&s.sigint, on_signal, SIGINT);
    uv_signal_start(&s.sigterm, on_signal, SIGTERM);
    int status = 0;
    char err[200] = "";
    if (conf->coap_enabled) {
        uint64_t seed;
        uv_random(NULL, NULL, &seed, sizeof seed, 0, NULL);
        if (m2m_coap_service_start(&s.coap, &s.loop, conf, log, seed, err, sizeof err)) {
            m2m_log(log, M2M_LOG_ERROR, "coap", NULL, "%s", err);
            status = 1;
        } else {
            s.coap_running = true;
            s.running++;
            listening(log, "coap", "udp", conf->coap_bind, conf->coap_bind6, m2m_coap_service_port(&s.coap));
            if (m2m_coap_service_dtls_port(&s.coap) >= 0)
                listening(log, "coap", "udp+dtls", conf->coap_bind, conf->coap_bind6,
                          m2m_coap_service_dtls_port(&s.coap));
        }
    }
    if (!status && conf->mqtt_enabled) {
        if (m2m_mqtt_service_start(&s.mqtt, &s.loop, conf, log, err, sizeof err)) {
            m2m_log(log, M2M_LOG_ERROR, "mqtt", NULL, "%s", err);
            status = 1;
        } else {
            s.mqtt_running = true;
            s.running++;
            listening(log, "mqtt", "tcp", conf->mqtt_bind, conf->mqtt_bind6,
                      m2m_mqtt_service_port(&s.mqtt, LISTEN_TCP));
            static const struct {
                enum m2m_mqtt_listener_kind kind;
                const char *name;
            } more[] = {{LISTEN_WS, "ws"}, {LISTEN_TLS, "tls"}, {LISTEN_WSS, "wss"}};
            for (size_t i = 0; i < sizeof more / sizeof more[0]; i++) {
                int port = m2m_mqtt_service_port(&s.mqtt, more[i].kind);
                if (port >= 0)
                    listening(log, "mqtt", more[i].name, conf->mqtt_bind, conf->mqtt_bind6, port);
            }
        }
    }
    if (status)
        stop_all(&s);
    else
        m2m_log(log, M2M_LOG_INFO, "serve", NULL, "ready (data in %s)", conf->data_dir);
    uv_run(&s.loop, UV_RUN_DEFAULT);
    uv_loop_close(&s.loop);
    if (!status)
        m2m_log(log, M2M_LOG_INFO, "serve", NULL, "stopped");
    return status;
}
