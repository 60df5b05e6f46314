/* m2mkit bench mqtt: an MQTT load generator. Publishers and subscribers run
 * in one process on one libuv loop; every payload carries the send time
 * (monotonic ns), a per-publisher sequence number, the publisher's index and
 * a tag of this run, so subscribers measure latency and count lost,
 * duplicated and out-of-order messages exactly.
 *
 * Flow control: at QoS 1/2 a publisher keeps at most `window` messages not
 * yet acknowledged by the broker (PUBACK, PUBCOMP). Without a rate (-r 0) it
 * also keeps at most `window` messages not yet received by all of its
 * subscribers, at every QoS: brokers acknowledge on receipt and queue for
 * the subscriber, so without this bound a fast publisher only measures how
 * fast a broker's queue grows until it drops messages.
 *
 * --idle N opens N connections, sends CONNECT on each and holds them, for
 * measuring a broker's memory per connection. */
#include <getopt.h>
#include <netdb.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <uv.h>

#include "cli/cli.h"
#include "conn.h"

#define HEADER_BYTES 24 /* time, sequence, publisher, run tag */
#define MAX_PAYLOAD (1 << 20)
#define HSUB 64                /* histogram: 64 buckets per power of two, ~1.6 % wide */
#define HBUCKETS (60 * HSUB)   /* up to 2^64 ns */
#define SETUP_AT_ONCE 128      /* connections being set up concurrently */
#define MAX_PENDING (4u << 20) /* unwritten bytes before a publisher waits */
#define MAX_BURST 4096         /* messages one publisher queues in one go */
#define STALL_NS 1000000000ull /* no delivery for this long: the window's messages count as lost */
#define DRAIN_NS 2000000000ull /* after the last message: wait this long for stragglers */
#define MAX_ERRORS_SHOWN 5

enum pattern { PAT_PAIRS, PAT_FANIN, PAT_FANOUT };
static const char *const pattern_names[] = {"pairs", "fanin", "fanout"};

enum phase { PH_SETUP, PH_RUN, PH_DRAIN, PH_DONE };
enum role { ROLE_PUB, ROLE_SUB, ROLE_IDLE };

struct bench;

/* What every connection has: the pub and sub structs start with it. */
struct client {
    struct mb_conn conn;
    struct bench *b;
    enum role role;
    uint32_t idx;
    bool started, ready, dead;
};

struct pub {
    struct client cl;
    uint64_t sent, acked;
    uint64_t forgiven;      /* messages given up as lost, no longer in the end-to-end window */
    uint64_t last_delivery; /* ns, when a subscriber last received one of ours */
    uint32_t inflight, window;
    uint32_t first_sub, nsubs; /* who subscribes to our topic */
    uint16_t next_id;
    uint8_t *ids; /* QoS>0: packet identifiers awaiting PUBACK/PUBCOMP, a bitmap */
};

/* What one subscriber got from one publisher. */
struct seqtrack {
    uint8_t *seen; /* bitmap of sequence numbers */
    uint64_t bits;
    uint64_t unique, dup, ooo;
    uint64_t top; /* highest sequence seen + 1 */
};

struct sub {
    struct client cl;
    uint32_t first_pub, npubs; /* whose messages we get */
    struct seqtrack *from;     /* [npubs] */
    uint8_t *q2;               /* QoS 2: identifiers received, awaiting PUBREL */
    uint64_t received;
};

struct bench {
    uv_loop_t loop;
    struct mb_loop ml;
    uv_timer_t tick, stop_timer;
    uv_signal_t sigint, sigterm;
    struct sockaddr_storage dst;
    /* options */
    enum m2m_mqtt_version version;
    enum pattern pattern;
    uint8_t qos;
    uint32_t npubs, nsubs, window, idle;
    size_t payload_size;
    double rate, duration;
    uint64_t messages;
    bool json;
    /* state */
    enum phase phase;
    uint32_t tag;
    char prefix[32]; /* topic prefix and client id stem, unique to this run */
    struct pub *pubs;
    struct sub *subs;
    struct client *idles;
    struct client **all;
    uint32_t nall, next_start, setting_up, nready, nfailed, nclosed;
    uint8_t *payload;
    uint64_t t_start, t_send_end, t_last_send, t_last_recv, t_last_progress;
    uint64_t errors, foreign, lost_conns;
    uint64_t hist[HBUCKETS], lat_count, lat_max;
};

/* ---- small helpers ---------------------------------------------------- */

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static bool bit_get(const uint8_t *m, uint64_t i)
{
    return (m[i >> 3] >> (i & 7)) & 1;
}

static void bit_set(uint8_t *m, uint64_t i, bool on)
{
    if (on)
        m[i >> 3] |= (uint8_t)(1u << (i & 7));
    else
        m[i >> 3] &= (uint8_t) ~(1u << (i & 7));
}

static size_t hist_index(uint64_t v)
{
    if (v < HSUB)
        return (size_t)v;
    int e = 63 - __builtin_clzll(v); /* >= 6 */
    return (size_t)(e - 5) * HSUB + (size_t)((v >> (e - 6)) & (HSUB - 1));
}

