/* Private to src/proto/coap: the endpoint's state and the helpers its
 * files share. coap_core.c owns messaging (dedup, retransmission, peers,
 * queues); coap_server.c answers requests (piggybacked, separate, Block1
 * assembly, Block2 slicing); coap_notify.c keeps observers; coap_client.c
 * runs our own requests and observations. */
#ifndef M2M_COAP_INTERNAL_H
#define M2M_COAP_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "base/heap.h"
#include "base/hmap.h"
#include "base/log.h"
#include "m2m/coap.h"

enum timer_kind { T_XMIT, T_EXCH, T_CREQ, T_OBS, T_PEER, T_B1 };

/* A peer we keep state for: NSTART slots, a FIFO of CONs waiting for one,
 * and PROBING_RATE accounting for NON traffic it does not answer. */
struct peer {
    struct m2m_hnode hn;
    struct m2m_addr addr;
    uint32_t refs;                           /* xmits, requests and observers that point here */
    uint32_t inflight;                       /* outstanding interactions (§4.7) */
    struct xmit *wait_head, *wait_tail;      /* CONs waiting for a slot */
    struct pending_non *non_head, *non_tail; /* NONs held back by PROBING_RATE */
    struct m2m_timer t;
    m2m_time last_rx;
    m2m_time unanswered_since;
    uint64_t unanswered_bytes;
};

enum xmit_kind { XK_REQUEST, XK_NOTIFY, XK_SEPARATE };

/* A Confirmable message of ours, retransmitted until ACK, RST or give-up. */
struct xmit {
    struct m2m_hnode hn; /* by (peer, mid) once sent */
    struct m2m_timer t;
    struct xmit *wait_next;
    struct peer *peer;
    uint8_t *buf;
    size_t len;
    uint32_t timeout_ms;
    /* CoCoA only: the exchange's RTO before dithering (backed off by the
     * VBF at each retransmission), its dither and its first transmission. */
    uint32_t rto_ms;
    uint32_t dither_pm;
    m2m_time first_sent;
    uint8_t count;
    uint8_t kind;
    bool sent;
    uint16_t mid;
    void *owner; /* struct creq or struct observer; NULL for separate responses */
};

struct pending_non {
    struct pending_non *next;
    size_t len;
    uint8_t data[];
};

/* A remembered incoming (peer, MID), with the answer to replay (§4.5). */
struct dedup {
    struct m2m_hnode hn;
    struct dedup *fifo_next;
    m2m_time expires;
    struct m2m_addr peer;
    uint16_t mid;
    bool answered; /* `resp` holds the reply to resend */
    uint32_t exch; /* while not answered: the exchange id, 0 if none */
    uint8_t *resp;
    uint16_t resp_len;
};

struct dedup_fifo {
    struct dedup *head, *tail;
};

/* A request given to the application and not yet answered. */
struct exch {
    uint32_t id; /* 0 when free */
    struct m2m_timer t;
    struct m2m_addr peer;
    uint16_t mid;
    uint8_t type;
    uint8_t code;
    uint8_t tkl;
    uint8_t token[8];
    bool acked; /* empty ACK sent: the answer goes separately */
    bool has_block2, has_block1, observe_reg;
    struct m2m_coap_block block2, block1;
    uint32_t accept;
    char *path;
    uint8_t *body; /* assembled Block1 body, owned */
    size_t body_len;
    uint32_t next_free;
};

struct block1 {
    struct m2m_hnode hn; /* by (peer, path) */
    struct m2m_timer t;
    struct m2m_addr peer;
    char *path;
    uint8_t *buf;
    size_t len, cap;
    uint8_t szx;
};

/* A shared, reference-counted notification body: an encoded message with no
 * token, type or MID yet. */
struct blob {
    uint32_t refs;
    size_t len;
    uint8_t data[];
};

struct obs_path;

struct observer {
    struct m2m_hnode hn;     /* by (peer, token) */
    struct m2m_hnode hn_mid; /* by (peer, MID of the last NON notification) */
    struct m2m_timer t;
    struct observer *prev, *next; /* in its obs_path */
    struct obs_path *op;
    struct peer *peer;
    uint8_t tkl;
    uint8_t token[8];
    uint8_t szx;
    uint32_t seq;
    struct xmit *inflight;
    struct blob *pending;
    bool pending_con;
    uint16_t last_non_mid;
    bool sent_non;
    m2m_time last_sent, last_con;
};

