/* The CoAP endpoint's messaging layer (RFC 7252 §4): parsing what arrives,
 * deduplication over EXCHANGE_LIFETIME, CON retransmission with exponential
 * back-off (or CoCoA's timeouts, coap_cocoa.c), NSTART and PROBING_RATE per
 * peer, and the output and event queues. Requests go to coap_server.c,
 * responses to coap_client.c. */
#include <stdlib.h>
#include <string.h>

#include "coap_internal.h"

void m2m_coap_config_default(struct m2m_coap_config *c)
{
    memset(c, 0, sizeof *c);
    c->tx.ack_timeout_ms = 2000;
    c->tx.ack_random_factor_pm = 1500;
    c->tx.max_retransmit = 4;
    c->tx.nstart = 1;
    c->tx.default_leisure_ms = 5000;
    c->tx.probing_rate = 1;
    c->tx.max_latency_ms = 100000;
    c->max_message = 1152;
    c->block_szx = 6;
    c->token_len = 4;
    c->max_body = 4u << 20;
    c->max_dedup = 100000;
    c->max_peers = 100000;
    c->max_requests = 10000;
    c->max_observers = 10000;
    c->max_block1 = 256;
    c->separate_after_ms = 1000;
    c->notify_min_interval_ms = 0;
    c->notify_con_every_ms = 24u * 3600 * 1000;
    c->nonrequest_timeout_ms = 0; /* 0: NON_LIFETIME */
}

static uint64_t max_transmit_span64(const struct m2m_coap_params *p)
{
    /* Clamped so the shift stays defined; ep_new refuses more than 20. */
    uint32_t mr = p->max_retransmit < 32 ? p->max_retransmit : 32;
    uint64_t span = (uint64_t)p->ack_timeout_ms * ((1ull << mr) - 1);
    return span * p->ack_random_factor_pm / 1000;
}

