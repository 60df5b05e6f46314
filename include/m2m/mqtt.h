/* MQTT 3.1.1 (protocol level 4) and MQTT 5.0 (protocol level 5) packet
 * codec, sans-IO: bytes <-> packet structs, topic validation and matching.
 *
 * Lifetimes: the decoder never allocates. Every struct m2m_slice in a decoded
 * packet (strings, binary data, the raw property block, the payload) points
 * into the input buffer and stays valid as long as that buffer does. The
 * encoder reads the same structs, so slices may point anywhere the caller
 * likes while m2m_mqtt_encode runs. */
#ifndef M2M_MQTT_H
#define M2M_MQTT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "m2m/err.h"
#include "m2m/types.h"

/* ---- constants ------------------------------------------------------- */

enum m2m_mqtt_version { M2M_MQTT_V311 = 4, M2M_MQTT_V5 = 5 };

/* Largest Remaining Length a four-byte variable byte integer holds (§1.5.5). */
#define M2M_MQTT_MAX_REMAINING 268435455u

/* Caps on peer-controlled counts in one packet (STYLE rule 5). A packet that
 * exceeds them decodes as M2M_ELIMIT. */
#define M2M_MQTT_MAX_FILTERS 32 /* topic filters in SUBSCRIBE/UNSUBSCRIBE, codes in SUBACK/UNSUBACK */
#define M2M_MQTT_MAX_SUBIDS 8   /* subscription identifiers in one PUBLISH */

enum m2m_mqtt_type {
    M2M_MQTT_CONNECT = 1,
    M2M_MQTT_CONNACK = 2,
    M2M_MQTT_PUBLISH = 3,
    M2M_MQTT_PUBACK = 4,
    M2M_MQTT_PUBREC = 5,
    M2M_MQTT_PUBREL = 6,
    M2M_MQTT_PUBCOMP = 7,
    M2M_MQTT_SUBSCRIBE = 8,
    M2M_MQTT_SUBACK = 9,
    M2M_MQTT_UNSUBSCRIBE = 10,
    M2M_MQTT_UNSUBACK = 11,
    M2M_MQTT_PINGREQ = 12,
    M2M_MQTT_PINGRESP = 13,
    M2M_MQTT_DISCONNECT = 14,
    M2M_MQTT_AUTH = 15 /* MQTT 5 only */
};

/* MQTT 5 reason codes (§2.4). Several share a value, as in the spec. */
enum m2m_mqtt_rc {
    M2M_MQTT_RC_SUCCESS = 0x00,
    M2M_MQTT_RC_NORMAL_DISCONNECTION = 0x00,
    M2M_MQTT_RC_GRANTED_QOS0 = 0x00,
    M2M_MQTT_RC_GRANTED_QOS1 = 0x01,
    M2M_MQTT_RC_GRANTED_QOS2 = 0x02,
    M2M_MQTT_RC_DISCONNECT_WITH_WILL = 0x04,
    M2M_MQTT_RC_NO_MATCHING_SUBSCRIBERS = 0x10,
    M2M_MQTT_RC_NO_SUBSCRIPTION_EXISTED = 0x11,
    M2M_MQTT_RC_CONTINUE_AUTHENTICATION = 0x18,
    M2M_MQTT_RC_REAUTHENTICATE = 0x19,
    M2M_MQTT_RC_UNSPECIFIED_ERROR = 0x80,
    M2M_MQTT_RC_MALFORMED_PACKET = 0x81,
    M2M_MQTT_RC_PROTOCOL_ERROR = 0x82,
    M2M_MQTT_RC_IMPLEMENTATION_SPECIFIC = 0x83,
    M2M_MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION = 0x84,
    M2M_MQTT_RC_CLIENT_ID_NOT_VALID = 0x85,
    M2M_MQTT_RC_BAD_USERNAME_OR_PASSWORD = 0x86,
    M2M_MQTT_RC_NOT_AUTHORIZED = 0x87,
    M2M_MQTT_RC_SERVER_UNAVAILABLE = 0x88,
    M2M_MQTT_RC_SERVER_BUSY = 0x89,
    M2M_MQTT_RC_BANNED = 0x8a,
    M2M_MQTT_RC_SERVER_SHUTTING_DOWN = 0x8b,
    M2M_MQTT_RC_BAD_AUTHENTICATION_METHOD = 0x8c,
    M2M_MQTT_RC_KEEP_ALIVE_TIMEOUT = 0x8d,
    M2M_MQTT_RC_SESSION_TAKEN_OVER = 0x8e,
    M2M_MQTT_RC_TOPIC_FILTER_INVALID = 0x8f,
    M2M_MQTT_RC_TOPIC_NAME_INVALID = 0x90,
    M2M_MQTT_RC_PACKET_ID_IN_USE = 0x91,
    M2M_MQTT_RC_PACKET_ID_NOT_FOUND = 0x92,
    M2M_MQTT_RC_RECEIVE_MAXIMUM_EXCEEDED = 0x93,
    M2M_MQTT_RC_TOPIC_ALIAS_INVALID = 0x94,
    M2M_MQTT_RC_PACKET_TOO_LARGE = 0x95,
    M2M_MQTT_RC_MESSAGE_RATE_TOO_HIGH = 0x96,
    M2M_MQTT_RC_QUOTA_EXCEEDED = 0x97,
    M2M_MQTT_RC_ADMINISTRATIVE_ACTION = 0x98,
    M2M_MQTT_RC_PAYLOAD_FORMAT_INVALID = 0x99,
    M2M_MQTT_RC_RETAIN_NOT_SUPPORTED = 0x9a,
    M2M_MQTT_RC_QOS_NOT_SUPPORTED = 0x9b,
    M2M_MQTT_RC_USE_ANOTHER_SERVER = 0x9c,
    M2M_MQTT_RC_SERVER_MOVED = 0x9d,
    M2M_MQTT_RC_SHARED_SUBSCRIPTIONS_NOT_SUPPORTED = 0x9e,
    M2M_MQTT_RC_CONNECTION_RATE_EXCEEDED = 0x9f,
    M2M_MQTT_RC_MAXIMUM_CONNECT_TIME = 0xa0,
    M2M_MQTT_RC_SUBSCRIPTION_IDS_NOT_SUPPORTED = 0xa1,
    M2M_MQTT_RC_WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED = 0xa2
};

