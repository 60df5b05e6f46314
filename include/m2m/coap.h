/* CoAP (RFC 7252) with Observe (RFC 7641), block-wise transfers (RFC 7959)
 * and link format (RFC 6690): codec and a sans-IO endpoint.
 *
 * The endpoint takes datagrams and time in (m2m_coap_ep_feed, on_timeout)
 * and gives datagrams, events and its next deadline out. It never touches a
 * socket, a clock or a global; randomness comes from the injected m2m_rng. */
#ifndef M2M_COAP_H
#define M2M_COAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "m2m/err.h"
#include "m2m/types.h"

/* ---- message model ---------------------------------------------------- */

enum m2m_coap_type { M2M_COAP_CON = 0, M2M_COAP_NON = 1, M2M_COAP_ACK = 2, M2M_COAP_RST = 3 };

#define M2M_COAP_CODE(c, dd) ((uint8_t)(((c) << 5) | (dd)))
#define M2M_COAP_CODE_CLASS(code) ((code) >> 5)
#define M2M_COAP_CODE_DETAIL(code) ((code)&0x1f)

enum m2m_coap_code {
    M2M_COAP_EMPTY = 0,
    M2M_COAP_GET = 1,
    M2M_COAP_POST = 2,
    M2M_COAP_PUT = 3,
    M2M_COAP_DELETE = 4,
    M2M_COAP_FETCH = 5,
    M2M_COAP_PATCH = 6,
    M2M_COAP_IPATCH = 7,
    M2M_COAP_CREATED = M2M_COAP_CODE(2, 1),
    M2M_COAP_DELETED = M2M_COAP_CODE(2, 2),
    M2M_COAP_VALID = M2M_COAP_CODE(2, 3),
    M2M_COAP_CHANGED = M2M_COAP_CODE(2, 4),
    M2M_COAP_CONTENT = M2M_COAP_CODE(2, 5),
    M2M_COAP_CONTINUE = M2M_COAP_CODE(2, 31),
    M2M_COAP_BAD_REQUEST = M2M_COAP_CODE(4, 0),
    M2M_COAP_UNAUTHORIZED = M2M_COAP_CODE(4, 1),
    M2M_COAP_BAD_OPTION = M2M_COAP_CODE(4, 2),
    M2M_COAP_FORBIDDEN = M2M_COAP_CODE(4, 3),
    M2M_COAP_NOT_FOUND = M2M_COAP_CODE(4, 4),
    M2M_COAP_METHOD_NOT_ALLOWED = M2M_COAP_CODE(4, 5),
    M2M_COAP_NOT_ACCEPTABLE = M2M_COAP_CODE(4, 6),
    M2M_COAP_REQUEST_ENTITY_INCOMPLETE = M2M_COAP_CODE(4, 8),
    M2M_COAP_PRECONDITION_FAILED = M2M_COAP_CODE(4, 12),
    M2M_COAP_REQUEST_ENTITY_TOO_LARGE = M2M_COAP_CODE(4, 13),
    M2M_COAP_UNSUPPORTED_CONTENT_FORMAT = M2M_COAP_CODE(4, 15),
    M2M_COAP_TOO_MANY_REQUESTS = M2M_COAP_CODE(4, 29),
    M2M_COAP_INTERNAL_SERVER_ERROR = M2M_COAP_CODE(5, 0),
    M2M_COAP_NOT_IMPLEMENTED = M2M_COAP_CODE(5, 1),
    M2M_COAP_SERVICE_UNAVAILABLE = M2M_COAP_CODE(5, 3),
    M2M_COAP_PROXYING_NOT_SUPPORTED = M2M_COAP_CODE(5, 5)
};

enum m2m_coap_optnum {
    M2M_COAP_OPT_IF_MATCH = 1,
    M2M_COAP_OPT_URI_HOST = 3,
    M2M_COAP_OPT_ETAG = 4,
    M2M_COAP_OPT_IF_NONE_MATCH = 5,
    M2M_COAP_OPT_OBSERVE = 6,
    M2M_COAP_OPT_URI_PORT = 7,
    M2M_COAP_OPT_LOCATION_PATH = 8,
    M2M_COAP_OPT_URI_PATH = 11,
    M2M_COAP_OPT_CONTENT_FORMAT = 12,
    M2M_COAP_OPT_MAX_AGE = 14,
    M2M_COAP_OPT_URI_QUERY = 15,
    M2M_COAP_OPT_ACCEPT = 17,
    M2M_COAP_OPT_LOCATION_QUERY = 20,
    M2M_COAP_OPT_BLOCK2 = 23,
    M2M_COAP_OPT_BLOCK1 = 27,
    M2M_COAP_OPT_SIZE2 = 28,
    M2M_COAP_OPT_PROXY_URI = 35,
    M2M_COAP_OPT_PROXY_SCHEME = 39,
    M2M_COAP_OPT_SIZE1 = 60,
    M2M_COAP_OPT_NO_RESPONSE = 258
};

