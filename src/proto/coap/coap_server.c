/* The server half of the endpoint: requests handed to the application as
 * exchanges and answered piggybacked or separately (§5.2), atomic Block1
 * uploads assembled here (RFC 7959 §2.5), and answers sliced into Block2
 * blocks on demand (§2.4), so the application always sees whole bodies. */
#include <stdlib.h>
#include <string.h>

#include "coap_internal.h"

#define EXCH_INDEX_BITS 16
#define EXCH_INDEX_MASK ((1u << EXCH_INDEX_BITS) - 1)
#define EXCH_CHUNK 64

enum { EXCH_STAGE_ACK = 0, EXCH_STAGE_EXPIRE = 1 };

int coap_server_init(struct m2m_coap_ep *ep)
{
    ep->exch = NULL;
    ep->exch_cap = 0;
    ep->exch_free = UINT32_MAX;
    ep->exch_used = 0;
    return 0;
}

static struct exch *exch_at(struct m2m_coap_ep *ep, uint32_t idx)
{
    return &ep->exch[idx / EXCH_CHUNK][idx % EXCH_CHUNK];
}

static void block1_free(struct m2m_coap_ep *ep, struct block1 *b)
{
    m2m_hmap_remove(&ep->block1s, &b->hn);
    m2m_heap_cancel(&ep->timers, &b->t);
    free(b->path);
    free(b->buf);
    free(b);
    ep->n_b1--;
}

void coap_server_cleanup(struct m2m_coap_ep *ep)
{
    for (uint32_t i = 0; i < ep->exch_cap; i++) {
        struct exch *x = exch_at(ep, i);
        if (x->id) {
            m2m_heap_cancel(&ep->timers, &x->t);
            free(x->path);
            free(x->body);
        }
    }
    for (uint32_t i = 0; i < ep->exch_cap / EXCH_CHUNK; i++)
        free(ep->exch[i]);
    free(ep->exch);
    ep->exch = NULL;
    ep->exch_cap = 0;
    for (size_t i = 0; ep->block1s.b && i <= ep->block1s.mask; i++)
        while (ep->block1s.b[i])
            block1_free(ep, M2M_CONTAINER_OF(ep->block1s.b[i], struct block1, hn));
}

/* Adds one chunk of free exchanges, up to max_requests in all. */
static int exch_grow(struct m2m_coap_ep *ep)
{
    uint32_t max =
        (uint32_t)(ep->cfg.max_requests < EXCH_INDEX_MASK ? ep->cfg.max_requests : EXCH_INDEX_MASK);
    if (ep->exch_cap >= max)
        return M2M_ELIMIT;
    uint32_t nchunks = ep->exch_cap / EXCH_CHUNK;
    struct exch **v = realloc(ep->exch, (nchunks + 1) * sizeof *v);
    if (!v)
        return M2M_ENOMEM;
    ep->exch = v;
    struct exch *chunk = calloc(EXCH_CHUNK, sizeof *chunk);
    if (!chunk)
        return M2M_ENOMEM;
    v[nchunks] = chunk;
    uint32_t base = ep->exch_cap;
    uint32_t usable = max - base < EXCH_CHUNK ? max - base : EXCH_CHUNK;
    for (uint32_t i = 0; i < EXCH_CHUNK; i++)
        m2m_timer_init(&chunk[i].t, T_EXCH);
    /* Entries past max stay off the free list. */
    for (uint32_t i = usable; i-- > 0;) {
        chunk[i].next_free = ep->exch_free;
        ep->exch_free = base + i;
    }
    ep->exch_cap += EXCH_CHUNK;
    return 0;
}

/* Exchanges live in chunks that never move (timers point into them), with
 * a free list, so answering at once costs no allocation. */
static struct exch *exch_alloc(struct m2m_coap_ep *ep)
{
    if (ep->exch_free == UINT32_MAX && exch_grow(ep))
        return NULL;
    if (ep->exch_free == UINT32_MAX)
        return NULL;
    uint32_t idx = ep->exch_free;
    struct exch *x = exch_at(ep, idx);
    ep->exch_free = x->next_free;
    uint32_t gen = ep->next_id++ & 0xffff;
    if (!gen)
        gen = ep->next_id++ & 0xffff;
    memset(&x->peer, 0, sizeof *x - offsetof(struct exch, peer));
    x->id = (gen << EXCH_INDEX_BITS) | idx;
    ep->exch_used++;
    return x;
}

