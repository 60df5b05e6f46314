/* One MQTT client connection of the load generator (see conn.h). */
#include "conn.h"

#include <stdlib.h>
#include <string.h>

/* Packets larger than this from the broker are a protocol failure here: the
 * load generator never subscribes to anything that large. */
#define MB_MAX_PACKET (16u << 20)

static int buf_reserve(struct mb_buf *b, size_t more)
{
    if (b->cap - b->len >= more)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap - b->len < more)
        cap *= 2;
    uint8_t *p = realloc(b->p, cap);
    if (!p)
        return M2M_ENOMEM;
    b->p = p;
    b->cap = cap;
    return 0;
}

static void buf_free(struct mb_buf *b)
{
    free(b->p);
    *b = (struct mb_buf){0};
}

static void on_closed(uv_handle_t *h)
{
    struct mb_conn *c = h->data;
    /* The caller may reuse the memory after closed_cb: leave the flush list. */
    for (struct mb_conn **pp = &c->ml->dirty; *pp; pp = &(*pp)->next_dirty)
        if (*pp == c) {
            *pp = c->next_dirty;
            break;
        }
    buf_free(&c->out);
    buf_free(&c->wbuf);
    buf_free(&c->in);
    c->open = false;
    c->cbs->closed_cb(c, c->err);
}

/* Closes with a reason (0 when asked to). */
static void conn_fail(struct mb_conn *c, int err)
{
    if (c->closing)
        return;
    c->closing = true;
    c->err = err;
    uv_close((uv_handle_t *)&c->tcp, on_closed);
}

void mb_conn_close(struct mb_conn *c)
{
    conn_fail(c, 0);
}

static void mark_dirty(struct mb_conn *c)
{
    if (c->dirty)
        return;
    c->dirty = true;
    c->next_dirty = c->ml->dirty;
    c->ml->dirty = c;
}

static void write_out(struct mb_conn *c);

static void on_written(uv_write_t *req, int status)
{
    struct mb_conn *c = req->data;
    c->writing = false;
    c->wbuf.len = 0;
    if (c->closing)
        return;
    if (status < 0) {
        conn_fail(c, status);
        return;
    }
    if (c->out.len)
        write_out(c);
    else if (c->finishing)
        conn_fail(c, 0);
}

/* Hands the output buffer to libuv; the next packets go into the other one. */
static void write_out(struct mb_conn *c)
{
    if (c->writing || c->closing || !c->out.len)
        return;
    struct mb_buf t = c->wbuf;
    c->wbuf = c->out;
    c->out = t;
    c->out.len = 0;
    uv_buf_t b = uv_buf_init((char *)c->wbuf.p, (unsigned)c->wbuf.len);
    c->writing = true;
    c->wreq.data = c;
    int rc = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_written);
    if (rc) {
        c->writing = false;
        conn_fail(c, rc);
    }
}

static void on_flush(uv_check_t *h)
{
    struct mb_loop *ml = h->data;
    while (ml->dirty) {
        struct mb_conn *c = ml->dirty;
        ml->dirty = c->next_dirty;
        c->dirty = false;
        write_out(c);
    }
}

int mb_loop_init(struct mb_loop *ml, uv_loop_t *loop)
{
    ml->loop = loop;
    ml->dirty = NULL;
    int rc = uv_check_init(loop, &ml->flush);
    if (rc)
        return rc;
    ml->flush.data = ml;
    rc = uv_check_start(&ml->flush, on_flush);
    /* The flush handle alone must not keep the loop alive. */
    uv_unref((uv_handle_t *)&ml->flush);
    return rc;
}

void mb_loop_close(struct mb_loop *ml)
{
    on_flush(&ml->flush); /* what was queued last still goes out */
    uv_close((uv_handle_t *)&ml->flush, NULL);
}

