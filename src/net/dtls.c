/* DTLS 1.2 as a datagram filter around an inner datagram core. */
#include "net/dtls.h"

#include <openssl/err.h>
#include <openssl/hmac.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "base/hmap.h"
#include "base/log.h"

#define REC_HDR 13 /* DTLS record header */
#define HS_HDR 12  /* DTLS handshake message header */
#define CT_HANDSHAKE 22
#define CT_APPDATA 23
#define HS_CLIENT_HELLO 1
#define COOKIE_LEN 16
#define MAX_RTX_MS 60000
#define PLAIN_MAX 16384  /* largest DTLS record plaintext */
#define CLIENT_WAITING 8 /* plaintext datagrams held until the client's handshake completes */
#define AEAD_OVERHEAD 37 /* record header + explicit nonce + tag, the largest of our suites */
#define PSK_MAX_KEY 64
#define PSK_MAX_ID 128

/* RFC 7252 §9.1.3.1 and RFC 7925 §4.3 / §5.3 suites beside modern AEAD
 * ones. The client lists the mandatory CCM_8 suite first, as a constrained
 * device would; the server follows the client's order. */
static const char server_ciphers[] =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-AES128-CCM8:ECDHE-ECDSA-AES128-CCM:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-RSA-CHACHA20-POLY1305:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-PSK-CHACHA20-POLY1305:"
    "PSK-AES128-GCM-SHA256:PSK-CHACHA20-POLY1305:PSK-AES256-GCM-SHA384:PSK-AES128-CCM8:PSK-AES128-CCM";
static const char client_psk_ciphers[] =
    "PSK-AES128-CCM8:PSK-AES128-GCM-SHA256:PSK-CHACHA20-POLY1305:ECDHE-PSK-CHACHA20-POLY1305:PSK-AES128-CCM";
static const char client_cert_ciphers[] =
    "ECDHE-ECDSA-AES128-CCM8:ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-CHACHA20-POLY1305:"
    "ECDHE-RSA-AES256-GCM-SHA384";

struct psk_entry {
    char *identity;
    uint8_t key[PSK_MAX_KEY];
    size_t key_len;
};

struct m2m_dtls_ctx {
    SSL_CTX *ssl;
    bool server;
    struct psk_entry *psk;
    size_t npsk;
    char client_identity[PSK_MAX_ID + 1];
    uint8_t client_key[PSK_MAX_KEY];
    size_t client_key_len;
    bool client_psk;
    char server_name[256];
    SSL_SESSION *session; /* client: the last session, offered again on the next connect */
};

/* One datagram waiting for poll_output (or, for a client, for the end of
 * its handshake). */
struct out_dgram {
    struct out_dgram *next;
    struct m2m_addr peer;
    size_t len;
    uint8_t data[];
};

struct peer;

/* What the BIO of one SSL object sees: the datagram being fed, the record
 * packing buffer and the retransmission timer. */
struct link {
    struct m2m_dtls *d;
    struct peer *peer; /* NULL for the listener */
    struct m2m_addr addr;
    const uint8_t *in;
    size_t in_len;
    struct timeval *tmo; /* OpenSSL's timer, taken over (see the header) */
    uint32_t timer_ms;
    m2m_time rtx_at;
    size_t pend_len;
    uint8_t *pend; /* mtu bytes */
};

enum dir { DIR_NONE, DIR_IN, DIR_OUT };

struct peer {
    struct m2m_hnode node;
    struct peer *prev, *next;   /* every peer */
    struct peer *hprev, *hnext; /* peers in handshake */
    bool in_hs, dead;
    struct link link;
    SSL *ssl;
    enum m2m_dtls_state state;
    m2m_time started, last_active;
    struct m2m_dtls_meter meter;
    enum dir last_dir;
    struct out_dgram *waiting, *waiting_tail;
    size_t nwaiting;
    uint8_t hello_random[32]; /* of the ClientHello that opened the session */
    char identity[PSK_MAX_ID + 1];
    char alert[64];
    char reason[160];
};

struct m2m_dtls {
    struct m2m_dtls_ctx *ctx;
    struct m2m_dtls_config cfg;
    const struct m2m_wire_ops *inner;
    void *inner_core;
    struct m2m_hmap peers;
    struct peer *all, *hs;
    size_t npeers;
    bool client, connected;
    SSL *listener;
    struct link lst;
    BIO_ADDR *lst_addr;
    uint8_t *lst_pend;
    struct out_dgram *q_head, *q_tail, *q_next;
    m2m_time now, sweep_at;
    uint32_t sweep_ms;
    struct m2m_dtls_stats stats;
    uint8_t *plain;
};

/* ---- the custom BIO ------------------------------------------------------ */

static BIO_METHOD *bio_method;

static void enqueue(struct m2m_dtls *d, struct out_dgram *o)
{
    o->next = NULL;
    if (d->q_tail)
        d->q_tail->next = o;
    else
        d->q_head = o;
    d->q_tail = o;
    if (!d->q_next)
        d->q_next = o;
}

static struct out_dgram *dgram_new(const struct m2m_addr *to, const uint8_t *p, size_t n)
{
    struct out_dgram *o = malloc(sizeof *o + n);
    if (!o)
        return NULL;
    o->next = NULL;
    o->peer = *to;
    o->len = n;
    memcpy(o->data, p, n);
    return o;
}

static bool is_handshake_record(const uint8_t *p, size_t n)
{
    return n && p[0] != CT_APPDATA;
}

static void meter_in(struct peer *p, const uint8_t *data, size_t n)
{
    struct m2m_dtls_meter *m = &p->meter;
    m->wire_in += n;
    m->dgrams_in++;
    if (is_handshake_record(data, n)) {
        m->hs_in += n;
        if (p->last_dir != DIR_IN)
            m->hs_flights_in++;
        p->last_dir = DIR_IN;
    }
}

