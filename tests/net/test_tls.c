/* The TLS filter (src/net/tls.c): a client filter and a server filter carry
 * bytes to each other in memory, each around a fake inner core that records
 * what reaches it (the server's echoes it back). The certificates (a
 * throwaway CA, a server, clients valid, expired and from an unknown CA) are
 * made here with OpenSSL in a temporary directory. Virtual time, no sockets.
 *
 * test_tls_numbers prints the handshake cost for the closing note:
 *   ctest --test-dir build-tls -R test_tls -V | grep 'tls cost' */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "net/tls.h"

/* ---- a fake inner core: records input, optionally echoes it ------------- */

struct sink {
    uint8_t got[70000];
    size_t got_len;
    uint8_t send[70000]; /* queued by the test, or the echo */
    size_t send_len;
    bool echo;
    m2m_time deadline;
    int timeouts;
};

static int sink_feed(void *core, m2m_time now, const uint8_t *p, size_t n)
{
    struct sink *s = core;
    (void)now;
    assert_true(s->got_len + n <= sizeof s->got);
    memcpy(s->got + s->got_len, p, n);
    s->got_len += n;
    if (s->echo) {
        assert_true(s->send_len + n <= sizeof s->send);
        memcpy(s->send + s->send_len, p, n);
        s->send_len += n;
    }
    return 0;
}

/* Hands out the queue in chunks of at most 1000 bytes, like a core whose
 * output spans several polls. */
static uint8_t sink_out[1000];
static bool sink_poll_output(void *core, const uint8_t **p, size_t *n)
{
    struct sink *s = core;
    if (!s->send_len)
        return false;
    size_t k = s->send_len < sizeof sink_out ? s->send_len : sizeof sink_out;
    memcpy(sink_out, s->send, k);
    memmove(s->send, s->send + k, s->send_len - k);
    s->send_len -= k;
    *p = sink_out;
    *n = k;
    return true;
}

static m2m_time sink_next_timeout(const void *core)
{
    return ((const struct sink *)core)->deadline;
}

static void sink_on_timeout(void *core, m2m_time now)
{
    (void)now;
    ((struct sink *)core)->timeouts++;
}

static const struct m2m_stream_ops sink_ops = {
    .name = "sink",
    .feed = sink_feed,
    .poll_output = sink_poll_output,
    .next_timeout = sink_next_timeout,
    .on_timeout = sink_on_timeout,
};

static void sink_queue(struct sink *s, const char *text)
{
    size_t n = strlen(text);
    memcpy(s->send + s->send_len, text, n);
    s->send_len += n;
}

/* ---- certificates ------------------------------------------------------- */

static char dir[64];
static char ca_pem[128], ca_key[128], srv_pem[128], srv_key[128], cli_pem[128], cli_key[128];
static char old_pem[128], old_key[128], rogue_pem[128], rogue_key[128], san_pem[128], san_key[128];
static char psk_path[128];

static void path(char *out, const char *name)
{
    snprintf(out, 128, "%s/%s", dir, name);
}

static EVP_PKEY *p256(void)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    assert_non_null(k);
    return k;
}

static void add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX v;
    X509V3_set_ctx(&v, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v, nid, value);
    assert_non_null(e);
    assert_int_equal(X509_add_ext(x, e, -1), 1);
    X509_EXTENSION_free(e);
}

/* A certificate for `key` named `cn` (none if NULL), signed by issuer (self
 * if NULL), valid from `from_days` to `to_days` around now. */
static X509 *make_cert(EVP_PKEY *key, const char *cn, const char *san, X509 *issuer, EVP_PKEY *issuer_key,
                       bool ca, long from_days, long to_days)
{
    static long serial = 1;
    X509 *x = X509_new();
    assert_non_null(x);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
    X509_gmtime_adj(X509_getm_notBefore(x), from_days * 86400);
    X509_gmtime_adj(X509_getm_notAfter(x), to_days * 86400);
    X509_set_pubkey(x, key);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"m2mkit test", -1, -1, 0);
    if (cn)
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name);
    add_ext(x, issuer ? issuer : x, NID_basic_constraints, ca ? "critical,CA:TRUE" : "CA:FALSE");
    if (ca)
        add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign");
    if (san)
        add_ext(x, issuer ? issuer : x, NID_subject_alt_name, san);
    assert_true(X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()) > 0);
    return x;
}

static void write_pair(const char *cert_path, const char *key_path, X509 *x, EVP_PKEY *k)
{
    FILE *f = fopen(cert_path, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_X509(f, x), 1);
    fclose(f);
    f = fopen(key_path, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL), 1);
    fclose(f);
}

