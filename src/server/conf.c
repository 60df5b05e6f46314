#include "server/conf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "m2m/err.h"

#define F(field) offsetof(struct m2m_conf, field)
#define STR(field) M2M_CONF_STR, F(field), sizeof(((struct m2m_conf *)0)->field)
#define NUM(type, field) type, F(field), 0
#define DAY 86400000.0

const struct m2m_conf_key m2m_conf_keys[] = {
    {"server.data_dir", STR(data_dir), "./var", 0, 0,
     "Directory for persistent data (SQLite databases, certificates)."},
    {"server.log_level", STR(log_level), "info", 0, 0, "error, warn, info or debug (-v sets debug)."},

    {"tls.cert", STR(tls_cert), "", 0, 0,
     "Server certificate chain (PEM) for TLS and DTLS listeners; empty: data_dir/certs/server.pem if it "
     "exists."},
    {"tls.key", STR(tls_key), "", 0, 0, "Private key of tls.cert (PEM); empty: data_dir/certs/server.key."},
    {"tls.ca", STR(tls_ca), "", 0, 0,
     "CA certificates (PEM) that client certificates must chain to; empty: data_dir/certs/ca.pem if it "
     "exists."},
    {"tls.verify_clients", STR(tls_verify_clients), "optional", 0, 0,
     "Client certificates: none (not asked), optional (asked, verified if sent) or require."},
    {"tls.psk_file", STR(tls_psk_file), "", 0, 0,
     "Pre-shared keys (`identity:hexkey` lines) for DTLS and TLS PSK; empty: data_dir/certs/psk.txt if any."},
    {"tls.min_version", STR(tls_min_version), "1.2", 0, 0,
     "Oldest TLS version accepted: 1.2 or 1.3 (1.0 and 1.1 never)."},
    {"tls.handshake_timeout", NUM(M2M_CONF_DURATION, tls_handshake_timeout), "10s", 100, 600000,
     "A TLS or DTLS handshake not finished by then is cut off."},
    {"tls.session_tickets", NUM(M2M_CONF_BOOL, tls_session_tickets), "true", 0, 1,
     "Offer session resumption (TLS session tickets, DTLS session cache)."},

    {"coap.enabled", NUM(M2M_CONF_BOOL, coap_enabled), "true", 0, 1, "Serve CoAP."},
    {"coap.bind", STR(coap_bind), "127.0.0.1", 0, 0, "IPv4 address to listen on; empty for none."},
    {"coap.bind6", STR(coap_bind6), "::1", 0, 0, "IPv6 address to listen on; empty for none."},
    {"coap.port", NUM(M2M_CONF_INT, coap_port), "5683", 0, 65535, "UDP port (0: any free port)."},
    {"coap.dtls_enabled", NUM(M2M_CONF_BOOL, coap_dtls_enabled), "true", 0, 1,
     "Serve CoAP over DTLS 1.2 (coaps://) when a certificate or tls.psk_file is configured."},
    {"coap.dtls_port", NUM(M2M_CONF_INT, coap_dtls_port), "5684", 0, 65535, "DTLS port (0: any free port)."},
    {"coap.dtls_mtu", NUM(M2M_CONF_INT, coap_dtls_mtu), "1280", 256, 65507,
     "Largest DTLS datagram sent (records and handshake flights are cut to fit)."},
    {"coap.dtls_max_peers", NUM(M2M_CONF_INT, coap_dtls_max_peers), "10000", 1, 1e7,
     "DTLS sessions kept at once (new handshakes are refused beyond)."},
    {"coap.dtls_idle_timeout", NUM(M2M_CONF_DURATION, coap_dtls_idle_timeout), "1h", 1000, 30 * DAY,
     "A DTLS session without traffic for this long is dropped."},
    {"coap.ack_timeout", NUM(M2M_CONF_DURATION, coap_ack_timeout), "2s", 1, 600000,
     "ACK_TIMEOUT (RFC 7252 §4.8)."},
    {"coap.ack_random_factor", NUM(M2M_CONF_RATIO, coap_ack_random_factor), "1.5", 1.0, 4.0,
     "ACK_RANDOM_FACTOR."},
    {"coap.max_retransmit", NUM(M2M_CONF_INT, coap_max_retransmit), "4", 0, 20, "MAX_RETRANSMIT."},
    {"coap.nstart", NUM(M2M_CONF_INT, coap_nstart), "1", 1, 1024,
     "NSTART: outstanding interactions per peer."},
    {"coap.default_leisure", NUM(M2M_CONF_DURATION, coap_default_leisure), "5s", 0, 600000,
     "DEFAULT_LEISURE."},
    {"coap.probing_rate", NUM(M2M_CONF_INT, coap_probing_rate), "1", 1, 1e9,
     "PROBING_RATE in bytes/s towards a peer that does not answer."},
    {"coap.max_latency", NUM(M2M_CONF_DURATION, coap_max_latency), "100s", 0, 3600000,
     "MAX_LATENCY (enters EXCHANGE_LIFETIME)."},
    {"coap.max_message", NUM(M2M_CONF_SIZE, coap_max_message), "1152", 64, 65507,
     "Largest datagram sent or assembled into."},
    {"coap.block_size", NUM(M2M_CONF_SIZE, coap_block_size), "1024", 16, 1024,
     "Preferred block size for Block1/Block2 (16..1024, a power of two)."},
    {"coap.max_body", NUM(M2M_CONF_SIZE, coap_max_body), "4M", 0, 1 << 30,
     "Largest body assembled from Block1 blocks (4.13 beyond)."},
    {"coap.max_dedup", NUM(M2M_CONF_INT, coap_max_dedup), "100000", 16, 1e8,
     "Remembered (peer, Message ID) pairs for deduplication; the oldest are forgotten first."},
    {"coap.max_peers", NUM(M2M_CONF_INT, coap_max_peers), "100000", 1, 1e8,
     "Peers with per-peer state (messages in flight, observers)."},
    {"coap.max_pending", NUM(M2M_CONF_INT, coap_max_pending), "10000", 1, 65535,
     "Requests being processed at once (5.03 beyond)."},
    {"coap.max_observers", NUM(M2M_CONF_INT, coap_max_observers), "10000", 0, 1e8,
     "Observe registrations in total (served without Observe beyond)."},
    {"coap.max_uploads", NUM(M2M_CONF_INT, coap_max_uploads), "256", 0, 1e6,
     "Block1 uploads being assembled at once (5.03 beyond)."},
    {"coap.separate_after", NUM(M2M_CONF_DURATION, coap_separate_after), "1s", 0, 600000,
     "Send an empty ACK if the answer is not ready by then."},
    {"coap.notify_min_interval", NUM(M2M_CONF_DURATION, coap_notify_min_interval), "0", 0, DAY,
     "Least time between two notifications to one observer (newer states replace waiting ones)."},
    {"coap.notify_con_every", NUM(M2M_CONF_DURATION, coap_notify_con_every), "24h", 0, 30 * DAY,
     "A confirmable notification at least this often (RFC 7641 §4.5)."},
    {"coap.max_resources", NUM(M2M_CONF_INT, coap_max_resources), "10000", 0, 1e8,
     "Resources in the tree (5.03 beyond)."},
    {"coap.max_payload", NUM(M2M_CONF_SIZE, coap_max_payload), "1M", 0, 1 << 30,
     "Largest representation stored in one resource (4.13 beyond)."},
    {"coap.congestion_control", STR(coap_congestion_control), "default", 0, 0,
     "Retransmission timeouts: default (RFC 7252: ACK_TIMEOUT, doubling) or cocoa (draft-ietf-core-cocoa: "
     "RTT estimators per peer, variable back-off)."},
    {"coap.token_length", NUM(M2M_CONF_INT, coap_token_length), "4", 0, 8,
     "Token length of requests and observations we start."},

    {"mqtt.enabled", NUM(M2M_CONF_BOOL, mqtt_enabled), "true", 0, 1, "Serve MQTT 3.1.1 and 5.0."},
    {"mqtt.bind", STR(mqtt_bind), "127.0.0.1", 0, 0, "IPv4 address to listen on; empty for none."},
    {"mqtt.bind6", STR(mqtt_bind6), "::1", 0, 0, "IPv6 address to listen on; empty for none."},
    {"mqtt.port", NUM(M2M_CONF_INT, mqtt_port), "1883", 0, 65535, "TCP port (0: any free port)."},
    {"mqtt.max_connections", NUM(M2M_CONF_INT, mqtt_max_connections), "100000", 1, 1e7,
     "Connections on all MQTT listeners together; beyond, new ones are closed at once."},
    {"mqtt.max_connections_per_address", NUM(M2M_CONF_INT, mqtt_max_connections_per_address), "0", 0, 1e7,
     "Connections from one IP address (0: no cap); set it on public listeners."},
    {"mqtt.max_packet_size", NUM(M2M_CONF_SIZE, mqtt_max_packet_size), "1M", 64, 268435460,
     "Largest packet accepted (v5: advertised as Maximum Packet Size; larger ones close with 0x95)."},
    {"mqtt.receive_maximum", NUM(M2M_CONF_INT, mqtt_receive_maximum), "32", 1, 65535,
     "Inbound QoS 1/2 messages in flight per client (v5: advertised)."},
    {"mqtt.max_inflight", NUM(M2M_CONF_INT, mqtt_max_inflight), "32", 1, 65535,
     "Outbound QoS 1/2 messages in flight per client (the client's Receive Maximum also applies)."},
    {"mqtt.topic_alias_maximum", NUM(M2M_CONF_INT, mqtt_topic_alias_maximum), "16", 0, 65535,
     "Topic aliases a v5 client may set (0x94 beyond)."},
    {"mqtt.connect_timeout", NUM(M2M_CONF_DURATION, mqtt_connect_timeout), "10s", 100, 600000,
     "Time allowed between the TCP connection and CONNECT."},
    {"mqtt.max_queued", NUM(M2M_CONF_INT, mqtt_max_queued), "1000", 0, 1e7,
     "Messages queued per session while the client is slow or offline (oldest QoS 0 dropped first)."},
    {"mqtt.max_retained", NUM(M2M_CONF_INT, mqtt_max_retained), "100000", 0, 1e8,
     "Retained messages kept in total."},
    {"mqtt.max_write_queue", NUM(M2M_CONF_SIZE, mqtt_max_write_queue), "8M", 65536, 1 << 30,
     "Unwritten bytes towards one client before it is disconnected as not reading."},
    {"mqtt.max_keep_alive", NUM(M2M_CONF_INT, mqtt_max_keep_alive), "0", 0, 65535,
     "Longest keep alive in seconds (0: any): v5 clients are told a shorter one (Server Keep Alive), 3.1.1 "
     "clients asking for more are refused, as mosquitto's max_keepalive."},
    {"mqtt.max_subscriptions", NUM(M2M_CONF_INT, mqtt_max_subscriptions), "10000", 1, 1e7,
     "Subscriptions per session (SUBACK 0x97 Quota exceeded beyond, 0x80 in 3.1.1)."},
    {"mqtt.max_queued_bytes", NUM(M2M_CONF_SIZE, mqtt_max_queued_bytes), "64M", 1024, 1LL << 40,
     "Payload bytes queued per session (oldest QoS 0 dropped first)."},
    {"mqtt.max_session_expiry", NUM(M2M_CONF_DURATION, mqtt_max_session_expiry), "0", 0, 4294967295000.0,
     "Cap on the v5 Session Expiry Interval a client may ask for (0: no cap)."},
    {"mqtt.out_topic_aliases", NUM(M2M_CONF_INT, mqtt_out_topic_aliases), "16", 0, 64,
     "Topic aliases the broker assigns towards a v5 client (at most the client's Topic Alias Maximum)."},
    {"mqtt.sys_interval", NUM(M2M_CONF_DURATION, mqtt_sys_interval), "10s", 0, 86400000,
     "Period of the $SYS/broker/... statistics (0: off)."},
    {"mqtt.use_identity_as_username", NUM(M2M_CONF_BOOL, mqtt_use_identity_as_username), "false", 0, 1,
     "On TLS listeners, the client certificate's name (or PSK identity) is the user name for ACLs, no "
     "password is asked, and clients without one are refused (mosquitto's use_identity_as_username)."},
    {"mqtt.allow_anonymous", STR(mqtt_allow_anonymous), "loopback", 0, 0,
     "Clients without a user name: loopback (only on listeners bound to a loopback address), true or false."},
    {"mqtt.password_file", STR(mqtt_password_file), "", 0, 0,
     "mosquitto_passwd file of users ($7$ PBKDF2-SHA512 or $6$ hashes); `m2mkit passwd` writes it."},
    {"mqtt.acl_file", STR(mqtt_acl_file), "", 0, 0,
     "Topic ACLs in mosquitto's acl_file format (empty: every client may read and write every topic)."},
    {"mqtt.persistence", NUM(M2M_CONF_BOOL, mqtt_persistence), "true", 0, 1,
     "Keep persistent sessions, their QoS 1/2 queues and retained messages in data_dir/mqtt.db (SQLite)."},
    {"mqtt.store_sync", STR(mqtt_store_sync), "normal", 0, 0,
     "normal: acknowledged messages survive a crash of the process; full: also a power loss (fsync per "
     "commit)."},
    {"mqtt.ws_enabled", NUM(M2M_CONF_BOOL, mqtt_ws_enabled), "true", 0, 1,
     "Serve MQTT over WebSocket (subprotocol mqtt) on the MQTT bind addresses."},
    {"mqtt.ws_port", NUM(M2M_CONF_INT, mqtt_ws_port), "8083", 0, 65535, "WebSocket port (0: any free port)."},
    {"mqtt.tls_enabled", NUM(M2M_CONF_BOOL, mqtt_tls_enabled), "true", 0, 1,
     "Serve MQTT over TLS (and over secure WebSocket) when a certificate or tls.psk_file is configured."},
    {"mqtt.tls_port", NUM(M2M_CONF_INT, mqtt_tls_port), "8883", 0, 65535,
     "MQTT over TLS port (0: any free port)."},
    {"mqtt.wss_port", NUM(M2M_CONF_INT, mqtt_wss_port), "8084", 0, 65535,
     "MQTT over secure WebSocket port (0: any free port)."},
};
const size_t m2m_conf_nkeys = sizeof m2m_conf_keys / sizeof m2m_conf_keys[0];

