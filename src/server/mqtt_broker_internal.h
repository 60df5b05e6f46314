/* Private to the broker's files: mqtt_broker.c (sessions, events, API),
 * mqtt_broker_tree.c (the subscription tree), mqtt_broker_persist.c (write
 * through to src/store and load at start), mqtt_broker_sys.c ($SYS). */
#ifndef M2M_SERVER_MQTT_BROKER_INTERNAL_H
#define M2M_SERVER_MQTT_BROKER_INTERNAL_H

#include "base/hmap.h"
#include "m2m/mqtt.h"
#include "server/mqtt_broker.h"

/* An application message, stored once and shared by every queue that holds
 * it. `prefs` counts the references that are persisted (queue entries of
 * persistent sessions, the retained table): the row lives while it is > 0. */
struct msg {
    size_t refs;
    size_t prefs;
    uint64_t id; /* store row id, 0 while not stored */
    m2m_time expire_at;
    uint8_t qos;
    bool retain;
    unsigned props_ctx; /* M2M_MQTT_PUBLISH or M2M_MQTT_CTX_WILL */
    size_t topic_n;
    size_t payload_n;
    size_t props_n;
    uint8_t data[]; /* topic, payload, raw v5 properties */
};

struct qent {
    struct qent *next;
    struct msg *m;
    uint64_t seq;       /* store key within the session, 0: not stored */
    uint16_t packet_id; /* in flight */
    uint8_t qos;
    bool retain;
    bool released;        /* QoS 2: PUBREC came */
    struct sgroup *group; /* came through this shared subscription (holds a reference) */
    uint8_t nsubid;
    uint32_t subid[]; /* v5 Subscription Identifiers of the matching subscriptions */
};

struct qlist {
    struct qent *head;
    struct qent *tail;
    size_t n;
};

struct tnode;
struct sgroup;

struct sub {
    struct sub *next, *prev; /* in the node's (or group's) list */
    struct session *s;
    struct tnode *node;
    struct sgroup *group; /* shared subscription, else NULL */
    char *filter;         /* as subscribed, $share/ prefix included */
    size_t len;
    uint8_t qos;
    bool no_local;
    bool rap;
    uint32_t sub_id;
};

/* The members of one $share/<name>/<filter> at one node. */
struct sgroup {
    struct sgroup *next;
    struct sub *members;
    size_t n;
    size_t refs; /* queue entries that came through it: freed when both are 0 */
    size_t rr;
    size_t namelen;
    char name[];
};

struct tnode {
    struct m2m_hnode hn; /* in the parent's kids */
    struct tnode *parent;
    struct m2m_hmap kids; /* mask 0: not initialised */
    struct tnode *plus, *hash;
    struct sub *subs;
    struct sgroup *groups;
    size_t nkids;
    size_t len;
    char name[];
};

struct session {
    struct m2m_hnode hn;
    struct session *next, *prev; /* b->all */
    char *id;
    size_t idlen;
    struct m2m_broker_client *client; /* NULL while offline */
    bool persistent;
    bool stored;        /* has a row in the store */
    uint32_t expiry_s;  /* v5 Session Expiry Interval, UINT32_MAX: never */
    m2m_time expire_at; /* offline only, M2M_NEVER: never */
    struct sub **subs;
    size_t nsubs, capsubs;
    struct qlist queue;    /* waiting to be sent */
    struct qlist inflight; /* sent, QoS > 0, awaiting PUBLISH_DONE */
    size_t queued_bytes;
    uint64_t next_seq;
    struct msg *will; /* delayed will waiting for will_at */
    m2m_time will_at;
    /* routing scratch: b->touched[touch] while route_gen == b->route_gen */
    uint64_t route_gen;
    uint32_t touch;
};

/* What one routed message gathers for one session: the highest granted
 * QoS, Retain As Published, and the matching Subscription Identifiers. */
