/* Observers (RFC 7641, server side): registration, sequence numbers,
 * notifications as CON or NON (a CON at least every notify_con_every_ms),
 * newest state only while a CON notification is in flight (§4.5.2), a cap on
 * the notification rate, and deregistration by RST, by a timed-out CON, by
 * GET with Observe=1 or by a final non-2.xx state. */
#include <stdlib.h>
#include <string.h>

#include "coap_internal.h"

static uint64_t mid_hash(struct m2m_coap_ep *ep, const struct m2m_addr *a, uint16_t mid)
{
    return m2m_hash_mix(coap_addr_hash(ep, a), 0x10000u | mid);
}

struct observer *coap_observer_find(struct m2m_coap_ep *ep, const struct m2m_addr *a, const uint8_t *tok,
                                    size_t tkl)
{
    uint64_t h = coap_addr_tok_hash(ep, a, tok, tkl);
    for (struct m2m_hnode *n = m2m_hmap_first(&ep->observers, h); n; n = m2m_hmap_next(n)) {
        struct observer *o = M2M_CONTAINER_OF(n, struct observer, hn);
        if (o->tkl == tkl && !memcmp(o->token, tok, tkl) && coap_addr_eq(&o->peer->addr, a))
            return o;
    }
    return NULL;
}

static struct obs_path *op_find(struct m2m_coap_ep *ep, const char *path, bool create)
{
    size_t len = strlen(path);
    uint64_t h = m2m_hash_keyed(ep->hash_key, path, len);
    for (struct m2m_hnode *n = m2m_hmap_first(&ep->obs_paths, h); n; n = m2m_hmap_next(n)) {
        struct obs_path *op = M2M_CONTAINER_OF(n, struct obs_path, hn);
        if (!strcmp(op->path, path))
            return op;
    }
    if (!create)
        return NULL;
    struct obs_path *op = malloc(sizeof *op + len + 1);
    if (!op)
        return NULL;
    op->head = NULL;
    op->count = 0;
    memcpy(op->path, path, len + 1);
    m2m_hmap_insert(&ep->obs_paths, &op->hn, h);
    return op;
}

static void blob_unref(struct blob *b)
{
    if (b && !--b->refs)
        free(b);
}

int coap_observer_add(struct m2m_coap_ep *ep, const struct m2m_addr *a, const uint8_t *tok, size_t tkl,
                      const char *path, uint8_t szx, uint32_t *seq)
{
    struct observer *o = coap_observer_find(ep, a, tok, tkl);
    if (o && !strcmp(o->op->path, path)) {
        /* Re-registration (§4.1): same relationship, fresh sequence number. */
        o->seq = (o->seq + 1) & 0xffffff;
        o->szx = szx;
        *seq = o->seq;
        return 0;
    }
    if (o)
        coap_observer_remove(ep, o, true);
    if (ep->n_obs >= ep->cfg.max_observers)
        return M2M_ELIMIT;
    struct peer *p = coap_peer_get(ep, a, true);
    if (!p)
        return M2M_ELIMIT;
    /* Held from here on, so a failure below does not strand a new peer. */
    coap_peer_ref(p);
    struct obs_path *op = op_find(ep, path, true);
    o = op ? calloc(1, sizeof *o) : NULL;
    if (!o) {
        if (op && !op->count) {
            m2m_hmap_remove(&ep->obs_paths, &op->hn);
            free(op);
        }
        coap_peer_unref(ep, p);
        return M2M_ENOMEM;
    }
    o->peer = p;
    o->tkl = (uint8_t)tkl;
    memcpy(o->token, tok, tkl);
    o->szx = szx;
    o->seq = 2;
    o->last_con = ep->now;
    o->last_sent = ep->now;
    m2m_timer_init(&o->t, T_OBS);
    m2m_hmap_insert(&ep->observers, &o->hn, coap_addr_tok_hash(ep, a, tok, tkl));
    o->op = op;
    o->next = op->head;
    if (op->head)
        op->head->prev = o;
    op->head = o;
    op->count++;
    ep->n_obs++;
    *seq = o->seq;
    COAP_LOG(ep, M2M_LOG_DEBUG, a, "observer of %s registered (%zu now)", path, ep->n_obs);
    return 0;
}