/* The middle of bucket i, in ns. */
static double hist_value(size_t i)
{
    if (i < HSUB)
        return (double)i;
    int e = (int)(i / HSUB) + 5;
    double width = (double)(1ull << (e - 6));
    return (double)(HSUB + i % HSUB) * width + width / 2;
}

static void record_latency(struct bench *b, uint64_t ns)
{
    size_t i = hist_index(ns);
    b->hist[i < HBUCKETS ? i : HBUCKETS - 1]++;
    b->lat_count++;
    if (ns > b->lat_max)
        b->lat_max = ns;
}

/* Latency at quantile q, in microseconds. */
static double percentile_us(const struct bench *b, double q)
{
    if (!b->lat_count)
        return 0;
    uint64_t rank = (uint64_t)(q * (double)b->lat_count);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < HBUCKETS; i++) {
        seen += b->hist[i];
        if (seen >= rank) {
            double v = hist_value(i);
            return (v > (double)b->lat_max ? (double)b->lat_max : v) / 1000.0;
        }
    }
    return (double)b->lat_max / 1000.0;
}

static const char *topic_of(const struct bench *b, uint32_t pub, char *buf, size_t cap)
{
    if (b->pattern == PAT_PAIRS)
        snprintf(buf, cap, "m2mbench/%s/%u", b->prefix, pub);
    else
        snprintf(buf, cap, "m2mbench/%s/all", b->prefix);
    return buf;
}

static struct m2m_slice slice_str(const char *s)
{
    return (struct m2m_slice){(const uint8_t *)s, strlen(s)};
}

static void send_ack(struct client *cl, enum m2m_mqtt_type type, uint16_t id)
{
    struct m2m_mqtt_packet pkt;
    m2m_mqtt_packet_init(&pkt, type, cl->conn.version);
    pkt.u.ack.packet_id = id;
    mb_conn_send(&cl->conn, &pkt);
}

/* A reason is a libuv error or an m2m error: both are negative, in separate ranges. */
static const char *err_text(int err)
{
    if (!err)
        return "closed";
    return err > M2M__ERR_FIRST && err < M2M__ERR_END ? m2m_strerror(err) : uv_strerror(err);
}

static void client_error(struct bench *b, struct client *cl, const char *what)
{
    b->errors++;
    if (b->errors <= MAX_ERRORS_SHOWN)
        fprintf(stderr, "m2mkit bench mqtt: %s %u: %s\n",
                cl->role == ROLE_PUB   ? "publisher"
                : cl->role == ROLE_SUB ? "subscriber"
                                       : "connection",
                cl->idx, what);
}

/* ---- publishers --------------------------------------------------------- */

/* Messages of publisher p that every live subscriber has received. */
static uint64_t delivered(const struct bench *b, const struct pub *p)
{
    uint64_t low = UINT64_MAX;
    for (uint32_t s = p->first_sub; s < p->first_sub + p->nsubs; s++) {
        const struct sub *sb = &b->subs[s];
        if (sb->cl.dead)
            continue;
        uint64_t u = sb->from[p->cl.idx - sb->first_pub].unique;
        if (u < low)
            low = u;
    }
    return low == UINT64_MAX ? p->sent : low;
}

/* True when the end-to-end window, not the broker, holds the publisher back. */
static bool e2e_blocked(const struct bench *b, const struct pub *p)
{
    if (b->rate > 0 || !p->nsubs)
        return false;
    /* Forgiven messages that turn up late must not make this wrap around. */
    uint64_t unseen = p->sent - delivered(b, p);
    return unseen > p->forgiven && unseen - p->forgiven >= b->window;
}

static bool pub_can_send(const struct bench *b, const struct pub *p, uint64_t now)
{
    if (b->phase != PH_RUN || p->cl.dead || !p->cl.ready)
        return false;
    if (b->messages && p->sent >= b->messages)
        return false;
    if (b->qos && p->inflight >= p->window)
        return false;
    if (mb_conn_pending(&p->cl.conn) >= MAX_PENDING)
        return false;
    if (b->rate > 0)
        return p->sent < (uint64_t)(b->rate * (double)(now - b->t_start) / 1e9) + 1;
    return !e2e_blocked(b, p);
}

static uint16_t pub_take_id(struct pub *p)
{
    for (;;) {
        uint16_t id = ++p->next_id;
        if (!id)
            continue;
        if (!bit_get(p->ids, id)) {
            bit_set(p->ids, id, true);
            return id;
        }
    }
}

static void pub_pump(struct bench *b, struct pub *p)
{
    uint64_t now = uv_hrtime();
    char topic[96];
    topic_of(b, p->cl.idx, topic, sizeof topic);
    struct m2m_mqtt_packet pkt;
    m2m_mqtt_packet_init(&pkt, M2M_MQTT_PUBLISH, b->version);
    pkt.u.publish.qos = b->qos;
    pkt.u.publish.topic = slice_str(topic);
    pkt.u.publish.payload = (struct m2m_slice){b->payload, b->payload_size};
    for (int burst = 0; burst < MAX_BURST && pub_can_send(b, p, now); burst++) {
        put_u64(b->payload, now);
        put_u64(b->payload + 8, p->sent);
        put_u32(b->payload + 16, p->cl.idx);
        put_u32(b->payload + 20, b->tag);
        pkt.u.publish.packet_id = b->qos ? pub_take_id(p) : 0;
        if (mb_conn_send(&p->cl.conn, &pkt)) {
            client_error(b, &p->cl, "cannot queue a PUBLISH");
            mb_conn_close(&p->cl.conn);
            return;
        }
        if (b->qos)
            p->inflight++;
        p->sent++;
        b->t_last_send = now;
        now = uv_hrtime();
    }
}

