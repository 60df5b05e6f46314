#include "server/serve.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <uv.h>

#include "base/log.h"
#include "server/coap_service.h"

struct serve {
    uv_loop_t loop;
    uv_signal_t sigint, sigterm;
    struct m2m_coap_service coap;
    bool coap_running;
    const struct m2m_logger *log;
};

static void close_cb(uv_handle_t *h)
{
    (void)h;
}

static void coap_stopped(struct m2m_coap_service *svc)
{
    struct serve *s = (struct serve *)((char *)svc - offsetof(struct serve, coap));
    uv_close((uv_handle_t *)&s->sigint, close_cb);
    uv_close((uv_handle_t *)&s->sigterm, close_cb);
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct serve *s = h->data;
    m2m_log(s->log, M2M_LOG_INFO, "serve", NULL, "%s received, shutting down",
            signum == SIGINT ? "SIGINT" : "SIGTERM");
    uv_signal_stop(&s->sigint);
    uv_signal_stop(&s->sigterm);
    if (s->coap_running) {
        s->coap_running = false;
        m2m_coap_service_stop(&s->coap, coap_stopped);
    } else {
        coap_stopped(&s->coap);
    }
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
    if (conf->coap_enabled) {
        uint64_t seed;
        uv_random(NULL, NULL, &seed, sizeof seed, 0, NULL);
        char err[200] = "";
        int rc = m2m_coap_service_start(&s.coap, &s.loop, conf, log, seed, err, sizeof err);
        if (rc) {
            m2m_log(log, M2M_LOG_ERROR, "coap", NULL, "%s", err);
            status = 1;
            uv_signal_stop(&s.sigint);
            uv_signal_stop(&s.sigterm);
            coap_stopped(&s.coap);
        } else {
            s.coap_running = true;
            m2m_log(log, M2M_LOG_INFO, "coap", NULL, "listening on udp %s%s%s port %d", conf->coap_bind,
                    conf->coap_bind[0] && conf->coap_bind6[0] ? " and " : "", conf->coap_bind6,
                    m2m_coap_service_port(&s.coap));
        }
    }
    if (!status)
        m2m_log(log, M2M_LOG_INFO, "serve", NULL, "ready (data in %s)", conf->data_dir);
    uv_run(&s.loop, UV_RUN_DEFAULT);
    uv_loop_close(&s.loop);
    if (!status)
        m2m_log(log, M2M_LOG_INFO, "serve", NULL, "stopped");
    return status;
}