static int make_certs(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/m2m-tls-XXXXXX");
    assert_non_null(mkdtemp(dir));
    path(ca_pem, "ca.pem"), path(ca_key, "ca.key"), path(srv_pem, "server.pem"), path(srv_key, "server.key");
    path(cli_pem, "client.pem"), path(cli_key, "client.key"), path(old_pem, "old.pem"),
        path(old_key, "old.key");
    path(rogue_pem, "rogue.pem"), path(rogue_key, "rogue.key"), path(san_pem, "san.pem"),
        path(san_key, "san.key");
    path(psk_path, "psk.txt");

    EVP_PKEY *cak = p256(), *sk = p256(), *ck = p256(), *ok = p256(), *rk = p256(), *rcak = p256(),
             *nk = p256();
    X509 *ca = make_cert(cak, "m2mkit test CA", NULL, NULL, NULL, true, -1, 30);
    X509 *rogue_ca = make_cert(rcak, "rogue CA", NULL, NULL, NULL, true, -1, 30);
    X509 *srv = make_cert(sk, "localhost", "DNS:localhost,IP:127.0.0.1", ca, cak, false, -1, 30);
    X509 *cli = make_cert(ck, "device-42", NULL, ca, cak, false, -1, 30);
    X509 *old = make_cert(ok, "old-device", NULL, ca, cak, false, -3, -1);
    X509 *rogue = make_cert(rk, "rogue-device", NULL, rogue_ca, rcak, false, -1, 30);
    X509 *san = make_cert(nk, NULL, "DNS:sensor-9.example", ca, cak, false, -1, 30);
    write_pair(ca_pem, ca_key, ca, cak);
    write_pair(srv_pem, srv_key, srv, sk);
    write_pair(cli_pem, cli_key, cli, ck);
    write_pair(old_pem, old_key, old, ok);
    write_pair(rogue_pem, rogue_key, rogue, rk);
    write_pair(san_pem, san_key, san, nk);
    X509 *all[] = {ca, rogue_ca, srv, cli, old, rogue, san};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        X509_free(all[i]);
    EVP_PKEY *keys[] = {cak, sk, ck, ok, rk, rcak, nk};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
        EVP_PKEY_free(keys[i]);

    FILE *f = fopen(psk_path, "w");
    assert_non_null(f);
    fputs("# identity:hexkey\n\ndevice-7:00112233445566778899aabbccddeeff\nother:0102030405060708\n", f);
    fclose(f);
    return 0;
}

static int remove_certs(void **state)
{
    (void)state;
    const char *files[] = {ca_pem,  ca_key,    srv_pem,   srv_key, cli_pem, cli_key, old_pem,
                           old_key, rogue_pem, rogue_key, san_pem, san_key, psk_path};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++)
        unlink(files[i]);
    rmdir(dir);
    return 0;
}

/* ---- a pair of filters ---------------------------------------------------- */

static const uint8_t psk_key[16] = {0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
                                    0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff};

static struct m2m_tls_ctx_config server_cfg(void)
{
    return (struct m2m_tls_ctx_config){.server = true,
                                       .cert_file = srv_pem,
                                       .key_file = srv_key,
                                       .ca_file = ca_pem,
                                       .verify = M2M_TLS_VERIFY_NONE,
                                       .psk_file = psk_path,
                                       .alpn = "mqtt",
                                       .session_tickets = true,
                                       .handshake_timeout_ms = 3000};
}

static struct m2m_tls_ctx_config client_cfg(void)
{
    return (struct m2m_tls_ctx_config){.server = false,
                                       .ca_file = ca_pem,
                                       .verify = M2M_TLS_VERIFY_REQUIRE,
                                       .alpn = "mqtt",
                                       .server_name = "localhost",
                                       .session_tickets = true};
}

static struct m2m_tls_ctx *ctx_new(const struct m2m_tls_ctx_config *cfg)
{
    struct m2m_tls_ctx *c = NULL;
    char err[256] = "";
    int rc = m2m_tls_ctx_new(cfg, &c, err, sizeof err);
    if (rc)
        fail_msg("m2m_tls_ctx_new: %s", err);
    return c;
}

struct pair {
    struct m2m_tls_ctx *sctx, *cctx;
    struct sink sin, cin; /* the server's and the client's inner cores */
    struct m2m_tls *s, *c;
    m2m_time now;
    size_t step; /* bytes per feed: 0 = whole polls */
};

static void pair_open(struct pair *p, const struct m2m_tls_ctx_config *scfg,
                      const struct m2m_tls_ctx_config *ccfg)
{
    memset(p, 0, sizeof *p);
    p->sctx = ctx_new(scfg);
    p->cctx = ctx_new(ccfg);
    p->sin.echo = true;
    p->sin.deadline = p->cin.deadline = M2M_NEVER;
    p->s = m2m_tls_new(p->sctx, &sink_ops, &p->sin, 0);
    p->c = m2m_tls_new(p->cctx, &sink_ops, &p->cin, 0);
    assert_non_null(p->s);
    assert_non_null(p->c);
}

/* A second connection on the same contexts (resumption). */
static void pair_reconnect(struct pair *p)
{
    m2m_tls_free(p->s);
    m2m_tls_free(p->c);
    memset(&p->sin, 0, sizeof p->sin);
    memset(&p->cin, 0, sizeof p->cin);
    p->sin.echo = true;
    p->sin.deadline = p->cin.deadline = M2M_NEVER;
    p->s = m2m_tls_new(p->sctx, &sink_ops, &p->sin, p->now);
    p->c = m2m_tls_new(p->cctx, &sink_ops, &p->cin, p->now);
}

static void pair_close(struct pair *p)
{
    m2m_tls_free(p->s);
    m2m_tls_free(p->c);
    m2m_tls_ctx_free(p->sctx);
    m2m_tls_ctx_free(p->cctx);
}

