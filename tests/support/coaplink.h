/* Helpers for driving CoAP endpoints in virtual time.
 *
 * - Scripted peer: feed hand-written datagrams (hex) into one endpoint and
 *   take what it sends (coap_take / coap_take_hex).
 * - Virtual link: two endpoints whose datagrams are carried to each other
 *   with a fixed one-way delay and seeded random loss per direction; time
 *   only moves forward to the next delivery or the next endpoint deadline.
 *   Every datagram is traced (time, direction, header, lost or not), and
 *   events are handed to a per-side callback or recorded as copies. */
#ifndef M2M_TEST_COAPLINK_H
#define M2M_TEST_COAPLINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/prng.h"
#include "m2m/coap.h"

/* An endpoint from `c` with a deterministic RNG seeded with `seed`. The RNG
 * state is shared by every endpoint this returns: tests that need two
 * independent endpoints use clink_init. */
struct m2m_coap_ep *coap_test_ep(struct m2m_coap_config *c, uint64_t seed);

/* ---- scripted peer ------------------------------------------------------ */

/* Feeds the datagram written as hex ("40 01 12 34 ...") from `from`. */
void coap_feed_hex(struct m2m_coap_ep *ep, m2m_time now, const struct m2m_addr *from, const char *hex);
/* Takes the next output datagram into buf; returns its length, 0 if none.
 * `to` (may be NULL) receives the destination. */
size_t coap_take(struct m2m_coap_ep *ep, uint8_t *buf, size_t cap, struct m2m_addr *to);
/* Takes the next output datagram and returns it as "de ad be ef" in a
 * static buffer; "" when there is none. */
const char *coap_take_hex(struct m2m_coap_ep *ep);
/* Discards every pending output datagram; returns how many there were. */
size_t coap_drain(struct m2m_coap_ep *ep);
/* Copies one event; the copy owns its payload. */
struct cevent {
    enum m2m_coap_event_type type;
    uint32_t id;
    int err;
    uint8_t code, msgtype;
    int side;
    m2m_time t;
    uint8_t *payload;
    size_t len;
    int64_t observe; /* -1 when absent */
    int64_t block2;  /* raw Block2 value, -1 when absent */
    char path[128];
    struct m2m_addr peer;
};
/* Polls one event into *e (0 when none). Free e->payload with cevent_free. */
int coap_next_event(struct m2m_coap_ep *ep, struct cevent *e);
void cevent_free(struct cevent *e);

/* ---- virtual link ------------------------------------------------------- */

struct clink;
typedef void (*clink_event_cb)(struct clink *l, int side, const struct m2m_coap_event *ev, void *ctx);
/* Return false to drop the datagram (a test's own loss pattern). */
typedef bool (*clink_filter_cb)(struct clink *l, int from, const uint8_t *p, size_t n, void *ctx);

struct clink_trace {
    m2m_time t;
    uint8_t from;
    bool lost;
    uint8_t type, code;
    uint16_t mid;
    size_t len;
};

struct clink_pkt {
    m2m_time at;
    uint8_t to;
    size_t len;
    uint8_t *data;
};

#define CLINK_MAX_EVENTS 4096

struct clink {
    struct m2m_coap_ep *ep[2];
    struct m2m_addr addr[2];
    struct m2m_prng rng[2];
    struct m2m_prng loss;
    uint32_t loss_pm[2]; /* per mille of the datagrams sent by side i lost */
    m2m_time delay_ms;   /* one-way */
    m2m_time now;
    clink_event_cb cb[2];
    void *ctx[2];
    clink_filter_cb filter;
    void *filter_ctx;
    struct clink_pkt *q;
    size_t nq, capq;
    struct clink_trace *trace;
    size_t ntrace, captrace;
    /* events recorded when cb[side] is NULL (or by clink_record) */
    struct cevent ev[CLINK_MAX_EVENTS];
    size_t nev;
};

/* Creates both endpoints (side 0 at test_addr(1), side 1 at test_addr(2));
 * each config's rng is replaced by a prng seeded from `seed`. */
void clink_init(struct clink *l, const struct m2m_coap_config *c0, const struct m2m_coap_config *c1,
                uint64_t seed);
void clink_cleanup(struct clink *l);
/* Moves datagrams and events until nothing more happens at l->now. */
void clink_pump(struct clink *l);
/* Advances to the next delivery or deadline if it is <= limit and handles
 * it; false (time set to limit) when nothing is due by then. */
bool clink_step(struct clink *l, m2m_time limit);
/* Steps until `limit` or until nothing is scheduled at all. */
void clink_run(struct clink *l, m2m_time limit);
/* Steps until done(arg) holds (true) or limit passes (false). */
bool clink_run_until(struct clink *l, m2m_time limit, bool (*done)(struct clink *l, void *arg), void *arg);
/* Records a copy of ev in l->ev. */
void clink_record(struct clink *l, int side, const struct m2m_coap_event *ev);
/* Index of the first recorded event of `type` on `side` from index `from`,
 * or -1. */
int clink_find(const struct clink *l, int side, enum m2m_coap_event_type type, size_t from);
/* Number of recorded events of `type` on `side`. */
size_t clink_count(const struct clink *l, int side, enum m2m_coap_event_type type);
void clink_clear_events(struct clink *l);
/* Number of traced datagrams from `from` (0/1, or -1 for both) with the
 * given type and code (-1 for any); lost ones count only if `lost`. */
size_t clink_count_dgrams(const struct clink *l, int from, int type, int code, bool lost);

#endif
