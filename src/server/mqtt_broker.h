/* MQTT broker routing, single-threaded, sans-IO: sessions, subscriptions
 * (plain and $share, in a topic tree), retained messages, wills, message
 * and session expiry, $SYS statistics, authentication and ACLs, on top of
 * the per-connection core of m2m/mqtt_session.h. No sockets, no clock: the
 * caller passes the time in. With a store (src/store) every change a crash
 * must not lose is written through, and QoS 1/2 messages are acknowledged
 * only after m2m_broker_sync has committed them (group commit).
 *
 * Flow: the I/O layer creates one struct m2m_mqtt_conn per network
 * connection and attaches it; after feeding bytes (or a timeout) it calls
 * m2m_broker_process, writes the conn's output, and closes when told to.
 * Once per loop iteration it calls m2m_broker_sync. When the transport is
 * gone it calls m2m_broker_detach, then frees the conn itself. */
#ifndef M2M_SERVER_MQTT_BROKER_H
#define M2M_SERVER_MQTT_BROKER_H

#include <stdbool.h>
#include <stddef.h>

#include "m2m/mqtt_session.h"
#include "m2m/types.h"

struct m2m_mqtt_store;
struct m2m_mqtt_auth;

/* Zero fields take the default given in brackets. */
struct m2m_broker_config {
    size_t max_queued_per_session;    /* messages queued for one session [1000] */
    size_t max_queued_bytes;          /* payload bytes queued for one session [64 MiB] */
    size_t max_retained;              /* retained topics [10000] */
    size_t max_subscriptions;         /* per session; beyond, SUBACK 0x97 / 0x80 [10000] */
    bool allow_anonymous;             /* default for m2m_broker_client_allow_anonymous */
    uint16_t max_keep_alive;          /* 3.1.1 clients asking for more (or 0) are refused, as mosquitto does;
                                         the conn core tells v5 clients [0: none] */
    uint32_t max_session_expiry;      /* cap on the v5 Session Expiry Interval, s [0: none] */
    uint32_t sys_interval_s;          /* $SYS/broker/... every so many seconds [0: never] */
    const char *version;              /* for $SYS/broker/version */
    uint64_t hash_key;                /* secret key for the hash tables */
    int64_t wall_offset_ms;           /* wall clock minus the `now` passed in, for stored expiry times */
    const struct m2m_mqtt_auth *auth; /* passwords and ACLs [NULL: none] */
    bool use_identity_as_username;    /* the TLS identity replaces user name and password */
    struct m2m_mqtt_store *store;     /* persistence [NULL: memory only]; not owned */
};

struct m2m_broker_stats {
    uint64_t msgs_received, msgs_sent, msgs_dropped;
    uint64_t bytes_received, bytes_sent; /* added by the I/O layer */
    uint64_t connects, refused;
    size_t clients_connected;
    size_t subscriptions;
};

struct m2m_broker;
struct m2m_broker_client;

/* NULL when out of memory. */
struct m2m_broker *m2m_broker_new(const struct m2m_broker_config *cfg);
/* Reads sessions, subscriptions, queues and retained messages back from the
 * store; call once, right after m2m_broker_new. 0 or an m2m error with the
 * reason in err. */
int m2m_broker_load(struct m2m_broker *b, m2m_time now, char *err, size_t errcap);
/* Frees sessions, retained messages and any client still attached (not
 * their conns). NULL is a no-op. */
void m2m_broker_free(struct m2m_broker *b);

/* One per network connection. `wake(io)` (may be NULL) is called whenever
 * this client's conn has new output produced while another client was being
 * processed, so the I/O layer can flush it. NULL when out of memory. */
struct m2m_broker_client *m2m_broker_attach(struct m2m_broker *b, struct m2m_mqtt_conn *conn,
                                            void (*wake)(void *io), void *io);
/* Whether a CONNECT without user name is accepted on this connection
 * (the I/O layer allows it on loopback listeners by default). */
void m2m_broker_client_allow_anonymous(struct m2m_broker_client *c, bool ok);
/* The connection came over TLS; `identity` is what TLS authenticated (a
 * client certificate's name, a PSK identity) or NULL. With
 * use_identity_as_username it is the client's user name for authentication
 * and ACLs, no password is asked, and a TLS client without one is refused. */
void m2m_broker_client_set_identity(struct m2m_broker_client *c, const char *identity);

/* Drains the conn's events and acts on them; true when the connection must
 * be closed (CLOSED / DISCONNECT events, refusal, session taken over). */
bool m2m_broker_process(struct m2m_broker *b, struct m2m_broker_client *c, m2m_time now);

/* Commits what the store holds uncommitted, then acknowledges the QoS 1/2
 * messages that waited for it (their clients are woken). Cheap when there
 * is nothing to do. */
void m2m_broker_sync(struct m2m_broker *b);

/* The transport closed (or process() said so): publishes the will unless
 * the connection ended with a normal DISCONNECT, keeps or drops the session.
 * Frees c, not the conn. */
void m2m_broker_detach(struct m2m_broker *b, struct m2m_broker_client *c, m2m_time now);

/* Session expiry, delayed wills, $SYS: when on_timeout must run next. */
m2m_time m2m_broker_next_timeout(const struct m2m_broker *b);
void m2m_broker_on_timeout(struct m2m_broker *b, m2m_time now);

struct m2m_broker_stats *m2m_broker_stats(struct m2m_broker *b);

#endif
