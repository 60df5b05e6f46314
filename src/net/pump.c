#include "net/pump.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "base/log.h"
#include "net/addr.h"

/* With recvmmsg, libuv splits the buffer into 64 KiB slots: 16 datagrams
 * per system call. */
#define RX_BATCH 16
#define RX_SLOT (64 * 1024)
#define TX_BATCH 64

static m2m_time now_of(struct m2m_udp_pump *p)
{
    return (m2m_time)uv_now(p->loop);
}

static void on_timer(uv_timer_t *t);

/* Sends up to TX_BATCH datagrams, usually with one sendmmsg(2). A datagram
 * the kernel refuses is counted as dropped and skipped; a full socket buffer
 * drops the rest of the batch. */
static void send_batch(struct m2m_udp_pump *p, struct mmsghdr *msgs, struct iovec *iov,
                       const struct m2m_addr *peers, unsigned n)
{
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)&p->udp, &fd)) {
        p->meter.tx_dropped += n;
        return;
    }
    unsigned done = 0;
    while (done < n) {
        int k = sendmmsg(fd, msgs + done, n - done, MSG_DONTWAIT);
        if (k <= 0) {
            /* UDP may drop; the protocol's own retransmission covers it. */
            p->meter.tx_dropped++;
            if (m2m_log_on(p->log, M2M_LOG_DEBUG))
                m2m_log(p->log, M2M_LOG_DEBUG, p->ops->name, &peers[done], "send failed: %s",
                        strerror(errno));
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) {
                p->meter.tx_dropped += n - done - 1;
                return;
            }
            done++;
            continue;
        }
        for (int i = 0; i < k; i++)
            p->meter.tx_bytes += iov[done + (unsigned)i].iov_len;
        p->meter.tx_dgrams += (uint64_t)k;
        done += (unsigned)k;
    }
}

void m2m_udp_pump_flush(struct m2m_udp_pump *p)
{
    struct mmsghdr msgs[TX_BATCH];
    struct iovec iov[TX_BATCH];
    struct sockaddr_storage ss[TX_BATCH];
    struct m2m_addr peers[TX_BATCH];
    unsigned n = 0;
    struct m2m_dgram d;
    /* Output stays valid until the next feed or timeout, so a batch of it
     * can be gathered before one system call sends it all. */
    while (p->ops->poll_output(p->core, &d) == 1) {
        socklen_t len = m2m_addr_to_sockaddr(&d.peer, &ss[n]);
        if (!len)
            continue;
        memset(&msgs[n], 0, sizeof msgs[n]);
        iov[n].iov_base = (void *)d.data;
        iov[n].iov_len = d.len;
        msgs[n].msg_hdr.msg_name = &ss[n];
        msgs[n].msg_hdr.msg_namelen = len;
        msgs[n].msg_hdr.msg_iov = &iov[n];
        msgs[n].msg_hdr.msg_iovlen = 1;
        peers[n] = d.peer;
        if (++n == TX_BATCH) {
            send_batch(p, msgs, iov, peers, n);
            n = 0;
        }
    }
    if (n)
        send_batch(p, msgs, iov, peers, n);
    m2m_time next = p->ops->next_timeout(p->core);
    if (next == p->armed_at)
        return;
    p->armed_at = next;
    if (next == M2M_NEVER) {
        uv_timer_stop(&p->timer);
        return;
    }
    m2m_time now = now_of(p);
    uv_timer_start(&p->timer, on_timer, next > now ? (uint64_t)(next - now) : 0, 0);
}

static void on_timer(uv_timer_t *t)
{
    struct m2m_udp_pump *p = t->data;
    p->armed_at = M2M_NEVER;
    p->ops->on_timeout(p->core, now_of(p));
    if (p->react)
        p->react(p, p->ctx);
    m2m_udp_pump_flush(p);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct m2m_udp_pump *p = h->data;
    (void)suggested;
    *buf = uv_buf_init((char *)p->rxbuf, (unsigned)p->rxcap);
}