static void pub_acked(struct bench *b, struct pub *p, uint16_t id, bool ok)
{
    if (!id || !bit_get(p->ids, id))
        return; /* not ours, or a second acknowledgement */
    bit_set(p->ids, id, false);
    p->inflight--;
    if (ok)
        p->acked++;
    else
        client_error(b, &p->cl, "the broker refused a message");
    b->t_last_progress = uv_hrtime();
    pub_pump(b, p);
}

static void pub_packet(struct bench *b, struct pub *p, const struct m2m_mqtt_packet *pkt)
{
    switch (pkt->type) {
    case M2M_MQTT_PUBACK: pub_acked(b, p, pkt->u.ack.packet_id, pkt->u.ack.rc < 0x80); break;
    case M2M_MQTT_PUBREC:
        if (pkt->u.ack.rc >= 0x80)
            pub_acked(b, p, pkt->u.ack.packet_id, false);
        else
            send_ack(&p->cl, M2M_MQTT_PUBREL, pkt->u.ack.packet_id);
        break;
    case M2M_MQTT_PUBCOMP: pub_acked(b, p, pkt->u.ack.packet_id, pkt->u.ack.rc < 0x80); break;
    default: break;
    }
}

/* ---- subscribers -------------------------------------------------------- */

static int track_grow(struct seqtrack *t, uint64_t seq)
{
    if (seq < t->bits)
        return 0;
    uint64_t bits = t->bits ? t->bits : 4096;
    while (bits <= seq)
        bits *= 2;
    uint8_t *m = realloc(t->seen, bits / 8);
    if (!m)
        return M2M_ENOMEM;
    memset(m + t->bits / 8, 0, (bits - t->bits) / 8);
    t->seen = m;
    t->bits = bits;
    return 0;
}

static void sub_account(struct bench *b, struct sub *s, struct m2m_slice payload)
{
    uint64_t now = uv_hrtime();
    s->received++;
    if (payload.n < HEADER_BYTES || get_u32(payload.p + 20) != b->tag) {
        b->foreign++;
        return;
    }
    uint64_t sent_at = get_u64(payload.p), seq = get_u64(payload.p + 8);
    uint32_t pi = get_u32(payload.p + 16);
    if (pi < s->first_pub || pi - s->first_pub >= s->npubs || seq >= b->pubs[pi].sent) {
        b->foreign++;
        return;
    }
    struct pub *p = &b->pubs[pi];
    struct seqtrack *t = &s->from[pi - s->first_pub];
    if (track_grow(t, seq)) {
        client_error(b, &s->cl, "out of memory");
        return;
    }
    b->t_last_recv = b->t_last_progress = now;
    if (bit_get(t->seen, seq)) {
        t->dup++;
        return;
    }
    bit_set(t->seen, seq, true);
    t->unique++;
    if (seq < t->top)
        t->ooo++;
    else
        t->top = seq + 1;
    record_latency(b, now >= sent_at ? now - sent_at : 0);
    p->last_delivery = now;
    if (b->rate <= 0)
        pub_pump(b, p);
}

static void sub_packet(struct bench *b, struct sub *s, const struct m2m_mqtt_packet *pkt)
{
    switch (pkt->type) {
    case M2M_MQTT_SUBACK:
        if (s->cl.ready)
            break;
        if (pkt->u.suback.n < 1 || pkt->u.suback.rc[0] >= 0x80 || pkt->u.suback.rc[0] < b->qos) {
            client_error(b, &s->cl, "the broker refused the subscription (or lowered its QoS)");
            mb_conn_close(&s->cl.conn);
            break;
        }
        s->cl.ready = true;
        break;
    case M2M_MQTT_PUBLISH: {
        const struct m2m_mqtt_publish *pb = &pkt->u.publish;
        if (pb->qos == 1)
            send_ack(&s->cl, M2M_MQTT_PUBACK, pb->packet_id);
        if (pb->qos == 2) {
            /* Exactly once: a PUBLISH repeated before PUBREL is the same message. */
            bool again = bit_get(s->q2, pb->packet_id);
            bit_set(s->q2, pb->packet_id, true);
            send_ack(&s->cl, M2M_MQTT_PUBREC, pb->packet_id);
            if (again)
                break;
        }
        sub_account(b, s, pb->payload);
        break;
    }
    case M2M_MQTT_PUBREL:
        if (s->q2)
            bit_set(s->q2, pkt->u.ack.packet_id, false);
        send_ack(&s->cl, M2M_MQTT_PUBCOMP, pkt->u.ack.packet_id);
        break;
    default: break;
    }
}

/* ---- connections -------------------------------------------------------- */

static void start_more(struct bench *b);
static void begin_run(struct bench *b);
static void finish(struct bench *b);

static void client_ready_check(struct bench *b, struct client *cl)
{
    if (!cl->ready)
        return;
    b->nready++;
    b->setting_up--;
    start_more(b);
}