/* Moves one side's output into the other; true if anything moved. */
static bool carry(struct m2m_tls *from, struct m2m_tls *to, m2m_time now, size_t step)
{
    const uint8_t *o;
    size_t n;
    bool moved = false;
    while (m2m_tls_stream_ops.poll_output(from, &o, &n)) {
        moved = true;
        uint8_t copy[70000];
        assert_true(n <= sizeof copy);
        memcpy(copy, o, n);
        size_t k = step ? step : n;
        for (size_t i = 0; i < n; i += k)
            m2m_tls_stream_ops.feed(to, now, copy + i, n - i < k ? n - i : k);
    }
    return moved;
}

static void pump(struct pair *p)
{
    for (int i = 0; i < 50; i++) {
        bool a = carry(p->c, p->s, p->now, p->step);
        bool b = carry(p->s, p->c, p->now, p->step);
        if (!a && !b)
            return;
    }
    fail_msg("the filters never went quiet");
}

static void assert_echo(struct pair *p, const char *text)
{
    size_t before = p->cin.got_len;
    sink_queue(&p->cin, text);
    pump(p);
    assert_int_equal(p->cin.got_len - before, strlen(text));
    assert_memory_equal(p->cin.got + before, text, strlen(text));
}

static void assert_refused(struct pair *p)
{
    pump(p);
    assert_false(m2m_tls_established(p->s) && m2m_tls_established(p->c) && !m2m_tls_closed(p->s));
    assert_true(m2m_tls_closed(p->s) || m2m_tls_closed(p->c));
    assert_int_equal(p->sin.got_len, 0);
}

/* ---- handshakes ------------------------------------------------------------ */

static void test_tls13_handshake(void **state)
{
    (void)state;
    struct pair p;
    struct m2m_tls_ctx_config s = server_cfg(), c = client_cfg();
    pair_open(&p, &s, &c);
    assert_false(m2m_tls_established(p.c));
    pump(&p);
    assert_true(m2m_tls_established(p.s));
    assert_true(m2m_tls_established(p.c));
    assert_false(m2m_tls_closed(p.s));
    assert_null(m2m_tls_reason(p.s));
    assert_null(m2m_tls_peer_identity(p.s)); /* no client certificate */
    assert_string_equal(m2m_tls_peer_identity(p.c), "localhost");
    struct m2m_tls_meter m;
    m2m_tls_meter(p.s, &m);
    assert_string_equal(m.version, "TLSv1.3");
    assert_false(m.resumed);
    assert_echo(&p, "\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00");
    pair_close(&p);
}

static void test_tls12_ecdsa_handshake(void **state)
{
    (void)state;
    struct pair p;
    struct m2m_tls_ctx_config s = server_cfg(), c = client_cfg();
    c.max_version = 0x0303;
    pair_open(&p, &s, &c);
    pump(&p);
    assert_true(m2m_tls_established(p.s));
    struct m2m_tls_meter m;
    m2m_tls_meter(p.c, &m);
    assert_string_equal(m.version, "TLSv1.2");
    assert_string_equal(m.cipher, "ECDHE-ECDSA-AES128-GCM-SHA256");
    assert_echo(&p, "hello over 1.2");
    pair_close(&p);
}

/* Every byte in its own feed: records and handshake messages split anywhere. */
static void test_byte_by_byte(void **state)
{
    (void)state;
    struct pair p;
    struct m2m_tls_ctx_config s = server_cfg(), c = client_cfg();
    pair_open(&p, &s, &c);
    p.step = 1;
    pump(&p);
    assert_true(m2m_tls_established(p.s) && m2m_tls_established(p.c));
    assert_echo(&p, "split at every byte");
    pair_close(&p);
}

static void test_large_transfer(void **state)
{
    (void)state;
    struct pair p;
    struct m2m_tls_ctx_config s = server_cfg(), c = client_cfg();
    pair_open(&p, &s, &c);
    pump(&p);
    static char big[60001];
    for (size_t i = 0; i < sizeof big - 1; i++)
        big[i] = (char)('a' + i % 26);
    assert_echo(&p, big);
    struct m2m_tls_meter m;
    m2m_tls_meter(p.c, &m);
    assert_int_equal(m.app_out, sizeof big - 1);
    assert_int_equal(m.app_in, sizeof big - 1);
    assert_true(m.wire_out > m.app_out);
    pair_close(&p);
}

static void test_hostname_mismatch(void **state)
{
    (void)state;
    struct pair p;
    struct m2m_tls_ctx_config s = server_cfg(), c = client_cfg();
    c.server_name = "broker.example";
    pair_open(&p, &s, &c);
    assert_refused(&p);
    assert_true(m2m_tls_closed(p.c));
    assert_non_null(strstr(m2m_tls_reason(p.c), "certificate verify failed"));
    pair_close(&p);
}

/* ---- client certificates ----------------------------------------------------- */

