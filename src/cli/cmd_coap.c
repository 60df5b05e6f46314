/* m2mkit coap get|put|post|delete|observe|discover URI */
#include <getopt.h>
#include <netdb.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "base/prng.h"
#include "cli.h"
#include "m2m/coap.h"
#include "net/addr.h"
#include "net/coap_wire.h"
#include "net/dtls.h"

#define MAX_EXTRA_OPTS 16

struct client {
    uv_loop_t loop;
    uv_timer_t deadline;
    uv_signal_t sigint;
    struct m2m_udp_pump pump;
    struct m2m_coap_ep *ep;
    struct m2m_dtls *dtls; /* coaps:// */
    struct m2m_addr server;
    struct m2m_prng prng;
    uint32_t id;
    bool observe, raw, quiet, finishing;
    bool established, deregistering;
    int final_status;
    long count, max_count;
    FILE *out;
    int status;
    struct m2m_logger log;
};

static void usage(FILE *f)
{
    fprintf(f, "usage: m2mkit coap get|put|post|delete|observe|discover URI [options]\n"
               "\n"
               "URI: coap://host[:port]/path?query (IPv6 literals in brackets, percent-encoding)\n"
               "     coaps://... for CoAP over DTLS 1.2 (port 5684)\n"
               "\n"
               "  -t, --type FORMAT       Content-Format of the payload (text, json, cbor, link,\n"
               "                          senml+json, octets ... or a number)\n"
               "  -A, --accept FORMAT     Accept option\n"
               "  -p, --payload DATA      payload, or @FILE to read it from a file (@- for stdin)\n"
               "  -b, --block-size N      block size for Block1/Block2 (16..1024)\n"
               "  -N, --non               send a Non-confirmable request\n"
               "      --cc MODE           retransmission timing: default (RFC 7252) or cocoa\n"
               "                          (draft-ietf-core-cocoa RTT estimates)\n"
               "  -O, --option NUM=VALUE  extra option; VALUE is text, 0xHEX or #INTEGER\n"
               "  -o, --output FILE       write the raw payload to FILE\n"
               "  -r, --raw               print the payload as received, without pretty-printing\n"
               "  -c, --count N           observe: stop after N notifications\n"
               "  -w, --wait SECONDS      give up after this long (default 100; observe: forever)\n"
               "  -q, --quiet             print nothing but the payload\n"
               "  -v, --verbose           print the response code and options, debug logging\n"
               "  -h, --help              this help\n"
               "\n"
               "coaps:// (DTLS):\n"
               "      --psk-identity ID   pre-shared key identity\n"
               "      --psk-key KEY       the key: hexadecimal (even length), else text;\n"
               "                          'text:...' forces text\n"
               "      --cafile FILE       CA certificates (PEM) to check the server against\n"
               "                          (default: the system's)\n"
               "      --cert FILE         client certificate (PEM)\n"
               "      --key FILE          its private key (PEM; default: --cert)\n"
               "\n"
               "Exit status: 0 for 2.xx, 1 for 4.xx/5.xx, 2 for a usage error, 3 when the\n"
               "request failed (timeout, reset, network error, DTLS handshake failure).\n");
}

static void finish(struct client *c, int status);

static void close_noop(uv_handle_t *h)
{
    (void)h;
}

static void pump_closed(struct m2m_udp_pump *p)
{
    struct client *c = p->ctx;
    uv_close((uv_handle_t *)&c->deadline, close_noop);
    uv_close((uv_handle_t *)&c->sigint, close_noop);
}

static void finish(struct client *c, int status)
{
    if (c->finishing)
        return;
    c->finishing = true;
    c->status = status;
    if (c->dtls)
        m2m_dtls_close_all(c->dtls); /* close_notify */
    m2m_udp_pump_flush(&c->pump);
    m2m_udp_pump_close(&c->pump, pump_closed);
}

