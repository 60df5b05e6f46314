/* m2mkit mqtt pub|sub: an MQTT 3.1.1 / 5.0 client on the sans-IO client core
 * (m2m/mqtt_client.h), driven over TCP by src/net/tcp.c. */
#include <ctype.h>
#include <getopt.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "base/utf8.h"
#include "cli.h"
#include "m2m/mqtt_client.h"
#include "net/tls.h"
#include "net/addr.h"
#include "net/tcp.h"

#define MAX_TOPICS M2M_MQTT_MAX_FILTERS
#define MAX_USER 32
#define WRITE_HIGH (1u << 20) /* stop reading input while this much waits for the socket */

enum msg_source { SRC_NONE, SRC_ARG, SRC_FILE, SRC_LINES, SRC_NULL };

struct app {
    uv_loop_t loop;
    uv_timer_t deadline, retry;
    uv_signal_t sigint;
    uv_idle_t idle;
    struct m2m_tcp_conn *tcp;
    struct m2m_mqtt_client *mc;
    struct m2m_tls_ctx *tls_ctx; /* TLS options given: every connection goes through it */
    struct m2m_tls *tls;
    struct m2m_logger log;
    struct sockaddr_storage addr;
    bool sub, finishing, closing_handles, ever_connected, idle_on;
    int status;
    /* options */
    const char *topics[MAX_TOPICS];
    int ntopics;
    uint8_t qos;
    bool retain, verbose, json, no_local, rap, reconnect, alias;
    int retain_handling;
    long count, max_count;
    struct m2m_mqtt_pair user[MAX_USER];
    uint16_t nuser;
    /* pub input */
    enum msg_source src;
    unsigned char *msg;
    size_t msg_len;
    bool input_done, held;
    char *line;
    size_t line_cap;
    ssize_t line_len;
};

static void usage(FILE *f)
{
    fprintf(f, "usage: m2mkit mqtt pub -t TOPIC (-m MSG | -f FILE | -l | -n) [options]\n"
               "       m2mkit mqtt sub -t FILTER [-t FILTER ...] [options]\n"
               "\n"
               "  -h, --host HOST          broker host name or address (default 127.0.0.1)\n"
               "  -p, --port PORT          broker port (default 1883)\n"
               "      --url URL            mqtt://host[:port]/topic instead of -h -p -t\n"
               "  -V, --protocol 311|5     MQTT version (default 5)\n"
               "  -i, --id ID              client identifier (default m2mkit-PID)\n"
               "  -u, --username USER      -P, --password PASS\n"
               "  -k, --keepalive SECONDS  keep alive (default 60)\n"
               "  -c, --no-clean           resume a persistent session (no clean start)\n"
               "  -x, --session-expiry S   v5 session expiry interval in seconds\n"
               "  -D, --property NAME=VAL  v5 user property on CONNECT and PUBLISH/SUBSCRIBE (repeatable)\n"
               "  -q, --qos 0|1|2          QoS (default 0)\n"
               "      --will-topic T --will-payload P --will-qos Q --will-retain --will-delay S\n"
               "  -d, --debug              log the connection on stderr\n"
               "TLS (mqtts://, default port 8883):\n"
               "      --tls                TLS with the system's CA certificates\n"
               "      --cafile FILE        CA certificates that must sign the broker's certificate\n"
               "      --cert FILE --key FILE   client certificate (mutual TLS)\n"
               "      --psk-identity ID --psk-key HEX   pre-shared key (TLS 1.2 PSK)\n"
               "      --insecure           do not verify the broker's certificate (tests only)\n"
               "\n"
               "pub:  -m MSG | -f FILE (whole file) | -l (one message per stdin line) | -n (empty)\n"
               "      -r, --retain          set RETAIN\n"
               "      --alias               v5: use topic aliases (repeated topics go out without the name)\n"
               "sub:  -C, --count N         exit after N messages\n"
               "      -W, --timeout S       give up after S seconds\n"
               "      -v, --verbose         print the topic before the payload\n"
               "      -F json               one JSON object per message (topic, payload or\n"
               "                            payload_base64, qos, retain, properties)\n"
               "      -N, --no-local        v5 No Local\n"
               "      --retain-as-published --retain-handling 0|1|2\n"
               "      -R, --reconnect       reconnect after a lost connection, resuming the session\n"
               "\n"
               "Exit status: 0 ok, 1 refused by the broker (the reason is printed), 2 usage error,\n"
               "3 network failure or timeout.\n");
}

/* ---- the TCP driver ---------------------------------------------------------- */

static int feed(void *core, m2m_time now, const uint8_t *p, size_t n)
{
    return m2m_mqtt_client_feed(core, now, p, n);
}
static bool poll_output(void *core, const uint8_t **p, size_t *n)
{
    return m2m_mqtt_client_poll_output(core, p, n);
}
static m2m_time next_timeout(const void *core)
{
    return m2m_mqtt_client_next_timeout(core);
}
static void on_timeout(void *core, m2m_time now)
{
    m2m_mqtt_client_on_timeout(core, now);
}