void coap_observer_remove(struct m2m_coap_ep *ep, struct observer *o, bool tell)
{
    struct obs_path *op = o->op;
    if (tell) {
        char *path = coap_strdup(op->path);
        struct evq_item it = {.type = M2M_COAP_EV_OBSERVER_GONE, .peer = o->peer->addr, .path = path};
        coap_grave(ep, path);
        coap_push_event(ep, &it, NULL, 0);
    }
    if (o->prev)
        o->prev->next = o->next;
    else
        op->head = o->next;
    if (o->next)
        o->next->prev = o->prev;
    if (!--op->count) {
        m2m_hmap_remove(&ep->obs_paths, &op->hn);
        free(op);
    }
    m2m_hmap_remove(&ep->observers, &o->hn);
    if (o->sent_non)
        m2m_hmap_remove(&ep->obs_mids, &o->hn_mid);
    m2m_heap_cancel(&ep->timers, &o->t);
    /* A notification still in flight finishes on its own. */
    if (o->inflight)
        o->inflight->owner = NULL;
    blob_unref(o->pending);
    coap_peer_unref(ep, o->peer);
    free(o);
    ep->n_obs--;
}

/* The state as an encoded message without token, type or MID; large bodies
 * carry their first block only (RFC 7959 §3.4). */
static struct blob *blob_build(const struct m2m_coap_msg *state, uint8_t szx)
{
    struct m2m_coap_msg m = *state;
    m.tkl = 0;
    m.mid = 0;
    m.type = M2M_COAP_NON;
    m2m_coap_del_opt(&m, M2M_COAP_OPT_OBSERVE);
    m2m_coap_del_opt(&m, M2M_COAP_OPT_BLOCK2);
    m2m_coap_del_opt(&m, M2M_COAP_OPT_SIZE2);
    if (state->payload_len > m2m_coap_block_size(szx) && coap_block2_slice(state, &m, 0, szx, true))
        return NULL;
    size_t need = m2m_coap_encoded_size(&m), len;
    struct blob *b = malloc(sizeof *b + need);
    if (!b)
        return NULL;
    if (m2m_coap_encode(&m, b->data, need, &len)) {
        free(b);
        return NULL;
    }
    b->refs = 1;
    b->len = len;
    return b;
}

/* Encodes `b` for observer `o` with sequence number `seq` (none for a final
 * state). Nothing in `o` changes: the caller commits once it sends. */
static uint8_t *render(const struct observer *o, const struct blob *b, uint8_t type, uint16_t mid, bool final,
                       uint32_t seq, size_t *len)
{
    struct m2m_coap_msg m;
    if (m2m_coap_decode(&m, b->data, b->len))
        return NULL;
    m.type = type;
    m.mid = mid;
    m.tkl = o->tkl;
    memcpy(m.token, o->token, o->tkl);
    if (!final && m2m_coap_add_uint(&m, M2M_COAP_OPT_OBSERVE, seq))
        return NULL;
    size_t need = m2m_coap_encoded_size(&m);
    uint8_t *buf = malloc(need);
    if (buf && m2m_coap_encode(&m, buf, need, len)) {
        free(buf);
        return NULL;
    }
    return buf;
}

static bool blob_final(const struct blob *b)
{
    return b->len >= 2 && M2M_COAP_CODE_CLASS(b->data[1]) != 2;
}

static uint32_t next_seq(const struct observer *o)
{
    return (o->seq + 1) & 0xffffff;
}

static void send_pending(struct m2m_coap_ep *ep, struct observer *o)
{
    struct blob *b = o->pending;
    bool final = blob_final(b);
    bool con = o->pending_con || final || ep->now - o->last_con >= (m2m_time)ep->cfg.notify_con_every_ms;
    uint32_t seq = next_seq(o);
    size_t len = 0;
    uint8_t *buf = render(o, b, con ? M2M_COAP_CON : M2M_COAP_NON, 0, final, seq, &len);
    if (!buf)
        return; /* no memory: the state stays pending for the next try */
    o->pending = NULL;
    o->pending_con = false;
    blob_unref(b);
    m2m_heap_cancel(&ep->timers, &o->t);
    uint16_t mid = coap_next_mid(ep);
    buf[2] = (uint8_t)(mid >> 8);
    buf[3] = (uint8_t)mid;
    if (!final)
        o->seq = seq;
    ep->stats.notifications++;
    o->last_sent = ep->now;
    if (con) {
        o->last_con = ep->now;
        o->inflight = coap_xmit_start(ep, o->peer, buf, len, mid, XK_NOTIFY, o);
    } else {
        /* Observers never answer NON notifications, so PROBING_RATE would
         * throttle them to a trickle; their rate is the application's, capped
         * by notify_min_interval_ms (RFC 7641 §4.5.1 advises one per RTT, or
         * one per 3 s without an RTT estimate). */
        coap_emit(ep, &o->peer->addr, buf, len);
        free(buf);
        if (o->sent_non)
            m2m_hmap_remove(&ep->obs_mids, &o->hn_mid);
        o->last_non_mid = mid;
        o->sent_non = true;
        m2m_hmap_insert(&ep->obs_mids, &o->hn_mid, mid_hash(ep, &o->peer->addr, mid));
    }
    if (final)
        coap_observer_remove(ep, o, true);
}