/* Sends the packed records of `l` as one datagram. */
static void link_emit(struct link *l)
{
    if (!l->pend_len)
        return;
    struct m2m_dtls *d = l->d;
    struct out_dgram *o = dgram_new(&l->addr, l->pend, l->pend_len);
    if (!o) {
        d->stats.dropped++;
        l->pend_len = 0;
        return;
    }
    if (l->peer) {
        struct peer *p = l->peer;
        struct m2m_dtls_meter *m = &p->meter;
        m->wire_out += o->len;
        m->dgrams_out++;
        p->last_active = d->now;
        if (is_handshake_record(o->data, o->len)) {
            m->hs_out += o->len;
            if (p->last_dir != DIR_OUT)
                m->hs_flights_out++;
            p->last_dir = DIR_OUT;
        }
    } else {
        d->stats.cookies_sent++;
        d->stats.cookie_bytes_out += o->len;
    }
    l->pend_len = 0;
    enqueue(d, o);
}

static int bio_write(BIO *b, const char *buf, int len)
{
    struct link *l = BIO_get_data(b);
    size_t n = (size_t)len, mtu = l->d->cfg.mtu;
    if (len <= 0)
        return 0;
    /* Records of one flight share a datagram while they fit; OpenSSL sizes
     * its fragments with BIO_wpending, so a record never overflows one. */
    if (l->pend_len && l->pend_len + n > mtu)
        link_emit(l);
    if (n > mtu) {
        struct out_dgram *o = dgram_new(&l->addr, (const uint8_t *)buf, n);
        if (o)
            enqueue(l->d, o);
        return len;
    }
    memcpy(l->pend + l->pend_len, buf, n);
    l->pend_len += n;
    return len;
}

static int bio_read(BIO *b, char *buf, int size)
{
    struct link *l = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (!l->in) {
        BIO_set_retry_read(b);
        return -1;
    }
    /* A datagram is read whole or truncated, never split across reads. */
    size_t n = l->in_len < (size_t)size ? l->in_len : (size_t)size;
    memcpy(buf, l->in, n);
    l->in = NULL;
    return (int)n;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    struct link *l = BIO_get_data(b);
    (void)num;
    switch (cmd) {
    case BIO_CTRL_FLUSH: link_emit(l); return 1;
    case BIO_CTRL_WPENDING: return (long)l->pend_len;
    case BIO_CTRL_PENDING: return l->in ? (long)l->in_len : 0;
    case BIO_CTRL_DGRAM_SET_NEXT_TIMEOUT: {
        struct timeval *tv = ptr;
        l->tmo = tv;
        if (!tv->tv_sec && !tv->tv_usec) {
            l->rtx_at = M2M_NEVER;
        } else {
            /* OpenSSL set a wall-clock deadline; ours runs on the time fed
             * in, and theirs is pushed out of reach so that it never fires
             * on its own (on_timeout expires it when ours passes). */
            l->rtx_at = l->d->now + l->timer_ms;
            tv->tv_sec += 1L << 30;
        }
        return 1;
    }
    case BIO_CTRL_DGRAM_GET_MTU_OVERHEAD: return 0;
    case BIO_CTRL_DGRAM_QUERY_MTU:
    case BIO_CTRL_DGRAM_GET_FALLBACK_MTU: return (long)l->d->cfg.mtu;
    default: return 0;
    }
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

/* One BIO method per process, made once even with several loops. */
static void make_bio_method(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "m2m dtls datagram");
    if (!m)
        return;
    BIO_meth_set_write(m, bio_write);
    BIO_meth_set_read(m, bio_read);
    BIO_meth_set_ctrl(m, bio_ctrl);
    BIO_meth_set_create(m, bio_create);
    bio_method = m;
}

static int init_openssl(void)
{
    static CRYPTO_ONCE once = CRYPTO_ONCE_STATIC_INIT;
    if (!CRYPTO_THREAD_run_once(&once, make_bio_method) || !bio_method)
        return M2M_ENOMEM;
    return 0;
}

/* ---- context --------------------------------------------------------------- */

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int cmp_psk(const void *a, const void *b)
{
    return strcmp(((const struct psk_entry *)a)->identity, ((const struct psk_entry *)b)->identity);
}

static void free_psk(struct m2m_dtls_ctx *c)
{
    for (size_t i = 0; i < c->npsk; i++) {
        OPENSSL_cleanse(c->psk[i].key, sizeof c->psk[i].key);
        free(c->psk[i].identity);
    }
    free(c->psk);
    c->psk = NULL;
    c->npsk = 0;
}

/* "identity:hexkey" per line; '#' starts a comment line. */
static int load_psk(struct m2m_dtls_ctx *c, const char *path, char *err, size_t errcap)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errcap, "cannot read PSK file %s", path);
        return M2M_ECONFIG;
    }
    char line[512];
    size_t cap = 0, lineno = 0;
    int rc = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        size_t n = strcspn(line, "\r\n");
        line[n] = 0;
        if (!n || line[0] == '#')
            continue;
        char *colon = strrchr(line, ':');
        size_t idlen = colon ? (size_t)(colon - line) : 0;
        size_t hexlen = colon ? strlen(colon + 1) : 0;
        if (!colon || !idlen || idlen > PSK_MAX_ID || !hexlen || hexlen % 2 || hexlen / 2 > PSK_MAX_KEY) {
            snprintf(err, errcap, "%s:%zu: expected identity:hexkey (key up to %d bytes)", path, lineno,
                     PSK_MAX_KEY);
            rc = M2M_ECONFIG;
            break;
        }
        if (c->npsk == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            struct psk_entry *np = realloc(c->psk, ncap * sizeof *np);
            if (!np) {
                rc = M2M_ENOMEM;
                break;
            }
            c->psk = np;
            cap = ncap;
        }
        struct psk_entry *e = &c->psk[c->npsk];
        e->key_len = hexlen / 2;
        for (size_t i = 0; i < e->key_len; i++) {
            int hi = hexval(colon[1 + 2 * i]), lo = hexval(colon[2 + 2 * i]);
            if (hi < 0 || lo < 0) {
                snprintf(err, errcap, "%s:%zu: the key is not hexadecimal", path, lineno);
                rc = M2M_ECONFIG;
                break;
            }
            e->key[i] = (uint8_t)(hi << 4 | lo);
        }
        if (rc)
            break;
        *colon = 0;
        if (!(e->identity = strdup(line))) {
            rc = M2M_ENOMEM;
            break;
        }
        c->npsk++;
    }
    OPENSSL_cleanse(line, sizeof line);
    fclose(f);
    if (!rc && c->npsk)
        qsort(c->psk, c->npsk, sizeof *c->psk, cmp_psk);
    return rc;
}

