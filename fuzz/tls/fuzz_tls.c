/* libFuzzer: arbitrary bytes into a TLS server filter around an echoing
 * inner core, with a certificate, client certificates optional, PSK and
 * ALPN on. The first input byte chooses: bits 0-5, where the rest is cut
 * into two feeds; bit 6, the handshake deadline passes at the end; bit 7,
 * an application close at the end. The key and certificate are a fixed
 * self-signed P-256 pair for this target only. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net/tls.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n);

static const char key_pem[] = "-----BEGIN PRIVATE KEY-----\n"
                              "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg/CGfMA94QmYVlaF/\n"
                              "OYlkSvyJJ5Myz6TvJCXAH/rcESqhRANCAATsLKRr3+7KhBwp8GSHLojOR+t7QnI4\n"
                              "vYZZAr6BR6PCEzBdUhoF+e199a/mYyaeXe0+jo5ardnACqftvENYgjVD\n"
                              "-----END PRIVATE KEY-----\n";
static const char cert_pem[] = "-----BEGIN CERTIFICATE-----\n"
                               "MIIBqzCCAVGgAwIBAgIUe4M17aV8k0ZpMwhVVzB/np6PjLgwCgYIKoZIzj0EAwIw\n"
                               "KjEUMBIGA1UECgwLbTJta2l0IGZ1enoxEjAQBgNVBAMMCWxvY2FsaG9zdDAgFw0y\n"
                               "NjExMjUxMDIyMDhaGA8yMTI2MTEwMTEwMjIwOFowKjEUMBIGA1UECgwLbTJta2l0\n"
                               "IGZ1enoxEjAQBgNVBAMMCWxvY2FsaG9zdDBZMBMGByqGSM49AgEGCCqGSM49AwEH\n"
                               "A0IABOwspGvf7sqEHCnwZIcuiM5H63tCcji9hlkCvoFHo8ITMF1SGgX57X31r+Zj\n"
                               "Jp5d7T6Ojlqt2cAKp+28Q1iCNUOjUzBRMB0GA1UdDgQWBBRr+vkOOy1EGU31LxYg\n"
                               "NzjGtscKyTAfBgNVHSMEGDAWgBRr+vkOOy1EGU31LxYgNzjGtscKyTAPBgNVHRMB\n"
                               "Af8EBTADAQH/MAoGCCqGSM49BAMCA0gAMEUCIEctb5qrnW/8CHY8Qf9iVCYgGMGI\n"
                               "ImYvA8IA5bU/BFNKAiEAmiXzhr15NmULwALbmnx79rnCMYHMkPdM/7oUzycIVMg=\n"
                               "-----END CERTIFICATE-----\n";
static const char psk_lines[] = "device-7:00112233445566778899aabbccddeeff\n";

struct echo {
    uint8_t buf[4096];
    size_t n;
};

static int echo_feed(void *c, m2m_time now, const uint8_t *p, size_t n)
{
    struct echo *e = c;
    (void)now;
    n = n < sizeof e->buf - e->n ? n : sizeof e->buf - e->n;
    memcpy(e->buf + e->n, p, n);
    e->n += n;
    return 0;
}

static bool echo_poll_output(void *c, const uint8_t **p, size_t *n)
{
    struct echo *e = c;
    *p = e->buf;
    *n = e->n;
    e->n = 0;
    return *n > 0;
}

static m2m_time echo_next_timeout(const void *c)
{
    (void)c;
    return 5000;
}

static void echo_on_timeout(void *c, m2m_time now)
{
    (void)c;
    (void)now;
}

static const struct m2m_stream_ops echo_ops = {"echo", echo_feed, echo_poll_output, echo_next_timeout,
                                               echo_on_timeout};

static struct m2m_tls_ctx *ctx;

/* m2m_tls_ctx_new reads files: the PEM strings go through a scratch
 * directory that is gone before the first input. */
static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0)
        abort();
    fclose(f);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char dir[] = "/tmp/m2m-fuzz-tls-XXXXXX", k[64], c[64], psk[64], err[256];
    if (!mkdtemp(dir))
        abort();
    snprintf(k, sizeof k, "%s/key.pem", dir);
    snprintf(c, sizeof c, "%s/cert.pem", dir);
    snprintf(psk, sizeof psk, "%s/psk.txt", dir);
    write_file(k, key_pem);
    write_file(c, cert_pem);
    write_file(psk, psk_lines);
    struct m2m_tls_ctx_config cfg = {.server = true,
                                     .cert_file = c,
                                     .key_file = k,
                                     .ca_file = c,
                                     .verify = M2M_TLS_VERIFY_OPTIONAL,
                                     .psk_file = psk,
                                     .alpn = "mqtt,coap",
                                     .session_tickets = true,
                                     .handshake_timeout_ms = 1000};
    int rc = m2m_tls_ctx_new(&cfg, &ctx, err, sizeof err);
    unlink(k);
    unlink(c);
    unlink(psk);
    rmdir(dir);
    if (rc) {
        fprintf(stderr, "fuzz_tls: %s\n", err);
        abort();
    }
    return 0;
}

static void drain(struct m2m_tls *t)
{
    const uint8_t *o;
    size_t on;
    while (m2m_tls_stream_ops.poll_output(t, &o, &on)) {
    }
    (void)m2m_tls_closed(t);
    (void)m2m_tls_reason(t);
    (void)m2m_tls_peer_identity(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n)
{
    if (!n)
        return 0;
    struct echo e = {.n = 0};
    struct m2m_tls *t = m2m_tls_new(ctx, &echo_ops, &e, 0);
    uint8_t flags = p[0];
    size_t cut = (size_t)(flags & 0x3f) < n - 1 ? (size_t)(flags & 0x3f) : n - 1;
    p++;
    n--;
    m2m_tls_stream_ops.feed(t, 10, p, cut);
    drain(t);
    m2m_tls_stream_ops.feed(t, 20, p + cut, n - cut);
    drain(t);
    if (flags & 0x40)
        m2m_tls_stream_ops.on_timeout(t, 2000);
    if (flags & 0x80)
        m2m_tls_close(t);
    drain(t);
    struct m2m_tls_meter m;
    m2m_tls_meter(t, &m);
    m2m_tls_free(t);
    return 0;
}