static void on_connected(struct mb_conn *c, int status)
{
    struct client *cl = c->ctx;
    struct bench *b = cl->b;
    if (status)
        return; /* closed_cb follows */
    struct m2m_mqtt_packet pkt;
    m2m_mqtt_packet_init(&pkt, M2M_MQTT_CONNECT, b->version);
    char id[64];
    snprintf(id, sizeof id, "mb%s-%c%u", b->prefix, "psi"[cl->role], cl -> idx);
    pkt.u.connect.clean_start = true;
    pkt.u.connect.keep_alive = 0; /* no PINGREQ needed; the run ends by itself */
    pkt.u.connect.client_id = slice_str(id);
    mb_conn_send(c, &pkt);
}

static void on_connack(struct bench *b, struct client *cl, const struct m2m_mqtt_connack *ca)
{
    if (ca->rc != 0) {
        char why[64];
        snprintf(why, sizeof why, "CONNACK refused (code 0x%02x)", ca->rc);
        client_error(b, cl, why);
        mb_conn_close(&cl->conn);
        return;
    }
    if (cl->role == ROLE_SUB) {
        char topic[96];
        struct m2m_mqtt_packet pkt;
        m2m_mqtt_packet_init(&pkt, M2M_MQTT_SUBSCRIBE, b->version);
        pkt.u.subscribe.packet_id = 1;
        pkt.u.subscribe.n = 1;
        pkt.u.subscribe.sub[0].filter = slice_str(topic_of(b, cl->idx, topic, sizeof topic));
        pkt.u.subscribe.sub[0].qos = b->qos;
        mb_conn_send(&cl->conn, &pkt);
        return;
    }
    if (cl->role == ROLE_PUB) {
        /* A v5 broker says how many QoS>0 messages it takes at once. */
        struct pub *p = (struct pub *)cl;
        if (b->version == M2M_MQTT_V5 && m2m_mqtt_props_has(&ca->props, M2M_MQTT_P_RECEIVE_MAXIMUM) &&
            ca->props.receive_maximum < p->window)
            p->window = ca->props.receive_maximum;
    }
    cl->ready = true;
}

static void on_packet(struct mb_conn *c, const struct m2m_mqtt_packet *pkt)
{
    struct client *cl = c->ctx;
    struct bench *b = cl->b;
    bool was_ready = cl->ready;
    if (pkt->type == M2M_MQTT_CONNACK)
        on_connack(b, cl, &pkt->u.connack);
    else if (pkt->type == M2M_MQTT_DISCONNECT) {
        char why[64];
        snprintf(why, sizeof why, "the broker sent DISCONNECT (reason 0x%02x)", pkt->u.disconnect.rc);
        client_error(b, cl, why);
        mb_conn_close(c);
    } else if (cl->role == ROLE_PUB)
        pub_packet(b, (struct pub *)cl, pkt);
    else if (cl->role == ROLE_SUB)
        sub_packet(b, (struct sub *)cl, pkt);
    if (!was_ready && cl->ready)
        client_ready_check(b, cl);
}

static void on_conn_closed(struct mb_conn *c, int err)
{
    struct client *cl = c->ctx;
    struct bench *b = cl->b;
    b->nclosed++;
    if (b->phase == PH_DONE)
        return;
    cl->dead = true;
    if (!cl->ready) {
        /* Lost during setup. */
        b->setting_up--;
        b->nfailed++;
        if (err)
            client_error(b, cl, err_text(err));
        else if (cl->role != ROLE_IDLE)
            b->errors++;
        if (cl->role != ROLE_IDLE) {
            finish(b); /* a run needs every client */
            return;
        }
        start_more(b);
        return;
    }
    b->lost_conns++;
    char why[96];
    snprintf(why, sizeof why, "connection lost (%s)", err_text(err));
    client_error(b, cl, why);
}

static const struct mb_conn_cbs client_cbs = {
    .connected_cb = on_connected,
    .packet_cb = on_packet,
    .closed_cb = on_conn_closed,
};

/* Opens connections until SETUP_AT_ONCE are being set up; once every client
 * is ready (or failed, for --idle) the run starts. */
static void start_more(struct bench *b)
{
    while (b->phase == PH_SETUP && b->next_start < b->nall && b->setting_up < SETUP_AT_ONCE) {
        struct client *cl = b->all[b->next_start++];
        int rc = mb_conn_connect(&cl->conn, &b->ml, (struct sockaddr *)&b->dst, b->version, &client_cbs, cl);
        if (rc) {
            client_error(b, cl, uv_strerror(rc));
            b->nfailed++;
            cl->dead = true;
            if (cl->role != ROLE_IDLE) {
                finish(b);
                return;
            }
            continue;
        }
        cl->started = true;
        b->setting_up++;
    }
    if (b->phase == PH_SETUP && b->nready + b->nfailed == b->nall)
        begin_run(b);
}

/* ---- phases -------------------------------------------------------------- */

static uint64_t total_unique(const struct bench *b)
{
    uint64_t n = 0;
    for (uint32_t s = 0; s < b->nsubs; s++)
        for (uint32_t k = 0; k < b->subs[s].npubs; k++)
            n += b->subs[s].from[k].unique;
    return n;
}