static void test_mtls_required(void **state)
{
    (void)state;
    struct pair p;
    struct m2m_tls_ctx_config s = server_cfg(), c = client_cfg();
    s.verify = M2M_TLS_VERIFY_REQUIRE;
    c.cert_file = cli_pem;
    c.key_file = cli_key;
    pair_open(&p, &s, &c);
    pump(&p);
    assert_true(m2m_tls_established(p.s));
    assert_string_equal(m2m_tls_peer_identity(p.s), "device-42");
    assert_echo(&p, "authenticated");
    pair_close(&p);

    /* TLS 1.2 too */
    c.max_version = 0x0303;
    pair_open(&p, &s, &c);
    pump(&p);
    assert_string_equal(m2m_tls_peer_identity(p.s), "device-42");
    pair_close(&p);
}

static void test_mtls_required_without_cert(void **state)
{
    (void)state;
    struct pair p;
    struct m2m_tls_ctx_config s = server_cfg(), c = client_cfg();
    s.verify = M2M_TLS_VERIFY_REQUIRE;
    pair_open(&p, &s, &c);
    assert_refused(&p);
    assert_true(m2m_tls_closed(p.s));
    assert_true(m2m_tls_closed(p.c)); /* the server's alert reached it */
    assert_non_null(strstr(m2m_tls_reason(p.s), "certificate"));
    assert_null(m2m_tls_peer_identity(p.s));
    pair_close(&p);
}

static void test_mtls_optional(void **state)
{
    (void)state;
    struct pair p;
    struct m2m_tls_ctx_config s = server_cfg(), c = client_cfg();
    s.verify = M2M_TLS_VERIFY_OPTIONAL;
    pair_open(&p, &s, &c);
    pump(&p);
    assert_true(m2m_tls_established(p.s));
    assert_null(m2m_tls_peer_identity(p.s));
    pair_close(&p);

    c.cert_file = cli_pem;
    c.key_file = cli_key;
    pair_open(&p, &s, &c);
    pump(&p);
    assert_string_equal(m2m_tls_peer_identity(p.s), "device-42");
    pair_close(&p);

    /* optional, but a certificate that is sent must verify */
    c.cert_file = rogue_pem;
    c.key_file = rogue_key;
    pair_open(&p, &s, &c);
    assert_refused(&p);
    assert_true(m2m_tls_closed(p.s));
    pair_close(&p);
}

static void test_mtls_unknown_ca(void **state)
{
    (void)state;
    struct pair p;
    struct m2m_tls_ctx_config s = server_cfg(), c = client_cfg();
    s.verify = M2M_TLS_VERIFY_REQUIRE;
    c.cert_file = rogue_pem;
    c.key_file = rogue_key;
    pair_open(&p, &s, &c);
    assert_refused(&p);
    assert_true(m2m_tls_closed(p.s));
    assert_non_null(strstr(m2m_tls_reason(p.s), "certificate verify failed"));
    assert_null(m2m_tls_peer_identity(p.s));
    pair_close(&p);
}

static void test_mtls_expired(void **state)
{
    (void)state;
    struct pair p;
    struct m2m_tls_ctx_config s = server_cfg(), c = client_cfg();
    s.verify = M2M_TLS_VERIFY_REQUIRE;
    c.cert_file = old_pem;
    c.key_file = old_key;
    pair_open(&p, &s, &c);
    assert_refused(&p);
    assert_true(m2m_tls_closed(p.s));
    assert_non_null(strstr(m2m_tls_reason(p.s), "certificate verify failed"));
    pair_close(&p);
}

static void test_identity_from_san(void **state)
{
    (void)state;
    struct pair p;
    struct m2m_tls_ctx_config s = server_cfg(), c = client_cfg();
    s.verify = M2M_TLS_VERIFY_REQUIRE;
    c.cert_file = san_pem;
    c.key_file = san_key;
    pair_open(&p, &s, &c);
    pump(&p);
    assert_string_equal(m2m_tls_peer_identity(p.s), "sensor-9.example");
    pair_close(&p);
}

/* ---- PSK ---------------------------------------------------------------------- */

static struct m2m_tls_ctx_config psk_client_cfg(void)
{
    return (struct m2m_tls_ctx_config){.server = false,
                                       .psk_identity = "device-7",
                                       .psk_key = psk_key,
                                       .psk_key_len = sizeof psk_key,
                                       .max_version = 0x0303};
}

static void test_psk(void **state)
{
    (void)state;
    struct pair p;
    struct m2m_tls_ctx_config s = server_cfg(), c = psk_client_cfg();
    pair_open(&p, &s, &c);
    pump(&p);
    assert_true(m2m_tls_established(p.s));
    assert_string_equal(m2m_tls_peer_identity(p.s), "device-7");
    struct m2m_tls_meter m;
    m2m_tls_meter(p.s, &m);
    assert_string_equal(m.version, "TLSv1.2");
    assert_string_equal(m.cipher, "PSK-AES128-GCM-SHA256");
    assert_echo(&p, "psk");
    pair_close(&p);

    /* TLS 1.3 with the same external PSK */
    c.max_version = 0;
    pair_open(&p, &s, &c);
    pump(&p);
    m2m_tls_meter(p.s, &m);
    assert_string_equal(m.version, "TLSv1.3");
    assert_string_equal(m2m_tls_peer_identity(p.s), "device-7");
    assert_echo(&p, "psk over 1.3");
    pair_close(&p);
    c.max_version = 0x0303;

    /* a PSK-only server, no certificate at all */
    s.cert_file = s.key_file = NULL;
    pair_open(&p, &s, &c);
    pump(&p);
    assert_string_equal(m2m_tls_peer_identity(p.s), "device-7");
    pair_close(&p);
}