/* Content formats from the IANA registry that m2mkit knows by name. */
enum m2m_coap_format {
    M2M_COAP_FMT_TEXT = 0,
    M2M_COAP_FMT_LINK = 40,
    M2M_COAP_FMT_XML = 41,
    M2M_COAP_FMT_OCTETS = 42,
    M2M_COAP_FMT_EXI = 47,
    M2M_COAP_FMT_JSON = 50,
    M2M_COAP_FMT_CBOR = 60,
    M2M_COAP_FMT_SENML_JSON = 110,
    M2M_COAP_FMT_SENML_CBOR = 112,
    M2M_COAP_FMT_LWM2M_TLV = 11542,
    M2M_COAP_FMT_LWM2M_JSON = 11543,
    M2M_COAP_FMT_NONE = -1
};

#define M2M_COAP_MAX_OPTS 48
#define M2M_COAP_TOKEN_MAX 8
#define M2M_COAP_SCRATCH 96

struct m2m_coap_opt {
    uint16_t num;
    uint16_t len;
    const uint8_t *val;
};

/* A message. Decoded options and payload point into the datagram they came
 * from; options added with m2m_coap_add_* may point into `scratch`, so a
 * message must not be copied by value after options were added to it. */
struct m2m_coap_msg {
    uint8_t type;
    uint8_t code;
    uint16_t mid;
    uint8_t tkl;
    uint8_t token[M2M_COAP_TOKEN_MAX];
    uint16_t nopt;
    struct m2m_coap_opt opt[M2M_COAP_MAX_OPTS];
    const uint8_t *payload;
    size_t payload_len;
    uint8_t scratch_used;
    uint8_t scratch[M2M_COAP_SCRATCH];
};

/* ---- codec (coap_codec.c, coap_option.c) ------------------------------- */

void m2m_coap_msg_init(struct m2m_coap_msg *m, uint8_t type, uint8_t code);

/* Parses one datagram. Options are returned in wire order (ascending).
 * M2M_EMALFORMED for a message format error (RFC 7252 §3); the header
 * fields type, code and mid are filled whenever the first 4 bytes were there
 * and the version is 1 (m2m_coap_header_ok tells which). */
int m2m_coap_decode(struct m2m_coap_msg *m, const uint8_t *p, size_t n);
bool m2m_coap_header_ok(const uint8_t *p, size_t n);

/* Size of the encoding; options need not be sorted (the encoder sorts them,
 * keeping the relative order of repeated options). */
size_t m2m_coap_encoded_size(const struct m2m_coap_msg *m);
/* Encodes into buf[cap]; M2M_ENOBUFS (nothing written) if it does not fit,
 * M2M_EINVAL for a token longer than 8 or an option longer than 65804. */
int m2m_coap_encode(const struct m2m_coap_msg *m, uint8_t *buf, size_t cap, size_t *len);

int m2m_coap_add_opt(struct m2m_coap_msg *m, uint16_t num, const void *val, size_t len);
int m2m_coap_add_uint(struct m2m_coap_msg *m, uint16_t num, uint32_t v);
int m2m_coap_add_str(struct m2m_coap_msg *m, uint16_t num, const char *s);
/* Removes every instance of option `num`. */
void m2m_coap_del_opt(struct m2m_coap_msg *m, uint16_t num);
/* First instance of `num`, or NULL. */
const struct m2m_coap_opt *m2m_coap_find_opt(const struct m2m_coap_msg *m, uint16_t num);
/* Value of a uint option; `def` when absent, M2M_EMALFORMED-safe: an option
 * longer than 4 bytes reads as `def`. */
uint32_t m2m_coap_get_uint(const struct m2m_coap_msg *m, uint16_t num, uint32_t def);
bool m2m_coap_has_opt(const struct m2m_coap_msg *m, uint16_t num);

/* What RFC 7252 §5.4/§5.10 says of an option number. */
static inline bool m2m_coap_opt_critical(uint16_t num)
{
    return num & 1;
}
static inline bool m2m_coap_opt_unsafe(uint16_t num)
{
    return num & 2;
}
static inline bool m2m_coap_opt_nocachekey(uint16_t num)
{
    return (num & 0x1e) == 0x1c;
}
/* True when `o` is a known option whose length is within its defined range. */
bool m2m_coap_opt_known(const struct m2m_coap_opt *o);
/* First option that a receiver must treat as unrecognised and critical
 * (§5.4.1): an unknown odd-numbered option, or a known critical one whose
 * length is out of range. NULL when there is none. */
