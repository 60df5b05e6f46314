/* The client half of the endpoint: our requests from first block to whole
 * answer (Block1 uploads with the server's SZX, Block2 reassembly), and our
 * observations (RFC 7641 §3): freshness of notifications (§3.4),
 * re-registration when Max-Age runs out (§3.3.1), and cancellation. */
#include <stdlib.h>
#include <string.h>

#include "coap_internal.h"

#define REREGISTER_MARGIN_MS 2000
#define MAX_B1_RETRIES 6

static uint64_t id_hash(uint32_t id)
{
    return m2m_hash_mix(0x636f6170, id);
}

static struct creq *creq_by_id(struct m2m_coap_ep *ep, uint32_t id)
{
    for (struct m2m_hnode *n = m2m_hmap_first(&ep->creqs_by_id, id_hash(id)); n; n = m2m_hmap_next(n)) {
        struct creq *c = M2M_CONTAINER_OF(n, struct creq, hn_id);
        if (c->id == id)
            return c;
    }
    return NULL;
}

static struct tokref *tok_find(struct m2m_coap_ep *ep, const struct m2m_addr *a, const uint8_t *tok,
                               size_t tkl)
{
    uint64_t h = coap_addr_tok_hash(ep, a, tok, tkl);
    for (struct m2m_hnode *n = m2m_hmap_first(&ep->tokens, h); n; n = m2m_hmap_next(n)) {
        struct tokref *t = M2M_CONTAINER_OF(n, struct tokref, hn);
        if (t->tkl == tkl && !memcmp(t->token, tok, tkl) && coap_addr_eq(&t->owner->peer->addr, a))
            return t;
    }
    return NULL;
}

static void tok_unlink(struct m2m_coap_ep *ep, struct tokref *t)
{
    if (t->linked)
        m2m_hmap_remove(&ep->tokens, &t->hn);
    t->linked = false;
}

static void tok_link(struct m2m_coap_ep *ep, struct tokref *t)
{
    m2m_hmap_insert(&ep->tokens, &t->hn, coap_addr_tok_hash(ep, &t->owner->peer->addr, t->token, t->tkl));
    t->linked = true;
}

/* A token not in use towards this peer. */
static void fresh_token(struct m2m_coap_ep *ep, struct creq *c, struct tokref *t)
{
    t->owner = c;
    t->tkl = ep->cfg.token_len;
    for (int i = 0; i < 8; i++) {
        coap_random_token(ep, t->token, t->tkl);
        if (!tok_find(ep, &c->peer->addr, t->token, t->tkl))
            break;
    }
    tok_link(ep, t);
}

static void creq_free(struct m2m_coap_ep *ep, struct creq *c)
{
    if (c->x) {
        c->x->owner = NULL;
        coap_xmit_cancel(ep, c->x);
    }
    tok_unlink(ep, &c->main);
    tok_unlink(ep, &c->cur);
    m2m_hmap_remove(&ep->creqs_by_id, &c->hn_id);
    m2m_heap_cancel(&ep->timers, &c->t);
    free(c->tmpl);
    free(c->body);
    coap_grave(ep, c->b2buf);
    coap_peer_unref(ep, c->peer);
    free(c);
    ep->n_creq--;
}

static void fail(struct m2m_coap_ep *ep, struct creq *c, int err)
{
    struct evq_item it = {.type = M2M_COAP_EV_FAILED, .id = c->id, .err = err, .peer = c->peer->addr};
    coap_push_event(ep, &it, NULL, 0);
    creq_free(ep, c);
}

/* Drops whatever exchange of `c` is outstanding: its CON, the token of a
 * block request, a Block2 transfer in progress. */
static void abandon(struct m2m_coap_ep *ep, struct creq *c)
{
    if (c->x) {
        c->x->owner = NULL;
        coap_xmit_cancel(ep, c->x);
        c->x = NULL;
    }
    tok_unlink(ep, &c->cur);
    c->b2_active = false;
    c->awaiting = false;
}

static bool observing(const struct creq *c)
{
    return c->observe && c->established && !c->deregistering;
}

enum send_kind { SEND_FIRST, SEND_NEXT, SEND_DEREGISTER };

