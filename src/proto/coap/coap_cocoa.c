/* CoCoA, "CoAP Simple Congestion Control/Advanced" (draft-ietf-core-cocoa-03):
 * the retransmission timeout of our Confirmable messages from RTT samples,
 * kept per destination endpoint (§3: the scope is the endpoint).
 *
 * - §4.1 blind estimate: 2 s (ACK_TIMEOUT), times the number of exchanges
 *   in parallel while nothing has been measured;
 * - §4.2 two RFC 6298 estimators: strong (answered without retransmission,
 *   K=4) and weak (answered after 1 or 2 retransmissions, timed from the
 *   first transmission, K=1); answers after 3+ retransmissions are unused;
 *   the overall RTO moves towards the estimator that was just updated with
 *   weight 0.5 (strong) or 0.25 (weak);
 * - §4.2.1 / Appendix B.3 variable back-off factor: x3 below 1 s, x1.5
 *   above 3 s, x2 between, the back-off truncated at 32 s;
 * - §4.3 / Appendix B.2 ageing: an RTO below 1 s doubles after 16 RTOs
 *   without an update, one above 3 s becomes 1 s + RTO/2 after 4 RTOs;
 *   computed cumulatively when the estimate is next used, as §4.3 allows.
 * Dithering (§4.2.1: between 1 x RTO and ACK_RANDOM_FACTOR x RTO) is done by
 * coap_core.c, which owns the RNG draw. No clock is read here: time comes in
 * as arguments. */
#include <stdlib.h>
#include <string.h>

#include "coap_internal.h"

#define US_PER_MS 1000
#define SEC_US (1000 * US_PER_MS)
/* RFC 6298's clock granularity G: our times are whole milliseconds. */
#define G_US US_PER_MS
/* RFC 6298 §2.5 lets an RTO be capped if the cap is at least 60 s. */
#define RTO_MAX_US (60 * SEC_US)
/* §4.2.1: "The binary exponential backoff is truncated at 32 seconds". */
#define BACKOFF_MAX_MS 32000u
/* §4.3: estimator state "MUST be kept for at least 255 s". */
#define KEEP_MS 255000
#define K_STRONG 4
#define K_WEAK 1

static int64_t cap_rto(int64_t us)
{
    return us > RTO_MAX_US ? RTO_MAX_US : us;
}

void coap_cocoa_est_init(struct cocoa_est *e, uint32_t initial_ms, m2m_time now)
{
    memset(e, 0, sizeof *e);
    /* §4.1/§4.2.1: both estimators and the overall RTO start at 2 s. */
    int64_t init = cap_rto((int64_t)initial_ms * US_PER_MS);
    e->strong.e_us = e->weak.e_us = e->rto_us = init;
    e->updated = now;
}

/* RFC 6298 §2.2-2.3 with the variance multiplier K; the RTTVAR update uses
 * |SRTT - R'| (Appendix B.1 of the draft leaves out the absolute value, RFC
 * 6298 has it). RFC 6298's 1 s minimum (§2.4) does not apply: CoCoA's VBF
 * is there for RTOs below 1 s. */
static void rtt_update(struct cocoa_rtt *r, int64_t sample_us, int k)
{
    if (!r->sampled) {
        r->srtt_us = sample_us;
        r->rttvar_us = sample_us / 2;
        r->sampled = true;
    } else {
        int64_t delta = r->srtt_us > sample_us ? r->srtt_us - sample_us : sample_us - r->srtt_us;
        r->rttvar_us = (3 * r->rttvar_us + delta) / 4; /* beta = 1/4 */
        r->srtt_us = (7 * r->srtt_us + sample_us) / 8; /* alpha = 1/8 */
    }
    int64_t var = (int64_t)k * r->rttvar_us;
    r->e_us = cap_rto(r->srtt_us + (var > G_US ? var : G_US));
}