static struct link *link_of(SSL *ssl)
{
    return SSL_get_app_data(ssl);
}

static unsigned int psk_server_cb(SSL *ssl, const char *identity, unsigned char *psk, unsigned int max)
{
    struct link *l = link_of(ssl);
    struct m2m_dtls_ctx *c = l->d->ctx;
    if (!identity || !c->npsk)
        return 0;
    struct psk_entry key = {.identity = (char *)identity};
    const struct psk_entry *e = bsearch(&key, c->psk, c->npsk, sizeof *c->psk, cmp_psk);
    if (!e || e->key_len > max)
        return 0;
    memcpy(psk, e->key, e->key_len);
    return (unsigned int)e->key_len;
}

static unsigned int psk_client_cb(SSL *ssl, const char *hint, char *identity, unsigned int max_identity,
                                  unsigned char *psk, unsigned int max_psk)
{
    struct m2m_dtls_ctx *c = link_of(ssl)->d->ctx;
    (void)hint;
    size_t idlen = strlen(c->client_identity);
    if (!c->client_psk || idlen + 1 > max_identity || c->client_key_len > max_psk)
        return 0;
    memcpy(identity, c->client_identity, idlen + 1);
    memcpy(psk, c->client_key, c->client_key_len);
    return (unsigned int)c->client_key_len;
}

/* The cookie is an HMAC of the peer's address with the filter's secret:
 * nothing is stored, a spoofed source cannot echo it (RFC 6347 §4.2.1). */
static void cookie_of(const struct m2m_dtls *d, const struct m2m_addr *a, uint8_t out[COOKIE_LEN])
{
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    HMAC(EVP_sha256(), d->cfg.cookie_secret, sizeof d->cfg.cookie_secret, a->b, a->len, md, &mdlen);
    memcpy(out, md, COOKIE_LEN);
}

static int cookie_gen_cb(SSL *ssl, unsigned char *cookie, unsigned int *len)
{
    struct link *l = link_of(ssl);
    cookie_of(l->d, &l->addr, cookie);
    *len = COOKIE_LEN;
    return 1;
}

static int cookie_verify_cb(SSL *ssl, const unsigned char *cookie, unsigned int len)
{
    struct link *l = link_of(ssl);
    uint8_t want[COOKIE_LEN];
    cookie_of(l->d, &l->addr, want);
    return len == COOKIE_LEN && !CRYPTO_memcmp(cookie, want, COOKIE_LEN);
}

static void info_cb(const SSL *ssl, int where, int ret)
{
    struct link *l = link_of((SSL *)ssl);
    if (!(where & SSL_CB_ALERT) || !(where & SSL_CB_READ) || !l || !l->peer)
        return;
    snprintf(l->peer->alert, sizeof l->peer->alert, "%s", SSL_alert_desc_string_long(ret));
}

static void ssl_error(char *err, size_t errcap, const char *what, const char *file)
{
    unsigned long e = ERR_peek_last_error();
    snprintf(err, errcap, "%s %s: %s", what, file, e ? ERR_reason_error_string(e) : "failed");
    ERR_clear_error();
}

