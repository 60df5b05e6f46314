/* libFuzzer: m2m_coap_uri_parse on a NUL-terminated copy of the input, then
 * the options it gives, encoded into one request. */
#include <stdlib.h>
#include <string.h>

#include "m2m/coap.h"

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n);

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n)
{
    static struct m2m_coap_uri u;
    static struct m2m_coap_msg m;
    uint8_t out[2048];
    size_t len;
    char *s = malloc(n + 1);
    if (!s)
        return 0;
    memcpy(s, p, n);
    s[n] = 0;
    if (m2m_coap_uri_parse(s, &u) == M2M_OK) {
        m2m_coap_msg_init(&m, M2M_COAP_CON, M2M_COAP_GET);
        if (m2m_coap_uri_to_opts(&u, &m) == M2M_OK && m2m_coap_encode(&m, out, sizeof out, &len) == M2M_OK &&
            m2m_coap_decode(&m, out, len))
            abort(); /* what we encode must decode */
    }
    free(s);
    return 0;
}