/* Builds the next message of request `c` from its template and sends it. */
static int send_msg(struct m2m_coap_ep *ep, struct creq *c, enum send_kind kind)
{
    struct m2m_coap_msg m;
    if (m2m_coap_decode(&m, c->tmpl, c->tmpl_len))
        return M2M_EINVAL;
    m.type = c->type;
    m.mid = coap_next_mid(ep);
    tok_unlink(ep, &c->cur);
    struct tokref *t = &c->main;
    if (kind == SEND_NEXT) {
        fresh_token(ep, c, &c->cur);
        t = &c->cur;
        m2m_coap_del_opt(&m, M2M_COAP_OPT_OBSERVE);
    } else if (kind == SEND_DEREGISTER) {
        m2m_coap_del_opt(&m, M2M_COAP_OPT_OBSERVE);
        m2m_coap_add_uint(&m, M2M_COAP_OPT_OBSERVE, 1);
    }
    m.tkl = t->tkl;
    memcpy(m.token, t->token, t->tkl);
    c->sent_main = t == &c->main;
    if (c->b2_active) {
        /* The server's block size, or the smaller one we asked for. */
        uint8_t szx = c->b2szx;
        if (c->b2_want && c->b2_want - 1 < szx)
            szx = (uint8_t)(c->b2_want - 1);
        struct m2m_coap_block b = {.num = (uint32_t)(c->b2len / m2m_coap_block_size(szx)), .szx = szx};
        m2m_coap_add_block(&m, M2M_COAP_OPT_BLOCK2, &b);
    } else if (c->b2_want && kind != SEND_DEREGISTER && !c->b1_active) {
        /* RFC 7959 §2.4: ask for a smaller block size up front. */
        struct m2m_coap_block b = {.num = 0, .szx = (uint8_t)(c->b2_want - 1)};
        m2m_coap_add_block(&m, M2M_COAP_OPT_BLOCK2, &b);
    }
    if (c->b1_active && !c->b2_active) {
        size_t size = m2m_coap_block_size(c->b1_szx);
        size_t left = c->body_len - c->b1_off;
        struct m2m_coap_block b = {
            .num = (uint32_t)(c->b1_off / size), .more = left > size, .szx = c->b1_szx};
        m2m_coap_add_block(&m, M2M_COAP_OPT_BLOCK1, &b);
        if (c->b1_off == 0)
            m2m_coap_add_uint(&m, M2M_COAP_OPT_SIZE1, (uint32_t)c->body_len);
        m.payload = c->body + c->b1_off;
        m.payload_len = left > size ? size : left;
    } else if (!c->b2_active && kind != SEND_DEREGISTER) {
        m.payload = c->body;
        m.payload_len = c->body_len;
    }
    size_t need = m2m_coap_encoded_size(&m), len;
    if (need > ep->cfg.max_message)
        return M2M_ENOBUFS;
    uint8_t *buf = malloc(need);
    if (!buf || m2m_coap_encode(&m, buf, need, &len)) {
        free(buf);
        return M2M_ENOMEM;
    }
    ep->stats.requests_out++;
    c->awaiting = true;
    /* While an observation lives, its timer is the Max-Age deadline; the
     * blocks of a notification's body are fetched under it. */
    bool keep_timer = observing(c) && kind == SEND_NEXT;
    if (c->type == M2M_COAP_CON) {
        if (!keep_timer)
            m2m_heap_cancel(&ep->timers, &c->t);
        c->x = coap_xmit_start(ep, c->peer, buf, len, m.mid, XK_REQUEST, c);
        return c->x ? 0 : M2M_ENOMEM;
    }
    int rc = coap_send_non(ep, c->peer, buf, len);
    free(buf);
    c->non_mid = m.mid;
    c->sent_non = true;
    uint32_t wait = ep->cfg.nonrequest_timeout_ms ? ep->cfg.nonrequest_timeout_ms : ep->non_lifetime;
    if (!keep_timer)
        coap_timer_set(ep, &c->t, ep->now + wait);
    return rc;
}

