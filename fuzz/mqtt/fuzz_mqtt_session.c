/* libFuzzer: the broker-side MQTT session core fed in three chunks, with an
 * application that accepts, acks, answers and lets virtual time run. */
#include "m2m/mqtt_session.h"

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n);

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n)
{
    struct m2m_mqtt_conn_config cfg = {
        .max_packet_size = 4096, .topic_alias_maximum = 4, .receive_maximum = 4};
    struct m2m_mqtt_conn *c = m2m_mqtt_conn_new(&cfg);
    static const uint8_t codes[M2M_MQTT_MAX_FILTERS];
    size_t cut[4] = {0, n / 3, n / 3 + n / 5, n};
    for (int i = 0; c && i < 3; i++) {
        m2m_mqtt_conn_feed(c, i * 7000, p + cut[i], cut[i + 1] - cut[i]);
        struct m2m_mqtt_conn_event ev;
        while (m2m_mqtt_conn_poll_event(c, &ev)) {
            if (ev.type == M2M_MQTT_EV_CONNECT)
                m2m_mqtt_conn_accept(c, false, NULL);
            else if (ev.type == M2M_MQTT_EV_PUBLISH && ev.publish->qos)
                m2m_mqtt_conn_ack(c, ev.publish->packet_id, 0);
            else if (ev.type == M2M_MQTT_EV_SUBSCRIBE)
                m2m_mqtt_conn_suback(c, ev.subscribe->packet_id, codes, ev.subscribe->n);
        }
        m2m_mqtt_conn_publish(c, i * 7000, (struct m2m_slice){p, n < 4 ? n : 4}, (struct m2m_slice){p, n}, 2,
                              0, 0, 0);
        m2m_mqtt_conn_resend(c);
        m2m_mqtt_conn_on_timeout(c, i * 7000 + 3000);
        const uint8_t *o;
        size_t on;
        while (m2m_mqtt_conn_poll_output(c, &o, &on)) {
        }
    }
    m2m_mqtt_conn_free(c);
    return 0;
}
