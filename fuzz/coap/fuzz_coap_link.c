/* libFuzzer: link-format documents. The input up to the first newline is a
 * query filter; the rest is walked link by link, and each link is matched
 * against the filter and written back with m2m_coap_link_append. */
#include <stdlib.h>
#include <string.h>

#include "m2m/coap.h"

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n);

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n)
{
    const uint8_t *nl = memchr(p, '\n', n);
    size_t qn = nl ? (size_t)(nl - p) : 0;
    struct m2m_coap_link_iter it = {(const char *)p + qn, n - qn, 0};
    struct m2m_slice target, params;
    char href[256], attr[256], doc[512];
    size_t len = 0;
    while (m2m_coap_link_next(&it, &target, &params) == 1) {
        if (target.n >= sizeof href || params.n >= sizeof attr)
            continue;
        memcpy(href, target.p, target.n);
        href[target.n] = 0;
        memcpy(attr, params.p, params.n);
        attr[params.n] = 0;
        struct m2m_coap_link l = {href, attr, attr, attr, (int)params.n, (long)target.n, qn & 1};
        m2m_coap_link_match(&l, (const char *)p, qn);
        m2m_coap_link_append(doc, sizeof doc, &len, &l);
    }
    return 0;
}