static void print_options(const struct m2m_coap_msg *m)
{
    fprintf(stderr, "%s %s mid=%u", m2m_coap_type_name(m->type), m2m_coap_code_name(m->code), m->mid);
    for (uint16_t i = 0; i < m->nopt; i++) {
        const struct m2m_coap_opt *o = &m->opt[i];
        uint32_t v = 0;
        bool small = o->len <= 4;
        for (uint16_t k = 0; small && k < o->len; k++)
            v = (v << 8) | o->val[k];
        if (o->num == M2M_COAP_OPT_ETAG || !small || o->num == M2M_COAP_OPT_LOCATION_PATH)
            fprintf(stderr, " opt%u=%.*s", o->num, (int)o->len, (const char *)o->val);
        else
            fprintf(stderr, " opt%u=%u", o->num, v);
    }
    fprintf(stderr, " payload=%zu bytes\n", m->payload_len);
}

static void show(struct client *c, const struct m2m_coap_msg *m)
{
    if (c->log.level >= M2M_LOG_DEBUG)
        print_options(m);
    if (M2M_COAP_CODE_CLASS(m->code) != 2 && !c->quiet) {
        fprintf(stderr, "%s\n", m2m_coap_code_name(m->code));
    }
    if (!m->payload_len)
        return;
    if (c->out) {
        fwrite(m->payload, 1, m->payload_len, c->out);
        fflush(c->out);
        return;
    }
    int fmt = (int)m2m_coap_get_uint(m, M2M_COAP_OPT_CONTENT_FORMAT, UINT32_MAX);
    if (c->raw) {
        fwrite(m->payload, 1, m->payload_len, stdout);
        if (c->observe)
            fputc('\n', stdout);
    } else {
        cli_print_payload(stdout, fmt > 0xffff ? -1 : fmt, m->payload, m->payload_len);
    }
    fflush(stdout);
}

static void on_deadline(uv_timer_t *t);

/* Ends an observation with a GET carrying Observe=1 (RFC 7641 §3.6), so the
 * server forgets us now rather than at its next confirmable notification,
 * then leaves on its answer or after 2 s. */
static void stop_observing(struct client *c, int status)
{
    if (!c->established || c->deregistering) {
        if (!c->deregistering)
            finish(c, status);
        return;
    }
    c->deregistering = true;
    c->final_status = status;
    if (m2m_coap_cancel(c->ep, (m2m_time)uv_now(&c->loop), c->id, true)) {
        finish(c, status);
        return;
    }
    m2m_udp_pump_flush(&c->pump);
    uv_timer_start(&c->deadline, on_deadline, 2000, 0);
}

static void on_react(struct m2m_udp_pump *pump, void *ctx)
{
    struct client *c = ctx;
    struct m2m_coap_event ev;
    (void)pump;
    struct m2m_dtls_peer_info info;
    if (c->dtls && !c->finishing && m2m_dtls_peer(c->dtls, &c->server, &info) == M2M_DTLS_FAILED) {
        if (!c->quiet)
            fprintf(stderr, "m2mkit coap: DTLS handshake failed: %s\n", info.reason);
        finish(c, CLI_FAILED);
        return;
    }
    while (m2m_coap_ep_poll_event(c->ep, &ev)) {
        if (ev.id != c->id || c->finishing)
            continue;
        if (c->deregistering) {
            if (ev.type == M2M_COAP_EV_RESPONSE || ev.type == M2M_COAP_EV_FAILED)
                finish(c, c->final_status);
            continue;
        }
        switch (ev.type) {
        case M2M_COAP_EV_RESPONSE: {
            show(c, &ev.msg);
            int status = M2M_COAP_CODE_CLASS(ev.msg.code) == 2 ? CLI_OK : CLI_PROTO_ERROR;
            bool observing =
                c->observe && status == CLI_OK && m2m_coap_has_opt(&ev.msg, M2M_COAP_OPT_OBSERVE);
            if (c->observe && !observing && status == CLI_OK && !c->quiet)
                fprintf(stderr, "m2mkit coap: the server did not accept the observation\n");
            c->established = observing;
            if (observing && (c->max_count < 0 || ++c->count < c->max_count))
                break;
            stop_observing(c, status);
            break;
        }
        case M2M_COAP_EV_NOTIFY:
            show(c, &ev.msg);
            if (M2M_COAP_CODE_CLASS(ev.msg.code) != 2) {
                finish(c, CLI_PROTO_ERROR);
            } else if (c->max_count >= 0 && ++c->count >= c->max_count) {
                stop_observing(c, CLI_OK);
            }
            break;
        case M2M_COAP_EV_FAILED:
            if (!c->quiet)
                fprintf(stderr, "m2mkit coap: request failed: %s\n",
                        ev.err == M2M_ETIMEDOUT ? "no answer (timed out)"
                        : ev.err == M2M_ERESET  ? "rejected by the server (RST)"
                                                : m2m_strerror(ev.err));
            finish(c, CLI_FAILED);
            break;
        default: break;
        }
    }
}