static uint64_t total_expected(const struct bench *b)
{
    uint64_t n = 0;
    for (uint32_t s = 0; s < b->nsubs; s++)
        for (uint32_t k = 0; k < b->subs[s].npubs; k++)
            n += b->pubs[b->subs[s].first_pub + k].sent;
    return n;
}

static bool drained(const struct bench *b)
{
    for (uint32_t i = 0; i < b->npubs; i++)
        if (!b->pubs[i].cl.dead && b->pubs[i].inflight)
            return false;
    return total_unique(b) >= total_expected(b);
}

static void enter_drain(struct bench *b, uint64_t send_end)
{
    if (b->phase != PH_RUN)
        return;
    b->phase = PH_DRAIN;
    b->t_send_end = send_end;
    b->t_last_progress = uv_hrtime();
}

static void on_tick(uv_timer_t *t)
{
    struct bench *b = t->data;
    uint64_t now = uv_hrtime();
    if (b->phase == PH_RUN) {
        bool all_sent = b->messages > 0;
        for (uint32_t i = 0; i < b->npubs; i++) {
            struct pub *p = &b->pubs[i];
            if (p->cl.dead)
                continue;
            /* Messages lost on the way would hold the window shut for good. */
            if (e2e_blocked(b, p) && now - p->last_delivery > STALL_NS) {
                p->forgiven = p->sent - delivered(b, p);
                p->last_delivery = now;
            }
            pub_pump(b, p);
            if (b->messages && p->sent < b->messages)
                all_sent = false;
        }
        if (all_sent)
            enter_drain(b, b->t_last_send);
    }
    now = uv_hrtime(); /* progress may have been stamped after the first reading */
    if (b->phase == PH_DRAIN && (drained(b) || now - b->t_last_progress > DRAIN_NS))
        finish(b);
}

static void on_stop(uv_timer_t *t)
{
    struct bench *b = t->data;
    if (b->idle)
        finish(b);
    else
        enter_drain(b, uv_hrtime());
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct bench *b = h->data;
    (void)signum;
    if (b->idle || b->phase == PH_SETUP || b->phase == PH_DRAIN)
        finish(b);
    else
        enter_drain(b, uv_hrtime());
}

static void begin_run(struct bench *b)
{
    if (b->idle) {
        b->phase = PH_RUN;
        if (b->json)
            printf("{\"idle\":%u,\"connected\":%u,\"failed\":%u}\n", b->idle, b->nready, b->nfailed);
        else
            printf("connected %u of %u (%u failed), holding them\n", b->nready, b->idle, b->nfailed);
        fflush(stdout);
        if (b->duration > 0)
            uv_timer_start(&b->stop_timer, on_stop, (uint64_t)(b->duration * 1000), 0);
        return;
    }
    b->phase = PH_RUN;
    b->t_start = b->t_last_recv = b->t_last_send = uv_hrtime();
    for (uint32_t i = 0; i < b->npubs; i++)
        b->pubs[i].last_delivery = b->t_start;
    uv_timer_start(&b->tick, on_tick, b->rate > 0 ? 1 : 20, b->rate > 0 ? 1 : 20);
    if (!b->messages)
        uv_timer_start(&b->stop_timer, on_stop, (uint64_t)(b->duration * 1000), 0);
    for (uint32_t i = 0; i < b->npubs; i++)
        pub_pump(b, &b->pubs[i]);
}

/* Says goodbye on every connection and lets the loop end. */
static void finish(struct bench *b)
{
    if (b->phase == PH_DONE)
        return;
    if (b->phase == PH_RUN && !b->idle)
        b->t_send_end = uv_hrtime();
    b->phase = PH_DONE;
    for (uint32_t i = 0; i < b->nall; i++) {
        struct client *cl = b->all[i];
        if (!cl->started || !cl->conn.open || cl->conn.closing)
            continue;
        if (cl->ready) {
            struct m2m_mqtt_packet pkt;
            m2m_mqtt_packet_init(&pkt, M2M_MQTT_DISCONNECT, b->version);
            mb_conn_send(&cl->conn, &pkt);
            mb_conn_finish(&cl->conn);
        } else {
            mb_conn_close(&cl->conn);
        }
    }
    uv_timer_stop(&b->tick);
    uv_timer_stop(&b->stop_timer);
    uv_close((uv_handle_t *)&b->tick, NULL);
    uv_close((uv_handle_t *)&b->stop_timer, NULL);
    uv_close((uv_handle_t *)&b->sigint, NULL);
    uv_close((uv_handle_t *)&b->sigterm, NULL);
    mb_loop_close(&b->ml);
}

/* ---- report --------------------------------------------------------------- */

