#include "coaplink.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vclock.h"

static struct m2m_prng test_prng;

struct m2m_coap_ep *coap_test_ep(struct m2m_coap_config *c, uint64_t seed)
{
    m2m_prng_seed(&test_prng, seed);
    c->rng = m2m_prng_rng(&test_prng);
    struct m2m_coap_ep *ep = m2m_coap_ep_new(c);
    assert_non_null(ep);
    return ep;
}

/* ---- scripted peer ------------------------------------------------------ */

void coap_feed_hex(struct m2m_coap_ep *ep, m2m_time now, const struct m2m_addr *from, const char *hex)
{
    uint8_t buf[2048];
    size_t n = test_unhex(hex, buf, sizeof buf);
    assert_int_equal(m2m_coap_ep_feed(ep, now, from, buf, n), 0);
}

size_t coap_take(struct m2m_coap_ep *ep, uint8_t *buf, size_t cap, struct m2m_addr *to)
{
    struct m2m_coap_out o;
    if (!m2m_coap_ep_poll_output(ep, &o))
        return 0;
    assert_true(o.len <= cap);
    memcpy(buf, o.data, o.len);
    if (to)
        *to = o.peer;
    return o.len;
}

const char *coap_take_hex(struct m2m_coap_ep *ep)
{
    static char hex[3 * 2048 + 1];
    uint8_t buf[2048];
    size_t n = coap_take(ep, buf, sizeof buf, NULL);
    return test_hex(buf, n, hex, sizeof hex);
}

size_t coap_drain(struct m2m_coap_ep *ep)
{
    size_t n = 0;
    struct m2m_coap_out o;
    while (m2m_coap_ep_poll_output(ep, &o))
        n++;
    return n;
}

static void copy_event(struct cevent *e, const struct m2m_coap_event *ev)
{
    memset(e, 0, sizeof *e);
    e->type = ev->type;
    e->id = ev->id;
    e->err = ev->err;
    e->code = ev->msg.code;
    e->msgtype = ev->msg.type;
    e->peer = ev->peer;
    e->len = ev->msg.payload_len;
    e->payload = malloc(e->len + 1);
    assert_non_null(e->payload);
    if (e->len)
        memcpy(e->payload, ev->msg.payload, e->len);
    e->payload[e->len] = 0;
    e->observe = m2m_coap_has_opt(&ev->msg, M2M_COAP_OPT_OBSERVE)
                     ? (int64_t)m2m_coap_get_uint(&ev->msg, M2M_COAP_OPT_OBSERVE, 0)
                     : -1;
    e->block2 = m2m_coap_has_opt(&ev->msg, M2M_COAP_OPT_BLOCK2)
                    ? (int64_t)m2m_coap_get_uint(&ev->msg, M2M_COAP_OPT_BLOCK2, 0)
                    : -1;
    if (ev->path)
        snprintf(e->path, sizeof e->path, "%s", ev->path);
}

int coap_next_event(struct m2m_coap_ep *ep, struct cevent *e)
{
    struct m2m_coap_event ev;
    if (!m2m_coap_ep_poll_event(ep, &ev))
        return 0;
    copy_event(e, &ev);
    return 1;
}

void cevent_free(struct cevent *e)
{
    free(e->payload);
    e->payload = NULL;
}

/* ---- virtual link ------------------------------------------------------- */

static bool coap_addr_is(const struct m2m_addr *a, const struct m2m_addr *b)
{
    return a->len == b->len && !memcmp(a->b, b->b, a->len);
}

void clink_init(struct clink *l, const struct m2m_coap_config *c0, const struct m2m_coap_config *c1,
                uint64_t seed)
{
    memset(l, 0, sizeof *l);
    const struct m2m_coap_config *cfgs[2] = {c0, c1};
    for (int i = 0; i < 2; i++) {
        struct m2m_coap_config c = *cfgs[i];
        m2m_prng_seed(&l->rng[i], seed * 2 + (uint64_t)i + 1);
        c.rng = m2m_prng_rng(&l->rng[i]);
        l->ep[i] = m2m_coap_ep_new(&c);
        assert_non_null(l->ep[i]);
        l->addr[i] = test_addr((uint8_t)(i + 1));
    }
    m2m_prng_seed(&l->loss, seed ^ 0x10551055u);
}

void clink_clear_events(struct clink *l)
{
    for (size_t i = 0; i < l->nev; i++)
        cevent_free(&l->ev[i]);
    l->nev = 0;
}

void clink_cleanup(struct clink *l)
{
    for (int i = 0; i < 2; i++)
        m2m_coap_ep_free(l->ep[i]);
    for (size_t i = 0; i < l->nq; i++)
        free(l->q[i].data);
    free(l->q);
    free(l->trace);
    clink_clear_events(l);
}

void clink_record(struct clink *l, int side, const struct m2m_coap_event *ev)
{
    assert_true(l->nev < CLINK_MAX_EVENTS);
    struct cevent *e = &l->ev[l->nev++];
    copy_event(e, ev);
    e->side = side;
    e->t = l->now;
}

int clink_find(const struct clink *l, int side, enum m2m_coap_event_type type, size_t from)
{
    for (size_t i = from; i < l->nev; i++)
        if (l->ev[i].side == side && l->ev[i].type == type)
            return (int)i;
    return -1;
}