static void on_recv(uv_udp_t *u, ssize_t nread, const uv_buf_t *buf, const struct sockaddr *addr,
                    unsigned flags)
{
    struct m2m_udp_pump *p = u->data;
    (void)buf;
    if (nread < 0) {
        m2m_log(p->log, M2M_LOG_DEBUG, p->ops->name, NULL, "receive error: %s", uv_strerror((int)nread));
        return;
    }
    if (!addr) {
        /* End of a recvmmsg batch (or nothing read): answer what came in. */
        if (p->react)
            p->react(p, p->ctx);
        m2m_udp_pump_flush(p);
        return;
    }
    if (flags & UV_UDP_PARTIAL)
        return; /* truncated: larger than any datagram we accept */
    struct m2m_addr from;
    m2m_addr_from_sockaddr(&from, addr);
    p->meter.rx_dgrams++;
    p->meter.rx_bytes += (uint64_t)nread;
    p->ops->feed(p->core, now_of(p), &from, (const uint8_t *)buf->base, (size_t)nread);
    if (!(flags & UV_UDP_MMSG_CHUNK)) {
        if (p->react)
            p->react(p, p->ctx);
        m2m_udp_pump_flush(p);
    }
}

int m2m_udp_pump_start(struct m2m_udp_pump *p, uv_loop_t *loop, const struct sockaddr *addr,
                       const struct m2m_wire_ops *ops, void *core, m2m_pump_react_cb react, void *ctx,
                       const struct m2m_logger *log)
{
    memset(p, 0, sizeof *p);
    p->loop = loop;
    p->ops = ops;
    p->core = core;
    p->react = react;
    p->ctx = ctx;
    p->log = log;
    p->armed_at = M2M_NEVER;
    p->rxcap = RX_BATCH * RX_SLOT;
    p->rxbuf = malloc(p->rxcap);
    if (!p->rxbuf)
        return UV_ENOMEM;
    int rc = uv_udp_init_ex(loop, &p->udp, addr->sa_family | UV_UDP_RECVMMSG);
    if (rc) {
        free(p->rxbuf);
        p->rxbuf = NULL;
        return rc;
    }
    p->udp.data = p;
    uv_timer_init(loop, &p->timer);
    p->timer.data = p;
    p->open_handles = 2;
    unsigned bflags = addr->sa_family == AF_INET6 ? UV_UDP_IPV6ONLY : 0;
    rc = uv_udp_bind(&p->udp, addr, bflags);
    if (!rc)
        rc = uv_udp_recv_start(&p->udp, on_alloc, on_recv);
    if (rc) {
        m2m_udp_pump_close(p, NULL);
        return rc;
    }
    /* Large socket buffers ride out bursts from many peers. */
    int sz = 4 << 20;
    uv_recv_buffer_size((uv_handle_t *)&p->udp, &sz);
    sz = 4 << 20;
    uv_send_buffer_size((uv_handle_t *)&p->udp, &sz);
    return 0;
}

int m2m_udp_pump_local(const struct m2m_udp_pump *p, struct sockaddr_storage *ss)
{
    int len = sizeof *ss;
    return uv_udp_getsockname(&p->udp, (struct sockaddr *)ss, &len);
}

static void on_closed(uv_handle_t *h)
{
    struct m2m_udp_pump *p = h->data;
    if (--p->open_handles)
        return;
    free(p->rxbuf);
    p->rxbuf = NULL;
    if (p->closed_cb)
        p->closed_cb(p);
}

void m2m_udp_pump_close(struct m2m_udp_pump *p, void (*cb)(struct m2m_udp_pump *pump))
{
    p->closed_cb = cb;
    if (!uv_is_closing((uv_handle_t *)&p->udp)) {
        uv_udp_recv_stop(&p->udp);
        uv_close((uv_handle_t *)&p->udp, on_closed);
    }
    if (!uv_is_closing((uv_handle_t *)&p->timer)) {
        uv_timer_stop(&p->timer);
        uv_close((uv_handle_t *)&p->timer, on_closed);
    }
}