static const struct m2m_stream_ops mqtt_client_ops = {
    .name = "mqtt",
    .feed = feed,
    .poll_output = poll_output,
    .next_timeout = next_timeout,
    .on_timeout = on_timeout,
};

static m2m_time now_of(struct app *a)
{
    return (m2m_time)uv_now(&a->loop);
}

static void close_noop(uv_handle_t *h)
{
    (void)h;
}

/* Closes the loop's own handles once the connection is gone. */
static void close_handles(struct app *a)
{
    if (a->closing_handles)
        return;
    a->closing_handles = true;
    uv_close((uv_handle_t *)&a->deadline, close_noop);
    uv_close((uv_handle_t *)&a->retry, close_noop);
    uv_close((uv_handle_t *)&a->sigint, close_noop);
    uv_close((uv_handle_t *)&a->idle, close_noop);
}

static void finish(struct app *a, int status)
{
    if (a->finishing)
        return;
    a->finishing = true;
    a->status = status;
    uv_timer_stop(&a->retry);
    if (!a->tcp) {
        close_handles(a);
        return;
    }
    if (m2m_mqtt_client_connected(a->mc))
        m2m_mqtt_client_disconnect(a->mc, now_of(a), 0, NULL);
    if (a->tls)
        m2m_tls_close(a->tls); /* DISCONNECT, then close_notify */
    /* a->tcp stays valid until its close callback, even if flush closes it. */
    m2m_tcp_conn_flush(a->tcp);
    m2m_tcp_conn_close(a->tcp, a->tcp->closed_cb);
}

static void start_connect(struct app *a);

static void on_retry(uv_timer_t *t)
{
    start_connect(t->data);
}

/* The connection is gone: retry with -R, else leave. */
static void lost(struct app *a, const char *why)
{
    if (a->finishing)
        return;
    if (a->reconnect && a->ever_connected) {
        if (a->log.level >= M2M_LOG_INFO)
            fprintf(stderr, "m2mkit mqtt: %s; reconnecting\n", why);
        uv_timer_start(&a->retry, on_retry, 1000, 0);
        return;
    }
    fprintf(stderr, "m2mkit mqtt: %s\n", why);
    finish(a, CLI_FAILED);
}

/* ---- publishing -------------------------------------------------------------- */

static void pub_pump(struct app *a);

static void on_idle(uv_idle_t *h)
{
    pub_pump(h->data);
}

static void idle_set(struct app *a, bool on)
{
    if (on == a->idle_on || a->closing_handles)
        return;
    a->idle_on = on;
    if (on)
        uv_idle_start(&a->idle, on_idle);
    else
        uv_idle_stop(&a->idle);
}

static struct m2m_mqtt_props pub_props(struct app *a)
{
    struct m2m_mqtt_props pr;
    memset(&pr, 0, sizeof pr);
    pr.user = a->user;
    pr.nuser = a->nuser;
    return pr;
}

/* Publishes what the input has, within the client's queue and the socket's
 * write queue; the rest waits for acks (PUBLISH_DONE) or the idle handler. */
static void pub_pump(struct app *a)
{
    if (a->finishing || !a->tcp || !m2m_mqtt_client_connected(a->mc)) {
        idle_set(a, false);
        return;
    }
    struct m2m_mqtt_props pr = pub_props(a);
    struct m2m_slice topic = {(const uint8_t *)a->topics[0], strlen(a->topics[0])};
    for (int batch = 0; batch < 256 && !a->input_done; batch++) {
        if (uv_stream_get_write_queue_size((uv_stream_t *)&a->tcp->tcp) > WRITE_HIGH)
            break;
        struct m2m_slice payload = {NULL, 0};
        if (a->src == SRC_LINES) {
            if (!a->held) {
                a->line_len = getline(&a->line, &a->line_cap, stdin);
                if (a->line_len < 0) {
                    a->input_done = true;
                    break;
                }
                if (a->line_len > 0 && a->line[a->line_len - 1] == '\n')
                    a->line_len--;
            }
            payload = (struct m2m_slice){(const uint8_t *)a->line, (size_t)a->line_len};
        } else if (a->src != SRC_NULL) {
            payload = (struct m2m_slice){a->msg, a->msg_len};
        }
        int rc = m2m_mqtt_client_publish(a->mc, now_of(a), topic, payload, a->qos, a->retain, &pr, NULL);
        if (rc == M2M_ELIMIT && m2m_mqtt_client_pending(a->mc) > 0) {
            a->held = true; /* the queue is full: wait for acks */
            m2m_tcp_conn_flush(a->tcp);
            idle_set(a, false);
            return;
        }
        if (rc) {
            fprintf(stderr, "m2mkit mqtt: cannot publish: %s\n", m2m_strerror(rc));
            finish(a, rc == M2M_EUNSUPPORTED ? CLI_PROTO_ERROR : CLI_USAGE);
            return;
        }
        a->held = false;
        if (a->src != SRC_LINES)
            a->input_done = true;
    }
    m2m_tcp_conn_flush(a->tcp);
    bool drained = uv_stream_get_write_queue_size((uv_stream_t *)&a->tcp->tcp) == 0;
    if (a->input_done && m2m_mqtt_client_pending(a->mc) == 0 && drained) {
        idle_set(a, false);
        finish(a, a->status);
        return;
    }
    /* Keep going while input or unsent bytes remain; acks wake us otherwise. */
    idle_set(a, !a->input_done || (!drained && m2m_mqtt_client_pending(a->mc) == 0));
}