static uint32_t saturate(uint64_t v)
{
    return v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

uint32_t m2m_coap_exchange_lifetime_ms(const struct m2m_coap_params *p)
{
    /* MAX_TRANSMIT_SPAN + 2 * MAX_LATENCY + PROCESSING_DELAY (= ACK_TIMEOUT) */
    return saturate(max_transmit_span64(p) + 2ull * p->max_latency_ms + p->ack_timeout_ms);
}

uint32_t m2m_coap_non_lifetime_ms(const struct m2m_coap_params *p)
{
    return saturate(max_transmit_span64(p) + p->max_latency_ms);
}

/* ---- helpers shared by the endpoint's files --------------------------- */

uint64_t coap_addr_hash(const struct m2m_coap_ep *ep, const struct m2m_addr *a)
{
    return m2m_hash_keyed(ep->hash_key, a->b, a->len);
}

bool coap_addr_eq(const struct m2m_addr *a, const struct m2m_addr *b)
{
    return a->len == b->len && !memcmp(a->b, b->b, a->len);
}

uint64_t coap_addr_tok_hash(const struct m2m_coap_ep *ep, const struct m2m_addr *a, const uint8_t *tok,
                            size_t tkl)
{
    uint64_t t = 0;
    memcpy(&t, tok, tkl);
    return m2m_hash_mix(coap_addr_hash(ep, a), t ^ tkl);
}

uint16_t coap_next_mid(struct m2m_coap_ep *ep)
{
    return ep->next_mid++;
}

void coap_random_token(struct m2m_coap_ep *ep, uint8_t *tok, size_t n)
{
    ep->cfg.rng.fill(ep->cfg.rng.ctx, tok, n);
}

char *coap_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

int coap_timer_set(struct m2m_coap_ep *ep, struct m2m_timer *t, m2m_time at)
{
    return m2m_heap_set(&ep->timers, t, at);
}

static int arena_reserve(struct arena *a, size_t n)
{
    if (a->cap - a->len >= n)
        return 0;
    size_t cap = a->cap ? a->cap : 4096;
    while (cap - a->len < n)
        cap *= 2;
    uint8_t *p = realloc(a->p, cap);
    if (!p)
        return M2M_ENOMEM;
    a->p = p;
    a->cap = cap;
    return 0;
}

static int grow(void **v, size_t *cap, size_t elem)
{
    size_t nc = *cap ? *cap * 2 : 32;
    void *p = realloc(*v, nc * elem);
    if (!p)
        return M2M_ENOMEM;
    *v = p;
    *cap = nc;
    return 0;
}

static uint8_t *out_alloc(struct m2m_coap_ep *ep, size_t n, struct out_chunk **chunk)
{
    struct out_chunk *c = ep->oc_tail;
    if (!c || c->cap - c->len < n) {
        size_t cap = 16384;
        while (cap < n)
            cap *= 2;
        c = malloc(sizeof *c + cap);
        if (!c)
            return NULL;
        c->next = NULL;
        c->len = 0;
        c->cap = cap;
        if (ep->oc_tail)
            ep->oc_tail->next = c;
        else
            ep->oc_head = c;
        ep->oc_tail = c;
    }
    uint8_t *p = c->data + c->len;
    c->len += n;
    *chunk = c;
    return p;
}

/* Frees the chunks wholly handed out; keeps one empty chunk for reuse. */
static void out_reclaim(struct m2m_coap_ep *ep)
{
    struct out_chunk *keep = ep->outq_len ? ep->outq[ep->outq_head].chunk : NULL;
    while (ep->oc_head && ep->oc_head != keep) {
        struct out_chunk *c = ep->oc_head;
        if (!keep && c == ep->oc_tail) {
            c->len = 0;
            break;
        }
        ep->oc_head = c->next;
        free(c);
    }
    if (!ep->oc_head)
        ep->oc_tail = NULL;
}

int coap_emit(struct m2m_coap_ep *ep, const struct m2m_addr *to, const uint8_t *p, size_t n)
{
    if (ep->outq_head + ep->outq_len == ep->outq_cap) {
        if (ep->outq_head) {
            memmove(ep->outq, ep->outq + ep->outq_head, ep->outq_len * sizeof *ep->outq);
            ep->outq_head = 0;
        } else if (grow((void **)&ep->outq, &ep->outq_cap, sizeof *ep->outq)) {
            return M2M_ENOMEM;
        }
    }
    struct out_chunk *chunk;
    uint8_t *dst = out_alloc(ep, n, &chunk);
    if (!dst)
        return M2M_ENOMEM;
    memcpy(dst, p, n);
    struct outq_item *it = &ep->outq[ep->outq_head + ep->outq_len++];
    it->peer = *to;
    it->p = dst;
    it->len = n;
    it->chunk = chunk;
    ep->stats.tx++;
    return 0;
}

/* Encodes straight into the output arena; optionally keeps a malloc'd copy
 * (for the dedup cache or a retransmission). */
int coap_emit_msg(struct m2m_coap_ep *ep, const struct m2m_addr *to, const struct m2m_coap_msg *m,
                  uint8_t **copy, uint16_t *copy_len)
{
    uint8_t buf[2048];
    uint8_t *p = buf;
    size_t need = m2m_coap_encoded_size(m), len;
    if (need > sizeof buf && !(p = malloc(need)))
        return M2M_ENOMEM;
    int rc = m2m_coap_encode(m, p, need, &len);
    if (!rc)
        rc = coap_emit(ep, to, p, len);
    if (!rc && copy) {
        *copy = malloc(len);
        if (*copy) {
            memcpy(*copy, p, len);
            *copy_len = (uint16_t)len;
        }
    }
    if (p != buf)
        free(p);
    return rc;
}

int coap_send_empty(struct m2m_coap_ep *ep, const struct m2m_addr *to, uint8_t type, uint16_t mid)
{
    uint8_t b[4] = {(uint8_t)(0x40 | (type << 4)), 0, (uint8_t)(mid >> 8), (uint8_t)mid};
    if (type == M2M_COAP_RST)
        ep->stats.rst_sent++;
    return coap_emit(ep, to, b, 4);
}

int coap_push_event(struct m2m_coap_ep *ep, struct evq_item *it, const uint8_t *dgram, size_t len)
{
    if (ep->evq_head + ep->evq_len == ep->evq_cap) {
        if (ep->evq_head) {
            memmove(ep->evq, ep->evq + ep->evq_head, ep->evq_len * sizeof *ep->evq);
            ep->evq_head = 0;
        } else if (grow((void **)&ep->evq, &ep->evq_cap, sizeof *ep->evq)) {
            return M2M_ENOMEM;
        }
    }
    if (arena_reserve(&ep->ev_arena, len))
        return M2M_ENOMEM;
    it->off = ep->ev_arena.len;
    it->len = len;
    if (len)
        memcpy(ep->ev_arena.p + ep->ev_arena.len, dgram, len);
    ep->ev_arena.len += len;
    ep->evq[ep->evq_head + ep->evq_len++] = *it;
    return 0;
}

void coap_grave(struct m2m_coap_ep *ep, void *p)
{
    if (!p)
        return;
    if (ep->ngrave == ep->grave_cap && grow((void **)&ep->grave, &ep->grave_cap, sizeof(void *))) {
        /* Cannot defer: leak rather than free memory an event points to. */
        return;
    }
    ep->grave[ep->ngrave++] = p;
}

static void bury(struct m2m_coap_ep *ep)
{
    for (size_t i = 0; i < ep->ngrave; i++)
        free(ep->grave[i]);
    ep->ngrave = 0;
}

/* ---- peers: NSTART and PROBING_RATE ------------------------------------ */

struct peer *coap_peer_get(struct m2m_coap_ep *ep, const struct m2m_addr *a, bool create)
{
    uint64_t h = coap_addr_hash(ep, a);
    for (struct m2m_hnode *n = m2m_hmap_first(&ep->peers, h); n; n = m2m_hmap_next(n)) {
        struct peer *p = M2M_CONTAINER_OF(n, struct peer, hn);
        if (coap_addr_eq(&p->addr, a))
            return p;
    }
    if (!create || ep->peers.count >= ep->cfg.max_peers)
        return NULL;
    struct peer *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->addr = *a;
    p->last_rx = M2M_NEVER;
    m2m_timer_init(&p->t, T_PEER);
    m2m_hmap_insert(&ep->peers, &p->hn, h);
    return p;
}

void coap_peer_ref(struct peer *p)
{
    p->refs++;
}

void coap_peer_unref(struct m2m_coap_ep *ep, struct peer *p)
{
    if (--p->refs || p->wait_head || p->non_head || p->inflight)
        return;
    m2m_heap_cancel(&ep->timers, &p->t);
    m2m_hmap_remove(&ep->peers, &p->hn);
    free(p);
}

static void xmit_transmit(struct m2m_coap_ep *ep, struct xmit *x);

bool coap_peer_take_slot(struct m2m_coap_ep *ep, struct peer *p)
{
    if (p->inflight >= ep->cfg.tx.nstart)
        return false;
    p->inflight++;
    return true;
}

void coap_peer_release_slot(struct m2m_coap_ep *ep, struct peer *p)
{
    if (p->inflight)
        p->inflight--;
    /* While the endpoint is being freed nothing new may start. */
    while (!ep->closing && p->wait_head && p->inflight < ep->cfg.tx.nstart) {
        struct xmit *x = p->wait_head;
        p->wait_head = x->wait_next;
        if (!p->wait_head)
            p->wait_tail = NULL;
        x->wait_next = NULL;
        p->inflight++;
        xmit_transmit(ep, x);
    }
}

/* Bytes we may still send to a peer that has not answered (§4.7): the
 * average rate since the first unanswered byte stays under PROBING_RATE. */
static m2m_time probing_next(struct m2m_coap_ep *ep, const struct peer *p, size_t len)
{
    if (!p->unanswered_bytes)
        return ep->now;
    /* Earliest t with (unanswered + len) / (t - since) <= rate, rounded up:
     * sending any sooner would put the average above PROBING_RATE. */
    uint64_t rate = ep->cfg.tx.probing_rate ? ep->cfg.tx.probing_rate : 1;
    uint64_t ms = ((p->unanswered_bytes + len) * 1000 + rate - 1) / rate;
    return p->unanswered_since + (m2m_time)ms;
}

static void probing_account(struct m2m_coap_ep *ep, struct peer *p, size_t len)
{
    if (!p->unanswered_bytes)
        p->unanswered_since = ep->now;
    p->unanswered_bytes += len;
}

int coap_send_non(struct m2m_coap_ep *ep, struct peer *p, const uint8_t *buf, size_t len)
{
    if (!p->non_head && probing_next(ep, p, len) <= ep->now) {
        probing_account(ep, p, len);
        return coap_emit(ep, &p->addr, buf, len);
    }
    struct pending_non *pn = malloc(sizeof *pn + len);
    if (!pn)
        return M2M_ENOMEM;
    pn->next = NULL;
    pn->len = len;
    memcpy(pn->data, buf, len);
    if (p->non_tail)
        p->non_tail->next = pn;
    else
        p->non_head = pn;
    p->non_tail = pn;
    coap_timer_set(ep, &p->t, probing_next(ep, p, p->non_head->len));
    return 0;
}

static void peer_drain_non(struct m2m_coap_ep *ep, struct peer *p)
{
    while (p->non_head && probing_next(ep, p, p->non_head->len) <= ep->now) {
        struct pending_non *pn = p->non_head;
        p->non_head = pn->next;
        if (!p->non_head)
            p->non_tail = NULL;
        probing_account(ep, p, pn->len);
        coap_emit(ep, &p->addr, pn->data, pn->len);
        free(pn);
    }
    if (p->non_head)
        coap_timer_set(ep, &p->t, probing_next(ep, p, p->non_head->len));
    else if (!p->refs && !p->wait_head && !p->inflight) {
        m2m_heap_cancel(&ep->timers, &p->t);
        m2m_hmap_remove(&ep->peers, &p->hn);
        free(p);
    }
}

static void peer_heard(struct m2m_coap_ep *ep, const struct m2m_addr *a)
{
    if (!ep->peers.count)
        return;
    struct peer *p = coap_peer_get(ep, a, false);
    if (!p)
        return;
    p->last_rx = ep->now;
    p->unanswered_bytes = 0;
    if (p->non_head)
        peer_drain_non(ep, p);
}

/* ---- retransmission (§4.2) -------------------------------------------- */

static uint64_t xmit_key(const struct m2m_coap_ep *ep, const struct m2m_addr *a, uint16_t mid)
{
    return m2m_hash_mix(coap_addr_hash(ep, a), mid);
}

static struct xmit *xmit_find(struct m2m_coap_ep *ep, const struct m2m_addr *a, uint16_t mid)
{
    for (struct m2m_hnode *n = m2m_hmap_first(&ep->xmits, xmit_key(ep, a, mid)); n; n = m2m_hmap_next(n)) {
        struct xmit *x = M2M_CONTAINER_OF(n, struct xmit, hn);
        if (x->mid == mid && coap_addr_eq(&x->peer->addr, a))
            return x;
    }
    return NULL;
}

/* CoCoA: the exchange's current RTO times the dither drawn at its first
 * transmission. */
static uint32_t cocoa_timeout(const struct xmit *x)
{
    return (uint32_t)((uint64_t)x->rto_ms * x->dither_pm / 1000);
}

static void xmit_transmit(struct m2m_coap_ep *ep, struct xmit *x)
{
    const struct m2m_coap_params *tx = &ep->cfg.tx;
    uint32_t r;
    ep->cfg.rng.fill(ep->cfg.rng.ctx, (uint8_t *)&r, sizeof r);
    if (ep->cfg.cc == M2M_COAP_CC_COCOA) {
        /* draft-ietf-core-cocoa-03 §4.1-4.2: the peer's RTO estimate,
         * dithered between 1 x RTO and ACK_RANDOM_FACTOR x RTO (§4.2.1). */
        uint32_t spread = tx->ack_random_factor_pm - 1000;
        uint32_t running = x->peer->inflight ? x->peer->inflight - 1 : 0; /* others in flight */
        x->rto_ms = coap_cocoa_first_rto(ep, &x->peer->addr, running);
        x->dither_pm = 1000 + (spread ? r % (spread + 1) : 0);
        x->timeout_ms = cocoa_timeout(x);
        x->first_sent = ep->now;
    } else {
        /* Initial timeout: random in [ACK_TIMEOUT, ACK_TIMEOUT * ACK_RANDOM_FACTOR]. */
        uint32_t span = (uint32_t)((uint64_t)tx->ack_timeout_ms * (tx->ack_random_factor_pm - 1000) / 1000);
        x->timeout_ms = tx->ack_timeout_ms + (span ? r % (span + 1) : 0);
    }
    x->count = 0;
    x->sent = true;
    m2m_hmap_insert(&ep->xmits, &x->hn, xmit_key(ep, &x->peer->addr, x->mid));
    coap_emit(ep, &x->peer->addr, x->buf, x->len);
    coap_timer_set(ep, &x->t, ep->now + x->timeout_ms);
}

struct xmit *coap_xmit_start(struct m2m_coap_ep *ep, struct peer *p, uint8_t *buf, size_t len, uint16_t mid,
                             enum xmit_kind kind, void *owner)
{
    struct xmit *x = calloc(1, sizeof *x);
    if (!x) {
        free(buf);
        return NULL;
    }
    x->peer = p;
    x->buf = buf;
    x->len = len;
    x->mid = mid;
    x->kind = (uint8_t)kind;
    x->owner = owner;
    m2m_timer_init(&x->t, T_XMIT);
    coap_peer_ref(p);
    if (coap_peer_take_slot(ep, p)) {
        xmit_transmit(ep, x);
    } else {
        if (p->wait_tail)
            p->wait_tail->wait_next = x;
        else
            p->wait_head = x;
        p->wait_tail = x;
    }
    return x;
}

static void xmit_free(struct m2m_coap_ep *ep, struct xmit *x)
{
    struct peer *p = x->peer;
    if (x->sent) {
        m2m_hmap_remove(&ep->xmits, &x->hn);
        m2m_heap_cancel(&ep->timers, &x->t);
    } else {
        struct xmit **pp = &p->wait_head, *prev = NULL;
        while (*pp && *pp != x) {
            prev = *pp;
            pp = &(*pp)->wait_next;
        }
        if (*pp) {
            *pp = x->wait_next;
            if (p->wait_tail == x)
                p->wait_tail = prev;
        }
    }
    bool had_slot = x->sent;
    free(x->buf);
    free(x);
    if (had_slot)
        coap_peer_release_slot(ep, p);
    coap_peer_unref(ep, p);
}

void coap_xmit_cancel(struct m2m_coap_ep *ep, struct xmit *x)
{
    xmit_free(ep, x);
}

void coap_xmit_replace(struct m2m_coap_ep *ep, struct xmit *x, uint8_t *buf, size_t len, uint16_t mid)
{
    free(x->buf);
    x->buf = buf;
    x->len = len;
    if (x->sent) {
        m2m_hmap_remove(&ep->xmits, &x->hn);
        x->mid = mid;
        m2m_hmap_insert(&ep->xmits, &x->hn, xmit_key(ep, &x->peer->addr, mid));
    } else {
        x->mid = mid;
    }
}

/* The peer answered one of our CONs (ACK or RST): with CoCoA, an RTT
 * sample timed from its first transmission (draft §4.2). */
static void xmit_answered(struct m2m_coap_ep *ep, const struct xmit *x)
{
    if (ep->cfg.cc == M2M_COAP_CC_COCOA)
        coap_cocoa_answered(ep, &x->peer->addr, ep->now - x->first_sent, x->count);
}

/* ACK or RST for one of our CONs: the exchange's owner learns the outcome. */
static void xmit_settle(struct m2m_coap_ep *ep, struct xmit *x, int err)
{
    void *owner = x->owner;
    enum xmit_kind kind = x->kind;
    x->owner = NULL;
    xmit_free(ep, x);
    if (!owner)
        return;
    if (kind == XK_REQUEST)
        coap_client_xmit_done(ep, owner, err);
    else if (kind == XK_NOTIFY)
        coap_observer_xmit_done(ep, owner, err == 0);
}

static void xmit_timeout(struct m2m_coap_ep *ep, struct xmit *x)
{
    if (x->count >= ep->cfg.tx.max_retransmit) {
        ep->stats.timeouts++;
        COAP_LOG(ep, M2M_LOG_DEBUG, &x->peer->addr, "CON mid=%u unacknowledged after %u retransmissions",
                 x->mid, x->count);
        xmit_settle(ep, x, M2M_ETIMEDOUT);
        return;
    }
    /* A notification may swap in the newest state before it goes again. */
    if (x->kind == XK_NOTIFY && x->owner)
        coap_observer_xmit_retry(ep, x->owner);
    x->count++;
    if (ep->cfg.cc == M2M_COAP_CC_COCOA) {
        /* draft §4.2.1 / Appendix B.3: variable back-off factor. */
        x->rto_ms = coap_cocoa_backoff_ms(x->rto_ms);
        x->timeout_ms = cocoa_timeout(x);
    } else {
        x->timeout_ms *= 2;
    }
    ep->stats.retransmits++;
    coap_emit(ep, &x->peer->addr, x->buf, x->len);
    coap_timer_set(ep, &x->t, ep->now + x->timeout_ms);
}

/* ---- deduplication (§4.5) ---------------------------------------------- */

struct dedup *coap_dedup_find(struct m2m_coap_ep *ep, const struct m2m_addr *a, uint16_t mid)
{
    for (struct m2m_hnode *n = m2m_hmap_first(&ep->dedups, xmit_key(ep, a, mid)); n; n = m2m_hmap_next(n)) {
        struct dedup *d = M2M_CONTAINER_OF(n, struct dedup, hn);
        if (d->mid == mid && coap_addr_eq(&d->peer, a))
            return d;
    }
    return NULL;
}

static void dedup_pop(struct m2m_coap_ep *ep, struct dedup_fifo *f)
{
    struct dedup *d = f->head;
    f->head = d->fifo_next;
    if (!f->head)
        f->tail = NULL;
    m2m_hmap_remove(&ep->dedups, &d->hn);
    free(d->resp);
    free(d);
}

static void dedup_expire(struct m2m_coap_ep *ep)
{
    while (ep->dd_con.head && ep->dd_con.head->expires <= ep->now)
        dedup_pop(ep, &ep->dd_con);
    while (ep->dd_non.head && ep->dd_non.head->expires <= ep->now)
        dedup_pop(ep, &ep->dd_non);
}

struct dedup *coap_dedup_add(struct m2m_coap_ep *ep, const struct m2m_addr *a, uint16_t mid, bool con)
{
    dedup_expire(ep);
    if (ep->dedups.count >= ep->cfg.max_dedup) {
        /* Full: forget the entry that would expire first. */
        struct dedup_fifo *f = &ep->dd_con;
        if (!f->head || (ep->dd_non.head && ep->dd_non.head->expires < f->head->expires))
            f = &ep->dd_non;
        if (!f->head)
            return NULL;
        dedup_pop(ep, f);
    }
    struct dedup *d = malloc(sizeof *d);
    if (!d)
        return NULL;
    d->fifo_next = NULL;
    d->peer = *a;
    d->mid = mid;
    d->answered = false;
    d->exch = 0;
    d->resp = NULL;
    d->resp_len = 0;
    d->expires = ep->now + (con ? ep->exchange_lifetime : ep->non_lifetime);
    struct dedup_fifo *f = con ? &ep->dd_con : &ep->dd_non;
    if (f->tail)
        f->tail->fifo_next = d;
    else
        f->head = d;
    f->tail = d;
    m2m_hmap_insert(&ep->dedups, &d->hn, xmit_key(ep, a, mid));
    return d;
}

void coap_dedup_answer(struct dedup *d, uint8_t *resp, uint16_t len)
{
    free(d->resp);
    d->resp = resp;
    d->resp_len = len;
    d->answered = true;
    d->exch = 0;
}

/* ---- the endpoint ------------------------------------------------------- */

struct m2m_coap_ep *m2m_coap_ep_new(const struct m2m_coap_config *cfg)
{
    if (!cfg->rng.fill || cfg->tx.ack_timeout_ms == 0 || cfg->tx.ack_random_factor_pm < 1000 ||
        cfg->tx.max_retransmit > 20 || cfg->tx.nstart == 0 || cfg->block_szx > 6 || cfg->token_len > 8 ||
        cfg->max_message < 64 || cfg->max_message > 65507 ||
        (cfg->cc != M2M_COAP_CC_DEFAULT && cfg->cc != M2M_COAP_CC_COCOA))
        return NULL;
    /* Retransmission timeouts double in 32 bits and EXCHANGE_LIFETIME is a
     * uint32_t: parameters that overflow them are a configuration error. */
    if (cfg->tx.ack_random_factor_pm > 1000000 ||
        max_transmit_span64(&cfg->tx) + 2ull * cfg->tx.max_latency_ms + cfg->tx.ack_timeout_ms > INT32_MAX)
        return NULL;
    struct m2m_coap_ep *ep = calloc(1, sizeof *ep);
    if (!ep)
        return NULL;
    ep->cfg = *cfg;
    ep->cfg.rng.fill(ep->cfg.rng.ctx, (uint8_t *)&ep->hash_key, sizeof ep->hash_key);
    ep->cfg.rng.fill(ep->cfg.rng.ctx, (uint8_t *)&ep->next_mid, sizeof ep->next_mid);
    ep->next_id = 1;
    ep->exchange_lifetime = m2m_coap_exchange_lifetime_ms(&cfg->tx);
    ep->non_lifetime = m2m_coap_non_lifetime_ms(&cfg->tx);
    m2m_heap_init(&ep->timers);
    struct m2m_hmap *maps[] = {&ep->peers,     &ep->xmits,    &ep->dedups,    &ep->creqs_by_id, &ep->tokens,
                               &ep->observers, &ep->obs_mids, &ep->obs_paths, &ep->block1s};
    for (size_t i = 0; i < sizeof maps / sizeof maps[0]; i++) {
        if (m2m_hmap_init(maps[i], 64)) {
            m2m_coap_ep_free(ep);
            return NULL;
        }
    }
    if ((cfg->cc == M2M_COAP_CC_COCOA && coap_cocoa_init(ep)) || coap_server_init(ep)) {
        m2m_coap_ep_free(ep);
        return NULL;
    }
    return ep;
}

void m2m_coap_ep_free(struct m2m_coap_ep *ep)
{
    if (!ep)
        return;
    ep->closing = true;
    coap_client_cleanup(ep);
    coap_notify_cleanup(ep);
    coap_server_cleanup(ep);
    /* Whatever is left in flight belongs to separate responses. */
    for (size_t i = 0; ep->xmits.b && i <= ep->xmits.mask; i++) {
        while (ep->xmits.b[i])
            xmit_free(ep, M2M_CONTAINER_OF(ep->xmits.b[i], struct xmit, hn));
    }
    for (size_t i = 0; ep->peers.b && i <= ep->peers.mask; i++) {
        struct m2m_hnode *n = ep->peers.b[i];
        while (n) {
            struct peer *p = M2M_CONTAINER_OF(n, struct peer, hn);
            n = n->next;
            m2m_heap_cancel(&ep->timers, &p->t);
            while (p->wait_head) {
                struct xmit *x = p->wait_head;
                p->wait_head = x->wait_next;
                free(x->buf);
                free(x);
            }
            while (p->non_head) {
                struct pending_non *pn = p->non_head;
                p->non_head = pn->next;
                free(pn);
            }
            free(p);
        }
    }
    coap_cocoa_cleanup(ep);
    while (ep->dd_con.head)
        dedup_pop(ep, &ep->dd_con);
    while (ep->dd_non.head)
        dedup_pop(ep, &ep->dd_non);
    bury(ep);
    free(ep->grave);
    struct m2m_hmap *maps[] = {&ep->peers,     &ep->xmits,    &ep->dedups,    &ep->creqs_by_id, &ep->tokens,
                               &ep->observers, &ep->obs_mids, &ep->obs_paths, &ep->block1s};
    for (size_t i = 0; i < sizeof maps / sizeof maps[0]; i++)
        m2m_hmap_cleanup(maps[i]);
    m2m_heap_cleanup(&ep->timers);
    free(ep->outq);
    while (ep->oc_head) {
        struct out_chunk *c = ep->oc_head;
        ep->oc_head = c->next;
        free(c);
    }
    free(ep->evq);
    free(ep->ev_arena.p);
    free(ep);
}

/* Called at the start of feed, poll_event and on_timeout: anything the
 * application has already been handed may go now. Output is kept until the
 * next feed or timeout, so a driver can send a batch of it at once. */
static void reclaim(struct m2m_coap_ep *ep, bool outputs)
{
    if (!ep->evq_len) {
        ep->evq_head = 0;
        ep->ev_arena.len = 0;
        bury(ep);
    }
    if (outputs) {
        if (!ep->outq_len)
            ep->outq_head = 0;
        out_reclaim(ep);
    }
}

static bool is_request(uint8_t code)
{
    return code >= 1 && code <= 31;
}

static void on_empty(struct m2m_coap_ep *ep, const struct m2m_addr *from, const struct m2m_coap_msg *m)
{
    switch (m->type) {
    case M2M_COAP_CON:
        /* A CoAP ping (§4.3): answered with RST. */
        coap_send_empty(ep, from, M2M_COAP_RST, m->mid);
        return;
    case M2M_COAP_NON: return;
    case M2M_COAP_ACK: {
        struct xmit *x = xmit_find(ep, from, m->mid);
        if (x) {
            xmit_answered(ep, x);
            xmit_settle(ep, x, 0);
        }
        return;
    }
    case M2M_COAP_RST: {
        ep->stats.rst_rx++;
        struct xmit *x = xmit_find(ep, from, m->mid);
        if (x) {
            xmit_answered(ep, x);
            xmit_settle(ep, x, M2M_ERESET);
            return;
        }
        /* RST to one of our NON messages. */
        coap_observer_rst(ep, from, m->mid);
        coap_client_rst(ep, from, m->mid);
        return;
    }
    }
}

int m2m_coap_ep_feed(struct m2m_coap_ep *ep, m2m_time now, const struct m2m_addr *from, const uint8_t *p,
                     size_t n)
{
    ep->now = now;
    reclaim(ep, true);
    /* Entries past EXCHANGE_LIFETIME must not match, whether or not the
     * caller has handled that deadline yet. */
    dedup_expire(ep);
    ep->stats.rx++;
    struct m2m_coap_msg m;
    int rc = m2m_coap_decode(&m, p, n);
    if (rc) {
        ep->stats.malformed++;
        /* §4.2: a CON with a format error is rejected with RST; a NON, an ACK
         * or a RST that cannot be parsed is silently ignored (§4.3). */
        if (m2m_coap_header_ok(p, n) && m.type == M2M_COAP_CON)
            coap_send_empty(ep, from, M2M_COAP_RST, m.mid);
        COAP_LOG(ep, M2M_LOG_DEBUG, from, "malformed %s message of %zu bytes dropped (%s)",
                 m2m_coap_header_ok(p, n) ? m2m_coap_type_name(m.type) : "non-CoAP", n, m2m_errname(rc));
        return 0;
    }
    peer_heard(ep, from);
    if (m.code == M2M_COAP_EMPTY) {
        on_empty(ep, from, &m);
        return 0;
    }
    if (is_request(m.code)) {
        if (m.type == M2M_COAP_ACK || m.type == M2M_COAP_RST) {
            ep->stats.malformed++;
            return 0;
        }
        struct dedup *d = coap_dedup_find(ep, from, m.mid);
        if (d) {
            ep->stats.duplicates++;
            coap_server_duplicate(ep, d, from, m.type);
            return 0;
        }
        ep->stats.requests_in++;
        coap_server_request(ep, from, &m, p, n);
        return 0;
    }
    if (m.type == M2M_COAP_RST) {
        ep->stats.malformed++;
        return 0;
    }
    if (m2m_coap_bad_critical(&m)) {
        /* §5.4.1: a response with an unrecognised critical option is
         * rejected: a CON or NON with RST; an ACK is silently ignored (§4.2),
         * so our request goes on being retransmitted. */
        ep->stats.malformed++;
        if (m.type != M2M_COAP_ACK)
            coap_send_empty(ep, from, M2M_COAP_RST, m.mid);
        return 0;
    }
    if (m.type == M2M_COAP_ACK) {
        /* A piggybacked response ends the retransmission of our request.
         * Without a matching CON it is a replay of one already handled. */
        struct xmit *x = xmit_find(ep, from, m.mid);
        if (!x) {
            ep->stats.duplicates++;
            return 0;
        }
        if (x->kind != XK_REQUEST) {
            xmit_answered(ep, x);
            xmit_settle(ep, x, 0);
            return 0;
        }
        /* §5.3.2: a piggybacked response must carry the request's token too.
         * A mismatch is an answer to an older exchange that reused this MID
         * (a peer behind a reused port): keep retransmitting. */
        if (x->len < 4u + m.tkl || (x->buf[0] & 0x0f) != m.tkl || memcmp(x->buf + 4, m.token, m.tkl)) {
            ep->stats.dropped++;
            return 0;
        }
        xmit_answered(ep, x);
        struct creq *c = x->owner;
        if (c)
            c->x = NULL;
        x->owner = NULL;
        xmit_free(ep, x);
    } else if (m.type == M2M_COAP_CON) {
        /* A separate response or a CON notification: acknowledge once and
         * treat retransmissions as duplicates. */
        struct dedup *d = coap_dedup_find(ep, from, m.mid);
        if (d) {
            ep->stats.duplicates++;
            if (d->answered)
                coap_emit(ep, from, d->resp, d->resp_len);
            return 0;
        }
        coap_dedup_add(ep, from, m.mid, true); /* answered by coap_client_response */
    } else {
        struct dedup *d = coap_dedup_find(ep, from, m.mid);
        if (d) {
            ep->stats.duplicates++;
            return 0;
        }
        coap_dedup_add(ep, from, m.mid, false);
    }
    ep->stats.responses_in++;
    coap_client_response(ep, from, &m, p, n);
    return 0;
}

int m2m_coap_ep_poll_output(struct m2m_coap_ep *ep, struct m2m_coap_out *out)
{
    if (!ep->outq_len)
        return 0;
    struct outq_item *it = &ep->outq[ep->outq_head++];
    ep->outq_len--;
    out->peer = it->peer;
    out->data = it->p;
    out->len = it->len;
    return 1;
}

int m2m_coap_ep_poll_event(struct m2m_coap_ep *ep, struct m2m_coap_event *ev)
{
    if (!ep->evq_len) {
        reclaim(ep, false);
        return 0;
    }
    struct evq_item *it = &ep->evq[ep->evq_head++];
    ep->evq_len--;
    ev->type = it->type;
    ev->id = it->id;
    ev->err = it->err;
    ev->peer = it->peer;
    ev->path = it->path;
    if (it->len)
        m2m_coap_decode(&ev->msg, ep->ev_arena.p + it->off, it->len);
    else
        m2m_coap_msg_init(&ev->msg, 0, 0);
    if (it->body) {
        ev->msg.payload = it->body;
        ev->msg.payload_len = it->body_len;
    }
    return 1;
}

m2m_time m2m_coap_ep_next_timeout(const struct m2m_coap_ep *ep)
{
    m2m_time t = M2M_NEVER;
    const struct m2m_timer *top = m2m_heap_top(&ep->timers);
    if (top)
        t = top->at;
    if (ep->dd_con.head && ep->dd_con.head->expires < t)
        t = ep->dd_con.head->expires;
    if (ep->dd_non.head && ep->dd_non.head->expires < t)
        t = ep->dd_non.head->expires;
    return t;
}

void m2m_coap_ep_on_timeout(struct m2m_coap_ep *ep, m2m_time now)
{
    ep->now = now;
    reclaim(ep, true);
    dedup_expire(ep);
    struct m2m_timer *t;
    while ((t = m2m_heap_top(&ep->timers)) && t->at <= now) {
        m2m_heap_cancel(&ep->timers, t);
        switch (t->kind) {
        case T_XMIT: xmit_timeout(ep, M2M_CONTAINER_OF(t, struct xmit, t)); break;
        case T_EXCH: coap_exch_timeout(ep, M2M_CONTAINER_OF(t, struct exch, t)); break;
        case T_CREQ: coap_client_timeout(ep, M2M_CONTAINER_OF(t, struct creq, t)); break;
        case T_OBS: coap_observer_timeout(ep, M2M_CONTAINER_OF(t, struct observer, t)); break;
        case T_PEER: peer_drain_non(ep, M2M_CONTAINER_OF(t, struct peer, t)); break;
        case T_B1: coap_block1_timeout(ep, M2M_CONTAINER_OF(t, struct block1, t)); break;
        }
    }
}

const struct m2m_coap_stats *m2m_coap_ep_stats(const struct m2m_coap_ep *ep)
{
    return &ep->stats;
}
size_t m2m_coap_ep_observer_count(const struct m2m_coap_ep *ep)
{
    return ep->n_obs;
}
size_t m2m_coap_ep_peer_count(const struct m2m_coap_ep *ep)
{
    return ep->peers.count;
}

uint32_t m2m_coap_ep_rto(const struct m2m_coap_ep *ep, const struct m2m_addr *peer, m2m_time now)
{
    if (ep->cfg.cc != M2M_COAP_CC_COCOA)
        return ep->cfg.tx.ack_timeout_ms;
    return coap_cocoa_peek_rto(ep, peer, now);
}