struct obs_path {
    struct m2m_hnode hn;
    struct observer *head;
    size_t count;
    char path[];
};

struct tokref {
    struct m2m_hnode hn; /* by (peer, token) */
    struct creq *owner;
    uint8_t tkl;
    uint8_t token[8];
    bool linked;
};

/* One request of ours, from first block to reassembled answer, or one
 * observation for as long as it lasts. */
struct creq {
    struct m2m_hnode hn_id;
    uint32_t id;
    struct m2m_timer t;
    struct peer *peer;
    struct tokref main, cur;
    uint8_t type;
    uint8_t *tmpl; /* the request as given, encoded without payload */
    size_t tmpl_len;
    uint8_t *body;
    size_t body_len;
    size_t b1_off; /* next Block1 offset */
    uint8_t b1_szx;
    bool b1_active;
    uint8_t *b2buf; /* Block2 reassembly */
    size_t b2len;
    uint8_t b2szx;
    bool b2_active, b2_notify;
    uint32_t b2_seq;
    uint8_t b2_want;  /* SZX + 1 the application asked for, 0 if none */
    bool observe;     /* asked for an observation */
    bool established; /* and got one */
    bool deregistering;
    bool reregistering; /* Max-Age ran out; our new registration is out */
    bool sent_main;     /* the last message sent carried the main token */
    uint32_t last_seq;
    m2m_time last_time;
    struct xmit *x;   /* our CON in flight */
    bool awaiting;    /* a response is expected */
    uint16_t non_mid; /* MID of our last NON, for a RST */
    bool sent_non;
    uint8_t b1_retries;
};

enum ev_body { EB_NONE, EB_EXCH, EB_CREQ_B2, EB_CREQ_B1 };

struct evq_item {
    enum m2m_coap_event_type type;
    uint32_t id;
    int err;
    struct m2m_addr peer;
    size_t off, len;     /* datagram copy in ev_arena */
    const uint8_t *body; /* replaces the payload when set */
    size_t body_len;
    const char *path;
};

/* Output bytes live in chunks that never move, so what poll_output handed
 * out stays put while more is queued, until the next feed or on_timeout. */
struct out_chunk {
    struct out_chunk *next;
    size_t len, cap;
    uint8_t data[];
};

struct outq_item {
    struct m2m_addr peer;
    const uint8_t *p;
    size_t len;
    struct out_chunk *chunk;
};

struct arena {
    uint8_t *p;
    size_t len, cap;
};

/* ---- CoCoA (coap_cocoa.c), draft-ietf-core-cocoa-03 ---------------------
 * Times are in microseconds so the RFC 6298 arithmetic on millisecond
 * samples stays exact enough to check against the draft's numbers. */

/* One copy of the RFC 6298 algorithm (§4.2): SRTT, RTTVAR and its RTO "E". */
struct cocoa_rtt {
    int64_t srtt_us, rttvar_us;
    int64_t e_us;
    bool sampled; /* RFC 6298 §2.2: the first sample initialises SRTT/RTTVAR */
};

/* The estimator state of one destination endpoint. */
struct cocoa_est {
    struct cocoa_rtt strong, weak; /* E_strong_ (K=4) and E_weak_ (K=1) */
    int64_t rto_us;                /* the overall RTO estimate */
    m2m_time updated;              /* last estimator update or ageing step (§4.3) */
    bool measured;                 /* false: only the blind estimate (§4.1) */
};

enum cocoa_sample { COCOA_STRONG, COCOA_WEAK, COCOA_UNUSED };

/* Per-destination state outlives struct peer (which goes when idle): §4.3
 * wants it kept "as long as possible", at least 255 s. Least recently used
 * first in the list. */
struct cocoa_peer {
    struct m2m_hnode hn;
    struct cocoa_peer *prev, *next;
    struct m2m_addr addr;
    m2m_time used;
    struct cocoa_est est;
};

struct cocoa_table {
    struct m2m_hmap map;
    struct cocoa_peer *lru_head, *lru_tail;
};