int mb_conn_send(struct mb_conn *c, const struct m2m_mqtt_packet *pkt)
{
    if (c->closing || !c->open)
        return M2M_ESTATE;
    size_t n = m2m_mqtt_encoded_size(pkt);
    if (!n)
        return M2M_EINVAL;
    if (buf_reserve(&c->out, n))
        return M2M_ENOMEM;
    size_t len;
    int rc = m2m_mqtt_encode(pkt, c->out.p + c->out.len, c->out.cap - c->out.len, &len);
    if (rc)
        return rc;
    c->out.len += len;
    mark_dirty(c);
    return 0;
}

void mb_conn_finish(struct mb_conn *c)
{
    if (c->closing)
        return;
    c->finishing = true;
    if (!c->writing && !c->out.len)
        conn_fail(c, 0);
}

/* Hands every complete packet in p[0..n) to the callback; returns how many
 * bytes were used, or a negative error. Stops early once closing. */
static long frame_all(struct mb_conn *c, const uint8_t *p, size_t n)
{
    size_t used = 0;
    while (used < n && !c->closing) {
        size_t total;
        int rc = m2m_mqtt_frame(p + used, n - used, MB_MAX_PACKET, &total);
        if (rc == M2M_EAGAIN)
            break;
        if (rc)
            return rc;
        struct m2m_mqtt_packet pkt;
        rc = m2m_mqtt_decode(&pkt, c->version, p + used, total, NULL);
        if (rc)
            return rc;
        used += total;
        c->cbs->packet_cb(c, &pkt);
    }
    return (long)used;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct mb_conn *c = h->data;
    (void)suggested;
    *buf = uv_buf_init((char *)c->ml->rbuf, sizeof c->ml->rbuf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct mb_conn *c = s->data;
    if (nread == 0 || c->closing)
        return;
    if (nread < 0) {
        conn_fail(c, (int)nread);
        return;
    }
    const uint8_t *p = (const uint8_t *)buf->base;
    size_t n = (size_t)nread;
    if (c->in.len) {
        /* A packet is split across reads: gather it in `in` first. */
        if (buf_reserve(&c->in, n)) {
            conn_fail(c, M2M_ENOMEM);
            return;
        }
        memcpy(c->in.p + c->in.len, p, n);
        c->in.len += n;
        p = c->in.p;
        n = c->in.len;
    }
    long used = frame_all(c, p, n);
    if (c->closing)
        return;
    if (used < 0) {
        conn_fail(c, (int)used);
        return;
    }
    size_t rest = n - (size_t)used;
    if (p == c->in.p) {
        memmove(c->in.p, c->in.p + used, rest);
        c->in.len = rest;
    } else if (rest) {
        if (buf_reserve(&c->in, rest)) {
            conn_fail(c, M2M_ENOMEM);
            return;
        }
        memcpy(c->in.p, p + used, rest);
        c->in.len = rest;
    }
}

static void on_connect(uv_connect_t *req, int status)
{
    struct mb_conn *c = req->data;
    if (c->closing)
        return;
    if (status == 0) {
        uv_tcp_nodelay(&c->tcp, 1);
        status = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    }
    c->cbs->connected_cb(c, status);
    if (status && !c->closing)
        conn_fail(c, status);
}

int mb_conn_connect(struct mb_conn *c, struct mb_loop *ml, const struct sockaddr *addr,
                    enum m2m_mqtt_version version, const struct mb_conn_cbs *cbs, void *ctx)
{
    memset(c, 0, sizeof *c);
    c->ml = ml;
    c->cbs = cbs;
    c->ctx = ctx;
    c->version = version;
    int rc = uv_tcp_init(ml->loop, &c->tcp);
    if (rc)
        return rc;
    c->tcp.data = c;
    c->creq.data = c;
    c->open = true;
    rc = uv_tcp_connect(&c->creq, &c->tcp, addr, on_connect);
    if (rc) {
        /* The handle exists: close it, but report the failure synchronously. */
        c->closing = true;
        uv_close((uv_handle_t *)&c->tcp, NULL);
        c->open = false;
        return rc;
    }
    return 0;
}
