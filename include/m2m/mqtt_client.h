/* Client-side (device side) MQTT 3.1.1 / 5.0 core for one client, sans-IO.
 *
 * Same shape as the broker's m2m/mqtt_session.h: bytes and time go in
 * (m2m_mqtt_client_feed, m2m_mqtt_client_on_timeout), bytes and events come
 * out (m2m_mqtt_client_poll_output, m2m_mqtt_client_poll_event). The core
 * never reads a clock, never touches a socket and keeps no globals.
 *
 * One client object outlives its network connections: the session state
 * (outbound QoS 1/2 messages in flight and queued, inbound QoS 2 packet ids)
 * survives m2m_mqtt_client_transport_closed, and the next
 * m2m_mqtt_client_connect resends it with DUP when the server still has the
 * session [MQTT-4.4.0-1]. Per-connection state (topic aliases both ways,
 * keep-alive timers, pending SUBSCRIBE/UNSUBSCRIBE) starts afresh on every
 * connection [MQTT-3.3.2-7].
 *
 * Driving it: call m2m_mqtt_client_connect once the transport is up, write
 * whatever poll_output hands out, feed what the server sends, drain the events
 * after every call, and run on_timeout at next_timeout. When a CLOSED event
 * comes, write the pending output (a DISCONNECT, perhaps) and close the
 * transport; when the transport dies first, call
 * m2m_mqtt_client_transport_closed.
 *
 * Inbound QoS 1 and QoS 2 messages are acknowledged as soon as they are
 * parsed (PUBACK / PUBREC queued before the event is polled); a QoS 2
 * message is delivered once even when the server sends it again [MQTT-4.3.3-9
 * of 3.1.1, §4.3.3 of 5.0].
 *
 * Ownership: m2m_mqtt_client_new copies everything the configuration points
 * to; m2m_mqtt_client_free releases (NULL is a no-op). Every buffer is
 * bounded by the configuration. */
#ifndef M2M_MQTT_CLIENT_H
#define M2M_MQTT_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "m2m/err.h"
#include "m2m/mqtt.h"
#include "m2m/types.h"

struct m2m_mqtt_client;

/* The Will Message of CONNECT (§3.1.2.5, §3.1.3.2). `props` (v5 only, may be
 * NULL) carries the Will properties: Will Delay Interval, Message Expiry,
 * Content Type, Response Topic, Correlation Data, User Properties. */
struct m2m_mqtt_will {
    struct m2m_slice topic;
    struct m2m_slice payload;
    uint8_t qos;
    bool retain;
    const struct m2m_mqtt_props *props;
};

/* Zero fields take the default in brackets. Slices and pointers are copied
 * by m2m_mqtt_client_new. */
struct m2m_mqtt_client_config {
    uint8_t version;                  /* M2M_MQTT_V311 or M2M_MQTT_V5 [M2M_MQTT_V5] */
    struct m2m_slice client_id;       /* empty: the server assigns one (3.1.1 needs clean_start) */
    bool clean_start;                 /* Clean Session in 3.1.1 */
    uint16_t keep_alive;              /* seconds, 0 = no keep alive */
    const struct m2m_mqtt_will *will; /* NULL: no will */
    const struct m2m_slice *username; /* NULL: absent */
    const struct m2m_slice *password; /* NULL: absent */
    uint32_t session_expiry;          /* v5 Session Expiry Interval, seconds [0: ends with the connection] */
    uint16_t receive_maximum;         /* v5: inbound QoS 2 messages in flight we accept [64] (3.1.1 too) */
    uint32_t max_packet_size;         /* largest packet we accept, advertised in v5 [1 MiB] */
    uint16_t topic_alias_maximum;     /* v5: inbound topic aliases we accept [0: none] */
    bool topic_aliases;               /* v5: assign outbound aliases up to the server's Topic Alias Maximum */
    const struct m2m_mqtt_pair *user; /* v5 User Properties of CONNECT */
    uint16_t nuser;
    uint16_t max_inflight;       /* our own cap on outbound QoS>0 in flight [64]; the server's
                                    Receive Maximum lowers it */
    uint16_t max_queued;         /* outbound QoS>0 messages kept, in flight or waiting [1024, <= 65000] */
    uint16_t max_events;         /* unpolled events before input parsing pauses [256] */
    uint32_t connect_timeout_ms; /* how long to wait for CONNACK [10000] */
    uint32_t ping_timeout_ms;    /* how long to wait for PINGRESP [keep alive, at most 30000] */
};