void coap_cocoa_est_age(struct cocoa_est *e, m2m_time now)
{
    /* Ageing brings measured estimates back towards the default; the blind
     * estimate is the default. */
    if (!e->measured)
        return;
    for (;;) {
        int64_t idle_us = (now - e->updated) * US_PER_MS, limit_us;
        if (e->rto_us < SEC_US)
            limit_us = 16 * e->rto_us;
        else if (e->rto_us > 3 * SEC_US)
            limit_us = 4 * e->rto_us;
        else
            return;
        if (idle_us <= limit_us)
            return;
        /* The step happens where a millisecond timer checking "idle > limit"
         * would have fired, so later steps count from there (Appendix B.2
         * restarts lastUpdatedTime at each step). */
        e->updated += (m2m_time)(limit_us / US_PER_MS) + 1;
        if (e->rto_us < SEC_US)
            e->rto_us = 2 * e->rto_us;
        else
            e->rto_us = SEC_US + e->rto_us / 2;
    }
}

enum cocoa_sample coap_cocoa_est_sample(struct cocoa_est *e, m2m_time now, m2m_time rtt_ms,
                                        unsigned retransmissions)
{
    /* §4.2: "Responses obtained after the third retransmission are not used
     * to update an estimator." */
    if (retransmissions > 2)
        return COCOA_UNUSED;
    coap_cocoa_est_age(e, now);
    int64_t sample_us = (rtt_ms > 0 ? rtt_ms : 0) * US_PER_MS;
    enum cocoa_sample kind;
    if (retransmissions == 0) {
        /* (2): RTO := 0.5 * E_strong_ + 0.5 * RTO */
        rtt_update(&e->strong, sample_us, K_STRONG);
        e->rto_us = (e->strong.e_us + e->rto_us) / 2;
        kind = COCOA_STRONG;
    } else {
        /* (1): RTO := 0.25 * E_weak_ + 0.75 * RTO, the sample timed from
         * the initial transmission. */
        rtt_update(&e->weak, sample_us, K_WEAK);
        e->rto_us = (e->weak.e_us + 3 * e->rto_us) / 4;
        kind = COCOA_WEAK;
    }
    e->rto_us = cap_rto(e->rto_us);
    e->updated = now;
    e->measured = true;
    return kind;
}

uint32_t coap_cocoa_est_rto_ms(const struct cocoa_est *e)
{
    int64_t ms = e->rto_us / US_PER_MS;
    return ms > 0 ? (uint32_t)ms : 1;
}

uint32_t coap_cocoa_backoff_ms(uint32_t rto_ms)
{
    /* An estimate above the truncation point is not backed off further. */
    if (rto_ms >= BACKOFF_MAX_MS)
        return rto_ms;
    uint32_t next;
    if (rto_ms < 1000)
        next = rto_ms * 3; /* VBF 3 below 1 s */
    else if (rto_ms > 3000)
        next = rto_ms + rto_ms / 2; /* VBF 1.5 above 3 s */
    else
        next = rto_ms * 2; /* VBF 2 from 1 s to 3 s */
    return next < BACKOFF_MAX_MS ? next : BACKOFF_MAX_MS;
}

/* ---- the endpoint's table, one estimator per destination endpoint ------ */

int coap_cocoa_init(struct m2m_coap_ep *ep)
{
    return m2m_hmap_init(&ep->cocoa.map, 64);
}

void coap_cocoa_cleanup(struct m2m_coap_ep *ep)
{
    struct cocoa_peer *cp = ep->cocoa.lru_head;
    while (cp) {
        struct cocoa_peer *next = cp->next;
        free(cp);
        cp = next;
    }
    ep->cocoa.lru_head = ep->cocoa.lru_tail = NULL;
    if (ep->cocoa.map.b)
        m2m_hmap_cleanup(&ep->cocoa.map);
}

static struct cocoa_peer *cocoa_find(const struct m2m_coap_ep *ep, const struct m2m_addr *a)
{
    if (!ep->cocoa.map.b)
        return NULL;
    for (struct m2m_hnode *n = m2m_hmap_first(&ep->cocoa.map, coap_addr_hash(ep, a)); n;
         n = m2m_hmap_next(n)) {
        struct cocoa_peer *cp = M2M_CONTAINER_OF(n, struct cocoa_peer, hn);
        if (coap_addr_eq(&cp->addr, a))
            return cp;
    }
    return NULL;
}

static void lru_unlink(struct cocoa_table *t, struct cocoa_peer *cp)
{
    if (cp->prev)
        cp->prev->next = cp->next;
    else
        t->lru_head = cp->next;
    if (cp->next)
        cp->next->prev = cp->prev;
    else
        t->lru_tail = cp->prev;
    cp->prev = cp->next = NULL;
}