const struct m2m_coap_opt *m2m_coap_bad_critical(const struct m2m_coap_msg *m);

/* "2.05 Content", "GET", "4.04 Not Found"; static strings. */
const char *m2m_coap_code_name(uint8_t code);
const char *m2m_coap_type_name(uint8_t type);
/* Content-format names ("text/plain;charset=utf-8", short aliases such as
 * "text", "json", "cbor", "link"). NULL / -1 when unknown. */
const char *m2m_coap_format_name(int fmt);
int m2m_coap_format_parse(const char *name);

/* Path of a request as "/a/b" from its Uri-Path options, percent-encoding
 * '/', '%' and bytes outside printable ASCII inside segments so every
 * distinct path has one string. "/" for no Uri-Path. */
int m2m_coap_msg_path(const struct m2m_coap_msg *m, char *buf, size_t cap);
/* Adds one Uri-Path (or Location-Path) option per segment of "/a/b". */
int m2m_coap_add_path(struct m2m_coap_msg *m, uint16_t num, const char *path);

/* ---- block-wise (coap_block.c) ------------------------------------------ */

struct m2m_coap_block {
    uint32_t num;
    bool more;
    uint8_t szx; /* size = 16 << szx, 0..6 */
};
static inline size_t m2m_coap_block_size(uint8_t szx)
{
    return (size_t)16 << szx;
}
/* Reads Block1 or Block2; M2M_ENOTFOUND when absent, M2M_EMALFORMED for
 * SZX 7 (BERT, TCP only), a value over 3 bytes or a num past 2^20-1. */
int m2m_coap_get_block(const struct m2m_coap_msg *m, uint16_t num, struct m2m_coap_block *b);
int m2m_coap_add_block(struct m2m_coap_msg *m, uint16_t num, const struct m2m_coap_block *b);
/* Largest SZX whose size is <= bytes (at least 0). */
uint8_t m2m_coap_szx_for(size_t bytes);

/* ---- observe (coap_observe.c) ------------------------------------------ */

/* RFC 7641 §3.4: is a notification (v2 at t2) newer than (v1 at t1)? */
bool m2m_coap_observe_fresher(uint32_t v1, m2m_time t1, uint32_t v2, m2m_time t2);

/* ---- link format (coap_link.c) ----------------------------------------- */

struct m2m_coap_link {
    const char *href;             /* "/a/b" */
    const char *rt, *ifd, *title; /* NULL when absent */
    int ct;                       /* -1 when absent */
    long sz;                      /* -1 when absent */
    bool obs;
};

/* Appends one link (comma-separated after the first) to buf, or returns
 * M2M_ENOBUFS. `*len` is the current length of buf and is advanced. */
int m2m_coap_link_append(char *buf, size_t cap, size_t *len, const struct m2m_coap_link *l);

/* RFC 6690 §4.1 query filtering: one "name=value" Uri-Query, where value may
 * end in '*' for a prefix match. Matches href, rt, if, ct, sz, title, obs. */
bool m2m_coap_link_match(const struct m2m_coap_link *l, const char *query, size_t qlen);

/* Iterates the links of a link-format document: returns 1 and fills target
 * (without <>) and params (";a=b;c") slices, 0 at the end, M2M_EMALFORMED. */
struct m2m_coap_link_iter {
    const char *p;
    size_t n, off;
};
int m2m_coap_link_next(struct m2m_coap_link_iter *it, struct m2m_slice *target, struct m2m_slice *params);

/* ---- URIs (coap_uri.c) -------------------------------------------------- */

#define M2M_COAP_URI_MAX 1024
struct m2m_coap_uri {
    bool secure;     /* coaps:// */
    bool ip_literal; /* host is an IPv4 or bracketed IPv6 address */
    char host[256];  /* without brackets, percent-decoded */
    uint16_t port;
    /* Decoded segments, each NUL-terminated, stored in buf */
    uint8_t npath, nquery;
    uint16_t path_off[32], path_len[32];
    uint16_t query_off[32], query_len[32];
    char buf[M2M_COAP_URI_MAX];
};

/* RFC 7252 §6.4 decomposition of a coap:// or coaps:// URI. M2M_EINVAL for
 * fragments, bad percent-encoding, a bad port or too many segments. */
