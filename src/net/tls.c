#include "net/tls.h"

#include <assert.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "m2m/err.h"

/* Ciphertext handed out by one poll_output at most; inner output is
 * encrypted only while less than this waits, which bounds the write BIO. */
#define TLS_OUT_CAP 65536
/* Plaintext read per SSL_read: one full record. */
#define TLS_READ_CHUNK 16384
#define TLS_PSK_KEY_MAX 64
#define TLS_IDENTITY_MAX 128
#define TLS_ALPN_MAX 255

/* TLS 1.2 suites: ECDHE with AEAD first, then the CCM_8 suites RFC 7252 and
 * RFC 7925 make mandatory for constrained devices, then PSK. A client or
 * server without a PSK callback never offers the PSK ones. */
static const char tls12_ciphers[] = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                                    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                                    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
                                    "ECDHE-ECDSA-AES128-CCM8:ECDHE-ECDSA-AES128-CCM:"
                                    "PSK-AES128-GCM-SHA256:PSK-AES128-CCM8:PSK-AES128-CCM";
/* A PSK client offers only PSK suites, so a server that also has a
 * certificate cannot pick a certificate suite the client cannot verify. */
static const char tls12_psk_ciphers[] = "PSK-AES128-GCM-SHA256:PSK-AES128-CCM8:PSK-AES128-CCM";
static const char tls13_suites[] =
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";

/* One line of the server's PSK file. */
struct psk_entry {
    char *identity;
    uint8_t key[TLS_PSK_KEY_MAX];
    size_t key_len;
};

struct m2m_tls_ctx {
    SSL_CTX *ssl;
    bool server;
    enum m2m_tls_verify verify;
    uint32_t handshake_timeout_ms;
    char *server_name;
    uint8_t alpn[TLS_ALPN_MAX + 1]; /* wire format: length-prefixed names */
    size_t alpn_len;
    /* server: sorted by identity for bsearch */
    struct psk_entry *psk;
    size_t psk_n;
    /* client */
    char *psk_identity;
    uint8_t psk_key[TLS_PSK_KEY_MAX];
    size_t psk_key_len;
    /* Client resumption: the last session the server gave us, offered by the
     * next connection. The only state that changes after creation. */
    SSL_SESSION *last_session;
};

enum tls_state {
    TLS_HANDSHAKE, /* handshake records both ways */
    TLS_OPEN,      /* application data both ways */
    TLS_CLOSING,   /* m2m_tls_close: the inner output, then close_notify */
    TLS_DONE,      /* nothing more than what the write BIO holds will be written */
};

struct m2m_tls {
    struct m2m_tls_ctx *ctx;
    SSL *ssl;
    BIO *rbio, *wbio; /* memory BIOs: wire bytes in, wire bytes out */
    const struct m2m_stream_ops *inner;
    void *inner_core;
    enum tls_state state;
    const char *reason;
    char reason_buf[160];
    m2m_time start, now;
    bool started;    /* a client sent its ClientHello */
    bool first_seen; /* a server checked the first byte for a TLS record */

    uint8_t *out;
    size_t out_cap;

    struct m2m_tls_meter meter;
    int last_hs_dir; /* direction of the last handshake message: -1 none, 0 in, 1 out */
    int rec_dir;     /* direction and size of the last record header seen */
    uint64_t rec_len;
    bool rec_counted_hs;
    char identity[TLS_IDENTITY_MAX];
    bool has_identity;
    char alpn[TLS_ALPN_MAX + 1];
};

static int ssl_index = -1; /* SSL ex_data slot holding the struct m2m_tls */

/* ---- state and errors ----------------------------------------------------- */

static void set_state(struct m2m_tls *t, enum tls_state to, const char *why)
{
    assert(to >= t->state);
    if (to >= TLS_CLOSING && !t->reason)
        t->reason = why;
    t->state = to;
}

/* The reason for a failed SSL call: OpenSSL's, from its error queue, which
 * is emptied so it does not leak into the next connection's. */