enum m2m_mqtt_client_event_type {
    M2M_MQTT_CEV_CONNACK = 1,  /* connected: session_present, props (v5) */
    M2M_MQTT_CEV_REFUSED,      /* CONNACK with a failure: `reason` is the v5 reason code or the
                                  3.1.1 return code; CLOSED follows */
    M2M_MQTT_CEV_PUBLISH,      /* inbound message, topic resolved from a v5 Topic Alias */
    M2M_MQTT_CEV_PUBLISH_DONE, /* outbound QoS>0 `packet_id` finished; `reason` is the v5 code of
                                  its PUBACK / PUBREC (failure) / PUBCOMP, 0 in 3.1.1 */
    M2M_MQTT_CEV_SUBACK,       /* `packet_id`, `n` codes in `codes` (granted QoS or failure) */
    M2M_MQTT_CEV_UNSUBACK,     /* `packet_id`, v5: `n` codes */
    M2M_MQTT_CEV_DISCONNECT,   /* v5 server DISCONNECT: `reason`, props (Reason String,
                                  Server Reference); CLOSED follows */
    M2M_MQTT_CEV_CLOSED        /* this connection is over: write pending output, close the
                                  transport; m2m_mqtt_client_connect may start another */
};

/* One event; pointers stay valid until the next poll_event or free. */
struct m2m_mqtt_client_event {
    enum m2m_mqtt_client_event_type type;
    uint8_t version;
    bool session_present;                   /* CONNACK */
    uint8_t reason;                         /* see the event types; CLOSED: the v5 reason code we
                                               sent in DISCONNECT, 0 when none */
    uint16_t packet_id;                     /* PUBLISH_DONE, SUBACK, UNSUBACK */
    const struct m2m_mqtt_props *props;     /* CONNACK, REFUSED, DISCONNECT, SUBACK, UNSUBACK,
                                               PUBLISH_DONE (v5; empty in 3.1.1) */
    const struct m2m_mqtt_publish *publish; /* PUBLISH */
    uint16_t n;                             /* SUBACK, UNSUBACK */
    const uint8_t *codes;
    int err; /* CLOSED: 0 after our DISCONNECT, M2M_ERESET (refused, or the server disconnected),
                M2M_EMALFORMED (bad server input), M2M_ETIMEDOUT (no CONNACK / PINGRESP),
                M2M_ELIMIT (a local cap), M2M_EIO (transport lost), M2M_ENOMEM */
};

/* Allocates a client, offline. NULL on bad configuration or no memory. */
struct m2m_mqtt_client *m2m_mqtt_client_new(const struct m2m_mqtt_client_config *cfg);
void m2m_mqtt_client_free(struct m2m_mqtt_client *c);

/* Starts a connection: queues CONNECT. The transport must be up. Any output
 * left from the previous connection is discarded. M2M_ESTATE unless
 * offline, M2M_EINVAL when CONNECT cannot be encoded. */
int m2m_mqtt_client_connect(struct m2m_mqtt_client *c, m2m_time now);

/* The transport went away (EOF, error): the connection ends, a CLOSED event
 * with M2M_EIO follows unless the core had closed it already. */
void m2m_mqtt_client_transport_closed(struct m2m_mqtt_client *c);

/* Feeds n bytes from the server, split anywhere. Returns 0, or M2M_ESTATE
 * when offline. Protocol failures close the connection with a CLOSED event. */
int m2m_mqtt_client_feed(struct m2m_mqtt_client *c, m2m_time now, const uint8_t *p, size_t n);

/* Hands out all pending output; false when none. The bytes stay valid until
 * the next call to any other m2m_mqtt_client function. */