static int report(const struct bench *b)
{
    if (b->idle) {
        if (b->lost_conns)
            fprintf(stderr, "m2mkit bench mqtt: %llu connections were lost while idle\n",
                    (unsigned long long)b->lost_conns);
        return b->nready == b->idle && !b->lost_conns ? CLI_OK : CLI_FAILED;
    }
    uint64_t sent = 0, acked = 0, received = 0, dup = 0, ooo = 0;
    for (uint32_t i = 0; i < b->npubs; i++) {
        sent += b->pubs[i].sent;
        acked += b->pubs[i].acked;
    }
    for (uint32_t s = 0; s < b->nsubs; s++) {
        received += b->subs[s].received;
        for (uint32_t k = 0; k < b->subs[s].npubs; k++) {
            dup += b->subs[s].from[k].dup;
            ooo += b->subs[s].from[k].ooo;
        }
    }
    uint64_t unique = total_unique(b), expected = total_expected(b);
    uint64_t lost = expected > unique ? expected - unique : 0;
    uint64_t send_ns = b->t_send_end > b->t_start ? b->t_send_end - b->t_start : 1;
    uint64_t recv_ns = b->t_last_recv > b->t_start ? b->t_last_recv - b->t_start : 1;
    double secs = (double)send_ns / 1e9;
    double sent_rate = (double)sent / secs, recv_rate = (double)received / ((double)recv_ns / 1e9);
    const char *ver = b->version == M2M_MQTT_V5 ? "5" : "3.1.1";
    if (b->json) {
        printf("{\"pattern\":\"%s\",\"mqtt\":\"%s\",\"qos\":%u,\"publishers\":%u,\"subscribers\":%u,"
               "\"payload\":%zu,\"window\":%u,\"rate\":%.0f,\"seconds\":%.2f,\"sent\":%llu,\"acked\":%llu,"
               "\"expected\":%llu,\"received\":%llu,\"unique\":%llu,\"lost\":%llu,\"duplicates\":%llu,"
               "\"out_of_order\":%llu,\"foreign\":%llu,\"errors\":%llu,\"sent_rate\":%.0f,\"recv_rate\":%.0f,"
               "\"p50_us\":%.0f,\"p90_us\":%.0f,\"p99_us\":%.0f,\"max_us\":%.0f}\n",
               pattern_names[b->pattern], ver, b->qos, b->npubs, b->nsubs, b->payload_size, b->window,
               b->rate, secs, (unsigned long long)sent, (unsigned long long)acked,
               (unsigned long long)expected, (unsigned long long)received, (unsigned long long)unique,
               (unsigned long long)lost, (unsigned long long)dup, (unsigned long long)ooo,
               (unsigned long long)b->foreign, (unsigned long long)b->errors, sent_rate, recv_rate,
               percentile_us(b, 0.50), percentile_us(b, 0.90), percentile_us(b, 0.99),
               (double)b->lat_max / 1000.0);
    } else {
        printf("%s, %u publisher(s) -> %u subscriber(s), MQTT %s, QoS %u, %zu-byte payloads, window %u, "
               "%.1f s\n",
               pattern_names[b->pattern], b->npubs, b->nsubs, ver, b->qos, b->payload_size, b->window, secs);
        printf("sent      %llu (%.0f msgs/s), acknowledged %llu\n", (unsigned long long)sent, sent_rate,
               (unsigned long long)acked);
        printf(
            "received  %llu (%.0f msgs/s) of %llu expected: lost %llu, duplicated %llu, out of order %llu\n",
            (unsigned long long)received, recv_rate, (unsigned long long)expected, (unsigned long long)lost,
            (unsigned long long)dup, (unsigned long long)ooo);
        printf("latency   p50 %.0f us  p90 %.0f us  p99 %.0f us  max %.0f us\n", percentile_us(b, 0.50),
               percentile_us(b, 0.90), percentile_us(b, 0.99), (double)b->lat_max / 1000.0);
        if (b->errors || b->foreign)
            printf("errors    %llu, foreign messages %llu\n", (unsigned long long)b->errors,
                   (unsigned long long)b->foreign);
    }
    return !b->errors && (received || !b->nsubs) ? CLI_OK : CLI_FAILED;
}

/* ---- setup ---------------------------------------------------------------- */

static int setup_clients(struct bench *b)
{
    uint32_t n = b->idle ? b->idle : b->npubs + b->nsubs;
    b->all = calloc(n, sizeof *b->all);
    if (!b->all)
        return M2M_ENOMEM;
    if (b->idle) {
        b->idles = calloc(b->idle, sizeof *b->idles);
        if (!b->idles)
            return M2M_ENOMEM;
        for (uint32_t i = 0; i < b->idle; i++) {
            b->idles[i] = (struct client){.b = b, .role = ROLE_IDLE, .idx = i};
            b->all[b->nall++] = &b->idles[i];
        }
        return 0;
    }
    b->pubs = calloc(b->npubs ? b->npubs : 1, sizeof *b->pubs);
    b->subs = calloc(b->nsubs ? b->nsubs : 1, sizeof *b->subs);
    if (!b->pubs || !b->subs)
        return M2M_ENOMEM;
    bool pairs = b->pattern == PAT_PAIRS;
    /* Subscribers first, so that they are subscribed before anyone publishes. */
    for (uint32_t i = 0; i < b->nsubs; i++) {
        struct sub *s = &b->subs[i];
        s->cl = (struct client){.b = b, .role = ROLE_SUB, .idx = i};
        s->first_pub = pairs ? i : 0;
        s->npubs = pairs ? 1 : b->npubs;
        s->from = calloc(s->npubs ? s->npubs : 1, sizeof *s->from);
        s->q2 = b->qos == 2 ? calloc(1, 65536 / 8) : NULL;
        if (!s->from || (b->qos == 2 && !s->q2))
            return M2M_ENOMEM;
        b->all[b->nall++] = &s->cl;
    }
    for (uint32_t i = 0; i < b->npubs; i++) {
        struct pub *p = &b->pubs[i];
        p->cl = (struct client){.b = b, .role = ROLE_PUB, .idx = i};
        p->first_sub = pairs ? i : 0;
        p->nsubs = pairs ? 1 : b->nsubs;
        p->window = b->window;
        p->ids = calloc(1, 65536 / 8);
        if (!p->ids)
            return M2M_ENOMEM;
        b->all[b->nall++] = &p->cl;
    }
    return 0;
}

