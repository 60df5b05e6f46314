/* MQTT authentication and authorisation from mosquitto's own files: a
 * password file (mosquitto_passwd's format) and an ACL file (mosquitto 2.0's
 * acl_file). docs/mqtt-auth.md describes both formats with examples.
 *
 * Password file, one user per line, "user:hash" where hash is
 *   $7$<iterations>$<base64 salt>$<base64 hash>  PBKDF2-HMAC-SHA512 (mosquitto 2.x default:
 *                                                 101 iterations, 12-byte salt, 64-byte hash)
 *   $6$<base64 salt>$<base64 hash>               SHA-512(password || salt) (mosquitto 1.x)
 * Blank lines and lines starting with '#' are skipped. A plain-text password
 * is refused at load time, as by mosquitto 2.0: `m2mkit passwd -U` hashes it.
 *
 * ACL file, mosquitto 2.0 semantics:
 *   topic [read|write|readwrite|deny] <filter>   (no access word: readwrite)
 *   user <name>                                  (starts that user's section)
 *   pattern [read|write|readwrite|deny] <filter> (every client; %u = user name, %c = client id)
 * `topic` lines before the first `user` line are the anonymous section;
 * afterwards they belong to the current user. A client with a user name but
 * no section gets only the patterns.
 *
 * Decision for READ and WRITE of a topic name (first rule that applies wins):
 *   1. a `deny` rule of the client's section matching the topic: denied;
 *   2. a `deny` pattern matching the topic: denied (a pattern whose %u/%c
 *      value contains '+', '#' or '/' counts as matching, to be safe);
 *   3. a grant of the client's section matching with that access: allowed;
 *   4. if the user name or client id contains '+' or '#': denied (mosquitto's
 *      guard against wildcard injection into patterns);
 *   5. a granting pattern matching with that access: allowed (a pattern whose
 *      %u/%c value contains '/' never matches; %u patterns never match
 *      anonymous clients);
 *   6. denied.
 * mosquitto checks the section before the patterns, so there a grant in the
 * section beats a `deny` pattern; here any `deny` wins, as its manual says.
 * Rules match like subscriptions (+ and #), and a topic starting with '$'
 * matches only rules that start with '$' (so `#` does not grant `$SYS/...`).
 *
 * SUBSCRIBE is always granted, as by mosquitto 2.0's acl_file: a filter such
 * as `#` is accepted, and the broker must then check READ for the concrete
 * topic of every message it delivers (retained ones included), so a client
 * only receives what it may read. UNSUBSCRIBE needs no check.
 *
 * Whether or not an ACL file is loaded, mosquitto's rules for '$' topics hold:
 * WRITE to `$SYS/...` is denied except `$SYS/broker/connection/<id>/state`
 * (bridge status), and READ or WRITE of a `$share/...` topic name is denied.
 * Without an ACL file everything else is allowed.
 *
 * Thread safety: a loaded struct m2m_mqtt_auth is immutable; every function
 * below may be called from any number of threads at once. */
#ifndef M2M_SERVER_MQTT_AUTH_H
#define M2M_SERVER_MQTT_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "m2m/types.h"

struct m2m_mqtt_auth;

/* Loads the files (either may be NULL: none). On success *out owns
 * everything and the files may change or disappear. On failure *out is NULL,
 * `err` gets "file:line: reason" (or "file: reason") and the result is
 * M2M_EIO (cannot read), M2M_ECONFIG (bad content) or M2M_ENOMEM. */
int m2m_mqtt_auth_load(struct m2m_mqtt_auth **out, const char *password_file, const char *acl_file, char *err,
                       size_t errcap);
/* The same from memory: `*_text` may be NULL (no such file) and need not be
 * NUL-terminated; `*_name` is used in error messages only. */
int m2m_mqtt_auth_parse(struct m2m_mqtt_auth **out, const char *pw_text, size_t pw_len, const char *pw_name,
                        const char *acl_text, size_t acl_len, const char *acl_name, char *err, size_t errcap);