static void on_deadline(uv_timer_t *t)
{
    struct client *c = t->data;
    if (c->deregistering) {
        finish(c, c->final_status);
        return;
    }
    if (!c->quiet && !c->observe)
        fprintf(stderr, "m2mkit coap: no answer within the wait time\n");
    if (c->observe)
        stop_observing(c, CLI_OK);
    else
        finish(c, CLI_FAILED);
}

static void on_sigint(uv_signal_t *s, int signum)
{
    struct client *c = s->data;
    (void)signum;
    if (c->observe)
        stop_observing(c, CLI_OK);
    else
        finish(c, CLI_FAILED);
}

static int resolve(const struct m2m_coap_uri *u, struct sockaddr_storage *ss)
{
    if (u->ip_literal)
        return m2m_sockaddr_parse(u->host, u->port, ss);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM};
    struct addrinfo *res = NULL;
    char port[8];
    snprintf(port, sizeof port, "%u", u->port);
    if (getaddrinfo(u->host, port, &hints, &res) || !res)
        return -1;
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return 0;
}

/* -O NUM=VALUE: text, 0xHEX bytes or #INTEGER (minimal big-endian). */
static int parse_extra(const char *arg, uint16_t *num, uint8_t *val, size_t cap, size_t *len)
{
    char *end;
    long n = strtol(arg, &end, 10);
    if (end == arg || *end != '=' || n < 1 || n > 65535)
        return -1;
    *num = (uint16_t)n;
    const char *v = end + 1;
    if (v[0] == '#') {
        unsigned long x = strtoul(v + 1, &end, 10);
        if (*end || x > 0xffffffffUL)
            return -1;
        *len = 0;
        uint8_t tmp[4];
        size_t k = 0;
        while (x) {
            tmp[k++] = (uint8_t)x;
            x >>= 8;
        }
        for (size_t i = 0; i < k; i++)
            val[i] = tmp[k - 1 - i];
        *len = k;
        return 0;
    }
    if (v[0] == '0' && v[1] == 'x') {
        size_t k = 0;
        for (const char *h = v + 2; h[0] && h[1]; h += 2) {
            char pair[3] = {h[0], h[1], 0};
            unsigned long b = strtoul(pair, &end, 16);
            if (*end || k >= cap)
                return -1;
            val[k++] = (uint8_t)b;
        }
        *len = k;
        return 0;
    }
    *len = strlen(v);
    if (*len > cap)
        return -1;
    memcpy(val, v, *len);
    return 0;
}

/* --psk-key: an even-length hex string is hex, anything else (or what
 * follows "text:") is the key's bytes as written. */
static int parse_psk_key(const char *s, uint8_t *out, size_t cap, size_t *len)
{
    size_t n = strlen(s);
    bool hex = n && n % 2 == 0 && strspn(s, "0123456789abcdefABCDEF") == n;
    if (!strncmp(s, "text:", 5)) {
        s += 5;
        n -= 5;
    }
    if (!hex) {
        if (!n || n > cap)
            return -1;
        memcpy(out, s, n);
        *len = n;
        return 0;
    }
    if (n / 2 > cap)
        return -1;
    for (size_t i = 0; i < n / 2; i++) {
        char pair[3] = {s[2 * i], s[2 * i + 1], 0};
        out[i] = (uint8_t)strtoul(pair, NULL, 16);
    }
    *len = n / 2;
    return 0;
}