static void test_psk_wrong_key(void **state)
{
    (void)state;
    struct pair p;
    struct m2m_tls_ctx_config s = server_cfg(), c = psk_client_cfg();
    uint8_t wrong[16];
    memcpy(wrong, psk_key, sizeof wrong);
    wrong[15] ^= 1;
    c.psk_key = wrong;
    pair_open(&p, &s, &c);
    assert_refused(&p);
    assert_true(m2m_tls_closed(p.s));
    assert_true(m2m_tls_closed(p.c));
    assert_false(m2m_tls_established(p.s));
    pair_close(&p);

    /* an identity the file does not know */
    c = psk_client_cfg();
    c.psk_identity = "intruder";
    pair_open(&p, &s, &c);
    assert_refused(&p);
    assert_true(m2m_tls_closed(p.s));
    assert_null(m2m_tls_peer_identity(p.s));
    pair_close(&p);
}

static void test_bad_configs(void **state)
{
    (void)state;
    struct m2m_tls_ctx *c = NULL;
    char err[256];
    struct m2m_tls_ctx_config s = {.server = true};
    assert_int_not_equal(m2m_tls_ctx_new(&s, &c, err, sizeof err), 0); /* no cert, no PSK */
    assert_null(c);
    s = server_cfg();
    s.min_version = 0x0302;
    assert_int_not_equal(m2m_tls_ctx_new(&s, &c, err, sizeof err), 0);
    s = server_cfg();
    s.cert_file = "/nonexistent.pem";
    assert_int_not_equal(m2m_tls_ctx_new(&s, &c, err, sizeof err), 0);
    assert_non_null(strstr(err, "/nonexistent.pem"));
    s = server_cfg();
    s.key_file = cli_key; /* another certificate's key */
    assert_int_not_equal(m2m_tls_ctx_new(&s, &c, err, sizeof err), 0);
    s = server_cfg();
    s.psk_file = srv_pem; /* not identity:hexkey lines */
    assert_int_not_equal(m2m_tls_ctx_new(&s, &c, err, sizeof err), 0);
    assert_non_null(strstr(err, "psk file"));
    s = server_cfg();
    s.alpn = "mqtt,,coap";
    assert_int_not_equal(m2m_tls_ctx_new(&s, &c, err, sizeof err), 0);
    assert_null(c);
}

/* ---- a raw OpenSSL client, for what our client does not offer ------------------ */

static unsigned int raw_psk_cb(SSL *ssl, const char *hint, char *identity, unsigned int max_identity,
                               unsigned char *psk, unsigned int max_psk)
{
    (void)ssl, (void)hint, (void)max_identity, (void)max_psk;
    strcpy(identity, "device-7");
    memcpy(psk, psk_key, sizeof psk_key);
    return sizeof psk_key;
}

/* Runs a TLS 1.2 handshake of a plain OpenSSL client offering only `ciphers`
 * against a server filter; returns the cipher the server settled on ("" if
 * none). */
static void raw_client_cipher(const char *ciphers, bool psk, char *out, size_t cap)
{
    struct m2m_tls_ctx_config scfg = server_cfg();
    struct m2m_tls_ctx *sctx = ctx_new(&scfg);
    struct sink sin = {.echo = true, .deadline = M2M_NEVER};
    struct m2m_tls *s = m2m_tls_new(sctx, &sink_ops, &sin, 0);
    SSL_CTX *cc = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_max_proto_version(cc, TLS1_2_VERSION);
    assert_int_equal(SSL_CTX_set_cipher_list(cc, ciphers), 1);
    if (psk)
        SSL_CTX_set_psk_client_callback(cc, raw_psk_cb);
    SSL *cl = SSL_new(cc);
    BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
    BIO_set_mem_eof_return(rb, -1);
    SSL_set_bio(cl, rb, wb);
    SSL_set_connect_state(cl);
    for (int i = 0; i < 10 && SSL_do_handshake(cl) != 1; i++) {
        char *d;
        long n = BIO_get_mem_data(wb, &d);
        if (n > 0)
            m2m_tls_stream_ops.feed(s, 1, (const uint8_t *)d, (size_t)n);
        (void)BIO_reset(wb);
        const uint8_t *o;
        size_t on;
        while (m2m_tls_stream_ops.poll_output(s, &o, &on))
            BIO_write(rb, o, (int)on);
    }
    struct m2m_tls_meter m;
    m2m_tls_meter(s, &m);
    snprintf(out, cap, "%s", m2m_tls_established(s) ? m.cipher : "");
    SSL_free(cl);
    SSL_CTX_free(cc);
    ERR_clear_error();
    m2m_tls_free(s);
    m2m_tls_ctx_free(sctx);
}

/* The suites RFC 7252 and RFC 7925 make mandatory for constrained devices. */
static void test_ccm8_suites(void **state)
{
    (void)state;
    char cipher[64];
    raw_client_cipher("PSK-AES128-CCM8", true, cipher, sizeof cipher);
    assert_string_equal(cipher, "PSK-AES128-CCM8");
    raw_client_cipher("ECDHE-ECDSA-AES128-CCM8", false, cipher, sizeof cipher);
    assert_string_equal(cipher, "ECDHE-ECDSA-AES128-CCM8");
    /* a suite outside our list is refused */
    raw_client_cipher("ECDHE-ECDSA-AES128-SHA", false, cipher, sizeof cipher);
    assert_string_equal(cipher, "");
}

