/* libFuzzer: m2m_coap_decode. Decoding is canonical, so whatever decodes must
 * re-encode to the very same bytes; the option helpers must cope with it. */
#include <stdlib.h>
#include <string.h>

#include "m2m/coap.h"

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n);

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n)
{
    static uint8_t out[70000];
    struct m2m_coap_msg m, again;
    struct m2m_coap_block b;
    char path[4096];
    size_t len = 0;
    if (m2m_coap_decode(&m, p, n) != M2M_OK)
        return 0;
    if (m2m_coap_encode(&m, out, sizeof out, &len) || len != n || memcmp(out, p, n) ||
        m2m_coap_encoded_size(&m) != n)
        abort();
    if (m2m_coap_decode(&again, out, len) || again.nopt != m.nopt || again.mid != m.mid)
        abort();
    m2m_coap_msg_path(&m, path, sizeof path);
    m2m_coap_bad_critical(&m);
    m2m_coap_get_block(&m, M2M_COAP_OPT_BLOCK2, &b);
    m2m_coap_get_uint(&m, M2M_COAP_OPT_OBSERVE, 0);
    return 0;
}