static void lru_append(struct cocoa_table *t, struct cocoa_peer *cp)
{
    cp->prev = t->lru_tail;
    cp->next = NULL;
    if (t->lru_tail)
        t->lru_tail->next = cp;
    else
        t->lru_head = cp;
    t->lru_tail = cp;
}

/* The state for `a`, made if needed. With the table at max_peers, the
 * least recently used entry is reused only once it is 255 s old; otherwise
 * `a` gets no state and its exchanges use the blind estimate. */
static struct cocoa_peer *cocoa_get(struct m2m_coap_ep *ep, const struct m2m_addr *a)
{
    struct cocoa_table *t = &ep->cocoa;
    struct cocoa_peer *cp = cocoa_find(ep, a);
    if (!cp) {
        if (t->map.count >= ep->cfg.max_peers) {
            cp = t->lru_head;
            if (!cp || ep->now - cp->used < KEEP_MS)
                return NULL;
            lru_unlink(t, cp);
            m2m_hmap_remove(&t->map, &cp->hn);
        } else if (!(cp = malloc(sizeof *cp))) {
            return NULL;
        }
        cp->addr = *a;
        coap_cocoa_est_init(&cp->est, ep->cfg.tx.ack_timeout_ms, ep->now);
        m2m_hmap_insert(&t->map, &cp->hn, coap_addr_hash(ep, a));
    } else {
        lru_unlink(t, cp);
    }
    cp->used = ep->now;
    lru_append(t, cp);
    return cp;
}

static uint32_t blind_rto_ms(const struct m2m_coap_ep *ep, uint32_t running)
{
    /* §4.1: 2 s times the number of exchanges in parallel, this one included. */
    uint64_t ms = (uint64_t)ep->cfg.tx.ack_timeout_ms * ((uint64_t)running + 1);
    return ms < RTO_MAX_US / US_PER_MS ? (uint32_t)ms : RTO_MAX_US / US_PER_MS;
}

uint32_t coap_cocoa_first_rto(struct m2m_coap_ep *ep, const struct m2m_addr *a, uint32_t running)
{
    struct cocoa_peer *cp = cocoa_get(ep, a);
    if (!cp || !cp->est.measured)
        return blind_rto_ms(ep, running);
    coap_cocoa_est_age(&cp->est, ep->now);
    return coap_cocoa_est_rto_ms(&cp->est);
}

void coap_cocoa_answered(struct m2m_coap_ep *ep, const struct m2m_addr *a, m2m_time rtt_ms,
                         unsigned retransmissions)
{
    struct cocoa_peer *cp = cocoa_get(ep, a);
    if (!cp)
        return;
    enum cocoa_sample kind = coap_cocoa_est_sample(&cp->est, ep->now, rtt_ms, retransmissions);
    static const char *const names[] = {"strong", "weak", "unused"};
    if (kind == COCOA_STRONG)
        ep->stats.rtt_strong++;
    else if (kind == COCOA_WEAK)
        ep->stats.rtt_weak++;
    else
        ep->stats.rtt_unused++;
    COAP_LOG(ep, M2M_LOG_DEBUG, a, "CoCoA RTT %lld ms after %u retransmissions: %s sample, RTO %u ms",
             (long long)rtt_ms, retransmissions, names[kind], coap_cocoa_est_rto_ms(&cp->est));
}

uint32_t coap_cocoa_peek_rto(const struct m2m_coap_ep *ep, const struct m2m_addr *a, m2m_time now)
{
    const struct cocoa_peer *cp = cocoa_find(ep, a);
    if (!cp || !cp->est.measured)
        return blind_rto_ms(ep, 0);
    struct cocoa_est e = cp->est;
    coap_cocoa_est_age(&e, now);
    return coap_cocoa_est_rto_ms(&e);
}

/* ---- names ---------------------------------------------------------------- */

const char *m2m_coap_cc_name(enum m2m_coap_cc cc)
{
    return cc == M2M_COAP_CC_COCOA ? "cocoa" : "default";
}

int m2m_coap_cc_parse(const char *name)
{
    if (!strcmp(name, "default") || !strcmp(name, "rfc7252"))
        return M2M_COAP_CC_DEFAULT;
    if (!strcmp(name, "cocoa"))
        return M2M_COAP_CC_COCOA;
    return -1;
}