/* MQTT 3.1.1 CONNACK return codes (§3.2.2.3 of 3.1.1) and SUBACK failure. */
enum m2m_mqtt311_rc {
    M2M_MQTT311_ACCEPTED = 0,
    M2M_MQTT311_BAD_PROTOCOL_VERSION = 1,
    M2M_MQTT311_IDENTIFIER_REJECTED = 2,
    M2M_MQTT311_SERVER_UNAVAILABLE = 3,
    M2M_MQTT311_BAD_USERNAME_OR_PASSWORD = 4,
    M2M_MQTT311_NOT_AUTHORIZED = 5,
    M2M_MQTT311_SUBACK_FAILURE = 0x80
};

/* MQTT 5 property identifiers (§2.2.2.2) and, in the comment, their wire
 * type; m2m_mqtt_prop_type() gives the type at run time. */
enum m2m_mqtt_prop {
    M2M_MQTT_P_PAYLOAD_FORMAT = 0x01,            /* byte */
    M2M_MQTT_P_MESSAGE_EXPIRY = 0x02,            /* four-byte int */
    M2M_MQTT_P_CONTENT_TYPE = 0x03,              /* UTF-8 string */
    M2M_MQTT_P_RESPONSE_TOPIC = 0x08,            /* UTF-8 string */
    M2M_MQTT_P_CORRELATION_DATA = 0x09,          /* binary */
    M2M_MQTT_P_SUBSCRIPTION_ID = 0x0b,           /* varint */
    M2M_MQTT_P_SESSION_EXPIRY = 0x11,            /* four-byte int */
    M2M_MQTT_P_ASSIGNED_CLIENT_ID = 0x12,        /* UTF-8 string */
    M2M_MQTT_P_SERVER_KEEP_ALIVE = 0x13,         /* two-byte int */
    M2M_MQTT_P_AUTH_METHOD = 0x15,               /* UTF-8 string */
    M2M_MQTT_P_AUTH_DATA = 0x16,                 /* binary */
    M2M_MQTT_P_REQUEST_PROBLEM_INFO = 0x17,      /* byte */
    M2M_MQTT_P_WILL_DELAY = 0x18,                /* four-byte int */
    M2M_MQTT_P_REQUEST_RESPONSE_INFO = 0x19,     /* byte */
    M2M_MQTT_P_RESPONSE_INFO = 0x1a,             /* UTF-8 string */
    M2M_MQTT_P_SERVER_REFERENCE = 0x1c,          /* UTF-8 string */
    M2M_MQTT_P_REASON_STRING = 0x1f,             /* UTF-8 string */
    M2M_MQTT_P_RECEIVE_MAXIMUM = 0x21,           /* two-byte int */
    M2M_MQTT_P_TOPIC_ALIAS_MAXIMUM = 0x22,       /* two-byte int */
    M2M_MQTT_P_TOPIC_ALIAS = 0x23,               /* two-byte int */
    M2M_MQTT_P_MAXIMUM_QOS = 0x24,               /* byte */
    M2M_MQTT_P_RETAIN_AVAILABLE = 0x25,          /* byte */
    M2M_MQTT_P_USER_PROPERTY = 0x26,             /* UTF-8 string pair */
    M2M_MQTT_P_MAXIMUM_PACKET_SIZE = 0x27,       /* four-byte int */
    M2M_MQTT_P_WILDCARD_SUB_AVAILABLE = 0x28,    /* byte */
    M2M_MQTT_P_SUBSCRIPTION_ID_AVAILABLE = 0x29, /* byte */
    M2M_MQTT_P_SHARED_SUB_AVAILABLE = 0x2a       /* byte */
};

