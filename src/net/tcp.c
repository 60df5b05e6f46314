#include "net/tcp.h"

#include <stdlib.h>
#include <string.h>

#include "base/hmap.h"
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

/* ---- the shared clock -------------------------------------------------- */

enum { T_CORE = 1, T_LINGER };

struct m2m_tcp_clock {
    uv_timer_t timer;
    struct m2m_heap heap;
    size_t refs; /* the listener and each connection */
    m2m_time armed;
};

static void on_clock(uv_timer_t *t);

static struct m2m_tcp_clock *clock_new(uv_loop_t *loop)
{
    struct m2m_tcp_clock *k = calloc(1, sizeof *k);
    if (!k)
        return NULL;
    m2m_heap_init(&k->heap);
    uv_timer_init(loop, &k->timer);
    k->timer.data = k;
    k->refs = 1;
    k->armed = M2M_NEVER;
    return k;
}

static void clock_freed(uv_handle_t *h)
{
    struct m2m_tcp_clock *k = h->data;
    m2m_heap_cleanup(&k->heap);
    free(k);
}

static void clock_unref(struct m2m_tcp_clock *k)
{
    if (k && --k->refs == 0)
        uv_close((uv_handle_t *)&k->timer, clock_freed);
}

static void clock_rearm(struct m2m_tcp_clock *k)
{
    const struct m2m_timer *top = m2m_heap_top(&k->heap);
    m2m_time at = top ? top->at : M2M_NEVER;
    if (at == k->armed)
        return;
    k->armed = at;
    if (at == M2M_NEVER) {
        uv_timer_stop(&k->timer);
        return;
    }
    m2m_time now = (m2m_time)uv_now(k->timer.loop);
    uv_timer_start(&k->timer, on_clock, at > now ? (uint64_t)(at - now) : 0, 0);
}

/* Arms (or with M2M_NEVER cancels) a connection's deadline. */
static void deadline_set(struct m2m_tcp_conn *c, int kind, m2m_time at)
{
    if (at == M2M_NEVER) {
        if (m2m_timer_armed(&c->deadline))
            m2m_heap_cancel(&c->clock->heap, &c->deadline);
    } else {
        c->deadline.kind = kind;
        /* Without memory to grow the heap the deadline is lost until the
         * core's next input re-arms it. */
        (void)m2m_heap_set(&c->clock->heap, &c->deadline, at);
    }
    clock_rearm(c->clock);
}

/* ---- closing ----------------------------------------------------------- */

static void conn_handle_closed(uv_handle_t *h)
{
    struct m2m_tcp_conn *c = h->data;
    if (c->closed_cb)
        c->closed_cb(c);
    clock_unref(c->clock);
    free(c);
}

/* How long queued output may take to leave before a close gives up on it. */
#define LINGER_MS 5000

static void close_now(struct m2m_tcp_conn *c)
{
    if (c->closed_handles)
        return;
    c->closed_handles = true;
    deadline_set(c, 0, M2M_NEVER);
    uv_close((uv_handle_t *)&c->tcp, conn_handle_closed); /* cancels what is still queued */
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    struct m2m_tcp_conn *c = req->data;
    (void)status;
    free(req);
    close_now(c);
}

void m2m_tcp_conn_close(struct m2m_tcp_conn *c, void (*cb)(struct m2m_tcp_conn *c))
{
    if (c->closing)
        return;
    c->closing = true;
    c->closed_cb = cb;
    deadline_set(c, 0, M2M_NEVER);
    /* uv_close would cancel queued writes (a refusing CONNACK, a last
     * DISCONNECT): let them go first, then close, within LINGER_MS. */
    uv_shutdown_t *req = NULL;
    if (c->started && !c->abort && uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) > 0 &&
        (req = malloc(sizeof *req)) != NULL) {
        req->data = c;
        if (uv_shutdown(req, (uv_stream_t *)&c->tcp, on_shutdown) == 0) {
            deadline_set(c, T_LINGER, now_of(c) + LINGER_MS);
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
    deadline_set(c, T_CORE, next);
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

/* Runs every deadline that is due, then re-arms for the next one. */
static void on_clock(uv_timer_t *t)
{
    struct m2m_tcp_clock *k = t->data;
    k->armed = M2M_NEVER;
    k->refs++; /* a connection closing here must not free the clock under us */
    m2m_time now = (m2m_time)uv_now(t->loop);
    struct m2m_timer *top;
    while ((top = m2m_heap_top(&k->heap)) != NULL && top->at <= now) {
        struct m2m_tcp_conn *c = M2M_CONTAINER_OF(top, struct m2m_tcp_conn, deadline);
        m2m_heap_cancel(&k->heap, top);
        if (top->kind == T_LINGER) {
            close_now(c);
        } else if (!c->closing) {
            c->armed_at = M2M_NEVER;
            c->ops->on_timeout(c->core, now);
            react_and_flush(c);
        }
    }
    clock_rearm(k);
    clock_unref(k);
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

/* A connection struct with its handle initialised, not connected yet; it
 * holds a reference to `clock`. */
static struct m2m_tcp_conn *conn_alloc(uv_loop_t *loop, struct m2m_tcp_clock *clock,
                                       const struct m2m_logger *log)
{
    struct m2m_tcp_conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->loop = loop;
    c->log = log;
    c->armed_at = M2M_NEVER;
    c->clock = clock;
    clock->refs++;
    m2m_timer_init(&c->deadline, T_CORE);
    uv_tcp_init(loop, &c->tcp);
    c->tcp.data = c;
    return c;
}

static void on_connected(uv_connect_t *req, int status)
{
    struct m2m_tcp_conn *c = req->data;
    free(req);
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
    struct m2m_tcp_clock *clock = clock_new(loop);
    struct m2m_tcp_conn *c = clock ? conn_alloc(loop, clock, log) : NULL;
    clock_unref(clock); /* the connection holds it now */
    uv_connect_t *req = c ? malloc(sizeof *req) : NULL;
    if (!req) {
        if (c)
            m2m_tcp_conn_close(c, NULL);
        *err = UV_ENOMEM;
        return NULL;
    }
    c->connected = connected;
    c->ctx = ctx;
    req->data = c;
    m2m_addr_from_sockaddr(&c->peer, addr);
    int rc = uv_tcp_connect(req, &c->tcp, addr, on_connected);
    if (rc) {
        free(req);
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
    struct m2m_tcp_conn *c = conn_alloc(l->loop, l->clock, l->log);
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
    l->clock = clock_new(loop);
    if (!l->clock)
        return UV_ENOMEM;
    int rc = uv_tcp_init(loop, &l->tcp);
    if (rc) {
        clock_unref(l->clock);
        return rc;
    }
    l->tcp.data = l;
    rc = uv_tcp_bind(&l->tcp, addr, addr->sa_family == AF_INET6 ? UV_TCP_IPV6ONLY : 0);
    if (!rc)
        rc = uv_listen((uv_stream_t *)&l->tcp, 1024, on_connection);
    if (rc) {
        uv_close((uv_handle_t *)&l->tcp, NULL);
        clock_unref(l->clock);
        l->clock = NULL;
    }
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
    clock_unref(l->clock); /* freed once its last connection is gone */
    l->clock = NULL;
    if (l->closed_cb)
        l->closed_cb(l);
}

void m2m_tcp_listener_close(struct m2m_tcp_listener *l, void (*cb)(struct m2m_tcp_listener *l))
{
    l->closed_cb = cb;
    uv_close((uv_handle_t *)&l->tcp, listener_closed);
}