/* NULL is a no-op. */
void m2m_mqtt_auth_free(struct m2m_mqtt_auth *a);

/* True when a password file was loaded: then a client must give a known
 * user name and its password. NULL: false. */
bool m2m_mqtt_auth_has_passwords(const struct m2m_mqtt_auth *a);
/* True when an ACL file was loaded. NULL: false. */
bool m2m_mqtt_auth_has_acl(const struct m2m_mqtt_auth *a);

/* Checks a CONNECT's user name and password: 0 if they match,
 * M2M_ENOTFOUND for a user not in the file (or no password file),
 * M2M_EINVAL for a wrong password. The comparison is constant-time and an
 * unknown user costs as much as a known one. */
int m2m_mqtt_auth_check(const struct m2m_mqtt_auth *a, struct m2m_slice user, struct m2m_slice password);

/* The values are mosquitto's MOSQ_ACL_READ/WRITE/SUBSCRIBE. */
enum m2m_mqtt_access {
    M2M_MQTT_ACCESS_READ = 1,     /* deliver a message on this topic name to the client */
    M2M_MQTT_ACCESS_WRITE = 2,    /* accept a PUBLISH (or a will) on this topic name */
    M2M_MQTT_ACCESS_SUBSCRIBE = 4 /* accept this topic filter in SUBSCRIBE: always true */
};

/* May this client do `acc` on `topic_or_filter`? `user` is the CONNECT's user
 * name (NUL-terminated) or NULL for an anonymous client; `client_id` is the
 * client identifier in use (assigned ones included). `a` may be NULL (no
 * files). A topic name that is not valid for READ/WRITE is denied. The rules
 * are in the comment at the top of this file. */
bool m2m_mqtt_acl_allows(const struct m2m_mqtt_auth *a, const char *user, struct m2m_slice client_id,
                         struct m2m_slice topic_or_filter, enum m2m_mqtt_access acc);

/* ---- password hashes, for `m2mkit passwd` ------------------------------ */

enum m2m_mqtt_pw_alg {
    M2M_MQTT_PW_SHA512 = 6,       /* $6$: mosquitto 1.x, kept for old files */
    M2M_MQTT_PW_SHA512_PBKDF2 = 7 /* $7$: mosquitto 2.x default */
};
#define M2M_MQTT_PW_ITERATIONS 101          /* mosquitto_passwd's default for $7$ */
#define M2M_MQTT_PW_MAX_ITERATIONS 10000000 /* larger counts are refused: each CONNECT pays them */
#define M2M_MQTT_PW_SALT_LEN 12
#define M2M_MQTT_PW_HASH_LEN 64
/* Longest hash string m2m_mqtt_pw_hash writes, with its NUL. */
#define M2M_MQTT_PW_HASH_MAX 160

/* Hashes a password with a fresh random salt into `out` as
 * "$7$<iterations>$<salt>$<hash>" (or "$6$..."; `iterations` is then
 * ignored), NUL-terminated. M2M_EINVAL for iterations outside
 * 1..M2M_MQTT_PW_MAX_ITERATIONS, M2M_ENOBUFS if cap is too small, M2M_EIO if
 * OpenSSL fails. */
int m2m_mqtt_pw_hash(char *out, size_t cap, enum m2m_mqtt_pw_alg alg, unsigned iterations,
                     struct m2m_slice password);
/* Checks a password against one hash string as stored after "user:":
 * 0 if it matches, M2M_EINVAL if not, M2M_EMALFORMED if `hash` is not a
 * well-formed $6$ or $7$ hash. */
int m2m_mqtt_pw_verify(struct m2m_slice hash, struct m2m_slice password);
/* True if `hash` has the shape of a $6$ or $7$ hash (what -U leaves alone). */
bool m2m_mqtt_pw_is_hash(struct m2m_slice hash);

#endif