enum m2m_mqtt_ptype {
    M2M_MQTT_PT_BYTE = 1,
    M2M_MQTT_PT_U16,
    M2M_MQTT_PT_U32,
    M2M_MQTT_PT_VARINT,
    M2M_MQTT_PT_STRING,
    M2M_MQTT_PT_PAIR,
    M2M_MQTT_PT_BINARY
};

/* Where a property block sits: a packet type, or the Will properties of a
 * CONNECT payload. */
#define M2M_MQTT_CTX_WILL 0

/* Wire type of property `id`, or 0 for an unknown identifier. */
enum m2m_mqtt_ptype m2m_mqtt_prop_type(uint8_t id);
/* True if property `id` may appear in context `ctx` (a packet type or
 * M2M_MQTT_CTX_WILL), per the table of §2.2.2.2. */
bool m2m_mqtt_prop_allowed(uint8_t id, unsigned ctx);

/* ---- properties ------------------------------------------------------ */

struct m2m_mqtt_pair {
    struct m2m_slice name;
    struct m2m_slice value;
};

/* The properties of one packet. `present` has bit (1 << id) set for each
 * property found (see m2m_mqtt_props_has). Decoding fills `raw` with the
 * whole property block (without its length) and counts user properties in
 * `nuser`, which the caller walks with m2m_mqtt_user_iter; `user` is then
 * NULL. To encode user properties, point `user` at `nuser` pairs; when
 * `user` is NULL the encoder copies the user properties found in `raw`. */
struct m2m_mqtt_props {
    struct m2m_slice raw;
    uint64_t present;
    uint32_t session_expiry;
    uint32_t message_expiry;
    uint32_t will_delay;
    uint32_t maximum_packet_size;
    uint16_t receive_maximum;
    uint16_t topic_alias_maximum;
    uint16_t topic_alias;
    uint16_t server_keep_alive;
    uint8_t payload_format;
    uint8_t request_problem_info;
    uint8_t request_response_info;
    uint8_t maximum_qos;
    uint8_t retain_available;
    uint8_t wildcard_sub_available;
    uint8_t subscription_id_available;
    uint8_t shared_sub_available;
    struct m2m_slice content_type;
    struct m2m_slice response_topic;
    struct m2m_slice correlation_data;
    struct m2m_slice reason_string;
    struct m2m_slice assigned_client_id;
    struct m2m_slice auth_method;
    struct m2m_slice auth_data;
    struct m2m_slice server_reference;
    struct m2m_slice response_info;
    uint8_t nsubid;
    uint32_t subid[M2M_MQTT_MAX_SUBIDS];
    uint16_t nuser;
    const struct m2m_mqtt_pair *user;
};

static inline bool m2m_mqtt_props_has(const struct m2m_mqtt_props *p, enum m2m_mqtt_prop id)
{
    return (unsigned)id < 64 && ((p->present >> id) & 1);
}
/* Marks a property present (for building packets to encode). */
static inline void m2m_mqtt_props_set(struct m2m_mqtt_props *p, enum m2m_mqtt_prop id)
{
    if ((unsigned)id < 64)
        p->present |= (uint64_t)1 << id;
}

