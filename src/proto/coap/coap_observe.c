/* Observe sequence numbers (RFC 7641 §3.4, §4.4). */
#include "m2m/coap.h"

/* Notifications older than 128 s cannot be reordered with a newer one. */
#define OBSERVE_WINDOW_MS 128000

bool m2m_coap_observe_fresher(uint32_t v1, m2m_time t1, uint32_t v2, m2m_time t2)
{
    const uint32_t half = 1u << 23;
    v1 &= 0xffffff;
    v2 &= 0xffffff;
    /* t2 - t1 written so that it cannot overflow for any pair of times. */
    bool later = t2 > t1 && (uint64_t)t2 - (uint64_t)t1 > OBSERVE_WINDOW_MS;
    return (v1 < v2 && v2 - v1 < half) || (v1 > v2 && v1 - v2 > half) || later;
}