/* ---- refusals at the door ------------------------------------------------------ */

/* A raw OpenSSL client that speaks at most TLS 1.1. */
static void test_tls11_refused(void **state)
{
    (void)state;
    struct m2m_tls_ctx_config scfg = server_cfg();
    struct m2m_tls_ctx *sctx = ctx_new(&scfg);
    struct sink sin = {.echo = true, .deadline = M2M_NEVER};
    struct m2m_tls *s = m2m_tls_new(sctx, &sink_ops, &sin, 0);

    SSL_CTX *old = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_security_level(old, 0);
    assert_int_equal(SSL_CTX_set_cipher_list(old, "ALL:@SECLEVEL=0"), 1);
    SSL_CTX_set_min_proto_version(old, TLS1_VERSION);
    SSL_CTX_set_max_proto_version(old, TLS1_1_VERSION);
    SSL *cl = SSL_new(old);
    BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
    BIO_set_mem_eof_return(rb, -1);
    SSL_set_bio(cl, rb, wb);
    SSL_set_connect_state(cl);
    assert_true(SSL_do_handshake(cl) <= 0);
    char *hello;
    long n = BIO_get_mem_data(wb, &hello);
    assert_true(n > 0);
    m2m_tls_stream_ops.feed(s, 1, (const uint8_t *)hello, (size_t)n);
    assert_true(m2m_tls_closed(s));
    assert_false(m2m_tls_established(s));
    const uint8_t *o;
    size_t on;
    assert_true(m2m_tls_stream_ops.poll_output(s, &o, &on));
    assert_int_equal(o[0], 21);      /* an alert record */
    assert_int_equal(o[on - 1], 70); /* protocol_version */
    assert_non_null(strstr(m2m_tls_reason(s), "protocol"));
    assert_int_equal(sin.got_len, 0);
    SSL_free(cl);
    SSL_CTX_free(old);
    ERR_clear_error();
    m2m_tls_free(s);
    m2m_tls_ctx_free(sctx);
}

static void test_plaintext_refused(void **state)
{
    (void)state;
    struct m2m_tls_ctx_config scfg = server_cfg();
    struct m2m_tls_ctx *sctx = ctx_new(&scfg);
    struct sink sin = {.echo = true, .deadline = M2M_NEVER};
    struct m2m_tls *s = m2m_tls_new(sctx, &sink_ops, &sin, 0);
    static const uint8_t connect[] = {0x10, 0x0c, 0x00, 0x04, 'M',  'Q',  'T',
                                      'T',  0x04, 0x02, 0x00, 0x3c, 0x00, 0x00};
    m2m_tls_stream_ops.feed(s, 1, connect, 1); /* refused at the first byte */
    assert_true(m2m_tls_closed(s));
    m2m_tls_stream_ops.feed(s, 1, connect + 1, sizeof connect - 1);
    const uint8_t *o;
    size_t on;
    assert_true(m2m_tls_stream_ops.poll_output(s, &o, &on));
    static const uint8_t alert[] = {0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x0a}; /* fatal unexpected_message */
    assert_int_equal(on, sizeof alert);
    assert_memory_equal(o, alert, sizeof alert);
    assert_false(m2m_tls_stream_ops.poll_output(s, &o, &on));
    assert_non_null(strstr(m2m_tls_reason(s), "not TLS"));
    assert_int_equal(sin.got_len, 0);
    assert_int_equal(m2m_tls_stream_ops.next_timeout(s), M2M_NEVER);
    m2m_tls_free(s);

    /* HTTP too, and the context keeps serving TLS clients afterwards */
    s = m2m_tls_new(sctx, &sink_ops, &sin, 0);
    m2m_tls_stream_ops.feed(s, 1, (const uint8_t *)"GET / HTTP/1.1\r\n", 16);
    assert_true(m2m_tls_closed(s));
    m2m_tls_free(s);
    m2m_tls_ctx_free(sctx);

    struct pair p;
    struct m2m_tls_ctx_config sc = server_cfg(), cc = client_cfg();
    pair_open(&p, &sc, &cc);
    pump(&p);
    assert_true(m2m_tls_established(p.s));
    pair_close(&p);
}

/* A handshake that stalls is cut off; the inner core's timers run only once
 * it is complete. */