/* ---- subscribing ------------------------------------------------------------- */

static void subscribe_all(struct app *a)
{
    struct m2m_mqtt_subscription subs[MAX_TOPICS];
    memset(subs, 0, sizeof subs);
    for (int i = 0; i < a->ntopics; i++) {
        subs[i].filter = (struct m2m_slice){(const uint8_t *)a->topics[i], strlen(a->topics[i])};
        subs[i].qos = a->qos;
        subs[i].no_local = a->no_local;
        subs[i].retain_as_published = a->rap;
        subs[i].retain_handling = (uint8_t)a->retain_handling;
    }
    struct m2m_mqtt_props pr = pub_props(a);
    int rc = m2m_mqtt_client_subscribe(a->mc, now_of(a), subs, (size_t)a->ntopics, &pr, NULL);
    if (rc) {
        fprintf(stderr, "m2mkit mqtt: cannot subscribe: %s\n", m2m_strerror(rc));
        finish(a, rc == M2M_EUNSUPPORTED ? CLI_PROTO_ERROR : CLI_USAGE);
    }
}

static json_t *b64(const uint8_t *p, size_t n)
{
    char *out = malloc(4 * ((n + 2) / 3) + 1);
    if (!out)
        return json_null();
    EVP_EncodeBlock((unsigned char *)out, p, (int)n);
    json_t *j = json_string(out);
    free(out);
    return j;
}

static json_t *text_or_null(struct m2m_slice s)
{
    return json_stringn((const char *)s.p, s.n);
}

static void print_json(const struct m2m_mqtt_publish *pb, const struct m2m_mqtt_props *pr)
{
    json_t *o = json_object();
    json_object_set_new(o, "topic", text_or_null(pb->topic));
    if (m2m_utf8_valid(pb->payload.p, pb->payload.n, 0))
        json_object_set_new(o, "payload", json_stringn((const char *)pb->payload.p, pb->payload.n));
    else
        json_object_set_new(o, "payload_base64", b64(pb->payload.p, pb->payload.n));
    json_object_set_new(o, "qos", json_integer(pb->qos));
    json_object_set_new(o, "retain", json_boolean(pb->retain));
    json_t *props = json_object();
    if (m2m_mqtt_props_has(pr, M2M_MQTT_P_PAYLOAD_FORMAT))
        json_object_set_new(props, "payload_format", json_integer(pr->payload_format));
    if (m2m_mqtt_props_has(pr, M2M_MQTT_P_MESSAGE_EXPIRY))
        json_object_set_new(props, "message_expiry", json_integer(pr->message_expiry));
    if (m2m_mqtt_props_has(pr, M2M_MQTT_P_CONTENT_TYPE))
        json_object_set_new(props, "content_type", text_or_null(pr->content_type));
    if (m2m_mqtt_props_has(pr, M2M_MQTT_P_RESPONSE_TOPIC))
        json_object_set_new(props, "response_topic", text_or_null(pr->response_topic));
    if (m2m_mqtt_props_has(pr, M2M_MQTT_P_CORRELATION_DATA))
        json_object_set_new(props, "correlation_data_base64",
                            b64(pr->correlation_data.p, pr->correlation_data.n));
    if (m2m_mqtt_props_has(pr, M2M_MQTT_P_TOPIC_ALIAS))
        json_object_set_new(props, "topic_alias", json_integer(pr->topic_alias));
    if (pr->nsubid) {
        json_t *ids = json_array();
        for (unsigned i = 0; i < pr->nsubid; i++)
            json_array_append_new(ids, json_integer(pr->subid[i]));
        json_object_set_new(props, "subscription_ids", ids);
    }
    if (pr->nuser) {
        json_t *users = json_array();
        struct m2m_mqtt_user_iter it;
        struct m2m_mqtt_pair pair;
        m2m_mqtt_user_iter_init(&it, pr);
        while (m2m_mqtt_user_next(&it, &pair)) {
            json_t *u = json_object();
            json_object_set_new(u, "name", text_or_null(pair.name));
            json_object_set_new(u, "value", text_or_null(pair.value));
            json_array_append_new(users, u);
        }
        json_object_set_new(props, "user_properties", users);
    }
    json_object_set_new(o, "properties", props);
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (s)
        printf("%s\n", s);
    free(s);
    json_decref(o);
}