static struct exch *exch_get(struct m2m_coap_ep *ep, uint32_t id)
{
    uint32_t idx = id & EXCH_INDEX_MASK;
    if (!id || idx >= ep->exch_cap || exch_at(ep, idx)->id != id)
        return NULL;
    return exch_at(ep, idx);
}

static void exch_release(struct m2m_coap_ep *ep, struct exch *x)
{
    m2m_heap_cancel(&ep->timers, &x->t);
    /* The path and body may still be read through the event just handed out. */
    coap_grave(ep, x->path);
    coap_grave(ep, x->body);
    x->path = NULL;
    x->body = NULL;
    uint32_t idx = x->id & EXCH_INDEX_MASK;
    x->id = 0;
    x->next_free = ep->exch_free;
    ep->exch_free = idx;
    ep->exch_used--;
}

/* Sends `o` (token already set) as the answer to (type, mid) from `to`:
 * piggybacked in an ACK for a CON, as a NON for a NON. Caches it for
 * duplicates. */
static void answer_now(struct m2m_coap_ep *ep, const struct m2m_addr *to, uint8_t req_type, uint16_t mid,
                       struct m2m_coap_msg *o)
{
    struct dedup *d = coap_dedup_find(ep, to, mid);
    if (req_type == M2M_COAP_CON) {
        o->type = M2M_COAP_ACK;
        o->mid = mid;
    } else {
        o->type = M2M_COAP_NON;
        o->mid = coap_next_mid(ep);
    }
    uint8_t *copy = NULL;
    uint16_t copy_len = 0;
    coap_emit_msg(ep, to, o, (d && req_type == M2M_COAP_CON) ? &copy : NULL, &copy_len);
    if (d)
        coap_dedup_answer(d, copy, copy_len);
    ep->stats.responses_out++;
}

/* An answer the endpoint gives by itself (4.02, 4.08, 2.31 ...). */
static void answer_code(struct m2m_coap_ep *ep, const struct m2m_addr *to, const struct m2m_coap_msg *req,
                        uint8_t code, const struct m2m_coap_block *block1, uint32_t size1, const char *diag)
{
    struct m2m_coap_msg o;
    m2m_coap_msg_init(&o, 0, code);
    o.tkl = req->tkl;
    memcpy(o.token, req->token, req->tkl);
    if (block1)
        m2m_coap_add_block(&o, M2M_COAP_OPT_BLOCK1, block1);
    if (size1)
        m2m_coap_add_uint(&o, M2M_COAP_OPT_SIZE1, size1);
    if (diag) {
        /* §5.5.2: a diagnostic payload in plain text. */
        o.payload = (const uint8_t *)diag;
        o.payload_len = strlen(diag);
    }
    answer_now(ep, to, req->type, req->mid, &o);
}

void coap_server_duplicate(struct m2m_coap_ep *ep, struct dedup *d, const struct m2m_addr *from, uint8_t type)
{
    if (type != M2M_COAP_CON)
        return; /* §4.5: duplicate NONs are silently ignored */
    if (d->answered) {
        if (d->resp)
            coap_emit(ep, from, d->resp, d->resp_len);
        return;
    }
    /* Still being processed: acknowledge now, answer separately later. */
    struct exch *x = exch_get(ep, d->exch);
    if (x && !x->acked) {
        coap_exch_timeout(ep, x);
    }
}

void coap_exch_timeout(struct m2m_coap_ep *ep, struct exch *x)
{
    if (x->type == M2M_COAP_CON && !x->acked) {
        x->acked = true;
        coap_send_empty(ep, &x->peer, M2M_COAP_ACK, x->mid);
        struct dedup *d = coap_dedup_find(ep, &x->peer, x->mid);
        if (d) {
            uint8_t *ack = malloc(4);
            if (ack) {
                ack[0] = 0x60;
                ack[1] = 0;
                ack[2] = (uint8_t)(x->mid >> 8);
                ack[3] = (uint8_t)x->mid;
            }
            coap_dedup_answer(d, ack, ack ? 4 : 0);
        }
        coap_timer_set(ep, &x->t, ep->now + ep->exchange_lifetime);
        return;
    }
    if (x->type == M2M_COAP_NON && !x->acked) {
        x->acked = true; /* the NON exchange may still be answered for a while */
        coap_timer_set(ep, &x->t, ep->now + ep->non_lifetime);
        return;
    }
    /* Nobody answered within the exchange lifetime: the client gave up. */
    COAP_LOG(ep, M2M_LOG_WARN, &x->peer, "request %s left unanswered", x->path ? x->path : "");
    exch_release(ep, x);
}

