/* Payloads for people (the client subcommands) and payload arguments. */
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "m2m/coap.h"

static bool printable(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] < 0x20 && p[i] != '\n' && p[i] != '\r' && p[i] != '\t')
            return false;
    return true;
}

static void hexdump(FILE *f, const unsigned char *p, size_t n)
{
    for (size_t off = 0; off < n; off += 16) {
        fprintf(f, "%08zx ", off);
        for (size_t i = off; i < off + 16; i++) {
            if (i < n)
                fprintf(f, " %02x", p[i]);
            else
                fputs("   ", f);
        }
        fputs("  |", f);
        for (size_t i = off; i < off + 16 && i < n; i++)
            fputc(isprint(p[i]) ? p[i] : '.', f);
        fputs("|\n", f);
    }
}

static bool print_json(FILE *f, const unsigned char *p, size_t n)
{
    json_error_t jerr;
    json_t *j = json_loadb((const char *)p, n, JSON_DECODE_ANY, &jerr);
    if (!j)
        return false;
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
    json_decref(j);
    if (!s)
        return false;
    fprintf(f, "%s\n", s);
    free(s);
    return true;
}

static bool print_links(FILE *f, const unsigned char *p, size_t n)
{
    struct m2m_coap_link_iter it = {(const char *)p, n, 0};
    struct m2m_slice target, params;
    int rc;
    while ((rc = m2m_coap_link_next(&it, &target, &params)) == 1)
        fprintf(f, "<%.*s>%.*s\n", (int)target.n, (const char *)target.p, (int)params.n,
                (const char *)params.p);
    return rc == 0;
}

void cli_print_payload(FILE *f, int fmt, const unsigned char *p, size_t n)
{
    if (!n)
        return;
    if ((fmt == M2M_COAP_FMT_JSON || fmt == M2M_COAP_FMT_SENML_JSON || fmt == M2M_COAP_FMT_LWM2M_JSON) &&
        print_json(f, p, n))
        return;
    if (fmt == M2M_COAP_FMT_LINK && printable(p, n) && print_links(f, p, n))
        return;
    if ((fmt == M2M_COAP_FMT_CBOR || fmt == M2M_COAP_FMT_SENML_CBOR) && cli_print_cbor(f, p, n))
        return;
    if (fmt == M2M_COAP_FMT_OCTETS || fmt == M2M_COAP_FMT_CBOR || fmt == M2M_COAP_FMT_SENML_CBOR ||
        fmt == M2M_COAP_FMT_LWM2M_TLV || !printable(p, n)) {
        hexdump(f, p, n);
        return;
    }
    fwrite(p, 1, n, f);
    if (p[n - 1] != '\n')
        fputc('\n', f);
}

int cli_read_payload(const char *arg, unsigned char **buf, size_t *len)
{
    *buf = NULL;
    if (arg[0] != '@') {
        *len = strlen(arg);
        return 0;
    }
    FILE *f = !strcmp(arg + 1, "-") ? stdin : fopen(arg + 1, "rb");
    if (!f)
        return -errno;
    size_t cap = 65536, n = 0;
    unsigned char *b = malloc(cap);
    while (b) {
        size_t k = fread(b + n, 1, cap - n, f);
        n += k;
        if (k == 0)
            break;
        if (n == cap) {
            unsigned char *nb = realloc(b, cap * 2);
            if (!nb) {
                free(b);
                b = NULL;
                break;
            }
            b = nb;
            cap *= 2;
        }
    }
    if (f != stdin)
        fclose(f);
    if (!b)
        return -ENOMEM;
    *buf = b;
    *len = n;
    return 0;
}