static int load_credentials(struct m2m_dtls_ctx *c, const struct m2m_dtls_ctx_config *cfg, char *err,
                            size_t errcap)
{
    SSL_CTX *s = c->ssl;
    if (cfg->cert_file && cfg->cert_file[0]) {
        const char *key = cfg->key_file && cfg->key_file[0] ? cfg->key_file : cfg->cert_file;
        if (SSL_CTX_use_certificate_chain_file(s, cfg->cert_file) != 1) {
            ssl_error(err, errcap, "cannot load certificate", cfg->cert_file);
            return M2M_ECONFIG;
        }
        if (SSL_CTX_use_PrivateKey_file(s, key, SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(s) != 1) {
            ssl_error(err, errcap, "cannot load the key of the certificate from", key);
            return M2M_ECONFIG;
        }
    }
    bool have_ca = cfg->ca_file && cfg->ca_file[0];
    if (have_ca && SSL_CTX_load_verify_locations(s, cfg->ca_file, NULL) != 1) {
        ssl_error(err, errcap, "cannot load CA file", cfg->ca_file);
        return M2M_ECONFIG;
    }
    if (cfg->server) {
        int mode = SSL_VERIFY_NONE;
        if (cfg->verify != M2M_DTLS_VERIFY_NONE && have_ca) {
            mode = SSL_VERIFY_PEER;
            if (cfg->verify == M2M_DTLS_VERIFY_REQUIRE)
                mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
            STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cfg->ca_file);
            if (names)
                SSL_CTX_set_client_CA_list(s, names);
        } else if (cfg->verify == M2M_DTLS_VERIFY_REQUIRE) {
            snprintf(err, errcap, "client certificates are required but no CA file is set");
            return M2M_ECONFIG;
        }
        SSL_CTX_set_verify(s, mode, NULL);
    } else if (cfg->verify != M2M_DTLS_VERIFY_NONE) {
        if (!have_ca)
            SSL_CTX_set_default_verify_paths(s);
        SSL_CTX_set_verify(s, SSL_VERIFY_PEER, NULL);
    }
    if (cfg->server && cfg->psk_file && cfg->psk_file[0]) {
        int rc = load_psk(c, cfg->psk_file, err, errcap);
        if (rc)
            return rc;
        SSL_CTX_set_psk_server_callback(s, psk_server_cb);
    }
    if (!cfg->server && cfg->psk_identity) {
        if (strlen(cfg->psk_identity) > PSK_MAX_ID || !cfg->psk_key_len || cfg->psk_key_len > PSK_MAX_KEY) {
            snprintf(err, errcap, "PSK identity up to %d bytes and a key of 1 to %d bytes", PSK_MAX_ID,
                     PSK_MAX_KEY);
            return M2M_ECONFIG;
        }
        snprintf(c->client_identity, sizeof c->client_identity, "%s", cfg->psk_identity);
        memcpy(c->client_key, cfg->psk_key, cfg->psk_key_len);
        c->client_key_len = cfg->psk_key_len;
        c->client_psk = true;
        SSL_CTX_set_psk_client_callback(s, psk_client_cb);
    }
    if (cfg->server && !c->npsk && !(cfg->cert_file && cfg->cert_file[0])) {
        snprintf(err, errcap, "a DTLS server needs a certificate or a PSK file");
        return M2M_ECONFIG;
    }
    return 0;
}

int m2m_dtls_ctx_new(const struct m2m_dtls_ctx_config *cfg, struct m2m_dtls_ctx **out, char *err,
                     size_t errcap)
{
    *out = NULL;
    if (init_openssl()) {
        snprintf(err, errcap, "out of memory");
        return M2M_ENOMEM;
    }
    struct m2m_dtls_ctx *c = calloc(1, sizeof *c);
    if (!c || !(c->ssl = SSL_CTX_new(DTLS_method()))) {
        free(c);
        snprintf(err, errcap, "out of memory");
        return M2M_ENOMEM;
    }
    c->server = cfg->server;
    if (cfg->server_name)
        snprintf(c->server_name, sizeof c->server_name, "%s", cfg->server_name);
    SSL_CTX *s = c->ssl;
    SSL_CTX_set_min_proto_version(s, DTLS1_2_VERSION);
    SSL_CTX_set_max_proto_version(s, DTLS1_2_VERSION);
    /* The MTU is ours (SSL_set_mtu); renegotiation and compression stay off;
     * resumption uses the server's session cache, not tickets, whose
     * NewSessionTicket would weigh on every full handshake. */
    SSL_CTX_set_options(s, SSL_OP_NO_QUERY_MTU | SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                               SSL_OP_NO_TICKET);
    SSL_CTX_set_read_ahead(s, 1);
    SSL_CTX_set_info_callback(s, info_cb);
    const char *ciphers = cfg->server         ? server_ciphers
                          : cfg->psk_identity ? client_psk_ciphers
                                              : client_cert_ciphers;
    int rc = M2M_ECONFIG;
    if (SSL_CTX_set_cipher_list(s, ciphers) != 1) {
        ssl_error(err, errcap, "cipher list", "rejected");
        goto fail;
    }
    if (cfg->server) {
        SSL_CTX_set_cookie_generate_cb(s, cookie_gen_cb);
        SSL_CTX_set_cookie_verify_cb(s, cookie_verify_cb);
        static const unsigned char sid_ctx[] = "m2mkit-coaps";
        SSL_CTX_set_session_id_context(s, sid_ctx, sizeof sid_ctx - 1);
        SSL_CTX_set_session_cache_mode(s, cfg->session_cache ? SSL_SESS_CACHE_SERVER : SSL_SESS_CACHE_OFF);
    }
    rc = load_credentials(c, cfg, err, errcap);
    if (rc)
        goto fail;
    *out = c;
    return 0;
fail:
    m2m_dtls_ctx_free(c);
    return rc;
}

void m2m_dtls_ctx_free(struct m2m_dtls_ctx *c)
{
    if (!c)
        return;
    free_psk(c);
    OPENSSL_cleanse(c->client_key, sizeof c->client_key);
    SSL_SESSION_free(c->session);
    SSL_CTX_free(c->ssl);
    free(c);
}

size_t m2m_dtls_ctx_psk_count(const struct m2m_dtls_ctx *c)
{
    return c->npsk;
}

/* ---- peers ----------------------------------------------------------------- */

void m2m_dtls_config_default(struct m2m_dtls_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->mtu = 1280;
    cfg->max_peers = 10000;
    cfg->handshake_timeout_ms = 10000;
    cfg->idle_timeout_ms = 3600000;
    cfg->retransmit_ms = 1000;
}

static uint64_t addr_hash(const struct m2m_dtls *d, const struct m2m_addr *a)
{
    return m2m_hash_keyed(d->cfg.hash_key, a->b, a->len);
}

static bool addr_eq(const struct m2m_addr *a, const struct m2m_addr *b)
{
    return a->len == b->len && !memcmp(a->b, b->b, a->len);
}

static struct peer *find_peer(const struct m2m_dtls *d, const struct m2m_addr *a)
{
    for (struct m2m_hnode *n = m2m_hmap_first(&d->peers, addr_hash(d, a)); n; n = m2m_hmap_next(n)) {
        struct peer *p = M2M_CONTAINER_OF(n, struct peer, node);
        if (addr_eq(&p->link.addr, a))
            return p;
    }
    return NULL;
}