static uint64_t b1_hash(struct m2m_coap_ep *ep, const struct m2m_addr *a, const char *path)
{
    return m2m_hash_mix(coap_addr_hash(ep, a), m2m_hash_keyed(ep->hash_key, path, strlen(path)));
}

static struct block1 *block1_find(struct m2m_coap_ep *ep, const struct m2m_addr *a, const char *path)
{
    for (struct m2m_hnode *n = m2m_hmap_first(&ep->block1s, b1_hash(ep, a, path)); n; n = m2m_hmap_next(n)) {
        struct block1 *b = M2M_CONTAINER_OF(n, struct block1, hn);
        if (coap_addr_eq(&b->peer, a) && !strcmp(b->path, path))
            return b;
    }
    return NULL;
}

void coap_block1_timeout(struct m2m_coap_ep *ep, struct block1 *b)
{
    COAP_LOG(ep, M2M_LOG_DEBUG, &b->peer, "block1 upload to %s abandoned after %zu bytes", b->path, b->len);
    block1_free(ep, b);
}

enum b1_result { B1_HANDLED, B1_COMPLETE };

/* One Block1 block of an atomic upload. Either answers by itself (2.31,
 * 4.08, 4.13, 4.00) or returns the complete body in *body. */
static enum b1_result block1_step(struct m2m_coap_ep *ep, const struct m2m_addr *from,
                                  const struct m2m_coap_msg *m, const char *path,
                                  const struct m2m_coap_block *b1, uint8_t **body, size_t *body_len)
{
    size_t size = m2m_coap_block_size(b1->szx);
    uint64_t off = (uint64_t)b1->num * size;
    struct block1 *b = block1_find(ep, from, path);
    size_t max = ep->cfg.max_body;
    if (b1->num == 0) {
        uint32_t size1 = m2m_coap_get_uint(m, M2M_COAP_OPT_SIZE1, 0);
        if (size1 > max) {
            if (b)
                block1_free(ep, b);
            answer_code(ep, from, m, M2M_COAP_REQUEST_ENTITY_TOO_LARGE, NULL, (uint32_t)max, NULL);
            return B1_HANDLED;
        }
        if (!b1->more) {
            /* A single block: nothing to assemble. */
            if (b)
                block1_free(ep, b);
            *body = NULL;
            *body_len = 0;
            return B1_COMPLETE;
        }
        if (b) {
            b->len = 0;
        } else {
            if (ep->n_b1 >= ep->cfg.max_block1) {
                answer_code(ep, from, m, M2M_COAP_SERVICE_UNAVAILABLE, NULL, 0,
                            "too many uploads in progress");
                return B1_HANDLED;
            }
            b = calloc(1, sizeof *b);
            if (!b || !(b->path = coap_strdup(path))) {
                free(b);
                answer_code(ep, from, m, M2M_COAP_INTERNAL_SERVER_ERROR, NULL, 0, NULL);
                return B1_HANDLED;
            }
            b->peer = *from;
            m2m_timer_init(&b->t, T_B1);
            m2m_hmap_insert(&ep->block1s, &b->hn, b1_hash(ep, from, path));
            ep->n_b1++;
        }
    } else if (!b || off != b->len) {
        /* §2.3: a block out of sequence means the body cannot be whole. */
        if (b)
            block1_free(ep, b);
        answer_code(ep, from, m, M2M_COAP_REQUEST_ENTITY_INCOMPLETE, NULL, 0, NULL);
        return B1_HANDLED;
    }
    if (b1->more && m->payload_len != size) {
        block1_free(ep, b);
        answer_code(ep, from, m, M2M_COAP_BAD_REQUEST, NULL, 0, "block payload differs from its size");
        return B1_HANDLED;
    }
    if (b->len + m->payload_len > max) {
        block1_free(ep, b);
        answer_code(ep, from, m, M2M_COAP_REQUEST_ENTITY_TOO_LARGE, NULL, (uint32_t)max, NULL);
        return B1_HANDLED;
    }
    if (b->len + m->payload_len > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + m->payload_len)
            cap *= 2;
        if (cap > max)
            cap = max;
        uint8_t *nb = realloc(b->buf, cap);
        if (!nb) {
            block1_free(ep, b);
            answer_code(ep, from, m, M2M_COAP_INTERNAL_SERVER_ERROR, NULL, 0, NULL);
            return B1_HANDLED;
        }
        b->buf = nb;
        b->cap = cap;
    }
    if (m->payload_len)
        memcpy(b->buf + b->len, m->payload, m->payload_len);
    b->len += m->payload_len;
    if (b1->more) {
        /* A smaller SZX here asks the client for smaller blocks from now on. */
        struct m2m_coap_block echo = *b1;
        if (echo.szx > ep->cfg.block_szx)
            echo.szx = ep->cfg.block_szx;
        coap_timer_set(ep, &b->t, ep->now + ep->exchange_lifetime);
        answer_code(ep, from, m, M2M_COAP_CONTINUE, &echo, 0, NULL);
        return B1_HANDLED;
    }
    *body = b->buf;
    *body_len = b->len;
    b->buf = NULL;
    block1_free(ep, b);
    return B1_COMPLETE;
}