static void free_clients(struct bench *b)
{
    for (uint32_t i = 0; b->pubs && i < b->npubs; i++)
        free(b->pubs[i].ids);
    for (uint32_t i = 0; b->subs && i < b->nsubs; i++) {
        for (uint32_t k = 0; b->subs[i].from && k < b->subs[i].npubs; k++)
            free(b->subs[i].from[k].seen);
        free(b->subs[i].from);
        free(b->subs[i].q2);
    }
    free(b->pubs);
    free(b->subs);
    free(b->idles);
    free(b->all);
    free(b->payload);
}

/* Raises the open-file limit to its hard limit: --idle needs one per connection. */
static void raise_nofile(uint32_t want)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl))
        return;
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)want + 16)
        fprintf(stderr, "m2mkit bench mqtt: the open-file limit (%llu) is below %u connections\n",
                (unsigned long long)rl.rlim_cur, want);
}

static int resolve(const char *host, unsigned port, struct sockaddr_storage *out)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *res;
    char ps[8];
    snprintf(ps, sizeof ps, "%u", port);
    if (getaddrinfo(host, ps, &hints, &res))
        return -1;
    memcpy(out, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return 0;
}

static bool parse_num(const char *s, double lo, double hi, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: m2mkit bench mqtt [options]\n"
            "\n"
            "  -h, --host HOST          broker address (default 127.0.0.1)\n"
            "  -p, --port PORT          broker port (default 1883)\n"
            "  -V, --mqtt-version V     311 or 5 (default 311)\n"
            "      --topics PATTERN     pairs: publisher i -> topic i -> subscriber i (default);\n"
            "                           fanin: every publisher -> one topic -> every subscriber (8 -> 1);\n"
            "                           fanout: the same topology, 1 -> 8 by default\n"
            "      --publishers N       publishers (pairs: defaults to --subscribers, else 1)\n"
            "      --subscribers N      subscribers (pairs: defaults to --publishers)\n"
            "  -q, --qos Q              0, 1 or 2 for PUBLISH and SUBSCRIBE (default 0)\n"
            "  -s, --payload-size N     payload bytes, at least %d (default 64)\n"
            "  -r, --rate R             messages/s per publisher; 0 = as fast as the window allows\n"
            "                           (default 0)\n"
            "  -w, --window N           messages in flight per publisher (default 64): at QoS>0 not\n"
            "                           yet acknowledged; with -r 0 also not yet received by every\n"
            "                           subscriber\n"
            "  -d, --duration S         seconds of publishing (default 10)\n"
            "  -n, --messages N         instead of -d: messages per publisher\n"
            "      --idle N             open N connections, CONNECT, print when all are connected,\n"
            "                           hold them until SIGINT/SIGTERM (or -d S)\n"
            "  -j, --json               one JSON line instead of text\n"
            "      --help               this help\n",
            HEADER_BYTES);
}

enum { OPT_PUBLISHERS = 1000, OPT_SUBSCRIBERS, OPT_TOPICS, OPT_IDLE, OPT_HELP };

