/* The settings of `m2mkit serve`: one struct, one schema. Every key can be
 * set in m2mkit.conf ([section] key = value) or on the command line as
 * --section.key=value; docs/configuration.md lists them all (a test checks
 * that it does). */
#ifndef M2M_SERVER_CONF_H
#define M2M_SERVER_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/config.h"
#include "m2m/coap.h"

struct m2m_conf {
    /* [server] */
    char data_dir[256];
    char log_level[16];
    /* [tls] */
    char tls_cert[256];
    char tls_key[256];
    char tls_ca[256];
    char tls_verify_clients[16];
    char tls_psk_file[256];
    char tls_min_version[8];
    int64_t tls_handshake_timeout;
    bool tls_session_tickets;
    /* [coap] */
    bool coap_enabled;
    bool coap_dtls_enabled;
    int64_t coap_dtls_port;
    int64_t coap_dtls_mtu;
    int64_t coap_dtls_max_peers;
    int64_t coap_dtls_idle_timeout;
    char coap_bind[64];
    char coap_bind6[64];
    int64_t coap_port;
    int64_t coap_ack_timeout;
    double coap_ack_random_factor;
    int64_t coap_max_retransmit;
    int64_t coap_nstart;
    int64_t coap_default_leisure;
    int64_t coap_probing_rate;
    int64_t coap_max_latency;
    int64_t coap_max_message;
    int64_t coap_block_size;
    int64_t coap_max_body;
    int64_t coap_max_dedup;
    int64_t coap_max_peers;
    int64_t coap_max_pending;
    int64_t coap_max_observers;
    int64_t coap_max_uploads;
    int64_t coap_separate_after;
    int64_t coap_notify_min_interval;
    int64_t coap_notify_con_every;
    int64_t coap_max_resources;
    int64_t coap_max_payload;
    int64_t coap_token_length;
    char coap_congestion_control[16];
    /* [mqtt] */
    bool mqtt_enabled;
    char mqtt_bind[64];
    char mqtt_bind6[64];
    int64_t mqtt_port;
    int64_t mqtt_max_packet_size;
    int64_t mqtt_receive_maximum;
    int64_t mqtt_max_inflight;
    int64_t mqtt_topic_alias_maximum;
    int64_t mqtt_connect_timeout;
    int64_t mqtt_max_queued;
    int64_t mqtt_max_retained;
    int64_t mqtt_max_write_queue;
    int64_t mqtt_max_queued_bytes;
    int64_t mqtt_max_subscriptions;
    int64_t mqtt_max_connections;
    int64_t mqtt_max_connections_per_address;
    int64_t mqtt_max_keep_alive;
    int64_t mqtt_max_session_expiry;
    int64_t mqtt_out_topic_aliases;
    int64_t mqtt_sys_interval;
    char mqtt_allow_anonymous[16];
    char mqtt_password_file[256];
    char mqtt_acl_file[256];
    bool mqtt_persistence;
    char mqtt_store_sync[16];
    bool mqtt_ws_enabled;
    int64_t mqtt_ws_port;
    bool mqtt_tls_enabled;
    int64_t mqtt_tls_port;
    int64_t mqtt_wss_port;
    bool mqtt_use_identity_as_username;
};

extern const struct m2m_conf_key m2m_conf_keys[];
extern const size_t m2m_conf_nkeys;

int m2m_conf_init(struct m2m_conf *c);
/* Reads and applies a file; err gets "file:line: reason". A missing file
 * is an error only when `required`. */
int m2m_conf_load(struct m2m_conf *c, const char *path, bool required, char *err, size_t errcap);
/* Applies one "section.key=value". */
int m2m_conf_apply(struct m2m_conf *c, const char *assignment, char *err, size_t errcap);
/* A credential file: `configured` when set, else data_dir/certs/<name>
 * (what `m2mkit certs init` writes) when it is readable, else NULL. */
const char *m2m_conf_credential(const struct m2m_conf *c, const char *configured, const char *name, char *buf,
                                size_t cap);
/* The CoAP endpoint settings these values give (rng and log left unset). */
void m2m_conf_coap(const struct m2m_conf *c, struct m2m_coap_config *out);

#endif