/* OpenSSL asks for the next retransmission interval: the configured first
 * one, then doubling up to 60 s (RFC 6347 §4.2.4.1). */
static unsigned int timer_cb(SSL *ssl, unsigned int prev_us)
{
    struct link *l = link_of(ssl);
    uint32_t ms = prev_us == 0 ? l->d->cfg.retransmit_ms : l->timer_ms * 2;
    if (ms > MAX_RTX_MS)
        ms = MAX_RTX_MS;
    l->timer_ms = ms;
    return ms * 1000u;
}

static SSL *new_ssl(struct m2m_dtls *d, struct link *l)
{
    SSL *ssl = SSL_new(d->ctx->ssl);
    BIO *b = ssl ? BIO_new(bio_method) : NULL;
    if (!b) {
        SSL_free(ssl);
        return NULL;
    }
    BIO_set_data(b, l);
    SSL_set_bio(ssl, b, b);
    SSL_set_app_data(ssl, l);
    SSL_set_mtu(ssl, (long)d->cfg.mtu);
    DTLS_set_timer_cb(ssl, timer_cb);
    return ssl;
}

static void hs_unlink(struct m2m_dtls *d, struct peer *p)
{
    if (!p->in_hs)
        return;
    if (p->hprev)
        p->hprev->hnext = p->hnext;
    else
        d->hs = p->hnext;
    if (p->hnext)
        p->hnext->hprev = p->hprev;
    p->in_hs = false;
}

static struct peer *peer_new(struct m2m_dtls *d, const struct m2m_addr *a)
{
    struct peer *p = calloc(1, sizeof *p + d->cfg.mtu);
    if (!p)
        return NULL;
    p->link.d = d;
    p->link.peer = p;
    p->link.addr = *a;
    p->link.pend = (uint8_t *)(p + 1);
    p->link.rtx_at = M2M_NEVER;
    p->state = M2M_DTLS_HANDSHAKE;
    p->started = p->last_active = d->now;
    m2m_hmap_insert(&d->peers, &p->node, addr_hash(d, a));
    p->next = d->all;
    if (d->all)
        d->all->prev = p;
    d->all = p;
    p->hnext = d->hs;
    if (d->hs)
        d->hs->hprev = p;
    d->hs = p;
    p->in_hs = true;
    d->npeers++;
    if (!d->sweep_at || d->sweep_at == M2M_NEVER)
        d->sweep_at = d->now + d->sweep_ms;
    return p;
}

static void free_waiting(struct peer *p)
{
    while (p->waiting) {
        struct out_dgram *o = p->waiting;
        p->waiting = o->next;
        free(o);
    }
    p->waiting_tail = NULL;
    p->nwaiting = 0;
}

static void peer_free(struct m2m_dtls *d, struct peer *p)
{
    hs_unlink(d, p);
    m2m_hmap_remove(&d->peers, &p->node);
    if (p->prev)
        p->prev->next = p->next;
    else
        d->all = p->next;
    if (p->next)
        p->next->prev = p->prev;
    d->npeers--;
    SSL_free(p->ssl);
    free_waiting(p);
    free(p);
}

/* Why the handshake or session failed, from the peer's alert, the
 * certificate check or OpenSSL's error queue. */
static void set_reason(struct peer *p, const char *fallback)
{
    if (p->reason[0])
        return;
    long vr = p->ssl ? SSL_get_verify_result(p->ssl) : X509_V_OK;
    unsigned long e = ERR_peek_last_error();
    if (fallback)
        snprintf(p->reason, sizeof p->reason, "%s", fallback);
    else if (p->alert[0])
        snprintf(p->reason, sizeof p->reason, "alert from the peer: %s", p->alert);
    else if (vr != X509_V_OK)
        snprintf(p->reason, sizeof p->reason, "certificate: %s", X509_verify_cert_error_string(vr));
    else if (e)
        snprintf(p->reason, sizeof p->reason, "%s", ERR_reason_error_string(e));
    else
        snprintf(p->reason, sizeof p->reason, "handshake failed");
    ERR_clear_error();
}

/* Handshake failed or timed out: the server forgets the peer (after its
 * alert leaves), a client keeps it to report why. */
static void fail_peer(struct m2m_dtls *d, struct peer *p, const char *why)
{
    set_reason(p, why);
    link_emit(&p->link);
    if (p->state == M2M_DTLS_HANDSHAKE) {
        d->stats.handshake_failures++;
        m2m_log(d->cfg.log, M2M_LOG_INFO, "dtls", &p->link.addr, "handshake failed: %s", p->reason);
    } else {
        m2m_log(d->cfg.log, M2M_LOG_DEBUG, "dtls", &p->link.addr, "session ended: %s", p->reason);
    }
    hs_unlink(d, p);
    p->state = M2M_DTLS_FAILED;
    free_waiting(p);
    if (!d->client)
        p->dead = true;
}

static void send_plain(struct m2m_dtls *d, struct peer *p, const uint8_t *data, size_t n)
{
    ERR_clear_error();
    int r = SSL_write(p->ssl, data, (int)n);
    if (r > 0)
        p->meter.app_out += n;
    else
        d->stats.dropped++;
    link_emit(&p->link);
}

