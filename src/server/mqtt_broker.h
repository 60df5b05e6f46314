/* MQTT broker routing, in memory, single-threaded, sans-IO: sessions,
 * subscriptions (plain and $share), retained messages and wills on top of
 * the per-connection core of m2m/mqtt_session.h. No sockets, no clock: the
 * caller passes the time in.
 *
 * Flow: the I/O layer creates one struct m2m_mqtt_conn per network
 * connection and attaches it; after feeding bytes (or a timeout) it calls
 * m2m_broker_process, writes the conn's output, and closes when told to.
 * When the transport is gone it calls m2m_broker_detach, then frees the
 * conn itself. */
#ifndef M2M_SERVER_MQTT_BROKER_H
#define M2M_SERVER_MQTT_BROKER_H

#include <stdbool.h>
#include <stddef.h>

#include "m2m/mqtt_session.h"
#include "m2m/types.h"

/* Zero fields take the default given in brackets. */
struct m2m_broker_config {
    size_t max_queued_per_session; /* messages queued for one session [1000] */
    size_t max_retained;           /* retained topics [10000] */
    bool allow_anonymous;          /* false: a CONNECT without user name is refused (0x87) */
};

struct m2m_broker;
struct m2m_broker_client;

/* NULL when out of memory. */
struct m2m_broker *m2m_broker_new(const struct m2m_broker_config *cfg);
/* Frees sessions, retained messages and any client still attached (not
 * their conns). NULL is a no-op. */
void m2m_broker_free(struct m2m_broker *b);

/* One per network connection. `wake(io)` (may be NULL) is called whenever
 * this client's conn has new output produced while another client was being
 * processed, so the I/O layer can flush it. NULL when out of memory. */
struct m2m_broker_client *m2m_broker_attach(struct m2m_broker *b, struct m2m_mqtt_conn *conn,
                                            void (*wake)(void *io), void *io);

/* Drains the conn's events and acts on them; true when the connection must
 * be closed (CLOSED / DISCONNECT events, refusal, session taken over). */
bool m2m_broker_process(struct m2m_broker *b, struct m2m_broker_client *c, m2m_time now);

/* The transport closed (or process() said so): publishes the will unless
 * the connection ended with a normal DISCONNECT, keeps or drops the session.
 * Frees c, not the conn. */
void m2m_broker_detach(struct m2m_broker *b, struct m2m_broker_client *c, m2m_time now);

#endif
