#include "net/tcp.h"

#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "net/addr.h"

#define READ_BUF 65536

struct write_req {
    uv_write_t req;
    struct m2m_tcp_conn *conn;
    uint8_t data[];
};

static m2m_time now_of(struct m2m_tcp_conn *c)
{
    return (m2m_time)uv_now(c->loop);
}

static void conn_handle_closed(uv_handle_t *h)
{
    struct m2m_tcp_conn *c = h->data;
    if (--c->open_handles)
        return;
    if (c->closed_cb)
        c->closed_cb(c);
    free(c);
}

/* How long queued output may take to leave before a close gives up on it. */
#define LINGER_MS 5000

static void close_now(struct m2m_tcp_conn *c)
{
    if (c->closed_handles)
        return;
    c->closed_handles = true;
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, conn_handle_closed);
    uv_close((uv_handle_t *)&c->tcp, conn_handle_closed); /* cancels what is still queued */
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    struct m2m_tcp_conn *c = req->data;
    (void)status;
    free(req);
    close_now(c);
}

static void on_linger(uv_timer_t *t)
{
    close_now(t->data);
}

void m2m_tcp_conn_close(struct m2m_tcp_conn *c, void (*cb)(struct m2m_tcp_conn *c))
{
    if (c->closing)
        return;
    c->closing = true;
    c->closed_cb = cb;
    uv_timer_stop(&c->timer);
    /* uv_close would cancel queued writes (a refusing CONNACK, a last
     * DISCONNECT): let them go first, then close, within LINGER_MS. */
    uv_shutdown_t *req = NULL;
    if (c->started && !c->abort && uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) > 0 &&
        (req = malloc(sizeof *req)) != NULL) {
        req->data = c;
        if (uv_shutdown(req, (uv_stream_t *)&c->tcp, on_shutdown) == 0) {
            uv_timer_start(&c->timer, on_linger, LINGER_MS, 0);
            return;
        }
        free(req);
    }
    close_now(c);
}

static void on_written(uv_write_t *req, int status)
{
    struct write_req *w = (struct write_req *)req;
    (void)status;
    free(w);
}

static void on_timer(uv_timer_t *t);

void m2m_tcp_conn_flush(struct m2m_tcp_conn *c)
{
    if (c->closing || !c->started)
        return;
    const uint8_t *p;
    size_t n;
    while (c->ops->poll_output(c->core, &p, &n)) {
        c->meter.tx_bytes += n;
        size_t off = 0;
        if (uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) == 0) {
            uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
            int k = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
            if (k > 0)
                off = (size_t)k;
        }
        if (off == n)
            continue;
        /* The core's buffer is only lent: what the kernel did not take now is
         * copied for an asynchronous write. */
        if (uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) + n - off > c->max_write_queue) {
            m2m_log(c->log, M2M_LOG_INFO, c->ops->name, &c->peer, "peer does not read: closing");
            c->abort = true;
            m2m_tcp_conn_close(c, c->closed_cb);
            return;
        }
        struct write_req *w = malloc(sizeof *w + n - off);
        if (!w) {
            m2m_tcp_conn_close(c, c->closed_cb);
            return;
        }
        memcpy(w->data, p + off, n - off);
        w->conn = c;
        uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)(n - off));
        if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_written)) {
            free(w);
            m2m_tcp_conn_close(c, c->closed_cb);
            return;
        }
    }
    m2m_time next = c->ops->next_timeout(c->core);
    if (next == c->armed_at)
        return;
    c->armed_at = next;
    if (next == M2M_NEVER) {
        uv_timer_stop(&c->timer);
        return;
    }
    m2m_time now = now_of(c);
    uv_timer_start(&c->timer, on_timer, next > now ? (uint64_t)(next - now) : 0, 0);
}

static void react_and_flush(struct m2m_tcp_conn *c)
{
    bool close = c->react && c->react(c, c->ctx);
    if (c->closing)
        return;
    m2m_tcp_conn_flush(c);
    if (close && !c->closing)
        m2m_tcp_conn_close(c, c->closed_cb);
}