size_t clink_count(const struct clink *l, int side, enum m2m_coap_event_type type)
{
    size_t n = 0;
    for (size_t i = 0; i < l->nev; i++)
        n += l->ev[i].side == side && l->ev[i].type == type;
    return n;
}

size_t clink_count_dgrams(const struct clink *l, int from, int type, int code, bool lost)
{
    size_t n = 0;
    for (size_t i = 0; i < l->ntrace; i++) {
        const struct clink_trace *t = &l->trace[i];
        if ((from < 0 || t->from == from) && (type < 0 || t->type == type) && (code < 0 || t->code == code) &&
            (lost || !t->lost))
            n++;
    }
    return n;
}

static void trace_add(struct clink *l, int from, const uint8_t *p, size_t n, bool lost)
{
    if (l->ntrace == l->captrace) {
        l->captrace = l->captrace ? l->captrace * 2 : 256;
        l->trace = realloc(l->trace, l->captrace * sizeof *l->trace);
        assert_non_null(l->trace);
    }
    struct clink_trace *t = &l->trace[l->ntrace++];
    t->t = l->now;
    t->from = (uint8_t)from;
    t->lost = lost;
    t->type = n >= 4 ? (p[0] >> 4) & 3 : 0xff;
    t->code = n >= 4 ? p[1] : 0;
    t->mid = n >= 4 ? (uint16_t)(p[2] << 8 | p[3]) : 0;
    t->len = n;
}

/* Keeps the flight queue sorted by delivery time, FIFO among equals. */
static void enqueue(struct clink *l, int to, const uint8_t *p, size_t n)
{
    if (l->nq == l->capq) {
        l->capq = l->capq ? l->capq * 2 : 64;
        l->q = realloc(l->q, l->capq * sizeof *l->q);
        assert_non_null(l->q);
    }
    struct clink_pkt pk = {
        .at = l->now + l->delay_ms, .to = (uint8_t)to, .len = n, .data = malloc(n ? n : 1)};
    assert_non_null(pk.data);
    memcpy(pk.data, p, n);
    size_t i = l->nq;
    while (i > 0 && l->q[i - 1].at > pk.at) {
        l->q[i] = l->q[i - 1];
        i--;
    }
    l->q[i] = pk;
    l->nq++;
}

void clink_pump(struct clink *l)
{
    bool progress = true;
    while (progress) {
        progress = false;
        for (int s = 0; s < 2; s++) {
            struct m2m_coap_out o;
            while (m2m_coap_ep_poll_output(l->ep[s], &o)) {
                progress = true;
                assert_true(coap_addr_is(&o.peer, &l->addr[!s]));
                bool lost = l->loss_pm[s] && m2m_prng_next(&l->loss) % 1000 < l->loss_pm[s];
                if (!lost && l->filter && !l->filter(l, s, o.data, o.len, l->filter_ctx))
                    lost = true;
                trace_add(l, s, o.data, o.len, lost);
                if (!lost)
                    enqueue(l, !s, o.data, o.len);
            }
        }
        while (l->nq && l->q[0].at <= l->now) {
            struct clink_pkt pk = l->q[0];
            memmove(l->q, l->q + 1, (l->nq - 1) * sizeof *l->q);
            l->nq--;
            assert_int_equal(m2m_coap_ep_feed(l->ep[pk.to], l->now, &l->addr[!pk.to], pk.data, pk.len), 0);
            free(pk.data);
            progress = true;
            break; /* let the receiver's answer go out before the next delivery */
        }
        for (int s = 0; s < 2; s++) {
            struct m2m_coap_event ev;
            while (m2m_coap_ep_poll_event(l->ep[s], &ev)) {
                progress = true;
                if (l->cb[s])
                    l->cb[s](l, s, &ev, l->ctx[s]);
                else
                    clink_record(l, s, &ev);
            }
        }
    }
}

static m2m_time next_due(const struct clink *l)
{
    m2m_time t = M2M_NEVER;
    if (l->nq)
        t = l->q[0].at;
    for (int s = 0; s < 2; s++) {
        m2m_time e = m2m_coap_ep_next_timeout(l->ep[s]);
        if (e < t)
            t = e;
    }
    return t;
}

bool clink_step(struct clink *l, m2m_time limit)
{
    clink_pump(l);
    m2m_time t = next_due(l);
    if (t > limit || t == M2M_NEVER) {
        if (limit != M2M_NEVER && limit > l->now)
            l->now = limit;
        /* Let the endpoints see the new time (respond/notify use it). */
        for (int s = 0; s < 2 && limit != M2M_NEVER; s++)
            m2m_coap_ep_on_timeout(l->ep[s], l->now);
        clink_pump(l);
        return false;
    }
    if (t > l->now)
        l->now = t;
    for (int s = 0; s < 2; s++)
        m2m_coap_ep_on_timeout(l->ep[s], l->now);
    clink_pump(l);
    return true;
}

void clink_run(struct clink *l, m2m_time limit)
{
    while (clink_step(l, limit))
        ;
}

bool clink_run_until(struct clink *l, m2m_time limit, bool (*done)(struct clink *l, void *arg), void *arg)
{
    clink_pump(l);
    while (!done(l, arg)) {
        if (!clink_step(l, limit))
            return done(l, arg);
    }
    return true;
}
