/* Broker-side MQTT 3.1.1 / 5.0 session core for one connection, sans-IO.
 *
 * The core takes bytes and time in (m2m_mqtt_conn_feed, m2m_mqtt_conn_on_timeout)
 * and hands bytes and events out (m2m_mqtt_conn_poll_output,
 * m2m_mqtt_conn_poll_event). It never reads a clock, never touches a socket and
 * keeps no globals. The application answers events with calls such as
 * m2m_mqtt_conn_accept, m2m_mqtt_conn_ack and m2m_mqtt_conn_suback, so a broker
 * can persist a message before it is acknowledged.
 *
 * Ownership: m2m_mqtt_conn_new allocates, m2m_mqtt_conn_free releases
 * (NULL is a no-op). Every buffer is bounded by the configuration. */
#ifndef M2M_MQTT_SESSION_H
#define M2M_MQTT_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "m2m/err.h"
#include "m2m/mqtt.h"
#include "m2m/types.h"

struct m2m_mqtt_conn;

/* Caps and timers. Zero fields take the default given in brackets. */
struct m2m_mqtt_conn_config {
    m2m_time start;               /* when the transport connection was established */
    uint32_t max_packet_size;     /* largest packet we accept [65536], advertised in v5 */
    uint16_t receive_maximum;     /* inbound QoS>0 messages in flight, advertised in v5 [32] */
    uint16_t topic_alias_maximum; /* inbound topic aliases, advertised in v5 [0: none] */
    uint16_t max_inflight;        /* outbound QoS>0 messages in flight [32] */
    uint32_t connect_timeout_ms;  /* time allowed before CONNECT arrives [10000] */
    uint16_t max_keep_alive;      /* v5: a longer (or no) keep alive is replaced by this one, sent as
                                     Server Keep Alive [0: the client's] */
    uint16_t max_events;          /* queued events before the connection is closed [256] */
    size_t max_output;            /* pending output bytes [4 * max_packet_size + 65536] */
    uint16_t out_topic_aliases;   /* v5: topic aliases we assign towards the client, at most its
                                     Topic Alias Maximum and 64 [0: none] */
};

enum m2m_mqtt_conn_event_type {
    M2M_MQTT_EV_CONNECT = 1,      /* answer with m2m_mqtt_conn_accept or _refuse */
    M2M_MQTT_EV_PUBLISH,          /* inbound; QoS>0 needs m2m_mqtt_conn_ack */
    M2M_MQTT_EV_PUBLISH_DONE,     /* outbound QoS>0 message `packet_id` completed */
    M2M_MQTT_EV_PUBLISH_RELEASED, /* outbound QoS 2 `packet_id`: PUBREC came, PUBREL sent */
    M2M_MQTT_EV_SUBSCRIBE,        /* answer with m2m_mqtt_conn_suback */
    M2M_MQTT_EV_UNSUBSCRIBE,      /* answer with m2m_mqtt_conn_unsuback */
    M2M_MQTT_EV_DISCONNECT,       /* the client sent DISCONNECT: close the connection */
    M2M_MQTT_EV_CLOSED            /* the core gave up: write pending output, then close */
};

/* One event. The pointers and slices stay valid until the next
 * m2m_mqtt_conn_poll_event or m2m_mqtt_conn_free call. Only the member that
 * matches `type` is set. For PUBLISH, the topic is already resolved from a v5
 * Topic Alias. */
struct m2m_mqtt_conn_event {
    enum m2m_mqtt_conn_event_type type;
    uint8_t version; /* enum m2m_mqtt_version, 0 before CONNECT */
    const struct m2m_mqtt_connect *connect;
    const struct m2m_mqtt_publish *publish;
    const struct m2m_mqtt_subscribe *subscribe;
    const struct m2m_mqtt_unsubscribe *unsubscribe;
    uint16_t packet_id; /* PUBLISH_DONE */
    /* DISCONNECT: the client's reason code. CLOSED: the v5 reason code we sent
     * in DISCONNECT or a refusing CONNACK, 0 when none was sent. */
    uint8_t reason;
    bool publish_will;       /* DISCONNECT, CLOSED: the Will Message must be published */
    bool has_session_expiry; /* DISCONNECT (v5): the client set a new Session Expiry Interval */
    uint32_t session_expiry;
    int err; /* CLOSED: M2M_EMALFORMED, M2M_ETIMEDOUT, M2M_ELIMIT, M2M_ESTATE... */
};

/* Allocates a connection in the "awaiting CONNECT" state. NULL on bad
 * configuration or out of memory. */
struct m2m_mqtt_conn *m2m_mqtt_conn_new(const struct m2m_mqtt_conn_config *cfg);
void m2m_mqtt_conn_free(struct m2m_mqtt_conn *conn);

/* Feeds n bytes of the stream, split anywhere. Complete packets are handled
 * at once; between a CONNECT and the application's answer further bytes are
 * only buffered. Returns 0, or M2M_ESTATE once the connection is closed.
 * Protocol failures are reported as a CLOSED event, never as a return code.
 * Drain the events after every call: more than max_events pending closes the
 * connection. */