static void test_handshake_timeout(void **state)
{
    (void)state;
    struct pair p;
    struct m2m_tls_ctx_config s = server_cfg(), c = client_cfg();
    pair_open(&p, &s, &c);
    p.sin.deadline = 500;
    assert_int_equal(m2m_tls_stream_ops.next_timeout(p.s), 3000);
    /* half a ClientHello, then nothing */
    const uint8_t *o;
    size_t n;
    assert_true(m2m_tls_stream_ops.poll_output(p.c, &o, &n));
    m2m_tls_stream_ops.feed(p.s, 100, o, n / 2);
    m2m_tls_stream_ops.on_timeout(p.s, 500);
    assert_int_equal(p.sin.timeouts, 0);
    assert_false(m2m_tls_closed(p.s));
    m2m_tls_stream_ops.on_timeout(p.s, 2999);
    assert_false(m2m_tls_closed(p.s));
    m2m_tls_stream_ops.on_timeout(p.s, 3000);
    assert_true(m2m_tls_closed(p.s));
    assert_string_equal(m2m_tls_reason(p.s), "tls: handshake timeout");
    assert_int_equal(m2m_tls_stream_ops.next_timeout(p.s), M2M_NEVER);
    assert_int_equal(p.sin.timeouts, 0);
    pair_close(&p);

    /* after the handshake the inner core's deadline is the filter's */
    pair_open(&p, &s, &c);
    p.sin.deadline = 500;
    pump(&p);
    assert_int_equal(m2m_tls_stream_ops.next_timeout(p.s), 500);
    m2m_tls_stream_ops.on_timeout(p.s, 5000);
    assert_int_equal(p.sin.timeouts, 1);
    assert_false(m2m_tls_closed(p.s));
    pair_close(&p);
}

/* ---- resumption, ALPN, close ----------------------------------------------------- */

static void resume(int max_version)
{
    struct pair p;
    struct m2m_tls_ctx_config s = server_cfg(), c = client_cfg();
    c.max_version = max_version;
    pair_open(&p, &s, &c);
    pump(&p);
    assert_echo(&p, "first");
    struct m2m_tls_meter full, again;
    m2m_tls_meter(p.c, &full);
    assert_false(full.resumed);
    pair_reconnect(&p);
    pump(&p);
    assert_true(m2m_tls_established(p.s));
    m2m_tls_meter(p.c, &again);
    assert_true(again.resumed);
    struct m2m_tls_meter sm;
    m2m_tls_meter(p.s, &sm);
    assert_true(sm.resumed);
    assert_true(again.hs_out + again.hs_in < full.hs_out + full.hs_in);
    assert_echo(&p, "second");
    pair_close(&p);

    /* without tickets nothing resumes */
    s.session_tickets = c.session_tickets = false;
    pair_open(&p, &s, &c);
    pump(&p);
    pair_reconnect(&p);
    pump(&p);
    m2m_tls_meter(p.c, &again);
    assert_true(m2m_tls_established(p.c));
    assert_false(again.resumed);
    pair_close(&p);
}

static void test_resumption_tls13(void **state)
{
    (void)state;
    resume(0);
}

static void test_resumption_tls12(void **state)
{
    (void)state;
    resume(0x0303);
}

static void test_alpn(void **state)
{
    (void)state;
    struct pair p;
    struct m2m_tls_ctx_config s = server_cfg(), c = client_cfg();
    s.alpn = "mqtt,coap";
    c.alpn = "x-unknown,mqtt";
    pair_open(&p, &s, &c);
    pump(&p);
    assert_string_equal(m2m_tls_alpn(p.s), "mqtt");
    assert_string_equal(m2m_tls_alpn(p.c), "mqtt");
    pair_close(&p);

    /* no common protocol: served without ALPN */
    c.alpn = "http/1.1";
    pair_open(&p, &s, &c);
    pump(&p);
    assert_true(m2m_tls_established(p.s));
    assert_null(m2m_tls_alpn(p.s));
    assert_null(m2m_tls_alpn(p.c));
    pair_close(&p);

    c.alpn = NULL;
    pair_open(&p, &s, &c);
    pump(&p);
    assert_null(m2m_tls_alpn(p.s));
    pair_close(&p);
}

static void test_close_notify(void **state)
{
    (void)state;
    struct pair p;
    struct m2m_tls_ctx_config s = server_cfg(), c = client_cfg();
    pair_open(&p, &s, &c);
    pump(&p);
    /* the inner core's last words go out before close_notify */
    sink_queue(&p.cin, "DISCONNECT");
    m2m_tls_close(p.c);
    assert_false(m2m_tls_closed(p.c));
    pump(&p);
    assert_true(m2m_tls_closed(p.c));
    assert_true(m2m_tls_closed(p.s));
    assert_int_equal(p.sin.got_len, 10);
    assert_memory_equal(p.sin.got, "DISCONNECT", 10);
    assert_string_equal(m2m_tls_reason(p.s), "close_notify received");
    assert_string_equal(m2m_tls_reason(p.c), "closed by us");
    pair_close(&p);

    /* before the handshake it just closes */
    pair_open(&p, &s, &c);
    m2m_tls_close(p.s);
    assert_true(m2m_tls_closed(p.s));
    pair_close(&p);
}

/* ---- meters ----------------------------------------------------------------------- */

static void meters(struct pair *p, struct m2m_tls_meter *cm, struct m2m_tls_meter *sm)
{
    m2m_tls_meter(p->c, cm);
    m2m_tls_meter(p->s, sm);
    /* what one side wrote the other read */
    assert_int_equal(cm->wire_out, sm->wire_in);
    assert_int_equal(sm->wire_out, cm->wire_in);
    assert_int_equal(cm->hs_out, sm->hs_in);
    assert_int_equal(sm->hs_out, cm->hs_in);
    assert_int_equal(cm->hs_flights_out, sm->hs_flights_in);
    assert_int_equal(sm->hs_flights_out, cm->hs_flights_in);
    assert_true(cm->hs_out <= cm->wire_out && cm->hs_in <= cm->wire_in);
}