int m2m_conf_init(struct m2m_conf *c)
{
    memset(c, 0, sizeof *c);
    return m2m_conf_defaults(m2m_conf_keys, m2m_conf_nkeys, c);
}

struct load_ctx {
    struct m2m_conf *c;
    char *err;
    size_t errcap;
};

static int load_one(void *ctx, const char *key, const char *val)
{
    struct load_ctx *l = ctx;
    return m2m_conf_set(m2m_conf_keys, m2m_conf_nkeys, l->c, key, val, l->err, l->errcap);
}

int m2m_conf_load(struct m2m_conf *c, const char *path, bool required, char *err, size_t errcap)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (!required && errno == ENOENT)
            return 0;
        snprintf(err, errcap, "%s: %s", path, strerror(errno));
        return M2M_EIO;
    }
    char *text = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (cap - len < 4096) {
            cap = cap ? cap * 2 : 8192;
            char *nt = realloc(text, cap);
            if (!nt || cap > (1 << 20)) {
                free(nt ? nt : text);
                fclose(f);
                snprintf(err, errcap, "%s: too large", path);
                return M2M_ELIMIT;
            }
            text = nt;
        }
        size_t n = fread(text + len, 1, cap - len, f);
        len += n;
        if (n == 0)
            break;
    }
    fclose(f);
    char why[200] = "syntax error";
    struct load_ctx l = {c, why, sizeof why};
    int line = 0;
    int rc = m2m_conf_parse(text, len, load_one, &l, &line);
    free(text);
    if (rc)
        snprintf(err, errcap, "%s:%d: %s", path, line, why);
    return rc;
}

