/* m2mkit bench coap: a CoAP load generator. N clients, each on its own UDP
 * socket (so the server sees N endpoints), keep a window of CON (or NON)
 * requests outstanding for a fixed time and record the latency of each.
 * A client moves to a new socket after 60,000 requests, so that no Message
 * ID repeats towards the server within EXCHANGE_LIFETIME: a server that
 * deduplicates correctly would otherwise answer from its cache, or drop. */
#include <getopt.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "base/prng.h"
#include "cli/cli.h"
#include "m2m/coap.h"
#include "net/addr.h"
#include "net/coap_wire.h"

#define ROTATE_AFTER 60000
#define HIST_US 100000 /* 10 us buckets up to 1 s */
#define MAX_WINDOW 64

struct bench;

struct bclient {
    struct bench *b;
    struct m2m_udp_pump pump;
    struct m2m_coap_ep *ep;
    struct m2m_prng prng;
    uint32_t ids[MAX_WINDOW];
    uint64_t started[MAX_WINDOW];
    int outstanding;
    uint64_t sent_on_socket;
    bool rotating, warm_only, closed;
};

struct bench {
    uv_loop_t loop;
    uv_timer_t stop_timer;
    struct sockaddr_storage dst;
    struct m2m_addr to;
    struct m2m_coap_uri uri;
    int window, put_pct;
    bool non, stopping;
    size_t payload_size;
    uint8_t payload[1024];
    uint64_t done, errors, timeouts;
    uint64_t hist[HIST_US / 10 + 1];
    uint64_t t_start, t_end;
    struct m2m_logger log;
    uint64_t seed;
    int warm_inflight, warm_left, warm_done;
    int open_clients;
};

static int client_open(struct bench *b, struct bclient *c);

static void client_issue(struct bclient *c)
{
    struct bench *b = c->b;
    while (!b->stopping && !c->rotating && c->outstanding < b->window) {
        struct m2m_coap_msg req;
        uint32_t r = (uint32_t)m2m_prng_next(&c->prng) % 100;
        bool put = (int)r < b->put_pct;
        m2m_coap_msg_init(&req, b->non ? M2M_COAP_NON : M2M_COAP_CON, put ? M2M_COAP_PUT : M2M_COAP_GET);
        m2m_coap_uri_to_opts(&b->uri, &req);
        if (put) {
            m2m_coap_add_uint(&req, M2M_COAP_OPT_CONTENT_FORMAT, M2M_COAP_FMT_TEXT);
            req.payload = b->payload;
            req.payload_len = b->payload_size;
        }
        uint32_t id;
        if (m2m_coap_request(c->ep, (m2m_time)uv_now(&b->loop), &b->to, &req, &id))
            break;
        c->ids[c->outstanding] = id;
        c->started[c->outstanding] = uv_hrtime();
        c->outstanding++;
        if (++c->sent_on_socket >= ROTATE_AFTER)
            c->rotating = true;
    }
}

static void client_closed(struct m2m_udp_pump *p)
{
    struct bclient *c = p->ctx;
    struct bench *b = c->b;
    m2m_coap_ep_free(c->ep);
    c->ep = NULL;
    c->closed = true;
    if (c->warm_only) {
        free(c);
        return;
    }
    if (c->rotating && !b->stopping) {
        /* A fresh socket: a new endpoint, so Message IDs start over safely. */
        c->rotating = false;
        c->sent_on_socket = 0;
        if (client_open(b, c) == 0) {
            client_issue(c);
            m2m_udp_pump_flush(&c->pump);
            return;
        }
    }
    b->open_clients--;
}

static void record(struct bench *b, uint64_t ns)
{
    uint64_t us = ns / 1000;
    size_t i = us >= HIST_US ? HIST_US / 10 : us / 10;
    b->hist[i]++;
}

static void on_client_react(struct m2m_udp_pump *pump, void *ctx)
{
    struct bclient *c = ctx;
    struct bench *b = c->b;
    struct m2m_coap_event ev;
    while (m2m_coap_ep_poll_event(c->ep, &ev)) {
        if (ev.type != M2M_COAP_EV_RESPONSE && ev.type != M2M_COAP_EV_FAILED)
            continue;
        for (int i = 0; i < c->outstanding; i++) {
            if (c->ids[i] != ev.id)
                continue;
            uint64_t now = uv_hrtime();
            if (c->warm_only) {
                b->warm_inflight--;
                b->warm_done++;
            } else if (ev.type == M2M_COAP_EV_RESPONSE && M2M_COAP_CODE_CLASS(ev.msg.code) == 2) {
                b->done++;
                record(b, now - c->started[i]);
            } else {
                b->errors++;
                if (ev.type == M2M_COAP_EV_FAILED && ev.err == M2M_ETIMEDOUT)
                    b->timeouts++;
            }
            c->outstanding--;
            c->ids[i] = c->ids[c->outstanding];
            c->started[i] = c->started[c->outstanding];
            break;
        }
    }
    if (c->warm_only) {
        if (!c->outstanding && !uv_is_closing((uv_handle_t *)&pump->udp))
            m2m_udp_pump_close(pump, client_closed);
        return;
    }
    client_issue(c);
    if ((c->rotating || b->stopping) && !c->outstanding && !uv_is_closing((uv_handle_t *)&pump->udp))
        m2m_udp_pump_close(pump, client_closed);
}