int cmd_coap(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"type", required_argument, 0, 't'},    {"accept", required_argument, 0, 'A'},
        {"payload", required_argument, 0, 'p'}, {"block-size", required_argument, 0, 'b'},
        {"non", no_argument, 0, 'N'},           {"option", required_argument, 0, 'O'},
        {"output", required_argument, 0, 'o'},  {"raw", no_argument, 0, 'r'},
        {"count", required_argument, 0, 'c'},   {"wait", required_argument, 0, 'w'},
        {"quiet", no_argument, 0, 'q'},         {"verbose", no_argument, 0, 'v'},
        {"help", no_argument, 0, 'h'},          {"psk-identity", required_argument, 0, 1},
        {"psk-key", required_argument, 0, 2},   {"cafile", required_argument, 0, 3},
        {"cert", required_argument, 0, 4},      {"key", required_argument, 0, 5},
        {"cc", required_argument, 0, 6},        {0, 0, 0, 0}};
    const char *psk_identity = NULL, *psk_key = NULL, *cafile = NULL, *cert = NULL, *key = NULL;
    int fmt = -1, accept = -1;
    const char *payload_arg = NULL, *output = NULL;
    long block = 0, count = -1;
    double wait_s = -1;
    bool non = false, raw = false, quiet = false, verbose = false;
    uint16_t xnum[MAX_EXTRA_OPTS];
    uint8_t xval[MAX_EXTRA_OPTS][256];
    size_t xlen[MAX_EXTRA_OPTS];
    int nx = 0, ch, cc_mode = M2M_COAP_CC_DEFAULT;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "t:A:p:b:NO:o:rc:w:qvh", longopts, NULL)) != -1) {
        switch (ch) {
        case 't':
        case 'A': {
            int f = m2m_coap_format_parse(optarg);
            if (f < 0) {
                fprintf(stderr, "m2mkit coap: unknown content format '%s'\n", optarg);
                return CLI_USAGE;
            }
            *(ch == 't' ? &fmt : &accept) = f;
            break;
        }
        case 'p': payload_arg = optarg; break;
        case 'b':
            block = strtol(optarg, NULL, 10);
            if (block < 16 || block > 1024 || (block & (block - 1))) {
                fprintf(stderr, "m2mkit coap: block size must be a power of two in 16..1024\n");
                return CLI_USAGE;
            }
            break;
        case 'N': non = true; break;
        case 'O':
            if (nx == MAX_EXTRA_OPTS ||
                parse_extra(optarg, &xnum[nx], xval[nx], sizeof xval[nx], &xlen[nx])) {
                fprintf(stderr, "m2mkit coap: bad option '%s' (NUM=text, NUM=0xHEX or NUM=#INT)\n", optarg);
                return CLI_USAGE;
            }
            nx++;
            break;
        case 'o': output = optarg; break;
        case 'r': raw = true; break;
        case 'c': count = strtol(optarg, NULL, 10); break;
        case 'w': wait_s = strtod(optarg, NULL); break;
        case 'q': quiet = true; break;
        case 'v': verbose = true; break;
        case 'h': usage(stdout); return CLI_OK;
        case 1: psk_identity = optarg; break;
        case 2: psk_key = optarg; break;
        case 3: cafile = optarg; break;
        case 4: cert = optarg; break;
        case 5: key = optarg; break;
        case 6:
            if ((cc_mode = m2m_coap_cc_parse(optarg)) < 0) {
                fprintf(stderr, "m2mkit coap: --cc is 'default' or 'cocoa'\n");
                return CLI_USAGE;
            }
            break;
        default: usage(stderr); return CLI_USAGE;
        }
    }
    if (argc - optind != 2) {
        usage(stderr);
        return CLI_USAGE;
    }
    const char *method = argv[optind], *uri_s = argv[optind + 1];
    uint8_t code;
    bool observe = false, discover = false;
    if (!strcmp(method, "get"))
        code = M2M_COAP_GET;
    else if (!strcmp(method, "put"))
        code = M2M_COAP_PUT;
    else if (!strcmp(method, "post"))
        code = M2M_COAP_POST;
    else if (!strcmp(method, "delete"))
        code = M2M_COAP_DELETE;
    else if (!strcmp(method, "observe"))
        code = M2M_COAP_GET, observe = true;
    else if (!strcmp(method, "discover"))
        code = M2M_COAP_GET, discover = true;
    else {
        fprintf(stderr, "m2mkit coap: unknown method '%s'\n", method);
        return CLI_USAGE;
    }
    static struct m2m_coap_uri uri;
    if (m2m_coap_uri_parse(uri_s, &uri)) {
        fprintf(stderr, "m2mkit coap: cannot parse URI '%s'\n", uri_s);
        return CLI_USAGE;
    }
    if (!uri.secure && (psk_identity || psk_key || cafile || cert || key)) {
        fprintf(stderr, "m2mkit coap: --psk-*, --cafile, --cert and --key need a coaps:// URI\n");
        return CLI_USAGE;
    }
    if (!psk_identity != !psk_key) {
        fprintf(stderr, "m2mkit coap: --psk-identity and --psk-key go together\n");
        return CLI_USAGE;
    }
    uint8_t pskbuf[64];
    size_t psk_len = 0;
    if (psk_key && parse_psk_key(psk_key, pskbuf, sizeof pskbuf, &psk_len)) {
        fprintf(stderr, "m2mkit coap: the PSK must be 1 to 64 bytes\n");
        return CLI_USAGE;
    }
    if (discover && uri.npath == 0) {
        /* "discover coap://host" means its /.well-known/core */
        static const char *wk[2] = {".well-known", "core"};
        size_t used = 0;
        for (int i = 0; i < 2; i++) {
            size_t n = strlen(wk[i]);
            uri.path_off[i] = (uint16_t)(700 + used);
            uri.path_len[i] = (uint16_t)n;
            memcpy(uri.buf + 700 + used, wk[i], n + 1);
            used += n + 1;
        }
        uri.npath = 2;
    }
    struct sockaddr_storage dst;
    if (resolve(&uri, &dst)) {
        fprintf(stderr, "m2mkit coap: cannot resolve '%s'\n", uri.host);
        return CLI_FAILED;
    }
    unsigned char *payload_buf = NULL;
    size_t payload_len = 0;
    if (payload_arg && cli_read_payload(payload_arg, &payload_buf, &payload_len)) {
        fprintf(stderr, "m2mkit coap: cannot read payload '%s'\n", payload_arg + 1);
        return CLI_USAGE;
    }
    const unsigned char *payload = payload_buf ? payload_buf : (const unsigned char *)payload_arg;

    static struct client c;
    memset(&c, 0, sizeof c);
    c.observe = observe;
    c.raw = raw;
    c.quiet = quiet;
    c.max_count = count;
    cli_logger_init(&c.log, verbose ? M2M_LOG_DEBUG : M2M_LOG_WARN);
    if (output && !(c.out = fopen(output, "wb"))) {
        fprintf(stderr, "m2mkit coap: cannot write '%s'\n", output);
        free(payload_buf);
        return CLI_USAGE;
    }
    uint64_t seed;
    uv_random(NULL, NULL, &seed, sizeof seed, 0, NULL);
    m2m_prng_seed(&c.prng, seed);
    struct m2m_coap_config cc;
    m2m_coap_config_default(&cc);
    cc.rng = m2m_prng_rng(&c.prng);
    cc.log = &c.log;
    cc.max_body = 64u << 20;
    cc.cc = (enum m2m_coap_cc)cc_mode;
    if (block)
        cc.block_szx = m2m_coap_szx_for((size_t)block);
    int status = CLI_FAILED;
    struct m2m_dtls_ctx *dctx = NULL;
    c.ep = m2m_coap_ep_new(&cc);
    uv_loop_init(&c.loop);
    m2m_addr_from_sockaddr(&c.server, (struct sockaddr *)&dst);
    if (uri.secure && c.ep) {
        struct m2m_dtls_ctx_config dcfg = {.psk_identity = psk_identity,
                                           .psk_key = pskbuf,
                                           .psk_key_len = psk_len,
                                           .ca_file = cafile,
                                           .cert_file = cert,
                                           .key_file = key,
                                           .verify = M2M_DTLS_VERIFY_REQUIRE,
                                           .server_name = uri.host};
        char err[256];
        if (m2m_dtls_ctx_new(&dcfg, &dctx, err, sizeof err)) {
            fprintf(stderr, "m2mkit coap: %s\n", err);
            status = CLI_USAGE;
            goto out;
        }
        struct m2m_dtls_config dc;
        m2m_dtls_config_default(&dc);
        dc.log = &c.log;
        uv_random(NULL, NULL, &dc.hash_key, sizeof dc.hash_key, 0, NULL);
        if (!(c.dtls = m2m_dtls_new(dctx, &dc, &m2m_coap_wire_ops, c.ep))) {
            fprintf(stderr, "m2mkit coap: out of memory\n");
            goto out;
        }
    }
    struct sockaddr_storage local;
    m2m_sockaddr_parse(dst.ss_family == AF_INET6 ? "::" : "0.0.0.0", 0, &local);
    int rc = !c.ep    ? UV_ENOMEM
             : c.dtls ? m2m_udp_pump_start(&c.pump, &c.loop, (struct sockaddr *)&local, &m2m_dtls_wire_ops,
                                           c.dtls, on_react, &c, &c.log)
                      : m2m_udp_pump_start(&c.pump, &c.loop, (struct sockaddr *)&local, &m2m_coap_wire_ops,
                                           c.ep, on_react, &c, &c.log);
    if (rc) {
        fprintf(stderr, "m2mkit coap: cannot open a UDP socket: %s\n", uv_strerror(rc));
        goto out;
    }
    uv_timer_init(&c.loop, &c.deadline);
    c.deadline.data = &c;
    uv_signal_init(&c.loop, &c.sigint);
    c.sigint.data = &c;
    uv_signal_start(&c.sigint, on_sigint, SIGINT);

    struct m2m_coap_msg req;
    m2m_coap_msg_init(&req, non ? M2M_COAP_NON : M2M_COAP_CON, code);
    m2m_coap_uri_to_opts(&uri, &req);
    if (observe)
        m2m_coap_add_uint(&req, M2M_COAP_OPT_OBSERVE, 0);
    if (fmt >= 0)
        m2m_coap_add_uint(&req, M2M_COAP_OPT_CONTENT_FORMAT, (uint32_t)fmt);
    if (accept >= 0)
        m2m_coap_add_uint(&req, M2M_COAP_OPT_ACCEPT, (uint32_t)accept);
    for (int i = 0; i < nx; i++)
        m2m_coap_add_opt(&req, xnum[i], xval[i], xlen[i]);
    if (block && !payload_len) {
        /* Ask for that block size from the start (RFC 7959 §2.4 early negotiation). */
        struct m2m_coap_block b = {.num = 0, .more = false, .szx = cc.block_szx};
        m2m_coap_add_block(&req, M2M_COAP_OPT_BLOCK2, &b);
    }
    req.payload = payload;
    req.payload_len = payload ? payload_len : 0;
    rc = c.dtls ? m2m_dtls_connect(c.dtls, (m2m_time)uv_now(&c.loop), &c.server) : 0;
    if (!rc)
        rc = m2m_coap_request(c.ep, (m2m_time)uv_now(&c.loop), &c.server, &req, &c.id);
    if (rc) {
        fprintf(stderr, "m2mkit coap: cannot send the request: %s\n", m2m_strerror(rc));
        finish(&c, CLI_FAILED);
    } else {
        if (wait_s < 0)
            wait_s = observe ? 0 : 100;
        if (wait_s > 0)
            uv_timer_start(&c.deadline, on_deadline, (uint64_t)(wait_s * 1000), 0);
        m2m_udp_pump_flush(&c.pump);
    }
    uv_run(&c.loop, UV_RUN_DEFAULT);
    status = c.status;
out:
    uv_loop_close(&c.loop);
    m2m_dtls_free(c.dtls);
    m2m_dtls_ctx_free(dctx);
    memset(pskbuf, 0, sizeof pskbuf);
    m2m_coap_ep_free(c.ep);
    if (c.out)
        fclose(c.out);
    free(payload_buf);
    return status;
}