int bench_mqtt(int argc, char **argv)
{
    static const struct option longopts[] = {{"host", required_argument, 0, 'h'},
                                             {"port", required_argument, 0, 'p'},
                                             {"mqtt-version", required_argument, 0, 'V'},
                                             {"publishers", required_argument, 0, OPT_PUBLISHERS},
                                             {"subscribers", required_argument, 0, OPT_SUBSCRIBERS},
                                             {"topics", required_argument, 0, OPT_TOPICS},
                                             {"qos", required_argument, 0, 'q'},
                                             {"payload-size", required_argument, 0, 's'},
                                             {"rate", required_argument, 0, 'r'},
                                             {"window", required_argument, 0, 'w'},
                                             {"duration", required_argument, 0, 'd'},
                                             {"messages", required_argument, 0, 'n'},
                                             {"idle", required_argument, 0, OPT_IDLE},
                                             {"json", no_argument, 0, 'j'},
                                             {"help", no_argument, 0, OPT_HELP},
                                             {0, 0, 0, 0}};
    static struct bench b;
    memset(&b, 0, sizeof b);
    const char *host = "127.0.0.1";
    double port = 1883, v = 0, pubs = -1, subs = -1;
    bool have_d = false, ok = true;
    b.version = M2M_MQTT_V311;
    b.payload_size = 64;
    b.window = 64;
    b.duration = 10;
    int ch;
    optind = 1;
    while (ok && (ch = getopt_long(argc, argv, "h:p:V:q:s:r:w:d:n:j", longopts, NULL)) != -1) {
        switch (ch) {
        case 'h': host = optarg; break;
        case 'p': ok = parse_num(optarg, 1, 65535, &port); break;
        case 'V':
            if (!strcmp(optarg, "311") || !strcmp(optarg, "3.1.1") || !strcmp(optarg, "4"))
                b.version = M2M_MQTT_V311;
            else if (!strcmp(optarg, "5"))
                b.version = M2M_MQTT_V5;
            else
                ok = false;
            break;
        case OPT_PUBLISHERS: ok = parse_num(optarg, 0, 1e6, &pubs); break;
        case OPT_SUBSCRIBERS: ok = parse_num(optarg, 0, 1e6, &subs); break;
        case OPT_TOPICS:
            if (!strcmp(optarg, "pairs"))
                b.pattern = PAT_PAIRS;
            else if (!strcmp(optarg, "fanin"))
                b.pattern = PAT_FANIN;
            else if (!strcmp(optarg, "fanout"))
                b.pattern = PAT_FANOUT;
            else
                ok = false;
            break;
        case 'q':
            ok = parse_num(optarg, 0, 2, &v) && v == (int)v;
            b.qos = (uint8_t)v;
            break;
        case 's':
            ok = parse_num(optarg, HEADER_BYTES, MAX_PAYLOAD, &v);
            b.payload_size = (size_t)v;
            break;
        case 'r': ok = parse_num(optarg, 0, 1e9, &b.rate); break;
        case 'w':
            ok = parse_num(optarg, 1, 65000, &v);
            b.window = (uint32_t)v;
            break;
        case 'd':
            ok = parse_num(optarg, 0.001, 1e7, &b.duration);
            have_d = true;
            break;
        case 'n':
            ok = parse_num(optarg, 1, 1e12, &v);
            b.messages = (uint64_t)v;
            break;
        case OPT_IDLE:
            ok = parse_num(optarg, 1, 1e7, &v);
            b.idle = (uint32_t)v;
            break;
        case 'j': b.json = true; break;
        case OPT_HELP: usage(stdout); return CLI_OK;
        default: ok = false; break;
        }
    }
    if (!ok || optind != argc || (b.messages && have_d)) {
        usage(stderr);
        return CLI_USAGE;
    }
    if (b.pattern == PAT_PAIRS) {
        if (pubs < 0)
            pubs = subs < 0 ? 1 : subs;
        if (subs < 0)
            subs = pubs;
        if (pubs != subs) {
            fprintf(stderr, "m2mkit bench mqtt: pairs needs as many publishers as subscribers\n");
            return CLI_USAGE;
        }
    } else {
        if (pubs < 0)
            pubs = b.pattern == PAT_FANIN ? 8 : 1;
        if (subs < 0)
            subs = b.pattern == PAT_FANIN ? 1 : 8;
    }
    b.npubs = (uint32_t)pubs;
    b.nsubs = (uint32_t)subs;
    if (!b.idle && !b.npubs) {
        fprintf(stderr, "m2mkit bench mqtt: nothing to do without publishers\n");
        return CLI_USAGE;
    }
    if (!b.idle && !have_d && b.messages)
        b.duration = 0;
    if (b.idle && !have_d)
        b.duration = 0; /* hold until a signal */
    if (resolve(host, (unsigned)port, &b.dst)) {
        fprintf(stderr, "m2mkit bench mqtt: cannot resolve %s\n", host);
        return CLI_USAGE;
    }
    raise_nofile(b.idle ? b.idle : b.npubs + b.nsubs);

    uv_random(NULL, NULL, &b.tag, sizeof b.tag, 0, NULL);
    snprintf(b.prefix, sizeof b.prefix, "%08x", b.tag);
    b.payload = malloc(b.payload_size);
    int rc = b.payload ? setup_clients(&b) : M2M_ENOMEM;
    if (rc) {
        fprintf(stderr, "m2mkit bench mqtt: out of memory\n");
        free_clients(&b);
        return CLI_FAILED;
    }
    memset(b.payload, 'x', b.payload_size);

    uv_loop_init(&b.loop);
    mb_loop_init(&b.ml, &b.loop);
    uv_timer_init(&b.loop, &b.tick);
    uv_timer_init(&b.loop, &b.stop_timer);
    uv_signal_init(&b.loop, &b.sigint);
    uv_signal_init(&b.loop, &b.sigterm);
    b.tick.data = b.stop_timer.data = b.sigint.data = b.sigterm.data = &b;
    uv_signal_start(&b.sigint, on_signal, SIGINT);
    uv_signal_start(&b.sigterm, on_signal, SIGTERM);
    /* Signals alone must not keep the loop alive once the clients are gone. */
    uv_unref((uv_handle_t *)&b.sigint);
    uv_unref((uv_handle_t *)&b.sigterm);
    b.phase = PH_SETUP;
    start_more(&b);
    uv_run(&b.loop, UV_RUN_DEFAULT);
    if (b.phase != PH_DONE)
        finish(&b); /* every connection went away by itself */
    uv_run(&b.loop, UV_RUN_DEFAULT);
    uv_loop_close(&b.loop);

    if (!b.idle && b.nready != b.nall) {
        fprintf(stderr, "m2mkit bench mqtt: %u of %u connections could not be set up\n", b.nall - b.nready,
                b.nall);
        free_clients(&b);
        return CLI_FAILED;
    }
    rc = report(&b);
    free_clients(&b);
    return rc;
}