static int client_open(struct bench *b, struct bclient *c)
{
    struct m2m_coap_config cc;
    m2m_coap_config_default(&cc);
    m2m_prng_seed(&c->prng, b->seed++);
    cc.rng = m2m_prng_rng(&c->prng);
    cc.tx.nstart = (uint32_t)b->window;
    cc.max_dedup = 4096;
    cc.log = &b->log;
    c->ep = m2m_coap_ep_new(&cc);
    if (!c->ep)
        return -1;
    c->closed = false;
    struct sockaddr_storage local;
    m2m_sockaddr_parse(b->dst.ss_family == AF_INET6 ? "::" : "0.0.0.0", 0, &local);
    int rc = m2m_udp_pump_start(&c->pump, &b->loop, (struct sockaddr *)&local, &m2m_coap_wire_ops, c->ep,
                                on_client_react, c, &b->log);
    if (rc) {
        fprintf(stderr, "m2mkit bench: cannot open a socket: %s\n", uv_strerror(rc));
        m2m_coap_ep_free(c->ep);
        c->ep = NULL;
        return -1;
    }
    return 0;
}

static void on_stop(uv_timer_t *t)
{
    struct bench *b = t->data;
    b->stopping = true;
    b->t_end = uv_hrtime();
    uv_stop(&b->loop);
}

static double percentile(const struct bench *b, double p)
{
    uint64_t total = 0;
    for (size_t i = 0; i <= HIST_US / 10; i++)
        total += b->hist[i];
    if (!total)
        return 0;
    uint64_t want = (uint64_t)(p * (double)total);
    uint64_t seen = 0;
    for (size_t i = 0; i <= HIST_US / 10; i++) {
        seen += b->hist[i];
        if (seen > want)
            return (double)(i * 10 + 5);
    }
    return HIST_US;
}

/* Warm-up peers: `count` distinct endpoints that each send one request and
 * leave, so the server holds state for them during the measurement. */
static void warm_step(struct bench *b)
{
    while (b->warm_left > 0 && b->warm_inflight < 200) {
        struct bclient *c = calloc(1, sizeof *c);
        if (!c)
            return;
        c->b = b;
        c->warm_only = true;
        if (client_open(b, c)) {
            free(c);
            b->warm_left = 0;
            return;
        }
        struct m2m_coap_msg req;
        m2m_coap_msg_init(&req, M2M_COAP_CON, M2M_COAP_GET);
        m2m_coap_uri_to_opts(&b->uri, &req);
        if (m2m_coap_request(c->ep, (m2m_time)uv_now(&b->loop), &b->to, &req, &c->ids[0]) == 0) {
            c->outstanding = 1;
            b->warm_inflight++;
        }
        m2m_udp_pump_flush(&c->pump);
        b->warm_left--;
    }
}

static void bench_usage(FILE *f)
{
    fprintf(f, "usage: m2mkit bench coap [options] URI\n"
               "\n"
               "  -n, --clients N        concurrent clients, one UDP socket each (default 10)\n"
               "  -d, --duration S       seconds to measure (default 10)\n"
               "  -W, --window N         requests outstanding per client (default 1, max 64)\n"
               "  -m, --mix get:P,put:Q  request mix in percent (default get:100)\n"
               "  -s, --payload-size N   PUT payload bytes (default 16)\n"
               "  -N, --non              Non-confirmable requests\n"
               "  -P, --warm-peers N     first let N other endpoints send one request each\n"
               "  -j, --json             one JSON line instead of text\n"
               "  -h, --help             this help\n");
}

