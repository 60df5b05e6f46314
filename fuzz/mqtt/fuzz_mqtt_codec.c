/* libFuzzer: m2m_mqtt_frame and m2m_mqtt_decode. The first byte picks the
 * session version (odd: 5.0, even: 3.1.1). Whatever decodes must encode, the
 * encoding must decode, and its re-encoding must be the very same bytes. */
#include <stdlib.h>
#include <string.h>

#include "m2m/mqtt.h"

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n);

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n)
{
    static uint8_t out1[1 << 17], out2[1 << 17];
    struct m2m_mqtt_packet a, b;
    size_t total = 0, len1 = 0, len2 = 0;
    if (n < 1)
        return 0;
    enum m2m_mqtt_version v = (p[0] & 1) ? M2M_MQTT_V5 : M2M_MQTT_V311;
    int frc = m2m_mqtt_frame(p + 1, n - 1, 0, &total);
    if (m2m_mqtt_decode(&a, v, p + 1, n - 1, NULL) != M2M_OK)
        return 0;
    if (frc != 0 || total != n - 1 || m2m_mqtt_encode(&a, out1, sizeof out1, &len1) != 0 ||
        m2m_mqtt_encoded_size(&a) != len1)
        abort();
    if (m2m_mqtt_decode(&b, a.version, out1, len1, NULL) != 0 || b.type != a.type ||
        m2m_mqtt_encode(&b, out2, sizeof out2, &len2) != 0 || len2 != len1 || memcmp(out1, out2, len1))
        abort();
    return 0;
}