void coap_server_request(struct m2m_coap_ep *ep, const struct m2m_addr *from, const struct m2m_coap_msg *m,
                         const uint8_t *dgram, size_t n)
{
    struct dedup *d = coap_dedup_add(ep, from, m->mid, m->type == M2M_COAP_CON);
    const struct m2m_coap_opt *bad = m2m_coap_bad_critical(m);
    struct m2m_coap_block b1, b2;
    int b1rc = m2m_coap_get_block(m, M2M_COAP_OPT_BLOCK1, &b1);
    int b2rc = m2m_coap_get_block(m, M2M_COAP_OPT_BLOCK2, &b2);
    if (bad || b1rc == M2M_EMALFORMED || b2rc == M2M_EMALFORMED) {
        /* §5.4.1: an unrecognised critical option in a CON is answered with
         * 4.02; a NON carrying one is rejected (§4.3): a RST, no response. */
        COAP_LOG(ep, M2M_LOG_DEBUG, from, "bad critical option %u", bad ? bad->num : 0);
        if (m->type == M2M_COAP_CON) {
            answer_code(ep, from, m, M2M_COAP_BAD_OPTION, NULL, 0, NULL);
        } else {
            coap_send_empty(ep, from, M2M_COAP_RST, m->mid);
            if (d)
                coap_dedup_answer(d, NULL, 0);
        }
        return;
    }
    if (m2m_coap_has_opt(m, M2M_COAP_OPT_PROXY_URI) || m2m_coap_has_opt(m, M2M_COAP_OPT_PROXY_SCHEME)) {
        answer_code(ep, from, m, M2M_COAP_PROXYING_NOT_SUPPORTED, NULL, 0, NULL);
        return;
    }
    char pathbuf[1024];
    if (m2m_coap_msg_path(m, pathbuf, sizeof pathbuf)) {
        answer_code(ep, from, m, M2M_COAP_CODE(4, 14), NULL, 0, NULL); /* URI Too Long */
        return;
    }
    uint32_t observe = m2m_coap_get_uint(m, M2M_COAP_OPT_OBSERVE, UINT32_MAX);
    if (m->code == M2M_COAP_GET && observe == 1) {
        /* RFC 7641 §3.6: deregistration; the request is then served as usual. */
        struct observer *o = coap_observer_find(ep, from, m->token, m->tkl);
        if (o)
            coap_observer_remove(ep, o, true);
    }
    uint8_t *body = NULL;
    size_t body_len = 0;
    if (b1rc == 0 && block1_step(ep, from, m, pathbuf, &b1, &body, &body_len) == B1_HANDLED)
        return;
    struct exch *x = exch_alloc(ep);
    char *path = x ? coap_strdup(pathbuf) : NULL;
    if (!x || !path) {
        free(body);
        if (x) {
            x->path = NULL;
            exch_release(ep, x);
        }
        answer_code(ep, from, m, M2M_COAP_SERVICE_UNAVAILABLE, NULL, 0, "server busy");
        return;
    }
    x->peer = *from;
    x->mid = m->mid;
    x->type = m->type;
    x->code = m->code;
    x->tkl = m->tkl;
    memcpy(x->token, m->token, m->tkl);
    x->path = path;
    x->body = body;
    x->body_len = body_len;
    x->has_block1 = b1rc == 0;
    x->block1 = b1;
    x->has_block2 = b2rc == 0;
    x->block2 = b2;
    x->observe_reg = m->code == M2M_COAP_GET && observe == 0 && (b2rc != 0 || b2.num == 0);
    if (d)
        d->exch = x->id;
    coap_timer_set(ep, &x->t, ep->now + ep->cfg.separate_after_ms);
    struct evq_item it = {.type = M2M_COAP_EV_REQUEST, .id = x->id, .peer = *from, .path = path};
    if (body) {
        it.body = body;
        it.body_len = body_len;
    }
    if (coap_push_event(ep, &it, dgram, n)) {
        exch_release(ep, x);
        answer_code(ep, from, m, M2M_COAP_SERVICE_UNAVAILABLE, NULL, 0, NULL);
    }
}

