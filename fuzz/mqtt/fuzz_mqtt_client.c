/* libFuzzer: the client-side MQTT core after its CONNECT, fed arbitrary
 * server bytes in three chunks; between them the application publishes,
 * subscribes, lets virtual time run and reconnects once the core closed.
 * The first input byte picks the version and the options. */
#include "m2m/mqtt_client.h"

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n);

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n)
{
    if (n < 1)
        return 0;
    struct m2m_mqtt_client_config cfg = {
        .version = (p[0] & 1) ? M2M_MQTT_V5 : M2M_MQTT_V311,
        .client_id = {(const uint8_t *)"fz", 2},
        .clean_start = (p[0] & 2) != 0,
        .keep_alive = 5,
        .receive_maximum = 3,
        .max_packet_size = 4096,
        .topic_alias_maximum = 3,
        .topic_aliases = true,
        .max_queued = 8,
        .max_events = 16,
    };
    struct m2m_mqtt_client *c = m2m_mqtt_client_new(&cfg);
    struct m2m_mqtt_subscription sub = {.filter = {(const uint8_t *)"a/#", 3}, .qos = 2};
    size_t cut[4] = {1, 1 + (n - 1) / 3, 1 + (n - 1) / 2, n};
    m2m_mqtt_client_connect(c, 0);
    for (int i = 0; c && i < 3; i++) {
        m2m_time now = i * 6000;
        m2m_mqtt_client_feed(c, now, p + cut[i], cut[i + 1] - cut[i]);
        struct m2m_mqtt_client_event ev;
        bool closed = false;
        while (m2m_mqtt_client_poll_event(c, &ev))
            closed |= ev.type == M2M_MQTT_CEV_CLOSED;
        m2m_mqtt_client_publish(c, now, (struct m2m_slice){(const uint8_t *)"a/b", 3},
                                (struct m2m_slice){p, n}, (uint8_t)(i % 3), false, NULL, NULL);
        m2m_mqtt_client_subscribe(c, now, &sub, 1, NULL, NULL);
        m2m_mqtt_client_on_timeout(c, now + 5000);
        const uint8_t *o;
        size_t on;
        while (m2m_mqtt_client_poll_output(c, &o, &on)) {
        }
        if (closed)
            m2m_mqtt_client_connect(c, now);
    }
    m2m_mqtt_client_free(c);
    return 0;
}