static void fail_ssl(struct m2m_tls *t, const char *what)
{
    unsigned long e = ERR_peek_last_error();
    if (!t->reason) {
        const char *r = e ? ERR_reason_error_string(e) : NULL;
        snprintf(t->reason_buf, sizeof t->reason_buf, "%s: %s", what, r ? r : "failed");
        t->reason = t->reason_buf;
    }
    ERR_clear_error();
    set_state(t, TLS_DONE, t->reason);
}

/* ---- meters --------------------------------------------------------------- */

static bool hs_record_type(int type)
{
    return type == SSL3_RT_HANDSHAKE || type == SSL3_RT_CHANGE_CIPHER_SPEC;
}

/* OpenSSL reports each record header and, for TLS 1.3, the real (inner)
 * type after it; handshake bytes are the records that carry handshake
 * messages or ChangeCipherSpec, and alerts before the handshake completes.
 * Flights are the changes of direction of handshake messages, tickets and
 * key updates after the handshake left out. */
static void msg_cb(int write_p, int version, int content_type, const void *buf, size_t len, SSL *ssl,
                   void *arg)
{
    (void)version;
    (void)arg;
    struct m2m_tls *t = SSL_get_ex_data(ssl, ssl_index);
    if (!t)
        return;
    const uint8_t *b = buf;
    uint64_t *hs = write_p ? &t->meter.hs_out : &t->meter.hs_in;
    if (content_type == SSL3_RT_HEADER && len >= 5) {
        t->rec_dir = write_p;
        t->rec_len = 5 + ((uint64_t)b[3] << 8 | b[4]);
        t->rec_counted_hs = hs_record_type(b[0]) || (b[0] == SSL3_RT_ALERT && t->state == TLS_HANDSHAKE);
        if (t->rec_counted_hs)
            *hs += t->rec_len;
    } else if (content_type == SSL3_RT_INNER_CONTENT_TYPE && len == 1 && t->rec_dir == write_p) {
        bool is_hs = hs_record_type(b[0]) || (b[0] == SSL3_RT_ALERT && t->state == TLS_HANDSHAKE);
        if (is_hs && !t->rec_counted_hs)
            *hs += t->rec_len;
        else if (!is_hs && t->rec_counted_hs)
            *hs -= t->rec_len;
        t->rec_counted_hs = is_hs;
    } else if (content_type == SSL3_RT_HANDSHAKE && len >= 1) {
        if (b[0] == SSL3_MT_NEWSESSION_TICKET || b[0] == SSL3_MT_KEY_UPDATE || b[0] == SSL3_MT_HELLO_REQUEST)
            return;
        if (t->last_hs_dir != write_p) {
            t->last_hs_dir = write_p;
            if (write_p)
                t->meter.hs_flights_out++;
            else
                t->meter.hs_flights_in++;
        }
    }
}

/* ---- context -------------------------------------------------------------- */