/* §4.5.2: the newest state replaces what the in-flight CON notification
 * carries (new MID and sequence number, same retransmission state). A final
 * state swapped in ends the relationship; the CON still goes on its own. */
static bool swap_into_inflight(struct m2m_coap_ep *ep, struct observer *o)
{
    struct blob *b = o->pending;
    bool final = blob_final(b);
    uint32_t seq = next_seq(o);
    uint16_t mid = coap_next_mid(ep);
    size_t len = 0;
    uint8_t *buf = render(o, b, M2M_COAP_CON, mid, final, seq, &len);
    if (!buf)
        return false;
    o->pending = NULL;
    o->pending_con = false;
    blob_unref(b);
    if (!final)
        o->seq = seq;
    coap_xmit_replace(ep, o->inflight, buf, len, mid);
    ep->stats.notifications++;
    o->last_sent = o->last_con = ep->now;
    if (final)
        coap_observer_remove(ep, o, true);
    return true;
}

static void try_send(struct m2m_coap_ep *ep, struct observer *o)
{
    if (!o->pending)
        return;
    if (o->inflight) {
        /* A CON still waiting for an NSTART slot can carry the newest state
         * at once; one on the wire picks it up when it is retransmitted or
         * after its ACK. */
        if (!o->inflight->sent)
            swap_into_inflight(ep, o);
        return;
    }
    m2m_time earliest = o->last_sent + ep->cfg.notify_min_interval_ms;
    if (ep->cfg.notify_min_interval_ms && ep->now < earliest && !blob_final(o->pending)) {
        coap_timer_set(ep, &o->t, earliest);
        return;
    }
    send_pending(ep, o);
}

int m2m_coap_notify(struct m2m_coap_ep *ep, const char *path, const struct m2m_coap_msg *state, bool con)
{
    struct obs_path *op = op_find(ep, path, false);
    if (!op)
        return 0;
    struct blob *blobs[7] = {0};
    int count = 0;
    struct observer *o = op->head, *next;
    size_t total = op->count;
    for (size_t i = 0; o && i < total; i++, o = next) {
        /* A final state removes observers (and maybe `op`) as we go. */
        next = o->next;
        uint8_t szx = o->szx > 6 ? 6 : o->szx;
        if (!blobs[szx] && !(blobs[szx] = blob_build(state, szx)))
            break;
        blobs[szx]->refs++;
        /* A forced CON stays forced when a newer state replaces it. */
        o->pending_con = (o->pending && o->pending_con) || con;
        blob_unref(o->pending);
        o->pending = blobs[szx];
        count++;
        try_send(ep, o);
    }
    for (int i = 0; i < 7; i++)
        blob_unref(blobs[i]);
    return count;
}

void coap_observer_xmit_done(struct m2m_coap_ep *ep, struct observer *o, bool ok)
{
    o->inflight = NULL;
    if (!ok) {
        /* §4.5: a CON notification that is rejected or never acknowledged
         * ends the relationship. */
        COAP_LOG(ep, M2M_LOG_DEBUG, &o->peer->addr, "observer of %s removed: notification %s", o->op->path,
                 "not acknowledged");
        coap_observer_remove(ep, o, true);
        return;
    }
    try_send(ep, o);
}

bool coap_observer_xmit_retry(struct m2m_coap_ep *ep, struct observer *o)
{
    if (!o->pending || !o->inflight)
        return false;
    return swap_into_inflight(ep, o);
}

void coap_observer_timeout(struct m2m_coap_ep *ep, struct observer *o)
{
    try_send(ep, o);
}

void coap_observer_rst(struct m2m_coap_ep *ep, const struct m2m_addr *from, uint16_t mid)
{
    for (struct m2m_hnode *n = m2m_hmap_first(&ep->obs_mids, mid_hash(ep, from, mid)); n;
         n = m2m_hmap_next(n)) {
        struct observer *o = M2M_CONTAINER_OF(n, struct observer, hn_mid);
        if (o->last_non_mid == mid && coap_addr_eq(&o->peer->addr, from)) {
            coap_observer_remove(ep, o, true);
            return;
        }
    }
}

void coap_notify_cleanup(struct m2m_coap_ep *ep)
{
    for (size_t i = 0; ep->observers.b && i <= ep->observers.mask; i++)
        while (ep->observers.b[i])
            coap_observer_remove(ep, M2M_CONTAINER_OF(ep->observers.b[i], struct observer, hn), false);
}