int m2m_coap_request(struct m2m_coap_ep *ep, m2m_time now, const struct m2m_addr *to,
                     const struct m2m_coap_msg *req, uint32_t *id)
{
    ep->now = now;
    if ((req->type != M2M_COAP_CON && req->type != M2M_COAP_NON) || req->code < 1 || req->code > 31 ||
        req->tkl > 8)
        return M2M_EINVAL;
    if (req->payload_len > ep->cfg.max_body)
        return M2M_ELIMIT;
    if (ep->n_creq >= ep->cfg.max_requests)
        return M2M_ELIMIT;
    struct peer *p = coap_peer_get(ep, to, true);
    if (!p)
        return M2M_ELIMIT;
    coap_peer_ref(p); /* so a failure below frees a peer created for us */
    struct creq *c = calloc(1, sizeof *c);
    if (!c) {
        coap_peer_unref(ep, p);
        return M2M_ENOMEM;
    }
    c->peer = p;
    c->type = req->type;
    m2m_timer_init(&c->t, T_CREQ);
    struct m2m_coap_msg t = *req;
    t.payload = NULL;
    t.payload_len = 0;
    t.tkl = 0;
    t.mid = 0;
    m2m_coap_del_opt(&t, M2M_COAP_OPT_BLOCK1);
    m2m_coap_del_opt(&t, M2M_COAP_OPT_BLOCK2);
    m2m_coap_del_opt(&t, M2M_COAP_OPT_SIZE1);
    c->tmpl_len = m2m_coap_encoded_size(&t);
    c->tmpl = malloc(c->tmpl_len);
    c->body_len = req->payload_len;
    c->body = req->payload_len ? malloc(req->payload_len) : NULL;
    if (!c->tmpl || (req->payload_len && !c->body) ||
        m2m_coap_encode(&t, c->tmpl, c->tmpl_len, &c->tmpl_len)) {
        free(c->tmpl);
        free(c->body);
        coap_peer_unref(ep, p);
        free(c);
        return M2M_ENOMEM;
    }
    if (req->payload_len)
        memcpy(c->body, req->payload, req->payload_len);
    c->id = ep->next_id++;
    if (!c->id)
        c->id = ep->next_id++;
    m2m_hmap_insert(&ep->creqs_by_id, &c->hn_id, id_hash(c->id));
    ep->n_creq++;
    c->cur.owner = c;
    if (req->tkl) {
        c->main.owner = c;
        c->main.tkl = req->tkl;
        memcpy(c->main.token, req->token, req->tkl);
        tok_link(ep, &c->main);
    } else {
        fresh_token(ep, c, &c->main);
    }
    c->observe = req->code == M2M_COAP_GET && m2m_coap_get_uint(req, M2M_COAP_OPT_OBSERVE, 1) == 0;
    struct m2m_coap_block want;
    if (m2m_coap_get_block(req, M2M_COAP_OPT_BLOCK2, &want) == 0 && want.num == 0)
        c->b2_want = (uint8_t)(want.szx + 1);
    c->b1_szx = ep->cfg.block_szx;
    c->b1_active = c->body_len > m2m_coap_block_size(c->b1_szx);
    int rc = send_msg(ep, c, SEND_FIRST);
    if (rc) {
        creq_free(ep, c);
        return rc;
    }
    *id = c->id;
    return 0;
}

int m2m_coap_cancel(struct m2m_coap_ep *ep, m2m_time now, uint32_t id, bool deregister)
{
    ep->now = now;
    struct creq *c = creq_by_id(ep, id);
    if (!c)
        return M2M_ENOTFOUND;
    if (deregister && observing(c)) {
        abandon(ep, c);
        c->deregistering = true;
        c->reregistering = false;
        c->b1_active = false;
        c->b2_notify = false; /* its answer is a response, not a notification */
        m2m_heap_cancel(&ep->timers, &c->t);
        int rc = send_msg(ep, c, SEND_DEREGISTER);
        if (rc)
            creq_free(ep, c);
        return rc;
    }
    creq_free(ep, c);
    return 0;
}

void coap_client_xmit_done(struct m2m_coap_ep *ep, struct creq *c, int err)
{
    c->x = NULL;
    if (err) {
        fail(ep, c, err);
        return;
    }
    /* Empty ACK: the answer comes as a separate response (§5.2.2). An
     * observation's Max-Age deadline, if armed, stays the one that counts. */
    if (!m2m_timer_armed(&c->t))
        coap_timer_set(ep, &c->t, ep->now + ep->exchange_lifetime);
}

void coap_client_timeout(struct m2m_coap_ep *ep, struct creq *c)
{
    if (observing(c) && !c->reregistering) {
        /* RFC 7641 §3.3.1: Max-Age ran out without a notification: register
         * again with the same token, dropping any body fetch under way. */
        abandon(ep, c);
        c->reregistering = true;
        if (send_msg(ep, c, SEND_FIRST))
            fail(ep, c, M2M_ENOMEM);
        return;
    }
    ep->stats.timeouts++;
    fail(ep, c, M2M_ETIMEDOUT);
}

void coap_client_rst(struct m2m_coap_ep *ep, const struct m2m_addr *from, uint16_t mid)
{
    for (size_t i = 0; i <= ep->creqs_by_id.mask; i++) {
        for (struct m2m_hnode *n = ep->creqs_by_id.b[i]; n; n = n->next) {
            struct creq *c = M2M_CONTAINER_OF(n, struct creq, hn_id);
            if (c->sent_non && c->non_mid == mid && coap_addr_eq(&c->peer->addr, from)) {
                fail(ep, c, M2M_ERESET);
                return;
            }
        }
    }
}