struct m2m_coap_ep {
    struct m2m_coap_config cfg;
    uint64_t hash_key;
    uint16_t next_mid;
    uint32_t next_id;
    struct m2m_heap timers;
    struct m2m_hmap peers, xmits, dedups, creqs_by_id, tokens, observers, obs_mids, obs_paths, block1s;
    size_t n_creq, n_b1, n_obs;
    struct dedup_fifo dd_con, dd_non;
    uint32_t exchange_lifetime, non_lifetime;
    struct exch **exch; /* chunks of EXCH_CHUNK that never move */
    uint32_t exch_cap, exch_free, exch_used;
    /* queues: the arenas are reset once drained, at the next call */
    struct outq_item *outq;
    size_t outq_head, outq_len, outq_cap;
    struct out_chunk *oc_head, *oc_tail;
    struct evq_item *evq;
    size_t evq_head, evq_len, evq_cap;
    struct arena ev_arena;
    /* freed at the next feed/poll_event/on_timeout: event bodies */
    void **grave;
    size_t ngrave, grave_cap;
    struct m2m_coap_stats stats;
    struct cocoa_table cocoa; /* used with M2M_COAP_CC_COCOA only */
    m2m_time now;
    bool closing; /* in m2m_coap_ep_free: release nothing new */
};

#define COAP_LOG(ep, lvl, peer, ...) m2m_log((ep)->cfg.log, lvl, "coap", peer, __VA_ARGS__)

/* coap_core.c */
uint64_t coap_addr_hash(const struct m2m_coap_ep *ep, const struct m2m_addr *a);
bool coap_addr_eq(const struct m2m_addr *a, const struct m2m_addr *b);
uint64_t coap_addr_tok_hash(const struct m2m_coap_ep *ep, const struct m2m_addr *a, const uint8_t *tok,
                            size_t tkl);
uint16_t coap_next_mid(struct m2m_coap_ep *ep);
void coap_random_token(struct m2m_coap_ep *ep, uint8_t *tok, size_t n);
int coap_emit(struct m2m_coap_ep *ep, const struct m2m_addr *to, const uint8_t *p, size_t n);
int coap_emit_msg(struct m2m_coap_ep *ep, const struct m2m_addr *to, const struct m2m_coap_msg *m,
                  uint8_t **copy, uint16_t *copy_len);
int coap_push_event(struct m2m_coap_ep *ep, struct evq_item *it, const uint8_t *dgram, size_t len);
void coap_grave(struct m2m_coap_ep *ep, void *p);
struct peer *coap_peer_get(struct m2m_coap_ep *ep, const struct m2m_addr *a, bool create);
void coap_peer_ref(struct peer *p);
void coap_peer_unref(struct m2m_coap_ep *ep, struct peer *p);
void coap_peer_release_slot(struct m2m_coap_ep *ep, struct peer *p);
bool coap_peer_take_slot(struct m2m_coap_ep *ep, struct peer *p);
/* Queues a CON (takes ownership of buf); sends it at once if a slot is free. */
struct xmit *coap_xmit_start(struct m2m_coap_ep *ep, struct peer *p, uint8_t *buf, size_t len, uint16_t mid,
                             enum xmit_kind kind, void *owner);
void coap_xmit_cancel(struct m2m_coap_ep *ep, struct xmit *x);
/* Replaces what a still-retransmitting CON carries (newest observe state). */
void coap_xmit_replace(struct m2m_coap_ep *ep, struct xmit *x, uint8_t *buf, size_t len, uint16_t mid);
/* Sends a NON under PROBING_RATE. */
int coap_send_non(struct m2m_coap_ep *ep, struct peer *p, const uint8_t *buf, size_t len);
int coap_send_empty(struct m2m_coap_ep *ep, const struct m2m_addr *to, uint8_t type, uint16_t mid);
struct dedup *coap_dedup_find(struct m2m_coap_ep *ep, const struct m2m_addr *a, uint16_t mid);
struct dedup *coap_dedup_add(struct m2m_coap_ep *ep, const struct m2m_addr *a, uint16_t mid, bool con);
void coap_dedup_answer(struct dedup *d, uint8_t *resp, uint16_t len);
int coap_timer_set(struct m2m_coap_ep *ep, struct m2m_timer *t, m2m_time at);
char *coap_strdup(const char *s);