int bench_coap(int argc, char **argv)
{
    static const struct option longopts[] = {{"clients", required_argument, 0, 'n'},
                                             {"duration", required_argument, 0, 'd'},
                                             {"window", required_argument, 0, 'W'},
                                             {"mix", required_argument, 0, 'm'},
                                             {"payload-size", required_argument, 0, 's'},
                                             {"non", no_argument, 0, 'N'},
                                             {"warm-peers", required_argument, 0, 'P'},
                                             {"json", no_argument, 0, 'j'},
                                             {"help", no_argument, 0, 'h'},
                                             {0, 0, 0, 0}};
    static struct bench b;
    memset(&b, 0, sizeof b);
    int clients = 10, warm = 0, ch;
    double duration = 10;
    bool json = false;
    b.window = 1;
    b.payload_size = 16;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "n:d:W:m:s:NP:jh", longopts, NULL)) != -1) {
        switch (ch) {
        case 'n': clients = atoi(optarg); break;
        case 'd': duration = strtod(optarg, NULL); break;
        case 'W': b.window = atoi(optarg); break;
        case 'm': {
            const char *put = strstr(optarg, "put:");
            b.put_pct = put ? atoi(put + 4) : 0;
            break;
        }
        case 's': b.payload_size = (size_t)atol(optarg); break;
        case 'N': b.non = true; break;
        case 'P': warm = atoi(optarg); break;
        case 'j': json = true; break;
        case 'h': bench_usage(stdout); return CLI_OK;
        default: bench_usage(stderr); return CLI_USAGE;
        }
    }
    if (optind != argc - 1 || clients < 1 || b.window < 1 || b.window > MAX_WINDOW || duration <= 0 ||
        b.payload_size > sizeof b.payload || b.put_pct < 0 || b.put_pct > 100) {
        bench_usage(stderr);
        return CLI_USAGE;
    }
    if (m2m_coap_uri_parse(argv[optind], &b.uri) || !b.uri.ip_literal || b.uri.secure) {
        fprintf(stderr, "m2mkit bench coap: need a coap:// URI with a numeric address\n");
        return CLI_USAGE;
    }
    if (m2m_sockaddr_parse(b.uri.host, b.uri.port, &b.dst))
        return CLI_USAGE;
    m2m_addr_from_sockaddr(&b.to, (struct sockaddr *)&b.dst);
    memset(b.payload, 'x', sizeof b.payload);
    cli_logger_init(&b.log, M2M_LOG_ERROR);
    uv_random(NULL, NULL, &b.seed, sizeof b.seed, 0, NULL);
    uv_loop_init(&b.loop);

    if (warm > 0) {
        b.warm_left = warm;
        while (b.warm_left > 0 || b.warm_inflight > 0) {
            warm_step(&b);
            uv_run(&b.loop, UV_RUN_ONCE);
        }
        if (!json)
            fprintf(stderr, "warmed up with %d other endpoints (%d answered)\n", warm, b.warm_done);
    }

    struct bclient *cs = calloc((size_t)clients, sizeof *cs);
    if (!cs)
        return CLI_FAILED;
    for (int i = 0; i < clients; i++) {
        cs[i].b = &b;
        if (client_open(&b, &cs[i])) {
            clients = i;
            break;
        }
        b.open_clients++;
    }
    uv_timer_init(&b.loop, &b.stop_timer);
    b.stop_timer.data = &b;
    b.t_start = uv_hrtime();
    for (int i = 0; i < clients; i++) {
        client_issue(&cs[i]);
        m2m_udp_pump_flush(&cs[i].pump);
    }
    uv_timer_start(&b.stop_timer, on_stop, (uint64_t)(duration * 1000), 0);
    uv_run(&b.loop, UV_RUN_DEFAULT);
    /* Wind down: close every socket, let the loop finish. */
    for (int i = 0; i < clients; i++)
        if (!cs[i].closed && cs[i].ep && !uv_is_closing((uv_handle_t *)&cs[i].pump.udp))
            m2m_udp_pump_close(&cs[i].pump, client_closed);
    uv_close((uv_handle_t *)&b.stop_timer, NULL);
    uv_run(&b.loop, UV_RUN_DEFAULT);
    uv_loop_close(&b.loop);
    free(cs);

    double secs = (double)(b.t_end - b.t_start) / 1e9;
    double rps = (double)b.done / secs;
    if (json)
        printf("{\"clients\":%d,\"window\":%d,\"warm_peers\":%d,\"seconds\":%.2f,\"requests\":%llu,"
               "\"errors\":%llu,\"rps\":%.0f,\"p50_us\":%.0f,\"p99_us\":%.0f}\n",
               clients, b.window, warm, secs, (unsigned long long)b.done, (unsigned long long)b.errors, rps,
               percentile(&b, 0.50), percentile(&b, 0.99));
    else
        printf("clients %d  window %d  %.1f s  requests %llu  errors %llu  %.0f req/s  p50 %.0f us  p99 %.0f "
               "us\n",
               clients, b.window, secs, (unsigned long long)b.done, (unsigned long long)b.errors, rps,
               percentile(&b, 0.50), percentile(&b, 0.99));
    return b.done ? CLI_OK : CLI_FAILED;
}