#define MAX_ROUTE_SUBIDS 32
struct touched {
    struct session *s;
    int best;
    bool rap;
    uint8_t nsubid;
    uint32_t subid[MAX_ROUTE_SUBIDS];
};

struct retained {
    struct m2m_hnode hn;
    struct retained *next, *prev;
    struct msg *m;
};

struct ack {
    struct m2m_broker_client *c; /* NULL once the client is gone */
    uint16_t packet_id;
    uint8_t reason;
};

struct m2m_broker_client {
    struct m2m_broker_client *next;
    struct m2m_broker_client *prev;
    struct m2m_mqtt_conn *conn;
    void (*wake)(void *io);
    void *io;
    struct session *session;
    char *username; /* for ACLs, NULL: anonymous */
    char *identity; /* from the transport (TLS), NULL: none */
    bool secure;    /* came over TLS: use_identity_as_username applies */
    uint8_t version;
    bool closing;
    bool anonymous_ok;
    struct msg *will;
    uint32_t will_delay_s;
};

struct m2m_broker {
    struct m2m_broker_config cfg;
    struct m2m_hmap sessions;
    struct session *all;
    struct tnode *root;
    struct m2m_hmap retained;
    struct retained *rlist;
    size_t nretained;
    struct m2m_broker_client *clients;
    struct m2m_broker_client *current;
    unsigned long next_id;
    uint64_t route_gen;
    struct touched *touched;
    size_t ntouched, captouched;
    struct ack *acks;
    size_t nacks, capacks;
    uint64_t next_msg_id;
    bool store_failed;
    m2m_time started, next_sys;
    struct m2m_broker_stats st;
};

/* mqtt_broker_tree.c */
struct tnode *tree_new_root(void);
void tree_free(struct tnode *root);
/* The node for a filter (without its $share/<name>/ prefix), created. */
struct tnode *tree_node(struct m2m_broker *b, struct tnode *root, struct m2m_slice filter);
void tree_prune(struct tnode *n);
/* Calls visit for every node whose filter matches topic. */
void tree_match(const struct m2m_broker *b, struct tnode *root, struct m2m_slice topic,
                void (*visit)(void *ctx, struct tnode *n), void *ctx);
uint64_t broker_hash(const struct m2m_broker *b, const void *p, size_t n);

/* mqtt_broker_persist.c: write-through; each is a no-op without a store. */
void persist_session(struct m2m_broker *b, struct session *s);
void persist_session_del(struct m2m_broker *b, struct session *s);
void persist_sub(struct m2m_broker *b, const struct session *s, const struct sub *sb);
void persist_sub_del(struct m2m_broker *b, const struct session *s, struct m2m_slice filter);
void persist_qent(struct m2m_broker *b, struct session *s, struct qent *e);
void persist_qent_del(struct m2m_broker *b, const struct session *s, struct qent *e);
void persist_retained(struct m2m_broker *b, struct msg *m);
void persist_retained_del(struct m2m_broker *b, struct msg *m);
int persist_load(struct m2m_broker *b, m2m_time now, char *err, size_t errcap);

/* mqtt_broker.c, used by the files above */
struct msg *msg_new(struct m2m_slice topic, struct m2m_slice payload, struct m2m_slice props, unsigned ctx,
                    uint8_t qos, bool retain);
void msg_unref(struct m2m_broker *b, struct msg *m);
struct session *session_get(struct m2m_broker *b, struct m2m_slice id, bool create);
struct sub *sub_put(struct m2m_broker *b, struct session *s, const struct m2m_mqtt_subscription *r,
                    uint32_t sub_id, bool *is_new);
struct qent *qent_new(struct msg *m, uint8_t qos, bool retain, const uint32_t *subid, size_t nsubid);
void q_push(struct qlist *q, struct qent *e);
void retain_store(struct m2m_broker *b, struct msg *m, bool persist);
void route(struct m2m_broker *b, const struct session *from, struct msg *m, m2m_time now);

/* mqtt_broker_sys.c */
void sys_publish(struct m2m_broker *b, m2m_time now);

#endif