static void deliver(struct m2m_coap_ep *ep, struct creq *c, enum m2m_coap_event_type type,
                    const uint8_t *dgram, size_t n, const uint8_t *body, size_t body_len)
{
    struct evq_item it = {
        .type = type, .id = c->id, .peer = c->peer->addr, .body = body, .body_len = body_len};
    coap_push_event(ep, &it, dgram, n);
}

enum answer_result { ANS_KEEP, ANS_DONE, ANS_GONE };

/* Keeps going after a response or gives the whole answer to the
 * application. ANS_DONE: the caller frees `c`; ANS_GONE: already freed. */
static enum answer_result on_answer(struct m2m_coap_ep *ep, struct creq *c, const struct m2m_coap_msg *m,
                                    const uint8_t *dgram, size_t n)
{
    if (c->b1_active) {
        struct m2m_coap_block b1;
        bool has_b1 = m2m_coap_get_block(m, M2M_COAP_OPT_BLOCK1, &b1) == 0;
        if (m->code == M2M_COAP_CONTINUE) {
            if (!has_b1) {
                fail(ep, c, M2M_EMALFORMED);
                return ANS_GONE;
            }
            c->b1_off += m2m_coap_block_size(c->b1_szx);
            if (b1.szx < c->b1_szx)
                c->b1_szx = b1.szx; /* the server asks for smaller blocks */
            if (c->b1_off >= c->body_len) {
                fail(ep, c, M2M_EMALFORMED);
                return ANS_GONE;
            }
            if (send_msg(ep, c, SEND_NEXT)) {
                fail(ep, c, M2M_ENOMEM);
                return ANS_GONE;
            }
            return ANS_KEEP;
        }
        if (m->code == M2M_COAP_REQUEST_ENTITY_TOO_LARGE && c->b1_szx > 0 &&
            c->b1_retries++ < MAX_B1_RETRIES && !m2m_coap_has_opt(m, M2M_COAP_OPT_SIZE1)) {
            c->b1_szx = (has_b1 && b1.szx < c->b1_szx) ? b1.szx : (uint8_t)(c->b1_szx - 1);
            c->b1_off = 0;
            if (send_msg(ep, c, SEND_NEXT)) {
                fail(ep, c, M2M_ENOMEM);
                return ANS_GONE;
            }
            return ANS_KEEP;
        }
        c->b1_active = false;
    }
    struct m2m_coap_block b2;
    bool has_b2 = m2m_coap_get_block(m, M2M_COAP_OPT_BLOCK2, &b2) == 0;
    if (has_b2 && (b2.more || c->b2_active) && M2M_COAP_CODE_CLASS(m->code) == 2) {
        if (!c->b2_active) {
            if (b2.num != 0) {
                fail(ep, c, M2M_EMALFORMED);
                return ANS_GONE;
            }
            c->b2_active = true;
            c->b2len = 0;
        } else if ((uint64_t)b2.num * m2m_coap_block_size(b2.szx) != c->b2len) {
            fail(ep, c, M2M_EMALFORMED);
            return ANS_GONE;
        }
        if (c->b2len + m->payload_len > ep->cfg.max_body) {
            fail(ep, c, M2M_ELIMIT);
            return ANS_GONE;
        }
        uint8_t *nb = realloc(c->b2buf, c->b2len + m->payload_len + 1);
        if (!nb) {
            fail(ep, c, M2M_ENOMEM);
            return ANS_GONE;
        }
        c->b2buf = nb;
        if (m->payload_len)
            memcpy(c->b2buf + c->b2len, m->payload, m->payload_len);
        c->b2len += m->payload_len;
        c->b2szx = b2.szx;
        if (b2.more) {
            if (c->b2len % m2m_coap_block_size(c->b2szx)) {
                fail(ep, c, M2M_EMALFORMED);
                return ANS_GONE;
            }
            if (send_msg(ep, c, SEND_NEXT)) {
                fail(ep, c, M2M_ENOMEM);
                return ANS_GONE;
            }
            return ANS_KEEP;
        }
        c->b2_active = false;
        tok_unlink(ep, &c->cur);
        deliver(ep, c, c->b2_notify ? M2M_COAP_EV_NOTIFY : M2M_COAP_EV_RESPONSE, dgram, n, c->b2buf,
                c->b2len);
        coap_grave(ep, c->b2buf);
        c->b2buf = NULL;
        c->b2len = 0;
        return (c->observe && c->established && !c->deregistering) ? ANS_KEEP : ANS_DONE;
    }
    deliver(ep, c, c->b2_notify ? M2M_COAP_EV_NOTIFY : M2M_COAP_EV_RESPONSE, dgram, n, NULL, 0);
    return (c->observe && c->established && !c->deregistering) ? ANS_KEEP : ANS_DONE;
}