int m2m_coap_uri_parse(const char *s, struct m2m_coap_uri *u);
/* Adds Uri-Host (unless an IP literal), Uri-Port (unless the default),
 * Uri-Path and Uri-Query options; the options point into `u`. */
int m2m_coap_uri_to_opts(const struct m2m_coap_uri *u, struct m2m_coap_msg *m);

/* ---- endpoint (coap_core.c) -------------------------------------------- */

/* RFC 7252 §4.8 transmission parameters (all configurable). */
struct m2m_coap_params {
    uint32_t ack_timeout_ms;       /* 2000 */
    uint32_t ack_random_factor_pm; /* per mille: 1500 */
    uint32_t max_retransmit;       /* 4 */
    uint32_t nstart;               /* 1 */
    uint32_t default_leisure_ms;   /* 5000 */
    uint32_t probing_rate;         /* bytes/s: 1 */
    uint32_t max_latency_ms;       /* 100000 */
};

/* How the endpoint times the retransmissions of its Confirmable messages. */
enum m2m_coap_cc {
    /* RFC 7252 §4.2: the first timeout is random in [ACK_TIMEOUT,
     * ACK_TIMEOUT * ACK_RANDOM_FACTOR] and doubles at each retransmission. */
    M2M_COAP_CC_DEFAULT,
    /* draft-ietf-core-cocoa-03 (CoCoA): the first timeout comes from strong
     * and weak RTT estimators kept per destination endpoint, dithered by
     * ACK_RANDOM_FACTOR, and grows by a variable back-off factor. */
    M2M_COAP_CC_COCOA
};

struct m2m_coap_config {
    struct m2m_coap_params tx;
    enum m2m_coap_cc cc; /* M2M_COAP_CC_DEFAULT */
    struct m2m_rng rng;
    const struct m2m_logger *log;
    size_t max_message;              /* largest datagram built or accepted: 1152 */
    uint8_t block_szx;               /* preferred block size: 6 (1024) */
    uint8_t token_len;               /* tokens of requests we send: 4 */
    size_t max_body;                 /* largest block-wise body assembled: 1 MiB+ */
    size_t max_dedup;                /* remembered (peer, MID) pairs */
    size_t max_peers;                /* peers with state (CON in flight, queues) */
    size_t max_requests;             /* our outstanding requests */
    size_t max_observers;            /* server-side observe relationships */
    size_t max_block1;               /* concurrent Block1 uploads being assembled */
    uint32_t separate_after_ms;      /* send an empty ACK if no answer by then */
    uint32_t notify_min_interval_ms; /* cap on notification rate per observer */
    uint32_t notify_con_every_ms;    /* a CON notification at least this often */
    uint32_t nonrequest_timeout_ms;  /* how long to wait for a NON's answer */
};

/* Fills RFC 7252's defaults and m2mkit's caps. `rng` must be set after. */
void m2m_coap_config_default(struct m2m_coap_config *c);
/* EXCHANGE_LIFETIME and NON_LIFETIME (§4.8.2) for these parameters. */
uint32_t m2m_coap_exchange_lifetime_ms(const struct m2m_coap_params *p);
uint32_t m2m_coap_non_lifetime_ms(const struct m2m_coap_params *p);

enum m2m_coap_event_type {
    M2M_COAP_EV_REQUEST,      /* server: answer with m2m_coap_respond(id) */
    M2M_COAP_EV_RESPONSE,     /* client: the (reassembled) response to request id */
    M2M_COAP_EV_NOTIFY,       /* client: a fresh notification of observation id */
    M2M_COAP_EV_FAILED,       /* client: request id failed; err says why */
    M2M_COAP_EV_OBSERVER_GONE /* server: an observer of `path` went away */
};

/* An event. `msg` points into storage owned by the endpoint, valid until the
 * next call to any m2m_coap_ep_* function. `path` is the request path for
 * REQUEST and OBSERVER_GONE. */
struct m2m_coap_event {
    enum m2m_coap_event_type type;
    uint32_t id;
    int err;
    struct m2m_addr peer;
    struct m2m_coap_msg msg;
    const char *path;
};

struct m2m_coap_out {
    struct m2m_addr peer;
    const uint8_t *data; /* valid until the next feed or on_timeout call */
    size_t len;
};

struct m2m_coap_stats {
    uint64_t rx, tx, retransmits, duplicates, rst_sent, rst_rx, malformed, dropped;
    uint64_t requests_in, responses_out, requests_out, responses_in, notifications;
    uint64_t timeouts;
    /* CoCoA (draft-ietf-core-cocoa-03 §4.2): RTT samples given to the strong
     * estimator, to the weak one, and answers after 3+ retransmissions that
     * updated neither. Always 0 with M2M_COAP_CC_DEFAULT. */
    uint64_t rtt_strong, rtt_weak, rtt_unused;
};

