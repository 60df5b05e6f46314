/* libFuzzer: one CoAP endpoint fed a script of datagrams, each chunk
 * [len:2][sel:1][datagram:len-1]. sel picks one of 4 peers, how the
 * application answers (payload size, Observe, notify) and how virtual time
 * moves. The endpoint also observes /obs on peer 0, so responses and
 * notifications have a request to match (token "obs1"). The low bit of the
 * last byte picks the congestion control (RFC 7252 or CoCoA), so the corpus
 * keeps its meaning and covers both. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/prng.h"
#include "m2m/coap.h"

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n);

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n)
{
    static uint8_t big[3000];
    struct m2m_prng g;
    struct m2m_coap_config cfg;
    struct m2m_coap_event ev;
    struct m2m_coap_out out;
    struct m2m_coap_msg r, q;
    char path[600];
    uint32_t id;
    m2m_time now = 0;
    m2m_prng_seed(&g, 42);
    m2m_coap_config_default(&cfg);
    cfg.rng = m2m_prng_rng(&g);
    cfg.cc = n && (p[n - 1] & 1) ? M2M_COAP_CC_COCOA : M2M_COAP_CC_DEFAULT;
    /* Small caps: the limit paths get exercised and runs stay fast. */
    cfg.max_requests = cfg.max_observers = cfg.max_peers = cfg.max_dedup = 6;
    struct m2m_coap_ep *ep = m2m_coap_ep_new(&cfg);
    if (!ep)
        return 0;
    struct m2m_addr peer = {1, {0}};
    m2m_coap_msg_init(&q, M2M_COAP_CON, M2M_COAP_GET);
    q.tkl = 4; /* a token the fuzzer can learn from the dictionary */
    memcpy(q.token, "obs1", 4);
    m2m_coap_add_str(&q, M2M_COAP_OPT_URI_PATH, "obs");
    m2m_coap_add_uint(&q, M2M_COAP_OPT_OBSERVE, 0);
    m2m_coap_request(ep, now, &peer, &q, &id);
    for (size_t off = 0, len; n - off >= 3; off += 2 + len) {
        len = (size_t)(p[off] << 8 | p[off + 1]);
        len = len && len <= n - off - 2 ? len : n - off - 2;
        uint8_t sel = p[off + 2];
        peer.b[0] = sel & 3;
        m2m_coap_ep_feed(ep, now, &peer, p + off + 3, len - 1);
        m2m_time next = m2m_coap_ep_next_timeout(ep);
        now = (sel & 0x80) && next != M2M_NEVER && next > now ? next : now + (sel >> 4) * 100;
        m2m_coap_ep_on_timeout(ep, now);
        while (m2m_coap_ep_poll_event(ep, &ev) == 1) {
            if (ev.type != M2M_COAP_EV_REQUEST)
                continue;
            snprintf(path, sizeof path, "%s", ev.path);
            m2m_coap_msg_init(&r, M2M_COAP_ACK, M2M_COAP_CONTENT);
            r.payload = big;
            r.payload_len = sel & 4 ? sizeof big : 5;
            if (sel & 8)
                m2m_coap_add_uint(&r, M2M_COAP_OPT_OBSERVE, 0);
            m2m_coap_respond(ep, ev.id, &r);
            r.code = sel & 0x40 ? M2M_COAP_NOT_FOUND : M2M_COAP_CONTENT;
            if (sel & 0x30)
                m2m_coap_notify(ep, path, &r, sel & 0x20);
        }
        while (m2m_coap_ep_poll_output(ep, &out) == 1)
            if (out.len > cfg.max_message)
                abort(); /* the endpoint must respect its own datagram cap */
    }
    m2m_coap_ep_free(ep);
    return 0;
}