static void test_meters(void **state)
{
    (void)state;
    struct pair p;
    struct m2m_tls_ctx_config s = server_cfg(), c = client_cfg();
    pair_open(&p, &s, &c);
    pump(&p);
    struct m2m_tls_meter cm, sm;
    meters(&p, &cm, &sm);
    /* TLS 1.3: ClientHello; ServerHello..Finished; client Finished */
    assert_int_equal(cm.hs_flights_out, 2);
    assert_int_equal(cm.hs_flights_in, 1);
    assert_true(cm.hs_out > 200 && sm.hs_out > 500);
    assert_int_equal(cm.app_out, 0);
    uint64_t wire_before = cm.wire_out;
    assert_echo(&p, "0123456789");
    meters(&p, &cm, &sm);
    assert_int_equal(cm.app_out, 10);
    assert_int_equal(cm.app_in, 10);
    assert_int_equal(sm.app_in, 10);
    /* one record: 5 header + 10 data + 1 inner type + 16 tag */
    assert_int_equal(cm.wire_out - wire_before, 32);
    pair_close(&p);

    /* TLS 1.2 full: two round trips */
    c.max_version = 0x0303;
    pair_open(&p, &s, &c);
    pump(&p);
    meters(&p, &cm, &sm);
    assert_int_equal(cm.hs_flights_out, 2);
    assert_int_equal(cm.hs_flights_in, 2);
    pair_close(&p);
}

static void report(const char *what, struct pair *p)
{
    struct m2m_tls_meter cm, sm;
    meters(p, &cm, &sm);
    /* a round trip: the client sends a flight and waits for one */
    printf("tls cost: %-40s client->server %5llu B in %u flights, server->client %5llu B in %u flights, "
           "%u round trips, %s %s%s\n",
           what, (unsigned long long)cm.hs_out, cm.hs_flights_out, (unsigned long long)cm.hs_in,
           cm.hs_flights_in, cm.hs_flights_in, cm.version, cm.cipher, cm.resumed ? " (resumed)" : "");
}

/* The numbers for the closing note, with a P-256 server certificate. */
static void test_tls_numbers(void **state)
{
    (void)state;
    struct pair p;
    struct m2m_tls_ctx_config s = server_cfg(), c = client_cfg();
    c.max_version = 0x0303;
    pair_open(&p, &s, &c);
    pump(&p);
    report("TLS 1.2 ECDHE-ECDSA P-256, full", &p);
    pair_reconnect(&p);
    pump(&p);
    report("TLS 1.2 ticket resumption", &p);
    pair_close(&p);

    c = psk_client_cfg();
    pair_open(&p, &s, &c);
    pump(&p);
    report("TLS 1.2 PSK", &p);
    pair_close(&p);

    c = client_cfg();
    pair_open(&p, &s, &c);
    pump(&p);
    assert_echo(&p, "x"); /* the ticket reaches the client */
    report("TLS 1.3 full", &p);
    pair_reconnect(&p);
    pump(&p);
    report("TLS 1.3 resumed", &p);
    pair_close(&p);

    /* without the ticket the server sends for the next time */
    s.session_tickets = c.session_tickets = false;
    pair_open(&p, &s, &c);
    pump(&p);
    report("TLS 1.3 full, no tickets", &p);
    pair_close(&p);
    c.max_version = 0x0303;
    pair_open(&p, &s, &c);
    pump(&p);
    report("TLS 1.2 ECDHE-ECDSA P-256, no tickets", &p);
    pair_close(&p);

    c = client_cfg();
    s = server_cfg();
    s.verify = M2M_TLS_VERIFY_REQUIRE;
    c.cert_file = cli_pem;
    c.key_file = cli_key;
    pair_open(&p, &s, &c);
    pump(&p);
    report("TLS 1.3 full, client certificate", &p);
    pair_close(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tls13_handshake),
        cmocka_unit_test(test_tls12_ecdsa_handshake),
        cmocka_unit_test(test_byte_by_byte),
        cmocka_unit_test(test_large_transfer),
        cmocka_unit_test(test_hostname_mismatch),
        cmocka_unit_test(test_mtls_required),
        cmocka_unit_test(test_mtls_required_without_cert),
        cmocka_unit_test(test_mtls_optional),
        cmocka_unit_test(test_mtls_unknown_ca),
        cmocka_unit_test(test_mtls_expired),
        cmocka_unit_test(test_identity_from_san),
        cmocka_unit_test(test_psk),
        cmocka_unit_test(test_psk_wrong_key),
        cmocka_unit_test(test_bad_configs),
        cmocka_unit_test(test_ccm8_suites),
        cmocka_unit_test(test_tls11_refused),
        cmocka_unit_test(test_plaintext_refused),
        cmocka_unit_test(test_handshake_timeout),
        cmocka_unit_test(test_resumption_tls13),
        cmocka_unit_test(test_resumption_tls12),
        cmocka_unit_test(test_alpn),
        cmocka_unit_test(test_close_notify),
        cmocka_unit_test(test_meters),
        cmocka_unit_test(test_tls_numbers),
    };
    return cmocka_run_group_tests(tests, make_certs, remove_certs);
}
