/* The CoAP endpoint as a datagram core for the pump. */
#include "net/coap_wire.h"

static int feed(void *core, m2m_time now, const struct m2m_addr *from, const uint8_t *p, size_t n)
{
    return m2m_coap_ep_feed(core, now, from, p, n);
}

static int poll_output(void *core, struct m2m_dgram *out)
{
    struct m2m_coap_out o;
    if (!m2m_coap_ep_poll_output(core, &o))
        return 0;
    out->peer = o.peer;
    out->data = o.data;
    out->len = o.len;
    return 1;
}

static m2m_time next_timeout(const void *core)
{
    return m2m_coap_ep_next_timeout(core);
}
static void on_timeout(void *core, m2m_time now)
{
    m2m_coap_ep_on_timeout(core, now);
}

const struct m2m_wire_ops m2m_coap_wire_ops = {
    .name = "coap",
    .feed = feed,
    .poll_output = poll_output,
    .next_timeout = next_timeout,
    .on_timeout = on_timeout,
};
