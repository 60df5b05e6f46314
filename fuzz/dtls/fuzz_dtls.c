/* libFuzzer: arbitrary datagrams from four peers into a DTLS server filter
 * (PSK and an ECDSA certificate) around an echoing inner core, in virtual
 * time. Input: one flags byte (bit 0: no cookie exchange, so hellos reach
 * OpenSSL's state machine; bit 1: a 256-byte MTU), then datagrams, each
 * [peer (2 bits) | time step (6 bits)] [length, 2 bytes] [bytes]. The
 * certificate is a throwaway, made for this target only. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net/dtls.h"

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static const char pem[] = "-----BEGIN CERTIFICATE-----\n"
                          "MIIBdDCCARugAwIBAgIUXHxM3cjKAHiTFESIK4vpa4KDBTkwCgYIKoZIzj0EAwIw\n"
                          "DzENMAsGA1UEAwwEZnV6ejAgFw0yNjExMjUxMDI4NDdaGA8yMTI2MTEwMTEwMjg0\n"
                          "N1owDzENMAsGA1UEAwwEZnV6ejBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABPj3\n"
                          "cnKhH2miwc9WjV/o25026EAWo046o9I3QBKPjezhgszhRk8s8T7o/0XvuDYZ7cvk\n"
                          "qU/Tz07G9A2eKC885sOjUzBRMB0GA1UdDgQWBBTd78c59yinkBbJXSKo3LtLcNVS\n"
                          "AjAfBgNVHSMEGDAWgBTd78c59yinkBbJXSKo3LtLcNVSAjAPBgNVHRMBAf8EBTAD\n"
                          "AQH/MAoGCCqGSM49BAMCA0cAMEQCIA71ucefFmX7QOsrzAT6u2MvECRh9fs0pgEs\n"
                          "4FesHxfrAiBl+0BY4LVn5A1E6lDbM1eud7VfrdLxyhWDg1bnxBUHkg==\n"
                          "-----END CERTIFICATE-----\n"
                          "-----BEGIN PRIVATE KEY-----\n"
                          "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgxyaHttgXtlJsooBR\n"
                          "F8M+sP0oodjzC+fJXb8duFnyHjOhRANCAAT493JyoR9posHPVo1f6NudNuhAFqNO\n"
                          "OqPSN0ASj43s4YLM4UZPLPE+6P9F77g2Ge3L5KlP089OxvQNnigvPObD\n"
                          "-----END PRIVATE KEY-----\n";

static struct m2m_dtls_ctx *ctx;
static struct m2m_dgram echo_out;
static uint8_t echo_buf[2048];
static int echo_pending;

static int echo_feed(void *c, m2m_time now, const struct m2m_addr *from, const uint8_t *d, size_t len)
{
    (void)c;
    (void)now;
    echo_out.peer = *from;
    echo_out.len = len < sizeof echo_buf ? len : sizeof echo_buf;
    memcpy(echo_buf, d, echo_out.len);
    echo_out.data = echo_buf;
    echo_pending = 1;
    return 0;
}
static int echo_poll(void *c, struct m2m_dgram *out)
{
    (void)c;
    if (!echo_pending)
        return 0;
    echo_pending = 0;
    *out = echo_out;
    return 1;
}
static m2m_time echo_next(const void *c)
{
    (void)c;
    return M2M_NEVER;
}
static void echo_timeout(void *c, m2m_time now)
{
    (void)c;
    (void)now;
}
static const struct m2m_wire_ops echo_ops = {"echo", echo_feed, echo_poll, echo_next, echo_timeout};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char dir[] = "/tmp/fuzz-dtls.XXXXXX", cert[64], psk[64];
    if (!mkdtemp(dir))
        abort();
    snprintf(cert, sizeof cert, "%s/cert.pem", dir);
    snprintf(psk, sizeof psk, "%s/psk.txt", dir);
    FILE *f = fopen(cert, "w");
    fputs(pem, f);
    fclose(f);
    f = fopen(psk, "w");
    fputs("sensor-7:73656e736f722d372d736563726574\n", f);
    fclose(f);
    struct m2m_dtls_ctx_config c = {.server = true, .cert_file = cert, .psk_file = psk};
    char err[200];
    if (m2m_dtls_ctx_new(&c, &ctx, err, sizeof err))
        abort();
    unlink(cert);
    unlink(psk);
    rmdir(dir);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n)
{
    if (!n)
        return 0;
    struct m2m_dtls_config cfg;
    m2m_dtls_config_default(&cfg);
    cfg.no_cookie = p[0] & 1;
    cfg.mtu = p[0] & 2 ? 256 : 1280;
    cfg.max_peers = 3;
    struct m2m_dtls *d = m2m_dtls_new(ctx, &cfg, &echo_ops, NULL);
    m2m_time now = 0;
    size_t off = 1;
    while (off + 3 <= n) {
        struct m2m_addr from = {.len = 6, .b = {127, 0, 0, 1, 0x16, (uint8_t)(p[off] & 3)}};
        now += (p[off] >> 2) * 100;
        size_t len = (size_t)p[off + 1] << 8 | p[off + 2];
        off += 3;
        len = len < n - off ? len : n - off;
        if (m2m_dtls_wire_ops.next_timeout(d) <= now)
            m2m_dtls_wire_ops.on_timeout(d, now);
        m2m_dtls_wire_ops.feed(d, now, &from, p + off, len);
        off += len;
        struct m2m_dgram out;
        while (m2m_dtls_wire_ops.poll_output(d, &out))
            if (out.len > cfg.mtu)
                abort();
    }
    m2m_dtls_close_all(d);
    m2m_dtls_free(d);
    return 0;
}