bool m2m_mqtt_client_poll_output(struct m2m_mqtt_client *c, const uint8_t **p, size_t *n);

/* Takes the next event; false when there is none. */
bool m2m_mqtt_client_poll_event(struct m2m_mqtt_client *c, struct m2m_mqtt_client_event *ev);

/* Earliest time on_timeout must run (CONNACK wait, keep alive), or M2M_NEVER. */
m2m_time m2m_mqtt_client_next_timeout(const struct m2m_mqtt_client *c);
void m2m_mqtt_client_on_timeout(struct m2m_mqtt_client *c, m2m_time now);

/* Publishes. `props` (v5, may be NULL) must not carry a Subscription
 * Identifier [MQTT-3.3.4-6]; a Topic Alias in it is ignored (the core
 * assigns aliases itself when configured). QoS 0 is sent at once and needs a
 * connection. QoS 1/2 get a packet id (*packet_id, may be NULL) and are kept
 * until PUBLISH_DONE: sent at once within the window (the server's Receive
 * Maximum and max_inflight [MQTT-3.3.4-7]), queued beyond it or while
 * offline. Returns 0; M2M_EINVAL (bad topic, QoS, properties);
 * M2M_EUNSUPPORTED (above the server's Maximum QoS [MQTT-3.2.2-11] or RETAIN
 * when Retain Available is 0 [MQTT-3.2.2-14]); M2M_ELIMIT (larger than the
 * server's Maximum Packet Size [MQTT-3.2.2-15], or max_queued reached);
 * M2M_ESTATE (QoS 0 while not connected); M2M_ENOBUFS / M2M_ENOMEM. */
int m2m_mqtt_client_publish(struct m2m_mqtt_client *c, m2m_time now, struct m2m_slice topic,
                            struct m2m_slice payload, uint8_t qos, bool retain,
                            const struct m2m_mqtt_props *props, uint16_t *packet_id);

/* Sends SUBSCRIBE with n (1..M2M_MQTT_MAX_FILTERS) subscriptions; `props`
 * (v5, may be NULL) may carry a Subscription Identifier and User
 * Properties. M2M_EUNSUPPORTED when the server said wildcards, shared
 * subscriptions or subscription identifiers are not available; M2M_EAGAIN
 * when too many SUBSCRIBE/UNSUBSCRIBE await their ack; M2M_ESTATE when not
 * connected. */
int m2m_mqtt_client_subscribe(struct m2m_mqtt_client *c, m2m_time now,
                              const struct m2m_mqtt_subscription *subs, size_t n,
                              const struct m2m_mqtt_props *props, uint16_t *packet_id);
int m2m_mqtt_client_unsubscribe(struct m2m_mqtt_client *c, m2m_time now, const struct m2m_slice *filters,
                                size_t n, const struct m2m_mqtt_props *props, uint16_t *packet_id);

/* Ends the connection with DISCONNECT: v5 `reason` (0 normal, 0x04 with
 * will) and `props` (Session Expiry Interval, Reason String, may be NULL).
 * A CLOSED event (err 0) follows; write the output, then close. */
int m2m_mqtt_client_disconnect(struct m2m_mqtt_client *c, m2m_time now, uint8_t reason,
                               const struct m2m_mqtt_props *props);

/* True between a successful CONNACK and the end of that connection. */
bool m2m_mqtt_client_connected(const struct m2m_mqtt_client *c);
/* Outbound QoS>0 messages not finished yet (in flight and queued). */
size_t m2m_mqtt_client_pending(const struct m2m_mqtt_client *c);
/* The client identifier in use (the server's Assigned Client Identifier
 * once one came); valid until free. */
struct m2m_slice m2m_mqtt_client_id(const struct m2m_mqtt_client *c);

/* Printable names: v5 reason codes ("Bad User Name or Password") and 3.1.1
 * CONNACK return codes. Static strings, "Unknown" outside the tables. */
const char *m2m_mqtt_reason_name(uint8_t code);
const char *m2m_mqtt311_connack_name(uint8_t code);

#endif
