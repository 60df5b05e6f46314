/* $SYS/broker/... statistics, published as retained QoS 0 messages every
 * sys_interval seconds, with mosquitto's topic names so existing dashboards
 * keep working. They are never written to the store. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "server/mqtt_broker_internal.h"

static void sys_put(struct m2m_broker *b, const char *topic, const char *value, m2m_time now)
{
    struct m2m_slice t = {(const uint8_t *)topic, strlen(topic)};
    struct m2m_slice v = {(const uint8_t *)value, strlen(value)};
    struct msg *m = msg_new(t, v, (struct m2m_slice){0}, M2M_MQTT_PUBLISH, 0, true);
    if (!m)
        return;
    retain_store(b, m, false);
    route(b, NULL, m, now);
    msg_unref(b, m);
}

static void sys_u64(struct m2m_broker *b, const char *topic, uint64_t v, m2m_time now)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%" PRIu64, v);
    sys_put(b, topic, buf, now);
}

void sys_publish(struct m2m_broker *b, m2m_time now)
{
    const struct m2m_broker_stats *st = &b->st;
    size_t sessions = 0, offline = 0, queued = 0;
    for (const struct session *s = b->all; s; s = s->next) {
        sessions++;
        offline += s->client == NULL;
        queued += s->queue.n + s->inflight.n;
    }
    char buf[64];
    snprintf(buf, sizeof buf, "m2mkit %s", b->cfg.version ? b->cfg.version : "");
    sys_put(b, "$SYS/broker/version", buf, now);
    snprintf(buf, sizeof buf, "%" PRId64 " seconds", (int64_t)((now - b->started) / 1000));
    sys_put(b, "$SYS/broker/uptime", buf, now);
    sys_u64(b, "$SYS/broker/clients/connected", st->clients_connected, now);
    sys_u64(b, "$SYS/broker/clients/disconnected", offline, now);
    sys_u64(b, "$SYS/broker/clients/total", sessions, now);
    sys_u64(b, "$SYS/broker/messages/received", st->msgs_received, now);
    sys_u64(b, "$SYS/broker/messages/sent", st->msgs_sent, now);
    sys_u64(b, "$SYS/broker/messages/dropped", st->msgs_dropped, now);
    sys_u64(b, "$SYS/broker/messages/stored", queued, now);
    sys_u64(b, "$SYS/broker/retained messages/count", b->nretained, now);
    sys_u64(b, "$SYS/broker/subscriptions/count", st->subscriptions, now);
    sys_u64(b, "$SYS/broker/bytes/received", st->bytes_received, now);
    sys_u64(b, "$SYS/broker/bytes/sent", st->bytes_sent, now);
    sys_u64(b, "$SYS/broker/connections/refused", st->refused, now);
}