int m2m_conf_apply(struct m2m_conf *c, const char *assignment, char *err, size_t errcap)
{
    const char *eq = strchr(assignment, '=');
    char key[160];
    if (!eq || (size_t)(eq - assignment) >= sizeof key) {
        snprintf(err, errcap, "expected section.key=value, got '%s'", assignment);
        return M2M_EINVAL;
    }
    memcpy(key, assignment, (size_t)(eq - assignment));
    key[eq - assignment] = 0;
    return m2m_conf_set(m2m_conf_keys, m2m_conf_nkeys, c, key, eq + 1, err, errcap);
}

void m2m_conf_coap(const struct m2m_conf *c, struct m2m_coap_config *o)
{
    m2m_coap_config_default(o);
    o->tx.ack_timeout_ms = (uint32_t)c->coap_ack_timeout;
    o->tx.ack_random_factor_pm = (uint32_t)(c->coap_ack_random_factor * 1000 + 0.5);
    o->tx.max_retransmit = (uint32_t)c->coap_max_retransmit;
    o->tx.nstart = (uint32_t)c->coap_nstart;
    o->tx.default_leisure_ms = (uint32_t)c->coap_default_leisure;
    o->tx.probing_rate = (uint32_t)c->coap_probing_rate;
    o->tx.max_latency_ms = (uint32_t)c->coap_max_latency;
    o->max_message = (size_t)c->coap_max_message;
    o->block_szx = m2m_coap_szx_for((size_t)c->coap_block_size);
    o->token_len = (uint8_t)c->coap_token_length;
    o->max_body = (size_t)c->coap_max_body;
    o->max_dedup = (size_t)c->coap_max_dedup;
    o->max_peers = (size_t)c->coap_max_peers;
    o->max_requests = (size_t)c->coap_max_pending;
    o->max_observers = (size_t)c->coap_max_observers;
    o->max_block1 = (size_t)c->coap_max_uploads;
    o->separate_after_ms = (uint32_t)c->coap_separate_after;
    o->notify_min_interval_ms = (uint32_t)c->coap_notify_min_interval;
    o->notify_con_every_ms = (uint32_t)c->coap_notify_con_every;
    int cc = m2m_coap_cc_parse(c->coap_congestion_control);
    o->cc = cc < 0 ? M2M_COAP_CC_DEFAULT : (enum m2m_coap_cc)cc; /* the service refuses unknown names */
}

const char *m2m_conf_credential(const struct m2m_conf *c, const char *configured, const char *name, char *buf,
                                size_t cap)
{
    if (configured[0])
        return configured;
    snprintf(buf, cap, "%s/certs/%s", c->data_dir, name);
    return access(buf, R_OK) == 0 ? buf : NULL;
}