int m2m_mqtt_conn_feed(struct m2m_mqtt_conn *conn, m2m_time now, const uint8_t *p, size_t n);

/* Hands out all pending output bytes; false when there are none. The bytes
 * stay valid until the next call to any other m2m_mqtt_conn function. */
bool m2m_mqtt_conn_poll_output(struct m2m_mqtt_conn *conn, const uint8_t **p, size_t *n);

/* Takes the next event; false when there is none. */
bool m2m_mqtt_conn_poll_event(struct m2m_mqtt_conn *conn, struct m2m_mqtt_conn_event *ev);

/* Earliest time on_timeout must run (connect timeout, keep alive), or M2M_NEVER. */
m2m_time m2m_mqtt_conn_next_timeout(const struct m2m_mqtt_conn *conn);
void m2m_mqtt_conn_on_timeout(struct m2m_mqtt_conn *conn, m2m_time now);

/* Answers a CONNECT event with a successful CONNACK. v5 CONNACK advertises
 * Receive Maximum, Maximum Packet Size, Topic Alias Maximum, Server Keep
 * Alive (if forced) and Assigned Client Identifier (if not NULL). Session
 * Present is forced to 0 for a clean start [MQTT-3.2.2-2]. Buffered input is
 * processed. M2M_ESTATE when no CONNECT awaits an answer. */
int m2m_mqtt_conn_accept(struct m2m_mqtt_conn *conn, bool session_present, const char *assigned_client_id);

/* Refuses a CONNECT with v5 reason code `reason` (>= 0x80), mapped to the
 * v3.1.1 return code for 3.1.1 clients (0x87 -> 5, 0x86 -> 4, 0x85 -> 2,
 * 0x84 -> 1, else 3), then closes: a CLOSED event follows. */
int m2m_mqtt_conn_refuse(struct m2m_mqtt_conn *conn, uint8_t reason);

/* Acknowledges inbound QoS 1 (PUBACK) or QoS 2 (PUBREC) message packet_id
 * with v5 reason code `reason` (ignored in 3.1.1). M2M_ENOTFOUND if no such
 * message awaits an answer. */
int m2m_mqtt_conn_ack(struct m2m_mqtt_conn *conn, uint16_t packet_id, uint8_t reason);

/* Answers SUBSCRIBE / UNSUBSCRIBE packet_id with n reason codes (n <=
 * M2M_MQTT_MAX_FILTERS; UNSUBACK ignores them in 3.1.1). */
int m2m_mqtt_conn_suback(struct m2m_mqtt_conn *conn, uint16_t packet_id, const uint8_t *codes, size_t n);
int m2m_mqtt_conn_unsuback(struct m2m_mqtt_conn *conn, uint16_t packet_id, const uint8_t *codes, size_t n);

/* Sends a PUBLISH. props may be NULL (v5 only). For QoS>0 a packet id is
 * chosen and stored in *packet_id (may be NULL) and the message is kept
 * until it completes (PUBLISH_DONE). Returns 0; M2M_ESTATE before accept or
 * after close; M2M_EAGAIN when the inflight window (the client's Receive
 * Maximum and max_inflight) is full; M2M_ELIMIT when the packet exceeds the
 * client's Maximum Packet Size and is dropped [MQTT-3.1.2-25]; M2M_EINVAL for
 * an invalid topic or an unencodable message; M2M_ENOBUFS when output is full. */
int m2m_mqtt_conn_publish(struct m2m_mqtt_conn *conn, m2m_time now, struct m2m_slice topic,
                          struct m2m_slice payload, uint8_t qos, bool retain,
                          const struct m2m_mqtt_props *props, uint16_t *packet_id);

/* Sends again, on a new connection of the same session, an outbound QoS>0
 * message of an earlier one, with its packet id and DUP set
 * [MQTT-4.4.0-1]; with `released` (QoS 2 whose PUBREC came) only PUBREL is
 * sent [MQTT-4.3.3-5]. Errors as m2m_mqtt_conn_publish, and M2M_EEXIST when
 * packet_id is in flight already. */
int m2m_mqtt_conn_restore(struct m2m_mqtt_conn *conn, m2m_time now, struct m2m_slice topic,
                          struct m2m_slice payload, uint8_t qos, bool retain,
                          const struct m2m_mqtt_props *props, uint16_t packet_id, bool released);

/* Server-initiated end: v5 clients get DISCONNECT with `reason` (for
 * example 0x8E Session taken over, 0x8B Server shutting down); a CLOSED
 * event follows. M2M_ESTATE when closed already. */
int m2m_mqtt_conn_disconnect(struct m2m_mqtt_conn *conn, uint8_t reason);

/* Re-sends every unacknowledged outbound QoS>0 message with DUP=1 and every
 * pending PUBREL, in the original order (session resume, [MQTT-4.4.0-1]). */
int m2m_mqtt_conn_resend(struct m2m_mqtt_conn *conn);

#endif