int coap_block2_slice(const struct m2m_coap_msg *full, struct m2m_coap_msg *out, uint32_t num, uint8_t szx,
                      bool with_size2)
{
    size_t size = m2m_coap_block_size(szx);
    uint64_t off = (uint64_t)num * size;
    if (off > full->payload_len || (off == full->payload_len && num > 0))
        return M2M_EINVAL;
    size_t left = full->payload_len - (size_t)off;
    struct m2m_coap_block b = {.num = num, .more = left > size, .szx = szx};
    out->payload = full->payload ? full->payload + off : NULL;
    out->payload_len = left > size ? size : left;
    int rc = m2m_coap_add_block(out, M2M_COAP_OPT_BLOCK2, &b);
    if (!rc && with_size2)
        rc = m2m_coap_add_uint(out, M2M_COAP_OPT_SIZE2, (uint32_t)full->payload_len);
    return rc;
}

int m2m_coap_respond(struct m2m_coap_ep *ep, uint32_t id, const struct m2m_coap_msg *resp)
{
    struct exch *x = exch_get(ep, id);
    if (!x)
        return M2M_ENOTFOUND;
    int rc = 0;
    struct m2m_coap_msg o = *resp;
    o.tkl = x->tkl;
    memcpy(o.token, x->token, x->tkl);
    m2m_coap_del_opt(&o, M2M_COAP_OPT_BLOCK2);
    m2m_coap_del_opt(&o, M2M_COAP_OPT_SIZE2);
    m2m_coap_del_opt(&o, M2M_COAP_OPT_BLOCK1);
    uint8_t szx = ep->cfg.block_szx;
    if (x->has_block2 && x->block2.szx < szx)
        szx = x->block2.szx;
    if (m2m_coap_has_opt(resp, M2M_COAP_OPT_OBSERVE)) {
        m2m_coap_del_opt(&o, M2M_COAP_OPT_OBSERVE);
        if (x->observe_reg && M2M_COAP_CODE_CLASS(resp->code) == 2) {
            uint32_t seq;
            rc = coap_observer_add(ep, &x->peer, x->token, x->tkl, x->path, szx, &seq);
            if (!rc)
                m2m_coap_add_uint(&o, M2M_COAP_OPT_OBSERVE, seq);
        }
    }
    if (x->has_block1) {
        struct m2m_coap_block echo = x->block1;
        echo.more = false;
        m2m_coap_add_block(&o, M2M_COAP_OPT_BLOCK1, &echo);
    }
    /* Slice a body larger than a block, and answer a block request with its
     * block; an error answer without a large body goes out as it is rather
     * than becoming a 4.02 for a block past its end. */
    bool slice = resp->payload_len > m2m_coap_block_size(szx) ||
                 (x->has_block2 && M2M_COAP_CODE_CLASS(resp->code) == 2);
    if (slice) {
        uint32_t num = x->has_block2 ? x->block2.num : 0;
        if (coap_block2_slice(resp, &o, num, szx, num == 0)) {
            m2m_coap_msg_init(&o, 0, M2M_COAP_BAD_OPTION);
            o.tkl = x->tkl;
            memcpy(o.token, x->token, x->tkl);
        }
    }
    if (x->type == M2M_COAP_CON && x->acked) {
        /* Separate response (§5.2.2): a CON of its own, retransmitted. */
        o.type = M2M_COAP_CON;
        o.mid = coap_next_mid(ep);
        size_t need = m2m_coap_encoded_size(&o), len;
        uint8_t *buf = malloc(need);
        struct peer *p = coap_peer_get(ep, &x->peer, true);
        if (!buf || !p || m2m_coap_encode(&o, buf, need, &len)) {
            free(buf);
            exch_release(ep, x);
            return M2M_ENOMEM;
        }
        coap_xmit_start(ep, p, buf, len, o.mid, XK_SEPARATE, NULL);
        ep->stats.responses_out++;
    } else {
        answer_now(ep, &x->peer, x->type, x->mid, &o);
    }
    exch_release(ep, x);
    return rc;
}