static void on_message(struct app *a, const struct m2m_mqtt_publish *pb, const struct m2m_mqtt_props *pr)
{
    if (a->json) {
        print_json(pb, pr);
    } else {
        if (a->verbose)
            printf("%.*s ", (int)pb->topic.n, (const char *)pb->topic.p);
        fwrite(pb->payload.p, 1, pb->payload.n, stdout);
        putchar('\n');
    }
    fflush(stdout);
    if (a->max_count > 0 && ++a->count >= a->max_count)
        finish(a, CLI_OK);
}

/* ---- events ------------------------------------------------------------------ */

/* CONNACK codes below 0x80 are 3.1.1 return codes; v5 refusals are >= 0x80. */
static const char *connack_text(uint8_t code)
{
    return code < 0x80 ? m2m_mqtt311_connack_name(code) : m2m_mqtt_reason_name(code);
}

static bool on_react(struct m2m_tcp_conn *tcp, void *ctx)
{
    struct app *a = ctx;
    struct m2m_mqtt_client_event ev;
    bool close = false;
    (void)tcp;
    while (m2m_mqtt_client_poll_event(a->mc, &ev)) {
        switch (ev.type) {
        case M2M_MQTT_CEV_CONNACK:
            a->ever_connected = true;
            if (a->log.level >= M2M_LOG_DEBUG)
                fprintf(stderr, "m2mkit mqtt: connected, session present %d\n", ev.session_present);
            if (a->sub)
                subscribe_all(a);
            else
                pub_pump(a);
            break;
        case M2M_MQTT_CEV_REFUSED:
            fprintf(stderr, "m2mkit mqtt: connection refused: %s (0x%02x)\n", connack_text(ev.reason),
                    ev.reason);
            a->reconnect = false;
            finish(a, CLI_PROTO_ERROR);
            break;
        case M2M_MQTT_CEV_PUBLISH: on_message(a, ev.publish, ev.props); break;
        case M2M_MQTT_CEV_PUBLISH_DONE:
            if (ev.reason >= 0x80) {
                fprintf(stderr, "m2mkit mqtt: message %u refused: %s (0x%02x)\n", ev.packet_id,
                        m2m_mqtt_reason_name(ev.reason), ev.reason);
                a->status = CLI_PROTO_ERROR;
            }
            pub_pump(a);
            break;
        case M2M_MQTT_CEV_SUBACK:
            for (uint16_t i = 0; i < ev.n; i++) {
                if (ev.codes[i] >= 0x80) {
                    fprintf(stderr, "m2mkit mqtt: subscription to '%s' refused: %s (0x%02x)\n",
                            i < a->ntopics ? a->topics[i] : "?", m2m_mqtt_reason_name(ev.codes[i]),
                            ev.codes[i]);
                    finish(a, CLI_PROTO_ERROR);
                }
            }
            break;
        case M2M_MQTT_CEV_UNSUBACK: break;
        case M2M_MQTT_CEV_DISCONNECT:
            fprintf(stderr, "m2mkit mqtt: the broker disconnected: %s (0x%02x)\n",
                    m2m_mqtt_reason_name(ev.reason), ev.reason);
            if (!a->reconnect || ev.reason == M2M_MQTT_RC_SESSION_TAKEN_OVER) {
                a->reconnect = false;
                finish(a, CLI_PROTO_ERROR);
            }
            break;
        case M2M_MQTT_CEV_CLOSED:
            close = true;
            if (!a->finishing && ev.err && ev.err != M2M_ERESET && ev.err != M2M_EIO)
                fprintf(stderr, "m2mkit mqtt: connection closed: %s\n", m2m_strerror(ev.err));
            break;
        }
    }
    if (a->tls && m2m_tls_closed(a->tls)) {
        if (!a->finishing && !m2m_tls_established(a->tls) && m2m_tls_reason(a->tls))
            fprintf(stderr, "m2mkit mqtt: %s\n", m2m_tls_reason(a->tls));
        close = true;
    }
    return close;
}

static void on_tcp_closed(struct m2m_tcp_conn *tcp)
{
    struct app *a = tcp->ctx;
    a->tcp = NULL;
    m2m_tls_free(a->tls);
    a->tls = NULL;
    m2m_mqtt_client_transport_closed(a->mc);
    struct m2m_mqtt_client_event ev;
    while (m2m_mqtt_client_poll_event(a->mc, &ev)) {
    }
    if (a->finishing)
        close_handles(a);
    else
        lost(a, "connection lost");
}