static void established(struct m2m_dtls *d, struct peer *p)
{
    p->state = M2M_DTLS_ESTABLISHED;
    hs_unlink(d, p);
    p->link.rtx_at = M2M_NEVER;
    d->stats.handshakes++;
    struct m2m_dtls_meter *m = &p->meter;
    snprintf(m->version, sizeof m->version, "%s", SSL_get_version(p->ssl));
    snprintf(m->cipher, sizeof m->cipher, "%s", SSL_get_cipher_name(p->ssl));
    m->resumed = SSL_session_reused(p->ssl);
    const char *psk_id = SSL_get_psk_identity(p->ssl);
    X509 *cert = SSL_get0_peer_certificate(p->ssl);
    if (psk_id) {
        snprintf(p->identity, sizeof p->identity, "%s", psk_id);
    } else if (cert) {
        if (X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, p->identity,
                                      sizeof p->identity) < 0) {
            p->identity[0] = 0;
            GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
            for (int i = 0; names && i < sk_GENERAL_NAME_num(names); i++) {
                const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
                if (g->type == GEN_DNS) {
                    const unsigned char *s = ASN1_STRING_get0_data(g->d.dNSName);
                    snprintf(p->identity, sizeof p->identity, "%.*s", ASN1_STRING_length(g->d.dNSName),
                             (const char *)s);
                    break;
                }
            }
            GENERAL_NAMES_free(names);
        }
    }
    if (d->client && !m->resumed) {
        SSL_SESSION_free(d->ctx->session);
        d->ctx->session = SSL_get1_session(p->ssl);
    }
    m2m_log(d->cfg.log, M2M_LOG_DEBUG, "dtls", &p->link.addr, "session up: %s %s%s, identity '%s'",
            m->version, m->cipher, m->resumed ? " (resumed)" : "", p->identity);
    /* A client's plaintext that waited for the handshake goes now. */
    while (p->waiting) {
        struct out_dgram *o = p->waiting;
        p->waiting = o->next;
        send_plain(d, p, o->data, o->len);
        free(o);
    }
    p->waiting_tail = NULL;
    p->nwaiting = 0;
}