static void errf(char *err, size_t cap, const char *fmt, const char *a)
{
    if (!err || !cap)
        return;
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    char head[256];
    snprintf(head, sizeof head, fmt, a ? a : "");
    if (r)
        snprintf(err, cap, "%s: %s", head, r);
    else
        snprintf(err, cap, "%s", head);
    ERR_clear_error();
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Hex to bytes; false on an odd length, a bad digit or more than cap bytes. */
static bool parse_hex(const char *s, size_t n, uint8_t *out, size_t cap, size_t *len)
{
    if (n % 2 || n / 2 > cap || n == 0)
        return false;
    for (size_t i = 0; i < n; i += 2) {
        int hi = hexval((unsigned char)s[i]), lo = hexval((unsigned char)s[i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        out[i / 2] = (uint8_t)(hi << 4 | lo);
    }
    *len = n / 2;
    return true;
}

static int psk_cmp(const void *a, const void *b)
{
    return strcmp(((const struct psk_entry *)a)->identity, ((const struct psk_entry *)b)->identity);
}

/* "identity:hexkey" per line; blank lines and lines starting with '#' are
 * skipped. The identity is what m2m_tls_peer_identity reports. */
static int load_psk_file(struct m2m_tls_ctx *c, const char *path, char *err, size_t errcap)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        errf(err, errcap, "psk file %s: cannot open", path);
        return M2M_ECONFIG;
    }
    char line[512];
    int rc = 0, lineno = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        size_t n = strcspn(line, "\r\n");
        line[n] = 0;
        while (n && isspace((unsigned char)line[n - 1]))
            line[--n] = 0;
        if (!n || line[0] == '#')
            continue;
        char *colon = strrchr(line, ':');
        struct psk_entry e = {0};
        if (!colon || colon == line || colon - line >= TLS_IDENTITY_MAX ||
            !parse_hex(colon + 1, strlen(colon + 1), e.key, sizeof e.key, &e.key_len)) {
            char where[64];
            snprintf(where, sizeof where, "%d", lineno);
            errf(err, errcap, "psk file line %s: expected identity:hexkey", where);
            rc = M2M_ECONFIG;
            break;
        }
        *colon = 0;
        struct psk_entry *grown = realloc(c->psk, (c->psk_n + 1) * sizeof *grown);
        e.identity = strdup(line);
        if (!grown || !e.identity) {
            if (grown)
                c->psk = grown;
            free(e.identity);
            rc = M2M_ENOMEM;
            break;
        }
        c->psk = grown;
        c->psk[c->psk_n++] = e;
    }
    fclose(f);
    if (!rc && c->psk_n)
        qsort(c->psk, c->psk_n, sizeof *c->psk, psk_cmp);
    else if (!rc) {
        errf(err, errcap, "psk file %s: no entries", path);
        rc = M2M_ECONFIG;
    }
    return rc;
}

static unsigned int psk_server_cb(SSL *ssl, const char *identity, unsigned char *psk, unsigned int max)
{
    struct m2m_tls *t = SSL_get_ex_data(ssl, ssl_index);
    if (!t || !identity)
        return 0;
    struct psk_entry key = {.identity = (char *)identity};
    const struct psk_entry *e = bsearch(&key, t->ctx->psk, t->ctx->psk_n, sizeof key, psk_cmp);
    if (!e || e->key_len > max)
        return 0; /* unknown identity: the handshake fails like a wrong key */
    memcpy(psk, e->key, e->key_len);
    snprintf(t->identity, sizeof t->identity, "%s", identity);
    t->has_identity = true;
    return (unsigned int)e->key_len;
}

static unsigned int psk_client_cb(SSL *ssl, const char *hint, char *identity, unsigned int max_identity,
                                  unsigned char *psk, unsigned int max_psk)
{
    (void)hint;
    struct m2m_tls *t = SSL_get_ex_data(ssl, ssl_index);
    if (!t)
        return 0;
    const struct m2m_tls_ctx *c = t->ctx;
    if (strlen(c->psk_identity) + 1 > max_identity || c->psk_key_len > max_psk)
        return 0;
    memcpy(identity, c->psk_identity, strlen(c->psk_identity) + 1);
    memcpy(psk, c->psk_key, c->psk_key_len);
    return (unsigned int)c->psk_key_len;
}

/* The server picks its first protocol that the client offers; a client
 * that offers none of ours is served without ALPN rather than refused, so
 * clients that send a vendor name still connect. */