/* Walks the user properties of a decoded property block in wire order. */
struct m2m_mqtt_user_iter {
    struct m2m_slice raw;
    size_t off;
};
void m2m_mqtt_user_iter_init(struct m2m_mqtt_user_iter *it, const struct m2m_mqtt_props *props);
/* Fills *out with the next pair; false at the end. */
bool m2m_mqtt_user_next(struct m2m_mqtt_user_iter *it, struct m2m_mqtt_pair *out);

/* Why a decode failed, so a broker can answer properly: `reason` is the MQTT 5
 * reason code to put in CONNACK/DISCONNECT (0x81 Malformed Packet, 0x82
 * Protocol Error, 0x84 Unsupported Protocol Version, 0x83 for a local cap,
 * 0x95 Packet Too Large), `rule` a static string naming the broken rule
 * ("MQTT-3.1.2-3"). For MQTT 3.1.1 the answer is simply to close the
 * connection, except 0x84 which maps to CONNACK return code 1. */
struct m2m_mqtt_diag {
    uint8_t reason;
    const char *rule;
};

/* Decodes the contents of a property block (the bytes after its length) for
 * context `ctx`. Refuses identifiers not allowed there (Malformed Packet),
 * duplicates other than User Property and Subscription Identifier (Protocol
 * Error), out-of-range values (Protocol Error). Returns 0, M2M_EMALFORMED or
 * M2M_ELIMIT (more Subscription Identifiers than M2M_MQTT_MAX_SUBIDS); `diag`
 * may be NULL. */
int m2m_mqtt_props_decode(struct m2m_mqtt_props *props, unsigned ctx, const uint8_t *p, size_t n,
                          struct m2m_mqtt_diag *diag);
/* Size in bytes of the encoded property contents (without the length), or
 * SIZE_MAX if they cannot be encoded. */
size_t m2m_mqtt_props_size(const struct m2m_mqtt_props *props);
/* Writes the property contents (without the length) into buf. M2M_ENOBUFS
 * (nothing written) if cap is short, M2M_EINVAL if a value cannot be encoded. */
int m2m_mqtt_props_encode(const struct m2m_mqtt_props *props, uint8_t *buf, size_t cap, size_t *len);

/* ---- packets ------------------------------------------------------- */

struct m2m_mqtt_connect {
    bool clean_start; /* Clean Session in 3.1.1 */
    uint16_t keep_alive;
    struct m2m_mqtt_props props;
    struct m2m_slice client_id;
    bool will;
    uint8_t will_qos;
    bool will_retain;
    struct m2m_mqtt_props will_props;
    struct m2m_slice will_topic;
    struct m2m_slice will_payload;
    bool has_username;
    bool has_password;
    struct m2m_slice username;
    struct m2m_slice password;
};

struct m2m_mqtt_connack {
    bool session_present;
    uint8_t rc; /* enum m2m_mqtt_rc (v5) or enum m2m_mqtt311_rc */
    struct m2m_mqtt_props props;
};

struct m2m_mqtt_publish {
    bool dup;
    uint8_t qos;
    bool retain;
    struct m2m_slice topic;
    uint16_t packet_id; /* only with qos > 0 */
    struct m2m_mqtt_props props;
    struct m2m_slice payload;
};

/* PUBACK, PUBREC, PUBREL, PUBCOMP. */
struct m2m_mqtt_ack {
    uint16_t packet_id;
    uint8_t rc;
    struct m2m_mqtt_props props;
};

struct m2m_mqtt_subscription {
    struct m2m_slice filter;
    uint8_t qos;
    bool no_local;            /* v5 */
    bool retain_as_published; /* v5 */
    uint8_t retain_handling;  /* v5, 0..2 */
};

struct m2m_mqtt_subscribe {
    uint16_t packet_id;
    struct m2m_mqtt_props props;
    uint16_t n;
    struct m2m_mqtt_subscription sub[M2M_MQTT_MAX_FILTERS];
};

/* SUBACK, and UNSUBACK (whose v3.1.1 form has no codes: n == 0). */
struct m2m_mqtt_suback {
    uint16_t packet_id;
    struct m2m_mqtt_props props;
    uint16_t n;
    uint8_t rc[M2M_MQTT_MAX_FILTERS];
};

struct m2m_mqtt_unsubscribe {
    uint16_t packet_id;
    struct m2m_mqtt_props props;
    uint16_t n;
    struct m2m_slice filter[M2M_MQTT_MAX_FILTERS];
};