static void on_tcp_connected(struct m2m_tcp_conn *tcp, int status)
{
    struct app *a = tcp->ctx;
    if (status) {
        a->tcp = NULL;
        char msg[160];
        snprintf(msg, sizeof msg, "cannot connect: %s", uv_strerror(status));
        if (a->finishing)
            close_handles(a);
        else
            lost(a, msg);
        return;
    }
    tcp->closed_cb = on_tcp_closed;
    int rc = m2m_mqtt_client_connect(a->mc, now_of(a));
    if (rc) {
        fprintf(stderr, "m2mkit mqtt: cannot build CONNECT: %s\n", m2m_strerror(rc));
        a->status = CLI_USAGE;
        a->finishing = true;
        m2m_tcp_conn_close(tcp, on_tcp_closed);
        return;
    }
    if (a->tls_ctx) {
        a->tls = m2m_tls_new(a->tls_ctx, &mqtt_client_ops, a->mc, now_of(a));
        if (!a->tls) {
            fprintf(stderr, "m2mkit mqtt: out of memory\n");
            a->finishing = true;
            m2m_tcp_conn_close(tcp, on_tcp_closed);
            return;
        }
        m2m_tcp_conn_start(tcp, &m2m_tls_stream_ops, a->tls, on_react, a, 64u << 20);
        return;
    }
    m2m_tcp_conn_start(tcp, &mqtt_client_ops, a->mc, on_react, a, 64u << 20);
}

static void start_connect(struct app *a)
{
    int err = 0;
    a->tcp = m2m_tcp_connect(&a->loop, (struct sockaddr *)&a->addr, on_tcp_connected, a, &a->log, &err);
    if (!a->tcp) {
        char msg[160];
        snprintf(msg, sizeof msg, "cannot connect: %s", uv_strerror(err));
        lost(a, msg);
    }
}

static void on_deadline(uv_timer_t *t)
{
    struct app *a = t->data;
    bool counted = a->max_count > 0 && a->count < a->max_count;
    if (counted || !a->ever_connected)
        fprintf(stderr, "m2mkit mqtt: timed out\n");
    finish(a, counted || !a->ever_connected ? CLI_FAILED : CLI_OK);
}

static void on_sigint(uv_signal_t *s, int signum)
{
    (void)signum;
    finish(s->data, CLI_OK);
}

/* ---- arguments --------------------------------------------------------------- */

static bool parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

/* mqtt://host[:port]/topic; an IPv6 host in brackets. */
/* mqtt://host[:port]/topic or mqtts://...; *tls and *port_given say which. */
static bool parse_url(const char *url, char *host, size_t hcap, long *port, const char **topic, bool *tls,
                      bool *port_given)
{
    *tls = !strncmp(url, "mqtts://", 8);
    if (!*tls && strncmp(url, "mqtt://", 7))
        return false;
    const char *h = url + (*tls ? 8 : 7), *e;
    if (*h == '[') {
        e = strchr(h, ']');
        if (!e)
            return false;
        h++;
    } else {
        e = h + strcspn(h, ":/");
    }
    size_t n = (size_t)(e - h);
    if (n == 0 || n >= hcap)
        return false;
    memcpy(host, h, n);
    host[n] = 0;
    if (*e == ']')
        e++;
    if (*e == ':') {
        char *end;
        *port = strtol(e + 1, &end, 10);
        if (end == e + 1 || *port < 1 || *port > 65535)
            return false;
        *port_given = true;
        e = end;
    }
    *topic = *e == '/' && e[1] ? e + 1 : NULL;
    return *e == '/' || *e == 0;
}

static int resolve(uv_loop_t *loop, const char *host, long port, struct sockaddr_storage *ss)
{
    char ps[8];
    snprintf(ps, sizeof ps, "%ld", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    uv_getaddrinfo_t req;
    int rc = uv_getaddrinfo(loop, &req, NULL, host, ps, &hints); /* no callback: synchronous */
    if (rc)
        return rc;
    memcpy(ss, req.addrinfo->ai_addr, req.addrinfo->ai_addrlen);
    uv_freeaddrinfo(req.addrinfo);
    return 0;
}

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "m2mkit mqtt: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n");
    return CLI_USAGE;
}

struct tls_opts {
    bool on, insecure;
    const char *cafile, *cert, *key, *psk_identity;
    uint8_t psk_key[64];
    size_t psk_key_len;
};

/* Hex to bytes: the length, 0 when not hex or too long. */
static size_t hex_decode(const char *s, uint8_t *out, size_t cap)
{
    size_t n = strlen(s);
    if (n == 0 || n % 2 || n / 2 > cap)
        return 0;
    for (size_t i = 0; i < n / 2; i++) {
        unsigned v;
        if (sscanf(s + 2 * i, "%2x", &v) != 1 || !isxdigit((unsigned char)s[2 * i]) ||
            !isxdigit((unsigned char)s[2 * i + 1]))
            return 0;
        out[i] = (uint8_t)v;
    }
    return n / 2;
}

enum {
    OPT_URL = 256,
    OPT_WILL_TOPIC,
    OPT_WILL_PAYLOAD,
    OPT_WILL_QOS,
    OPT_WILL_RETAIN,
    OPT_WILL_DELAY,
    OPT_ALIAS,
    OPT_RAP,
    OPT_RH,
    OPT_TLS,
    OPT_CAFILE,
    OPT_CERT,
    OPT_KEY,
    OPT_PSK_ID,
    OPT_PSK_KEY,
    OPT_INSECURE
};