struct m2m_coap_ep;

/* Allocates an endpoint; NULL on bad configuration or no memory. */
struct m2m_coap_ep *m2m_coap_ep_new(const struct m2m_coap_config *cfg);
void m2m_coap_ep_free(struct m2m_coap_ep *ep);

/* One datagram from `from` at time `now`. Always consumes it: malformed
 * input is answered as RFC 7252 §4.2-4.3 says (RST, silence or 4.02) and
 * counted, never returned as an error. Returns M2M_OK. */
int m2m_coap_ep_feed(struct m2m_coap_ep *ep, m2m_time now, const struct m2m_addr *from, const uint8_t *p,
                     size_t n);
/* Next datagram to send: 1 and *out filled, or 0 when none is left. */
int m2m_coap_ep_poll_output(struct m2m_coap_ep *ep, struct m2m_coap_out *out);
/* Next event: 1 and *ev filled, or 0. */
int m2m_coap_ep_poll_event(struct m2m_coap_ep *ep, struct m2m_coap_event *ev);
m2m_time m2m_coap_ep_next_timeout(const struct m2m_coap_ep *ep);
void m2m_coap_ep_on_timeout(struct m2m_coap_ep *ep, m2m_time now);
const struct m2m_coap_stats *m2m_coap_ep_stats(const struct m2m_coap_ep *ep);
/* Counts of live state, for tests and limits. */
size_t m2m_coap_ep_observer_count(const struct m2m_coap_ep *ep);
size_t m2m_coap_ep_peer_count(const struct m2m_coap_ep *ep);
/* The RTO, in ms and before dithering, that a new Confirmable message to
 * `peer` would start from at `now`: ACK_TIMEOUT with M2M_COAP_CC_DEFAULT;
 * with CoCoA the peer's aged overall estimate, or ACK_TIMEOUT (the blind
 * estimate, draft §4.1) for a peer not measured yet. Changes nothing. */
uint32_t m2m_coap_ep_rto(const struct m2m_coap_ep *ep, const struct m2m_addr *peer, m2m_time now);
/* "default" / "cocoa"; m2m_coap_cc_parse returns -1 for other names. */
const char *m2m_coap_cc_name(enum m2m_coap_cc cc);
int m2m_coap_cc_parse(const char *name);

/* Answers request `id`. type, mid and token of `resp` are ignored and set by
 * the endpoint (piggybacked if still possible, else separate). A payload
 * larger than the block size is served block-wise (Block2, Size2), sliced
 * per the request's Block2 option; the application answers each block
 * request with the whole representation. An Observe option in the answer
 * to a GET with Observe=0 registers the peer as an observer of the path;
 * the endpoint fills in the sequence number. M2M_ENOTFOUND for an unknown
 * or already answered id, M2M_ELIMIT when the observer cap is reached (the
 * answer is then sent without Observe). */
int m2m_coap_respond(struct m2m_coap_ep *ep, uint32_t id, const struct m2m_coap_msg *resp);

/* m2m_coap_respond and m2m_coap_notify take no time argument: they act at the
 * time of the last feed, on_timeout, request or cancel call. */

/* Sends the new state of `path` to each of its observers: CON or NON per
 * the endpoint's rules (con=true forces CON), with the newest state replacing
 * any pending one and the rate cap applied. A response code outside 2.xx
 * ends every observation of the path. Returns the number of observers. */
int m2m_coap_notify(struct m2m_coap_ep *ep, const char *path, const struct m2m_coap_msg *state, bool con);

/* Sends a request to `to`. req->type selects CON or NON; the endpoint sets
 * the MID and token (unless req->tkl > 0), splits a large payload into Block1
 * blocks and reassembles a Block2 answer. A Block2 option with num 0 in
 * `req` asks for that block size from the first answer on. With Observe=0 the request opens
 * an observation: each fresh notification comes as EV_NOTIFY with the same
 * id, and the endpoint re-registers when Max-Age runs out. *id identifies it
 * in events. The payload is copied. */
int m2m_coap_request(struct m2m_coap_ep *ep, m2m_time now, const struct m2m_addr *to,
                     const struct m2m_coap_msg *req, uint32_t *id);
/* Forgets request or observation `id`. With deregister=true an observation
 * is cancelled actively with a GET carrying Observe=1 (its answer arrives as
 * EV_RESPONSE); otherwise the next notification is answered with RST. */
int m2m_coap_cancel(struct m2m_coap_ep *ep, m2m_time now, uint32_t id, bool deregister);

#endif