static int alpn_select_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                          unsigned int inlen, void *arg)
{
    (void)ssl;
    struct m2m_tls_ctx *c = arg;
    unsigned char *sel = NULL;
    unsigned char sel_len = 0;
    if (SSL_select_next_proto(&sel, &sel_len, c->alpn, (unsigned int)c->alpn_len, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = sel;
    *outlen = sel_len;
    return SSL_TLSEXT_ERR_OK;
}

static int new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
    struct m2m_tls *t = SSL_get_ex_data(ssl, ssl_index);
    if (!t)
        return 0;
    SSL_SESSION_free(t->ctx->last_session);
    t->ctx->last_session = sess;
    return 1; /* we keep the reference */
}

/* "mqtt,coap" to the wire format (1-byte length before each name). */
static bool build_alpn(struct m2m_tls_ctx *c, const char *list)
{
    size_t n = 0;
    const char *p = list;
    while (*p) {
        size_t k = strcspn(p, ",");
        if (k == 0 || k > 255 || n + 1 + k > TLS_ALPN_MAX)
            return false;
        c->alpn[n++] = (uint8_t)k;
        memcpy(c->alpn + n, p, k);
        n += k;
        p += k;
        if (*p == ',')
            p++;
    }
    c->alpn_len = n;
    return n > 0;
}

static int tls_version(int v)
{
    return v == 0x0304 ? TLS1_3_VERSION : TLS1_2_VERSION;
}

int m2m_tls_ctx_new(const struct m2m_tls_ctx_config *cfg, struct m2m_tls_ctx **out, char *err, size_t errcap)
{
    int rc = M2M_ECONFIG;
    *out = NULL;
    if (ssl_index < 0) {
        ssl_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
        if (ssl_index < 0) {
            errf(err, errcap, "tls: no ex_data index%s", NULL);
            return M2M_ENOMEM;
        }
    }
    if ((cfg->min_version && cfg->min_version != 0x0303 && cfg->min_version != 0x0304) ||
        (cfg->max_version && cfg->max_version != 0x0303 && cfg->max_version != 0x0304) ||
        (cfg->max_version && cfg->min_version > cfg->max_version)) {
        errf(err, errcap, "tls: only TLS 1.2 (0x0303) and 1.3 (0x0304) are supported%s", NULL);
        return M2M_ECONFIG;
    }
    bool psk_client = !cfg->server && cfg->psk_identity && cfg->psk_key_len;
    if (cfg->server && !cfg->cert_file && !cfg->psk_file) {
        errf(err, errcap, "tls: a server needs a certificate or a PSK file%s", NULL);
        return M2M_ECONFIG;
    }
    if (!cfg->cert_file != !cfg->key_file) {
        errf(err, errcap, "tls: a certificate needs its key and a key its certificate%s", NULL);
        return M2M_ECONFIG;
    }
    if (psk_client && (cfg->psk_key_len > TLS_PSK_KEY_MAX || strlen(cfg->psk_identity) >= TLS_IDENTITY_MAX)) {
        errf(err, errcap, "tls: PSK key longer than 64 bytes or identity longer than 127%s", NULL);
        return M2M_ECONFIG;
    }

    struct m2m_tls_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return M2M_ENOMEM;
    c->server = cfg->server;
    c->verify = cfg->verify;
    c->handshake_timeout_ms = cfg->handshake_timeout_ms ? cfg->handshake_timeout_ms : 10000;
    c->ssl = SSL_CTX_new(cfg->server ? TLS_server_method() : TLS_client_method());
    if (!c->ssl) {
        errf(err, errcap, "tls: SSL_CTX_new%s", NULL);
        rc = M2M_ENOMEM;
        goto fail;
    }
    SSL_CTX *s = c->ssl;
    SSL_CTX_set_min_proto_version(s, tls_version(cfg->min_version));
    SSL_CTX_set_max_proto_version(s, cfg->max_version ? tls_version(cfg->max_version) : TLS1_3_VERSION);
    SSL_CTX_set_options(s, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION);
    /* Idle connections give their record buffers back: M2M brokers hold
     * many of them. */
    SSL_CTX_set_mode(s, SSL_MODE_RELEASE_BUFFERS);
    if (!SSL_CTX_set_cipher_list(s, psk_client ? tls12_psk_ciphers : tls12_ciphers) ||
        !SSL_CTX_set_ciphersuites(s, tls13_suites)) {
        errf(err, errcap, "tls: cipher suites%s", NULL);
        goto fail;
    }
    SSL_CTX_set_msg_callback(s, msg_cb);

    if (cfg->cert_file) {
        if (SSL_CTX_use_certificate_chain_file(s, cfg->cert_file) != 1) {
            errf(err, errcap, "tls: certificate %s", cfg->cert_file);
            goto fail;
        }
        if (SSL_CTX_use_PrivateKey_file(s, cfg->key_file, SSL_FILETYPE_PEM) != 1) {
            errf(err, errcap, "tls: key %s", cfg->key_file);
            goto fail;
        }
        if (SSL_CTX_check_private_key(s) != 1) {
            errf(err, errcap, "tls: key %s does not match the certificate", cfg->key_file);
            goto fail;
        }
    }
    if (cfg->ca_file) {
        if (SSL_CTX_load_verify_locations(s, cfg->ca_file, NULL) != 1) {
            errf(err, errcap, "tls: CA file %s", cfg->ca_file);
            goto fail;
        }
        if (cfg->server) {
            STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cfg->ca_file);
            if (names)
                SSL_CTX_set_client_CA_list(s, names);
        }
    } else if (!cfg->server && cfg->verify != M2M_TLS_VERIFY_NONE && !psk_client) {
        SSL_CTX_set_default_verify_paths(s);
    }
    if (cfg->server) {
        if (cfg->verify == M2M_TLS_VERIFY_REQUIRE)
            SSL_CTX_set_verify(s, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
        else if (cfg->verify == M2M_TLS_VERIFY_OPTIONAL)
            SSL_CTX_set_verify(s, SSL_VERIFY_PEER, NULL);
        else
            SSL_CTX_set_verify(s, SSL_VERIFY_NONE, NULL);
        if (cfg->verify != M2M_TLS_VERIFY_NONE && !cfg->ca_file) {
            errf(err, errcap, "tls: verifying client certificates needs a CA file%s", NULL);
            goto fail;
        }
    } else {
        SSL_CTX_set_verify(
            s, cfg->verify == M2M_TLS_VERIFY_NONE || psk_client ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, NULL);
    }

    if (cfg->psk_file) {
        rc = load_psk_file(c, cfg->psk_file, err, errcap);
        if (rc)
            goto fail;
        rc = M2M_ECONFIG;
        SSL_CTX_set_psk_server_callback(s, psk_server_cb);
    }
    if (psk_client) {
        c->psk_identity = strdup(cfg->psk_identity);
        if (!c->psk_identity) {
            rc = M2M_ENOMEM;
            goto fail;
        }
        memcpy(c->psk_key, cfg->psk_key, cfg->psk_key_len);
        c->psk_key_len = cfg->psk_key_len;
        SSL_CTX_set_psk_client_callback(s, psk_client_cb);
    }

    if (cfg->alpn) {
        if (!build_alpn(c, cfg->alpn)) {
            errf(err, errcap, "tls: bad ALPN list '%s'", cfg->alpn);
            goto fail;
        }
        if (cfg->server)
            SSL_CTX_set_alpn_select_cb(s, alpn_select_cb, c);
        else if (SSL_CTX_set_alpn_protos(s, c->alpn, (unsigned int)c->alpn_len) != 0) {
            errf(err, errcap, "tls: ALPN%s", NULL);
            goto fail;
        }
    }
    if (cfg->server_name) {
        c->server_name = strdup(cfg->server_name);
        if (!c->server_name) {
            rc = M2M_ENOMEM;
            goto fail;
        }
    }

    /* Resumption: stateless tickets (no server cache, so memory does not
     * grow with clients), one per connection; a client keeps the last. */
    if (cfg->server) {
        static const unsigned char sid_ctx[] = "m2mkit";
        SSL_CTX_set_session_id_context(s, sid_ctx, sizeof sid_ctx - 1);
        SSL_CTX_set_session_cache_mode(s, SSL_SESS_CACHE_OFF);
        if (cfg->session_tickets) {
            SSL_CTX_set_num_tickets(s, 1);
        } else {
            SSL_CTX_set_options(s, SSL_OP_NO_TICKET);
            SSL_CTX_set_num_tickets(s, 0);
        }
    } else if (cfg->session_tickets) {
        SSL_CTX_set_session_cache_mode(s, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
        SSL_CTX_sess_set_new_cb(s, new_session_cb);
    } else {
        SSL_CTX_set_options(s, SSL_OP_NO_TICKET);
        SSL_CTX_set_session_cache_mode(s, SSL_SESS_CACHE_OFF);
    }
    ERR_clear_error();
    *out = c;
    return 0;

fail:
    m2m_tls_ctx_free(c);
    return rc;
}

void m2m_tls_ctx_free(struct m2m_tls_ctx *c)
{
    if (!c)
        return;
    SSL_SESSION_free(c->last_session);
    SSL_CTX_free(c->ssl);
    for (size_t i = 0; i < c->psk_n; i++) {
        OPENSSL_cleanse(c->psk[i].key, sizeof c->psk[i].key);
        free(c->psk[i].identity);
    }
    free(c->psk);
    free(c->psk_identity);
    OPENSSL_cleanse(c->psk_key, sizeof c->psk_key);
    free(c->server_name);
    free(c);
}

/* ---- connection ----------------------------------------------------------- */

/* The peer's name from its certificate: subject CN, else the first DNS
 * subjectAltName. */
static void cert_identity(struct m2m_tls *t)
{
    X509 *cert = SSL_get0_peer_certificate(t->ssl);
    if (!cert || t->has_identity)
        return;
    X509_NAME *subj = X509_get_subject_name(cert);
    if (subj && X509_NAME_get_text_by_NID(subj, NID_commonName, t->identity, sizeof t->identity) > 0) {
        t->has_identity = true;
        return;
    }
    GENERAL_NAMES *sans = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    for (int i = 0; sans && i < sk_GENERAL_NAME_num(sans); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
        if (g->type != GEN_DNS)
            continue;
        const ASN1_IA5STRING *dns = g->d.dNSName;
        int n = ASN1_STRING_length(dns);
        if (n > 0 && (size_t)n < sizeof t->identity && !memchr(ASN1_STRING_get0_data(dns), 0, (size_t)n)) {
            memcpy(t->identity, ASN1_STRING_get0_data(dns), (size_t)n);
            t->identity[n] = 0;
            t->has_identity = true;
        }
        break;
    }
    GENERAL_NAMES_free(sans);
}

static void on_established(struct m2m_tls *t)
{
    set_state(t, TLS_OPEN, NULL);
    cert_identity(t);
    const unsigned char *a = NULL;
    unsigned int alen = 0;
    SSL_get0_alpn_selected(t->ssl, &a, &alen);
    if (a && alen) {
        memcpy(t->alpn, a, alen);
        t->alpn[alen] = 0;
    }
    snprintf(t->meter.version, sizeof t->meter.version, "%s", SSL_get_version(t->ssl));
    const char *cn = SSL_get_cipher_name(t->ssl);
    snprintf(t->meter.cipher, sizeof t->meter.cipher, "%s", cn ? cn : "");
    t->meter.resumed = SSL_session_reused(t->ssl) == 1;
}

/* Decrypted records to the inner core until OpenSSL needs more bytes. */
static void read_app(struct m2m_tls *t)
{
    uint8_t buf[TLS_READ_CHUNK];
    while (t->state == TLS_OPEN || t->state == TLS_CLOSING) {
        ERR_clear_error();
        int k = SSL_read(t->ssl, buf, sizeof buf);
        if (k > 0) {
            t->meter.app_in += (uint64_t)k;
            if (t->state == TLS_OPEN && t->inner->feed(t->inner_core, t->now, buf, (size_t)k) < 0) {
                /* The inner core refused its input: it decides by its own
                 * output whether to say why; we close after it. */
                m2m_tls_close(t);
            }
            continue;
        }
        int e = SSL_get_error(t->ssl, k);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            return;
        if (e == SSL_ERROR_ZERO_RETURN) {
            /* close_notify from the peer: answer with ours. */
            if (!t->reason)
                t->reason = "close_notify received";
            SSL_shutdown(t->ssl);
            ERR_clear_error();
            set_state(t, TLS_DONE, t->reason);
            return;
        }
        fail_ssl(t, "tls");
        return;
    }
}

static void do_handshake(struct m2m_tls *t)
{
    ERR_clear_error();
    int k = SSL_do_handshake(t->ssl);
    if (k == 1) {
        on_established(t);
        read_app(t);
        return;
    }
    int e = SSL_get_error(t->ssl, k);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return;
    fail_ssl(t, "tls handshake");
}

/* A TLS client's first byte is a handshake record (22). Anything else is
 * not TLS (plaintext MQTT: 0x10, HTTP: 'G'); OpenSSL would drop it without
 * an alert, we answer with a fatal unexpected_message alert so the peer
 * learns at once that this port speaks TLS. */
static bool plaintext_refused(struct m2m_tls *t, uint8_t first)
{
    if (first == SSL3_RT_HANDSHAKE)
        return false;
    static const uint8_t alert[] = {SSL3_RT_ALERT, 3, 3, 0, 2, SSL3_AL_FATAL, SSL_AD_UNEXPECTED_MESSAGE};
    BIO_write(t->wbio, alert, sizeof alert);
    t->meter.hs_out += sizeof alert;
    set_state(t, TLS_DONE, "not TLS: plaintext on a TLS port");
    return true;
}

static int tls_feed(void *core, m2m_time now, const uint8_t *p, size_t n)
{
    struct m2m_tls *t = core;
    t->now = now;
    if (t->state == TLS_DONE)
        return n ? M2M_ESTATE : 0;
    if (!n)
        return 0;
    t->meter.wire_in += n;
    if (t->ctx->server && !t->first_seen) {
        t->first_seen = true;
        if (plaintext_refused(t, p[0]))
            return M2M_EMALFORMED;
    }
    /* A memory BIO takes everything; OpenSSL consumes it below, so what
     * stays buffered is at most one partial record. */
    if (BIO_write(t->rbio, p, (int)n) != (int)n) {
        set_state(t, TLS_DONE, "tls: out of memory");
        return M2M_ENOMEM;
    }
    if (t->state == TLS_HANDSHAKE)
        do_handshake(t);
    else
        read_app(t);
    return 0;
}

/* Encrypts inner output while less than TLS_OUT_CAP ciphertext waits. */
static void pump_inner(struct m2m_tls *t)
{
    const uint8_t *p;
    size_t n;
    while (BIO_ctrl_pending(t->wbio) < TLS_OUT_CAP && t->inner->poll_output(t->inner_core, &p, &n)) {
        while (n) {
            int k = n > INT32_MAX ? INT32_MAX : (int)n;
            ERR_clear_error();
            int w = SSL_write(t->ssl, p, k);
            if (w <= 0) {
                fail_ssl(t, "tls write");
                return;
            }
            t->meter.app_out += (uint64_t)w;
            p += w;
            n -= (size_t)w;
        }
    }
}

static bool tls_poll_output(void *core, const uint8_t **p, size_t *n)
{
    struct m2m_tls *t = core;
    if (!t->ctx->server && !t->started && t->state == TLS_HANDSHAKE) {
        t->started = true;
        do_handshake(t);
    }
    if (t->state == TLS_OPEN || t->state == TLS_CLOSING)
        pump_inner(t);
    /* pump_inner stops short of the cap only once the inner core is
     * drained: then close_notify follows the last of its output. */
    if (t->state == TLS_CLOSING && BIO_ctrl_pending(t->wbio) < TLS_OUT_CAP) {
        ERR_clear_error();
        SSL_shutdown(t->ssl);
        ERR_clear_error();
        set_state(t, TLS_DONE, t->reason);
    }
    size_t pending = BIO_ctrl_pending(t->wbio);
    if (!pending)
        return false;
    size_t k = pending < TLS_OUT_CAP ? pending : TLS_OUT_CAP;
    if (t->out_cap < k) {
        uint8_t *b = realloc(t->out, k);
        if (!b) {
            set_state(t, TLS_DONE, "tls: out of memory");
            return false;
        }
        t->out = b;
        t->out_cap = k;
    }
    int r = BIO_read(t->wbio, t->out, (int)k);
    if (r <= 0)
        return false;
    t->meter.wire_out += (uint64_t)r;
    *p = t->out;
    *n = (size_t)r;
    return true;
}

static m2m_time tls_next_timeout(const void *core)
{
    const struct m2m_tls *t = core;
    switch (t->state) {
    case TLS_HANDSHAKE: return t->start + (m2m_time)t->ctx->handshake_timeout_ms;
    case TLS_OPEN:
    case TLS_CLOSING: return t->inner->next_timeout(t->inner_core);
    default: return M2M_NEVER;
    }
}

static void tls_on_timeout(void *core, m2m_time now)
{
    struct m2m_tls *t = core;
    t->now = now;
    if (t->state == TLS_HANDSHAKE) {
        if (now >= t->start + (m2m_time)t->ctx->handshake_timeout_ms)
            set_state(t, TLS_DONE, "tls: handshake timeout");
        return;
    }
    if (t->state == TLS_OPEN || t->state == TLS_CLOSING)
        t->inner->on_timeout(t->inner_core, now);
}

const struct m2m_stream_ops m2m_tls_stream_ops = {
    .name = "tls",
    .feed = tls_feed,
    .poll_output = tls_poll_output,
    .next_timeout = tls_next_timeout,
    .on_timeout = tls_on_timeout,
};

/* ---- lifetime and queries ------------------------------------------------- */

struct m2m_tls *m2m_tls_new(struct m2m_tls_ctx *ctx, const struct m2m_stream_ops *inner, void *inner_core,
                            m2m_time start)
{
    if (!ctx || !inner || !inner->feed || !inner->poll_output || !inner->next_timeout || !inner->on_timeout)
        return NULL;
    struct m2m_tls *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->ctx = ctx;
    t->inner = inner;
    t->inner_core = inner_core;
    t->start = t->now = start;
    t->last_hs_dir = -1;
    t->rec_dir = -1;
    t->ssl = SSL_new(ctx->ssl);
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (!t->ssl || !t->rbio || !t->wbio) {
        BIO_free(t->rbio);
        BIO_free(t->wbio);
        SSL_free(t->ssl);
        free(t);
        ERR_clear_error();
        return NULL;
    }
    /* An empty read BIO means "wait for more", not end of file. */
    BIO_set_mem_eof_return(t->rbio, -1);
    SSL_set_bio(t->ssl, t->rbio, t->wbio);
    SSL_set_ex_data(t->ssl, ssl_index, t);
    if (ctx->server) {
        SSL_set_accept_state(t->ssl);
    } else {
        SSL_set_connect_state(t->ssl);
        if (ctx->server_name) {
            SSL_set_tlsext_host_name(t->ssl, ctx->server_name);
            if (ctx->verify != M2M_TLS_VERIFY_NONE && !ctx->psk_identity)
                SSL_set1_host(t->ssl, ctx->server_name);
        }
        if (ctx->last_session && SSL_SESSION_is_resumable(ctx->last_session))
            SSL_set_session(t->ssl, ctx->last_session);
    }
    ERR_clear_error();
    return t;
}

void m2m_tls_free(struct m2m_tls *t)
{
    if (!t)
        return;
    /* OpenSSL forgets the session of a connection freed without
     * close_notify; M2M devices drop TCP connections all the time, and a
     * fatal error has removed the session already, so keep it. */
    if (m2m_tls_established(t))
        SSL_set_shutdown(t->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    SSL_free(t->ssl); /* frees both BIOs */
    free(t->out);
    free(t);
}

bool m2m_tls_closed(const struct m2m_tls *t)
{
    return t->state == TLS_DONE;
}

bool m2m_tls_established(const struct m2m_tls *t)
{
    return t->state == TLS_OPEN || t->state == TLS_CLOSING || (t->state == TLS_DONE && t->meter.version[0]);
}

const char *m2m_tls_reason(const struct m2m_tls *t)
{
    return t->state >= TLS_CLOSING ? t->reason : NULL;
}

void m2m_tls_close(struct m2m_tls *t)
{
    if (t->state == TLS_HANDSHAKE)
        set_state(t, TLS_DONE, "closed before the handshake completed");
    else if (t->state == TLS_OPEN)
        set_state(t, TLS_CLOSING, "closed by us");
}

const char *m2m_tls_alpn(const struct m2m_tls *t)
{
    return t->alpn[0] ? t->alpn : NULL;
}

const char *m2m_tls_peer_identity(const struct m2m_tls *t)
{
    return t->has_identity && t->state != TLS_HANDSHAKE ? t->identity : NULL;
}

void m2m_tls_meter(const struct m2m_tls *t, struct m2m_tls_meter *out)
{
    *out = t->meter;
}