int cmd_mqtt(int argc, char **argv)
{
    static const struct option longopts[] = {{"host", required_argument, 0, 'h'},
                                             {"port", required_argument, 0, 'p'},
                                             {"url", required_argument, 0, OPT_URL},
                                             {"protocol", required_argument, 0, 'V'},
                                             {"id", required_argument, 0, 'i'},
                                             {"username", required_argument, 0, 'u'},
                                             {"password", required_argument, 0, 'P'},
                                             {"keepalive", required_argument, 0, 'k'},
                                             {"no-clean", no_argument, 0, 'c'},
                                             {"session-expiry", required_argument, 0, 'x'},
                                             {"property", required_argument, 0, 'D'},
                                             {"qos", required_argument, 0, 'q'},
                                             {"topic", required_argument, 0, 't'},
                                             {"message", required_argument, 0, 'm'},
                                             {"file", required_argument, 0, 'f'},
                                             {"stdin-line", no_argument, 0, 'l'},
                                             {"null-message", no_argument, 0, 'n'},
                                             {"retain", no_argument, 0, 'r'},
                                             {"count", required_argument, 0, 'C'},
                                             {"timeout", required_argument, 0, 'W'},
                                             {"verbose", no_argument, 0, 'v'},
                                             {"format", required_argument, 0, 'F'},
                                             {"no-local", no_argument, 0, 'N'},
                                             {"reconnect", no_argument, 0, 'R'},
                                             {"debug", no_argument, 0, 'd'},
                                             {"will-topic", required_argument, 0, OPT_WILL_TOPIC},
                                             {"will-payload", required_argument, 0, OPT_WILL_PAYLOAD},
                                             {"will-qos", required_argument, 0, OPT_WILL_QOS},
                                             {"will-retain", no_argument, 0, OPT_WILL_RETAIN},
                                             {"will-delay", required_argument, 0, OPT_WILL_DELAY},
                                             {"alias", no_argument, 0, OPT_ALIAS},
                                             {"retain-as-published", no_argument, 0, OPT_RAP},
                                             {"retain-handling", required_argument, 0, OPT_RH},
                                             {"tls", no_argument, 0, OPT_TLS},
                                             {"cafile", required_argument, 0, OPT_CAFILE},
                                             {"cert", required_argument, 0, OPT_CERT},
                                             {"key", required_argument, 0, OPT_KEY},
                                             {"psk-identity", required_argument, 0, OPT_PSK_ID},
                                             {"psk-key", required_argument, 0, OPT_PSK_KEY},
                                             {"insecure", no_argument, 0, OPT_INSECURE},
                                             {"help", no_argument, 0, 'H'},
                                             {0, 0, 0, 0}};
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_USAGE : CLI_OK;
    }
    static struct app a;
    memset(&a, 0, sizeof a);
    if (!strcmp(argv[1], "sub"))
        a.sub = true;
    else if (strcmp(argv[1], "pub"))
        return usage_error("unknown subcommand '%s' (pub or sub)", argv[1]);
    const char *host = "127.0.0.1", *id = NULL, *user = NULL, *pass = NULL, *file = NULL;
    const char *will_topic = NULL, *will_payload = "";
    char url_host[256];
    long port = 1883, version = 5, keepalive = 60, expiry = 0, qos = 0, will_qos = 0, will_delay = -1,
         wait_s = 0;
    long rh = 0;
    bool clean = true, will_retain = false, debug = false, port_given = false;
    struct tls_opts tls = {0};
    bool url_tls = false, url_port = false;
    int ch;
    optind = 1;
    argc--;
    argv++;
    while ((ch = getopt_long(argc, argv, "h:p:V:i:u:P:k:cx:D:q:t:m:f:lnrC:W:vF:NRd", longopts, NULL)) != -1) {
        switch (ch) {
        case 'h': host = optarg; break;
        case OPT_TLS: tls.on = true; break;
        case OPT_CAFILE: tls.on = true, tls.cafile = optarg; break;
        case OPT_CERT: tls.on = true, tls.cert = optarg; break;
        case OPT_KEY: tls.on = true, tls.key = optarg; break;
        case OPT_PSK_ID: tls.on = true, tls.psk_identity = optarg; break;
        case OPT_PSK_KEY:
            tls.on = true;
            tls.psk_key_len = hex_decode(optarg, tls.psk_key, sizeof tls.psk_key);
            if (!tls.psk_key_len)
                return usage_error("--psk-key wants 1 to 64 bytes in hex, not '%s'", optarg);
            break;
        case OPT_INSECURE: tls.on = true, tls.insecure = true; break;
        case 'p':
            port_given = true;
            if (!parse_long(optarg, 1, 65535, &port))
                return usage_error("bad port '%s'", optarg);
            break;
        case OPT_URL: {
            const char *t;
            if (!parse_url(optarg, url_host, sizeof url_host, &port, &t, &url_tls, &url_port))
                return usage_error("cannot parse URL '%s' (mqtt[s]://host[:port]/topic)", optarg);
            host = url_host;
            if (t && a.ntopics < MAX_TOPICS)
                a.topics[a.ntopics++] = t;
            break;
        }
        case 'V':
            if (!strcmp(optarg, "311") || !strcmp(optarg, "mqttv311") || !strcmp(optarg, "4"))
                version = 4;
            else if (!strcmp(optarg, "5") || !strcmp(optarg, "mqttv5"))
                version = 5;
            else
                return usage_error("unknown protocol version '%s' (311 or 5)", optarg);
            break;
        case 'i': id = optarg; break;
        case 'u': user = optarg; break;
        case 'P': pass = optarg; break;
        case 'k':
            if (!parse_long(optarg, 0, 65535, &keepalive))
                return usage_error("bad keep alive '%s'", optarg);
            break;
        case 'c': clean = false; break;
        case 'x':
            if (!parse_long(optarg, 0, 0xffffffffL, &expiry))
                return usage_error("bad session expiry '%s'", optarg);
            break;
        case 'D': {
            char *eq = strchr(optarg, '=');
            if (!eq || eq == optarg || a.nuser >= MAX_USER)
                return usage_error("bad user property '%s' (NAME=VALUE)", optarg);
            a.user[a.nuser].name = (struct m2m_slice){(const uint8_t *)optarg, (size_t)(eq - optarg)};
            a.user[a.nuser].value = (struct m2m_slice){(const uint8_t *)eq + 1, strlen(eq + 1)};
            a.nuser++;
            break;
        }
        case 'q':
            if (!parse_long(optarg, 0, 2, &qos))
                return usage_error("bad QoS '%s' (0, 1 or 2)", optarg);
            break;
        case 't':
            if (a.ntopics >= MAX_TOPICS)
                return usage_error("too many topics%s", "");
            a.topics[a.ntopics++] = optarg;
            break;
        case 'm':
        case 'f':
        case 'l':
        case 'n':
            if (a.src != SRC_NONE)
                return usage_error("give only one of -m, -f, -l, -n%s", "");
            a.src = ch == 'm' ? SRC_ARG : ch == 'f' ? SRC_FILE : ch == 'l' ? SRC_LINES : SRC_NULL;
            if (ch == 'm') {
                a.msg = (unsigned char *)optarg;
                a.msg_len = strlen(optarg);
            }
            if (ch == 'f')
                file = optarg;
            break;
        case 'r': a.retain = true; break;
        case 'C':
            if (!parse_long(optarg, 1, 1L << 30, &a.max_count))
                return usage_error("bad count '%s'", optarg);
            break;
        case 'W':
            if (!parse_long(optarg, 1, 1L << 20, &wait_s))
                return usage_error("bad timeout '%s'", optarg);
            break;
        case 'v': a.verbose = true; break;
        case 'F':
            if (strcmp(optarg, "json"))
                return usage_error("unknown format '%s' (json)", optarg);
            a.json = true;
            break;
        case 'N': a.no_local = true; break;
        case 'R': a.reconnect = true; break;
        case 'd': debug = true; break;
        case OPT_WILL_TOPIC: will_topic = optarg; break;
        case OPT_WILL_PAYLOAD: will_payload = optarg; break;
        case OPT_WILL_QOS:
            if (!parse_long(optarg, 0, 2, &will_qos))
                return usage_error("bad will QoS '%s'", optarg);
            break;
        case OPT_WILL_RETAIN: will_retain = true; break;
        case OPT_WILL_DELAY:
            if (!parse_long(optarg, 0, 0xffffffffL, &will_delay))
                return usage_error("bad will delay '%s'", optarg);
            break;
        case OPT_ALIAS: a.alias = true; break;
        case OPT_RAP: a.rap = true; break;
        case OPT_RH:
            if (!parse_long(optarg, 0, 2, &rh))
                return usage_error("bad retain handling '%s' (0, 1 or 2)", optarg);
            break;
        case 'H': usage(stdout); return CLI_OK;
        default: usage(stderr); return CLI_USAGE;
        }
    }
    if (optind != argc)
        return usage_error("unexpected argument '%s'", argv[optind]);
    if (a.ntopics == 0)
        return usage_error("-t TOPIC is required%s", "");
    if (!a.sub && a.ntopics != 1)
        return usage_error("pub takes one topic%s", "");
    if (!a.sub && a.src == SRC_NONE)
        return usage_error("pub needs a message: -m, -f, -l or -n%s", "");
    for (int i = 0; i < a.ntopics; i++) {
        struct m2m_slice s = {(const uint8_t *)a.topics[i], strlen(a.topics[i])};
        if (a.sub ? !m2m_mqtt_filter_valid(s) : !m2m_mqtt_topic_valid(s))
            return usage_error("invalid topic '%s'", a.topics[i]);
    }
    if (will_topic &&
        !m2m_mqtt_topic_valid((struct m2m_slice){(const uint8_t *)will_topic, strlen(will_topic)}))
        return usage_error("invalid will topic '%s'", will_topic);
    if (pass && !user && version == 4)
        return usage_error("a password needs a user name in MQTT 3.1.1%s", "");
    a.qos = (uint8_t)qos;
    a.retain_handling = (int)rh;
    unsigned char *file_buf = NULL;
    if (file) {
        char at[4096];
        snprintf(at, sizeof at, "@%s", file);
        if (cli_read_payload(at, &file_buf, &a.msg_len))
            return usage_error("cannot read '%s'", file);
        a.msg = file_buf;
    }

    cli_logger_init(&a.log, debug ? M2M_LOG_DEBUG : M2M_LOG_WARN);
    char idbuf[64];
    if (!id) {
        snprintf(idbuf, sizeof idbuf, "m2mkit-%s-%ld", a.sub ? "sub" : "pub", (long)getpid());
        id = idbuf;
    }
    struct m2m_slice su = {(const uint8_t *)user, user ? strlen(user) : 0};
    struct m2m_slice sp = {(const uint8_t *)pass, pass ? strlen(pass) : 0};
    struct m2m_mqtt_props will_props;
    memset(&will_props, 0, sizeof will_props);
    if (will_delay >= 0) {
        will_props.will_delay = (uint32_t)will_delay;
        m2m_mqtt_props_set(&will_props, M2M_MQTT_P_WILL_DELAY);
    }
    struct m2m_mqtt_will will = {
        .topic = {(const uint8_t *)will_topic, will_topic ? strlen(will_topic) : 0},
        .payload = {(const uint8_t *)will_payload, strlen(will_payload)},
        .qos = (uint8_t)will_qos,
        .retain = will_retain,
        .props = &will_props,
    };
    struct m2m_mqtt_client_config cfg = {
        .version = (uint8_t)version,
        .client_id = {(const uint8_t *)id, strlen(id)},
        .clean_start = clean,
        .keep_alive = (uint16_t)keepalive,
        .will = will_topic ? &will : NULL,
        .username = user ? &su : NULL,
        .password = pass ? &sp : NULL,
        .session_expiry = (uint32_t)expiry,
        .max_packet_size = 64u << 20,
        .topic_alias_maximum = 16,
        .topic_aliases = a.alias,
        .user = a.user,
        .nuser = a.nuser,
        .max_queued = 1024,
    };
    if (url_tls)
        tls.on = true;
    if (tls.on && !port_given && !url_port)
        port = 8883;
    if (!tls.cert != !tls.key)
        return usage_error("--cert and --key go together%s", "");
    if (!tls.psk_identity != !tls.psk_key_len)
        return usage_error("--psk-identity and --psk-key go together%s", "");
    int status = CLI_FAILED;
    if (tls.on) {
        struct m2m_tls_ctx_config tc = {
            .cert_file = tls.cert,
            .key_file = tls.key,
            .ca_file = tls.cafile,
            .verify = tls.insecure || tls.psk_identity ? M2M_TLS_VERIFY_NONE : M2M_TLS_VERIFY_REQUIRE,
            .psk_identity = tls.psk_identity,
            .psk_key = tls.psk_key_len ? tls.psk_key : NULL,
            .psk_key_len = tls.psk_key_len,
            .server_name = host,
            .max_version = tls.psk_identity ? 0x0303 : 0,
            .session_tickets = true,
        };
        char why[256] = "";
        if (m2m_tls_ctx_new(&tc, &a.tls_ctx, why, sizeof why)) {
            fprintf(stderr, "m2mkit mqtt: TLS: %s\n", why);
            return CLI_USAGE;
        }
    }
    uv_loop_init(&a.loop);
    int rc = resolve(&a.loop, host, port, &a.addr);
    if (rc) {
        fprintf(stderr, "m2mkit mqtt: cannot resolve '%s': %s\n", host, uv_strerror(rc));
        goto out;
    }
    a.mc = m2m_mqtt_client_new(&cfg);
    if (!a.mc) {
        fprintf(stderr, "m2mkit mqtt: invalid client configuration\n");
        status = CLI_USAGE;
        goto out;
    }
    uv_timer_init(&a.loop, &a.deadline);
    uv_timer_init(&a.loop, &a.retry);
    uv_idle_init(&a.loop, &a.idle);
    uv_signal_init(&a.loop, &a.sigint);
    a.deadline.data = a.retry.data = a.idle.data = a.sigint.data = &a;
    uv_signal_start(&a.sigint, on_sigint, SIGINT);
    if (wait_s)
        uv_timer_start(&a.deadline, on_deadline, (uint64_t)wait_s * 1000, 0);
    start_connect(&a);
    uv_run(&a.loop, UV_RUN_DEFAULT);
    status = a.status;
out:
    uv_loop_close(&a.loop);
    m2m_tls_ctx_free(a.tls_ctx);
    m2m_mqtt_client_free(a.mc);
    free(a.line);
    free(file_buf);
    return status;
}