static void on_timer(uv_timer_t *t)
{
    struct m2m_tcp_conn *c = t->data;
    c->armed_at = M2M_NEVER;
    c->ops->on_timeout(c->core, now_of(c));
    react_and_flush(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    static char shared[READ_BUF]; /* one loop per thread reads one socket at a time */
    *buf = uv_buf_init(shared, sizeof shared);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct m2m_tcp_conn *c = s->data;
    if (nread == 0)
        return;
    if (c->closing) { /* lingering: only the queued output matters now */
        if (nread < 0)
            close_now(c);
        return;
    }
    if (nread < 0) {
        if (nread != UV_EOF)
            m2m_log(c->log, M2M_LOG_DEBUG, c->ops->name, &c->peer, "read error: %s", uv_strerror((int)nread));
        /* The core learns of the end through the close; the owner's closed_cb
         * runs when the handles are gone. */
        if (c->react)
            c->react(c, c->ctx);
        m2m_tcp_conn_close(c, c->closed_cb);
        return;
    }
    c->meter.rx_bytes += (uint64_t)nread;
    c->ops->feed(c->core, now_of(c), (const uint8_t *)buf->base, (size_t)nread);
    react_and_flush(c);
}

void m2m_tcp_conn_start(struct m2m_tcp_conn *c, const struct m2m_stream_ops *ops, void *core,
                        m2m_tcp_react_cb react, void *ctx, size_t max_write_queue)
{
    c->ops = ops;
    c->core = core;
    c->react = react;
    c->ctx = ctx;
    c->max_write_queue = max_write_queue;
    c->started = true;
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    m2m_tcp_conn_flush(c);
}

/* A connection struct with both handles initialised, not connected yet. */
static struct m2m_tcp_conn *conn_alloc(uv_loop_t *loop, const struct m2m_logger *log)
{
    struct m2m_tcp_conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->loop = loop;
    c->log = log;
    c->armed_at = M2M_NEVER;
    uv_tcp_init(loop, &c->tcp);
    uv_timer_init(loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->open_handles = 2;
    return c;
}

static void on_connected(uv_connect_t *req, int status)
{
    struct m2m_tcp_conn *c = req->data;
    if (status == 0) {
        struct sockaddr_storage ss;
        int len = sizeof ss;
        if (!uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len))
            m2m_addr_from_sockaddr(&c->peer, (struct sockaddr *)&ss);
    } else if (!c->closing) {
        m2m_tcp_conn_close(c, NULL); /* freed after the callback below returns */
    }
    c->connected(c, status);
}

struct m2m_tcp_conn *m2m_tcp_connect(uv_loop_t *loop, const struct sockaddr *addr,
                                     m2m_tcp_connected_cb connected, void *ctx, const struct m2m_logger *log,
                                     int *err)
{
    struct m2m_tcp_conn *c = conn_alloc(loop, log);
    if (!c) {
        *err = UV_ENOMEM;
        return NULL;
    }
    c->connected = connected;
    c->ctx = ctx;
    c->connect_req.data = c;
    m2m_addr_from_sockaddr(&c->peer, addr);
    int rc = uv_tcp_connect(&c->connect_req, &c->tcp, addr, on_connected);
    if (rc) {
        *err = rc;
        m2m_tcp_conn_close(c, NULL);
        return NULL;
    }
    return c;
}

static void on_connection(uv_stream_t *server, int status)
{
    struct m2m_tcp_listener *l = server->data;
    if (status < 0)
        return;
    struct m2m_tcp_conn *c = conn_alloc(l->loop, l->log);
    if (!c)
        return;
    if (uv_accept(server, (uv_stream_t *)&c->tcp)) {
        m2m_tcp_conn_close(c, NULL);
        return;
    }
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (!uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len))
        m2m_addr_from_sockaddr(&c->peer, (struct sockaddr *)&ss);
    l->on_accept(l, c);
}

int m2m_tcp_listen(struct m2m_tcp_listener *l, uv_loop_t *loop, const struct sockaddr *addr,
                   m2m_tcp_accept_cb on_accept, void *ctx, const struct m2m_logger *log)
{
    memset(l, 0, sizeof *l);
    l->loop = loop;
    l->on_accept = on_accept;
    l->ctx = ctx;
    l->log = log;
    int rc = uv_tcp_init(loop, &l->tcp);
    if (rc)
        return rc;
    l->tcp.data = l;
    rc = uv_tcp_bind(&l->tcp, addr, addr->sa_family == AF_INET6 ? UV_TCP_IPV6ONLY : 0);
    if (!rc)
        rc = uv_listen((uv_stream_t *)&l->tcp, 1024, on_connection);
    if (rc)
        uv_close((uv_handle_t *)&l->tcp, NULL);
    return rc;
}

int m2m_tcp_listener_port(const struct m2m_tcp_listener *l)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&ss, &len))
        return -1;
    return ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                          : ((struct sockaddr_in *)&ss)->sin_port);
}

static void listener_closed(uv_handle_t *h)
{
    struct m2m_tcp_listener *l = h->data;
    if (l->closed_cb)
        l->closed_cb(l);
}

void m2m_tcp_listener_close(struct m2m_tcp_listener *l, void (*cb)(struct m2m_tcp_listener *l))
{
    l->closed_cb = cb;
    uv_close((uv_handle_t *)&l->tcp, listener_closed);
}