void coap_client_response(struct m2m_coap_ep *ep, const struct m2m_addr *from, const struct m2m_coap_msg *m,
                          const uint8_t *dgram, size_t n)
{
    struct tokref *t = tok_find(ep, from, m->token, m->tkl);
    if (m->type != M2M_COAP_ACK) {
        /* CON: acknowledge, or reject an answer nobody waits for (RFC 7641
         * §3.6); NON: reject only what nobody waits for. */
        uint8_t reply = t ? M2M_COAP_ACK : M2M_COAP_RST;
        if (m->type == M2M_COAP_CON || !t) {
            coap_send_empty(ep, from, reply, m->mid);
            struct dedup *d = coap_dedup_find(ep, from, m->mid);
            uint8_t *copy = malloc(4);
            if (d && copy) {
                copy[0] = (uint8_t)(0x40 | (reply << 4));
                copy[1] = 0;
                copy[2] = (uint8_t)(m->mid >> 8);
                copy[3] = (uint8_t)m->mid;
                coap_dedup_answer(d, copy, 4);
            } else {
                free(copy);
            }
        }
    }
    if (!t)
        return;
    struct creq *c = t->owner;
    bool is_main = t == &c->main;
    bool has_obs = m2m_coap_has_opt(m, M2M_COAP_OPT_OBSERVE);
    bool ok = M2M_COAP_CODE_CLASS(m->code) == 2;
    /* The piggybacked answer to what we sent last on the main token. */
    bool reply = m->type == M2M_COAP_ACK && c->awaiting && c->sent_main && is_main;
    if (c->observe && is_main) {
        if (c->deregistering) {
            if (has_obs && !reply)
                return; /* a notification crossing our deregistration */
        } else if (has_obs && ok) {
            uint32_t seq = m2m_coap_get_uint(m, M2M_COAP_OPT_OBSERVE, 0);
            /* §3.4: drop what is older than what we have. The answer to our
             * own re-registration sets a new baseline instead. */
            if (c->established && !reply &&
                !m2m_coap_observe_fresher(c->last_seq, c->last_time, seq, ep->now))
                return;
            /* Fresh: it ends whatever we were waiting for (registration,
             * re-registration, the body of an older notification). If that
             * was the body of the registration's answer, this one stands in
             * for it and is still the RESPONSE. */
            bool reg_body = c->b2_active && !c->b2_notify;
            abandon(ep, c);
            bool first = !c->established || reg_body;
            c->established = true;
            c->reregistering = false;
            c->last_seq = seq;
            c->last_time = ep->now;
            uint32_t max_age = m2m_coap_get_uint(m, M2M_COAP_OPT_MAX_AGE, 60);
            coap_timer_set(ep, &c->t, ep->now + (m2m_time)max_age * 1000 + REREGISTER_MARGIN_MS);
            if (!first)
                ep->stats.notifications++;
            c->b2_notify = !first;
            on_answer(ep, c, m, dgram, n);
            return;
        } else if (c->established) {
            /* A final notification (an error, or no Observe) ends it. */
            abandon(ep, c);
            deliver(ep, c, M2M_COAP_EV_NOTIFY, dgram, n, NULL, 0);
            creq_free(ep, c);
            return;
        } else {
            c->observe = false; /* the server would not let us observe */
        }
    }
    /* Otherwise only the answer to the message we sent last counts; late
     * answers to earlier blocks or duplicates are dropped. */
    if (!c->awaiting || is_main != c->sent_main)
        return;
    if (c->x) {
        /* An answer implies our request arrived, even if its ACK did not. */
        c->x->owner = NULL;
        coap_xmit_cancel(ep, c->x);
        c->x = NULL;
    }
    c->awaiting = false;
    if (!observing(c))
        m2m_heap_cancel(&ep->timers, &c->t);
    if (on_answer(ep, c, m, dgram, n) == ANS_DONE)
        creq_free(ep, c);
}

void coap_client_cleanup(struct m2m_coap_ep *ep)
{
    for (size_t i = 0; ep->creqs_by_id.b && i <= ep->creqs_by_id.mask; i++)
        while (ep->creqs_by_id.b[i])
            creq_free(ep, M2M_CONTAINER_OF(ep->creqs_by_id.b[i], struct creq, hn_id));
}
