/* Persistent state of the MQTT broker, behind one ops table so that another
 * backend can stand beside SQLite (ARCHITECTURE.md, "When one machine is not
 * enough").
 *
 * The broker keeps its working state in memory and writes every change
 * through these calls; at start it reads everything back with `load`. A
 * write opens a transaction when none is open; `commit` ends it, so the
 * broker groups every change of one loop iteration into one commit and only
 * then sends the PUBACK / PUBREC of the messages it holds (group commit).
 *
 * Only what must survive a crash is written: sessions that outlive their
 * connection, their subscriptions, the QoS 1/2 messages queued or in flight
 * for them, and retained messages. A message is stored once and referenced
 * by queue entries and the retained table; the broker deletes it when the
 * last reference goes. */
#ifndef M2M_STORE_MQTT_STORE_H
#define M2M_STORE_MQTT_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "m2m/types.h"

/* What a commit guarantees. */
enum m2m_store_sync {
    M2M_STORE_SYNC_NORMAL =
        1,               /* survives a process crash (kill -9); the last commits may be lost on power loss */
    M2M_STORE_SYNC_FULL, /* fsync on every commit: survives power loss too */
};

struct m2m_store_msg {
    uint64_t id; /* chosen by the broker, unique among stored rows */
    struct m2m_slice topic;
    struct m2m_slice payload;
    struct m2m_slice props; /* raw v5 properties, may be empty */
    unsigned props_ctx;     /* enum m2m_mqtt_props context the props decode in */
    uint8_t qos;
    bool retain;
    int64_t expire_at; /* wall clock, ms since the epoch; 0: never */
};

struct m2m_store_session {
    struct m2m_slice client_id;
    uint32_t expiry_s; /* Session Expiry Interval; UINT32_MAX: never */
    int64_t expire_at; /* wall clock ms when it expires while offline; 0: not set (online or never) */
};

#define M2M_STORE_SUB_NO_LOCAL 0x01u
#define M2M_STORE_SUB_RAP 0x02u /* retain as published */

struct m2m_store_sub {
    struct m2m_slice client_id;
    struct m2m_slice filter; /* as subscribed, $share/ prefix included */
    uint8_t qos;
    uint8_t flags;   /* M2M_STORE_SUB_* */
    uint32_t sub_id; /* v5 Subscription Identifier, 0: none */
};

/* One message queued for (or in flight to) one session. */
struct m2m_store_qent {
    struct m2m_slice client_id;
    uint64_t seq; /* order within the session, increasing */
    uint64_t msg_id;
    uint8_t qos; /* granted QoS of this delivery */
    bool retain; /* the RETAIN flag this delivery carries */
};

struct m2m_mqtt_store_visitor {
    int (*msg)(void *ctx, const struct m2m_store_msg *m);
    int (*session)(void *ctx, const struct m2m_store_session *s);
    int (*sub)(void *ctx, const struct m2m_store_sub *s);
    int (*qent)(void *ctx, const struct m2m_store_qent *q);
    int (*retained)(void *ctx, struct m2m_slice topic, uint64_t msg_id);
};

struct m2m_mqtt_store;

/* Every call returns 0 or an enum m2m_err (M2M_EIO for a failed write).
 * Slices passed in are copied or written before the call returns. */
struct m2m_mqtt_store_ops {
    const char *name;
    void (*close)(struct m2m_mqtt_store *s); /* rolls back an open transaction, frees s */
    int (*commit)(struct m2m_mqtt_store *s); /* 0 when no transaction is open */
    int (*session_put)(struct m2m_mqtt_store *s, const struct m2m_store_session *ses); /* insert or replace */
    /* Deletes the session with its subscriptions and queue entries (not the
     * messages: the broker deletes those it no longer references). */
    int (*session_del)(struct m2m_mqtt_store *s, struct m2m_slice client_id);
    int (*sub_put)(struct m2m_mqtt_store *s, const struct m2m_store_sub *sub); /* by (client, filter) */
    int (*sub_del)(struct m2m_mqtt_store *s, struct m2m_slice client_id, struct m2m_slice filter);
    int (*msg_put)(struct m2m_mqtt_store *s, const struct m2m_store_msg *m);
    int (*msg_del)(struct m2m_mqtt_store *s, uint64_t id);
    int (*qent_put)(struct m2m_mqtt_store *s, const struct m2m_store_qent *q); /* by (client, seq) */
    int (*qent_del)(struct m2m_mqtt_store *s, struct m2m_slice client_id, uint64_t seq);
    int (*retained_put)(struct m2m_mqtt_store *s, struct m2m_slice topic, uint64_t msg_id); /* by topic */
    int (*retained_del)(struct m2m_mqtt_store *s, struct m2m_slice topic);
    /* Calls the visitor for every row: all messages, then sessions, then
     * subscriptions, then queue entries by client and seq, then retained.
     * A visitor's non-zero return stops the load and is returned. */
    int (*load)(struct m2m_mqtt_store *s, const struct m2m_mqtt_store_visitor *v, void *ctx);
};

struct m2m_mqtt_store {
    const struct m2m_mqtt_store_ops *ops;
};

/* Opens (creating if needed) the SQLite database at `path` in WAL mode.
 * A file that is not a database, or whose schema is not ours, is an error
 * (M2M_ECORRUPT or M2M_EIO) with the reason in err: never silently
 * replaced. */
int m2m_sqlite_mqtt_store_open(const char *path, enum m2m_store_sync sync, struct m2m_mqtt_store **out,
                               char *err, size_t errcap);

#endif