/* coap_cocoa.c: the estimator itself, pure functions of its state and time */
void coap_cocoa_est_init(struct cocoa_est *e, uint32_t initial_ms, m2m_time now);
/* §4.3 ageing, applied cumulatively up to `now`. */
void coap_cocoa_est_age(struct cocoa_est *e, m2m_time now);
/* §4.2: an exchange answered `rtt_ms` after its first transmission, after
 * `retransmissions` retransmissions. Says which estimator took the sample. */
enum cocoa_sample coap_cocoa_est_sample(struct cocoa_est *e, m2m_time now, m2m_time rtt_ms,
                                        unsigned retransmissions);
uint32_t coap_cocoa_est_rto_ms(const struct cocoa_est *e);
/* §4.2.1 and Appendix B.3: the next RTO of an exchange after a timeout. */
uint32_t coap_cocoa_backoff_ms(uint32_t rto_ms);
/* coap_cocoa.c: the endpoint's table of estimators, one per destination */
int coap_cocoa_init(struct m2m_coap_ep *ep);
void coap_cocoa_cleanup(struct m2m_coap_ep *ep);
/* RTO (ms, not dithered) for a new CON to `a` while `running` other CONs to
 * it are in flight. */
uint32_t coap_cocoa_first_rto(struct m2m_coap_ep *ep, const struct m2m_addr *a, uint32_t running);
/* A CON to `a` was acknowledged (or reset) `rtt_ms` after its first
 * transmission, having been retransmitted `retransmissions` times. */
void coap_cocoa_answered(struct m2m_coap_ep *ep, const struct m2m_addr *a, m2m_time rtt_ms,
                         unsigned retransmissions);
uint32_t coap_cocoa_peek_rto(const struct m2m_coap_ep *ep, const struct m2m_addr *a, m2m_time now);

/* coap_server.c */
int coap_server_init(struct m2m_coap_ep *ep);
void coap_server_cleanup(struct m2m_coap_ep *ep);
void coap_server_request(struct m2m_coap_ep *ep, const struct m2m_addr *from, const struct m2m_coap_msg *m,
                         const uint8_t *dgram, size_t n);
void coap_server_duplicate(struct m2m_coap_ep *ep, struct dedup *d, const struct m2m_addr *from,
                           uint8_t type);
void coap_exch_timeout(struct m2m_coap_ep *ep, struct exch *x);
void coap_block1_timeout(struct m2m_coap_ep *ep, struct block1 *b);
int coap_block2_slice(const struct m2m_coap_msg *full, struct m2m_coap_msg *out, uint32_t num, uint8_t szx,
                      bool with_size2);

/* coap_notify.c */
void coap_notify_cleanup(struct m2m_coap_ep *ep);
struct observer *coap_observer_find(struct m2m_coap_ep *ep, const struct m2m_addr *a, const uint8_t *tok,
                                    size_t tkl);
int coap_observer_add(struct m2m_coap_ep *ep, const struct m2m_addr *a, const uint8_t *tok, size_t tkl,
                      const char *path, uint8_t szx, uint32_t *seq);
void coap_observer_remove(struct m2m_coap_ep *ep, struct observer *o, bool tell);
void coap_observer_xmit_done(struct m2m_coap_ep *ep, struct observer *o, bool ok);
bool coap_observer_xmit_retry(struct m2m_coap_ep *ep, struct observer *o);
void coap_observer_timeout(struct m2m_coap_ep *ep, struct observer *o);
void coap_observer_rst(struct m2m_coap_ep *ep, const struct m2m_addr *from, uint16_t mid);

/* coap_client.c */
void coap_client_cleanup(struct m2m_coap_ep *ep);
/* A response (ACK, CON or NON) that is not a duplicate. */
void coap_client_response(struct m2m_coap_ep *ep, const struct m2m_addr *from, const struct m2m_coap_msg *m,
                          const uint8_t *dgram, size_t n);
void coap_client_xmit_done(struct m2m_coap_ep *ep, struct creq *c, int err);
void coap_client_timeout(struct m2m_coap_ep *ep, struct creq *c);
void coap_client_rst(struct m2m_coap_ep *ep, const struct m2m_addr *from, uint16_t mid);

#endif