/* DISCONNECT and AUTH (rc and props are v5 only). */
struct m2m_mqtt_disconnect {
    uint8_t rc;
    struct m2m_mqtt_props props;
};

/* One packet. `version` is the session's protocol level; for CONNECT the
 * decoder takes it from the packet. PINGREQ and PINGRESP have no body. */
struct m2m_mqtt_packet {
    uint8_t type;    /* enum m2m_mqtt_type */
    uint8_t version; /* enum m2m_mqtt_version */
    union {
        struct m2m_mqtt_connect connect;
        struct m2m_mqtt_connack connack;
        struct m2m_mqtt_publish publish;
        struct m2m_mqtt_ack ack; /* PUBACK PUBREC PUBREL PUBCOMP */
        struct m2m_mqtt_subscribe subscribe;
        struct m2m_mqtt_suback suback; /* SUBACK UNSUBACK */
        struct m2m_mqtt_unsubscribe unsubscribe;
        struct m2m_mqtt_disconnect disconnect; /* DISCONNECT AUTH */
    } u;
};

/* Zeroes *pkt and sets its type and version, ready to be filled in. */
void m2m_mqtt_packet_init(struct m2m_mqtt_packet *pkt, enum m2m_mqtt_type type, enum m2m_mqtt_version v);

/* Stream framing: looks at the first n bytes of a stream. Returns 0 and the
 * length of the first packet (fixed header included) in *total when all of
 * it is there; M2M_EAGAIN when more bytes are needed; M2M_EMALFORMED for a
 * reserved packet type 0 or a bad Remaining Length (more than four bytes,
 * not minimal); M2M_ELIMIT when the packet is longer than max_packet
 * (0 = no limit besides the protocol's). Never reads past p[n-1]. */
int m2m_mqtt_frame(const uint8_t *p, size_t n, size_t max_packet, size_t *total);

/* Decodes exactly one packet occupying all of p[0..n) (use m2m_mqtt_frame to
 * find n). `version` is the session's protocol level, ignored for CONNECT.
 * Returns 0; M2M_EMALFORMED for a malformed packet or a protocol error;
 * M2M_EUNSUPPORTED for a CONNECT with another protocol name or level;
 * M2M_ELIMIT when a local cap is exceeded. On error `diag` (may be NULL)
 * says which reason code to answer with. Slices in *pkt borrow from p. */
int m2m_mqtt_decode(struct m2m_mqtt_packet *pkt, enum m2m_mqtt_version version, const uint8_t *p, size_t n,
                    struct m2m_mqtt_diag *diag);

/* Size of the encoding of pkt, or 0 if it cannot be encoded. */
size_t m2m_mqtt_encoded_size(const struct m2m_mqtt_packet *pkt);
/* Encodes pkt into buf. Sizes first: M2M_ENOBUFS if cap is too small and
 * M2M_EINVAL if the packet cannot be encoded (bad QoS, string over 65535
 * bytes, packet over the Remaining Length limit, too many entries), writing
 * nothing in both cases. */
int m2m_mqtt_encode(const struct m2m_mqtt_packet *pkt, uint8_t *buf, size_t cap, size_t *len);

/* ---- topics (§4.7) ----------------------------------------------------- */

/* A topic name as PUBLISH carries it: non-empty, well-formed UTF-8 without
 * U+0000, at most 65535 bytes, no '+' or '#' ([MQTT-3.3.2-2], [MQTT-4.7.3-1]). */
bool m2m_mqtt_topic_valid(struct m2m_slice name);
/* A topic filter: non-empty UTF-8, '#' last and alone in its level, '+'
 * alone in its level ([MQTT-4.7.1-1..3]); a shared filter must have the
 * shape $share/{group}/{filter} with a non-empty group free of '/', '+',
 * '#' and a valid filter ([MQTT-4.8.2-1], [MQTT-4.8.2-2]). */
bool m2m_mqtt_filter_valid(struct m2m_slice filter);
/* True for a $share/ filter; fills group and the inner filter (may be NULL). */
bool m2m_mqtt_filter_shared(struct m2m_slice filter, struct m2m_slice *group, struct m2m_slice *inner);
/* True if the valid topic name matches the valid filter. A shared filter
 * matches through its inner filter. Filters starting with a wildcard do not
 * match names starting with '$' ([MQTT-4.7.2-1]). */
bool m2m_mqtt_topic_match(struct m2m_slice filter, struct m2m_slice name);

#endif