static void drive_handshake(struct m2m_dtls *d, struct peer *p)
{
    ERR_clear_error();
    int r = SSL_do_handshake(p->ssl);
    if (r == 1) {
        established(d, p);
        return;
    }
    int e = SSL_get_error(p->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return;
    fail_peer(d, p, NULL);
}

static void read_plain(struct m2m_dtls *d, struct peer *p)
{
    for (;;) {
        ERR_clear_error();
        int r = SSL_read(p->ssl, d->plain, PLAIN_MAX);
        if (r > 0) {
            p->meter.app_in += (uint64_t)r;
            d->inner->feed(d->inner_core, d->now, &p->link.addr, d->plain, (size_t)r);
            continue;
        }
        int e = SSL_get_error(p->ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            return;
        if (e == SSL_ERROR_ZERO_RETURN) {
            /* close_notify: answer with ours and forget the session. */
            SSL_shutdown(p->ssl);
            link_emit(&p->link);
            fail_peer(d, p, "closed by the peer (close_notify)");
            return;
        }
        fail_peer(d, p, NULL);
        return;
    }
}

static void peer_input(struct m2m_dtls *d, struct peer *p, const uint8_t *data, size_t n)
{
    meter_in(p, data, n);
    p->last_active = d->now;
    p->link.in = data;
    p->link.in_len = n;
    if (p->state == M2M_DTLS_HANDSHAKE)
        drive_handshake(d, p);
    if (p->state == M2M_DTLS_ESTABLISHED)
        read_plain(d, p);
    p->link.in = NULL;
    link_emit(&p->link);
}

/* ---- the server's stateless door ------------------------------------------- */

static void listener_reset(struct m2m_dtls *d)
{
    SSL_free(d->listener);
    d->listener = new_ssl(d, &d->lst);
}

#define HELLO_RANDOM (REC_HDR + HS_HDR + 2) /* after client_version */

static bool is_client_hello(const uint8_t *p, size_t n)
{
    return n >= HELLO_RANDOM + 32 && p[0] == CT_HANDSHAKE && p[3] == 0 && p[4] == 0 &&
           p[REC_HDR] == HS_CLIENT_HELLO;
}

/* A datagram from an address without a session: only a ClientHello may
 * open one, and only once it carries our cookie. Returns the new peer. */
static struct peer *door(struct m2m_dtls *d, const struct m2m_addr *from, const uint8_t *data, size_t n)
{
    if (!is_client_hello(data, n)) {
        d->stats.dropped++;
        return NULL;
    }
    if (!d->listener) {
        listener_reset(d);
        if (!d->listener) {
            d->stats.dropped++;
            return NULL;
        }
    }
    if (!d->cfg.no_cookie) {
        d->lst.addr = *from;
        d->lst.in = data;
        d->lst.in_len = n;
        ERR_clear_error();
        int r = DTLSv1_listen(d->listener, d->lst_addr);
        d->lst.in = NULL;
        link_emit(&d->lst);
        if (r <= 0) {
            d->stats.cookie_bytes_in += n;
            if (r < 0)
                listener_reset(d);
            ERR_clear_error();
            return NULL;
        }
        d->stats.cookies_ok++;
    }
    if (d->npeers >= d->cfg.max_peers) {
        d->stats.refused_full++;
        m2m_log(d->cfg.log, M2M_LOG_WARN, "dtls", from, "session limit (%zu) reached, handshake refused",
                d->cfg.max_peers);
        listener_reset(d);
        return NULL;
    }
    struct peer *p = peer_new(d, from);
    if (!p) {
        listener_reset(d);
        return NULL;
    }
    memcpy(p->hello_random, data + HELLO_RANDOM, sizeof p->hello_random);
    /* The listener's SSL object, which holds the verified ClientHello,
     * becomes the peer's; a fresh one waits for the next stranger. */
    p->ssl = d->listener;
    d->listener = NULL;
    BIO_set_data(SSL_get_rbio(p->ssl), &p->link);
    SSL_set_app_data(p->ssl, &p->link);
    listener_reset(d);
    if (d->cfg.no_cookie) {
        /* (DTLSv1_listen sets the accept state itself, and setting it again
         * would forget the verified hello.) */
        SSL_set_accept_state(p->ssl);
        peer_input(d, p, data, n);
    } else {
        meter_in(p, data, n);
        drive_handshake(d, p);
        link_emit(&p->link);
    }
    return p;
}

/* ---- the wire ops ------------------------------------------------------------ */

/* Output handed out before the last feed or timeout has been sent. */
static void drop_sent(struct m2m_dtls *d)
{
    while (d->q_head && d->q_head != d->q_next) {
        struct out_dgram *o = d->q_head;
        d->q_head = o->next;
        free(o);
    }
    if (!d->q_head)
        d->q_tail = NULL;
}

static void reap(struct m2m_dtls *d)
{
    for (struct peer *p = d->all, *next; p; p = next) {
        next = p->next;
        if (p->dead)
            peer_free(d, p);
    }
}

static int dtls_feed(void *core, m2m_time now, const struct m2m_addr *from, const uint8_t *data, size_t n)
{
    struct m2m_dtls *d = core;
    drop_sent(d);
    d->now = now;
    if (n < REC_HDR) {
        /* Not even a record header: nothing OpenSSL should see (an empty
         * read would look like the end of the stream). */
        d->stats.dropped++;
        return 0;
    }
    struct peer *p = find_peer(d, from);
    if (p && p->state == M2M_DTLS_ESTABLISHED && !d->client && is_client_hello(data, n)) {
        /* RFC 6347 §4.2.8: a ClientHello in epoch 0 on a live session is a
         * rebooted client. The old session goes only once the new hello
         * proves the address with a cookie, and a late or replayed copy of
         * the hello that opened it (same random) changes nothing. */
        if (!memcmp(data + HELLO_RANDOM, p->hello_random, sizeof p->hello_random)) {
            d->stats.dropped++;
            return 0;
        }
        m2m_hmap_remove(&d->peers, &p->node);
        d->npeers--;
        struct peer *fresh = door(d, from, data, n);
        d->npeers++;
        m2m_hmap_insert(&d->peers, &p->node, addr_hash(d, from));
        if (fresh)
            p->dead = true;
        reap(d);
        return 0;
    }
    if (!p) {
        if (d->client) {
            d->stats.dropped++;
            return 0;
        }
        door(d, from, data, n);
    } else if (p->state != M2M_DTLS_FAILED) {
        peer_input(d, p, data, n);
    }
    reap(d);
    return 0;
}

static int dtls_poll_output(void *core, struct m2m_dgram *out)
{
    struct m2m_dtls *d = core;
    for (;;) {
        if (d->q_next) {
            struct out_dgram *o = d->q_next;
            d->q_next = o->next;
            out->peer = o->peer;
            out->data = o->data;
            out->len = o->len;
            return 1;
        }
        struct m2m_dgram in;
        if (d->inner->poll_output(d->inner_core, &in) != 1)
            return 0;
        struct peer *p = find_peer(d, &in.peer);
        if (!p) {
            d->stats.dropped++;
            continue;
        }
        if (p->state == M2M_DTLS_HANDSHAKE && d->client && p->nwaiting < CLIENT_WAITING) {
            struct out_dgram *o = dgram_new(&in.peer, in.data, in.len);
            if (!o)
                continue;
            if (p->waiting_tail)
                p->waiting_tail->next = o;
            else
                p->waiting = o;
            p->waiting_tail = o;
            p->nwaiting++;
            continue;
        }
        if (p->state != M2M_DTLS_ESTABLISHED || in.len > d->cfg.mtu - AEAD_OVERHEAD) {
            d->stats.dropped++;
            continue;
        }
        send_plain(d, p, in.data, in.len);
    }
}

static m2m_time dtls_next_timeout(const void *core)
{
    const struct m2m_dtls *d = core;
    m2m_time t = d->inner->next_timeout(d->inner_core);
    if (d->npeers && d->sweep_at < t)
        t = d->sweep_at;
    for (const struct peer *p = d->hs; p; p = p->hnext) {
        m2m_time hs_end = p->started + d->cfg.handshake_timeout_ms;
        if (hs_end < t)
            t = hs_end;
        if (p->link.rtx_at < t)
            t = p->link.rtx_at;
    }
    return t;
}

static void sweep(struct m2m_dtls *d)
{
    for (struct peer *p = d->all; p; p = p->next) {
        if (p->state != M2M_DTLS_ESTABLISHED || d->now - p->last_active < (m2m_time)d->cfg.idle_timeout_ms)
            continue;
        d->stats.idle_closed++;
        SSL_shutdown(p->ssl);
        link_emit(&p->link);
        fail_peer(d, p, "idle timeout");
    }
    d->sweep_at = d->npeers ? d->now + d->sweep_ms : M2M_NEVER;
}

static void dtls_on_timeout(void *core, m2m_time now)
{
    struct m2m_dtls *d = core;
    drop_sent(d);
    d->now = now;
    for (struct peer *p = d->hs, *next; p; p = next) {
        next = p->hnext;
        if (now >= p->started + d->cfg.handshake_timeout_ms) {
            d->stats.handshake_timeouts++;
            /* DTLS drops records it cannot decrypt without a word (RFC 6347
             * §4.1.2.7), so a wrong key shows as silence after our Finished. */
            fail_peer(d, p,
                      d->client && SSL_get_state(p->ssl) == TLS_ST_CW_FINISHED
                          ? "handshake timeout: no answer to our Finished (wrong PSK?)"
                          : "handshake timeout");
            continue;
        }
        if (now < p->link.rtx_at || !p->link.tmo)
            continue;
        /* Our deadline passed: make OpenSSL's look passed too, and let it
         * send the flight again with the doubled interval. */
        p->link.tmo->tv_sec = 1;
        p->link.tmo->tv_usec = 0;
        p->link.rtx_at = M2M_NEVER;
        p->meter.retransmits++;
        p->last_dir = DIR_NONE; /* a flight sent again is a flight */
        ERR_clear_error();
        int r = DTLSv1_handle_timeout(p->ssl);
        struct timeval left;
        if (r < 0) {
            fail_peer(d, p, NULL);
        } else if (r == 0 && DTLSv1_get_timeout(p->ssl, &left)) {
            /* OpenSSL did not see its timer expire: a version whose BIO
             * hook hands out a copy of the timer. Fall back to its wall
             * clock rather than stall. */
            p->meter.retransmits--;
            p->link.rtx_at = now + (m2m_time)left.tv_sec * 1000 + left.tv_usec / 1000 + 1;
        }
        link_emit(&p->link);
    }
    if (now >= d->sweep_at)
        sweep(d);
    d->inner->on_timeout(d->inner_core, now);
    reap(d);
}

const struct m2m_wire_ops m2m_dtls_wire_ops = {
    .name = "dtls",
    .feed = dtls_feed,
    .poll_output = dtls_poll_output,
    .next_timeout = dtls_next_timeout,
    .on_timeout = dtls_on_timeout,
};

/* ---- lifecycle --------------------------------------------------------------- */

struct m2m_dtls *m2m_dtls_new(struct m2m_dtls_ctx *ctx, const struct m2m_dtls_config *cfg,
                              const struct m2m_wire_ops *inner, void *inner_core)
{
    if (!ctx || cfg->mtu < 256 || cfg->mtu > 65507 || !cfg->max_peers || !cfg->retransmit_ms)
        return NULL;
    struct m2m_dtls *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    d->ctx = ctx;
    d->cfg = *cfg;
    d->inner = inner;
    d->inner_core = inner_core;
    d->client = !ctx->server;
    d->sweep_at = M2M_NEVER;
    uint32_t s = cfg->idle_timeout_ms / 8;
    d->sweep_ms = s < 100 ? 100 : s > 60000 ? 60000 : s;
    d->lst.d = d;
    d->lst.rtx_at = M2M_NEVER;
    d->plain = malloc(PLAIN_MAX);
    d->lst.pend = malloc(cfg->mtu);
    d->lst_addr = BIO_ADDR_new();
    if (!d->plain || !d->lst.pend || !d->lst_addr || m2m_hmap_init(&d->peers, 64)) {
        m2m_dtls_free(d);
        return NULL;
    }
    if (!d->client) {
        listener_reset(d);
        if (!d->listener) {
            m2m_dtls_free(d);
            return NULL;
        }
    }
    return d;
}

void m2m_dtls_free(struct m2m_dtls *d)
{
    if (!d)
        return;
    while (d->all)
        peer_free(d, d->all);
    d->q_next = NULL;
    drop_sent(d);
    SSL_free(d->listener);
    BIO_ADDR_free(d->lst_addr);
    if (d->peers.b)
        m2m_hmap_cleanup(&d->peers);
    free(d->lst.pend);
    free(d->plain);
    free(d);
}

int m2m_dtls_connect(struct m2m_dtls *d, m2m_time now, const struct m2m_addr *server)
{
    if (!d->client || d->connected)
        return M2M_ESTATE;
    drop_sent(d);
    d->now = now;
    struct peer *p = peer_new(d, server);
    if (!p || !(p->ssl = new_ssl(d, &p->link))) {
        if (p)
            peer_free(d, p);
        return M2M_ENOMEM;
    }
    d->connected = true;
    SSL_set_connect_state(p->ssl);
    if (d->ctx->session)
        SSL_set_session(p->ssl, d->ctx->session); /* abbreviated handshake if the server still has it */
    const char *name = d->ctx->server_name;
    if (name[0] && X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(p->ssl), name) != 1) {
        /* A host name: SNI, and the certificate must carry it. */
        ERR_clear_error();
        SSL_set_tlsext_host_name(p->ssl, name);
        SSL_set1_host(p->ssl, name);
    }
    drive_handshake(d, p);
    link_emit(&p->link);
    return 0;
}

int m2m_dtls_close(struct m2m_dtls *d, const struct m2m_addr *peer)
{
    struct peer *p = find_peer(d, peer);
    if (!p)
        return M2M_ENOTFOUND;
    if (p->state == M2M_DTLS_ESTABLISHED) {
        SSL_shutdown(p->ssl);
        link_emit(&p->link);
    }
    if (d->client) {
        hs_unlink(d, p);
        snprintf(p->reason, sizeof p->reason, "closed");
        p->state = M2M_DTLS_FAILED;
    } else {
        peer_free(d, p);
    }
    return 0;
}

void m2m_dtls_close_all(struct m2m_dtls *d)
{
    while (d->all && !d->client)
        m2m_dtls_close(d, &d->all->link.addr);
    if (d->client && d->all)
        m2m_dtls_close(d, &d->all->link.addr);
}

enum m2m_dtls_state m2m_dtls_peer(const struct m2m_dtls *d, const struct m2m_addr *peer,
                                  struct m2m_dtls_peer_info *info)
{
    const struct peer *p = find_peer(d, peer);
    if (info) {
        memset(info, 0, sizeof *info);
        info->identity = info->reason = "";
        if (p) {
            info->state = p->state;
            info->meter = p->meter;
            info->identity = p->identity;
            info->reason = p->reason;
        }
    }
    return p ? p->state : M2M_DTLS_NONE;
}

size_t m2m_dtls_peer_count(const struct m2m_dtls *d)
{
    return d->npeers;
}

const struct m2m_dtls_stats *m2m_dtls_stats(const struct m2m_dtls *d)
{
    return &d->stats;
}
