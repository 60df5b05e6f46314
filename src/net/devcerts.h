/* A development PKI for `m2mkit certs`: a CA, a server certificate for
 * localhost, a client certificate and a pre-shared key, so that the TLS and
 * DTLS listeners work out of the box on a developer's machine. Every file
 * says it is for development only; none of it belongs in production.
 *
 * Keys are ECDSA P-256 (what RFC 7925 profiles for constrained devices),
 * certificates are X.509 v3 signed with SHA-256, all through OpenSSL 3.
 * Nothing here prints: the CLI reports from the result structs. */
#ifndef M2M_NET_DEVCERTS_H
#define M2M_NET_DEVCERTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define M2M_DEVCERTS_NFILES 7
#define M2M_DEVCERTS_CLIENT_CN "device-1"
#define M2M_DEVCERTS_LEAF_DAYS 825
#define M2M_DEVCERTS_CA_DAYS 3650
#define M2M_DEVCERTS_MAX_DAYS 36500

enum m2m_devcerts_action {
    M2M_DEVCERTS_KEPT,     /* the file was there and is still valid */
    M2M_DEVCERTS_CREATED,  /* the file did not exist */
    M2M_DEVCERTS_REPLACED, /* --force: the old file was overwritten */
};

struct m2m_devcerts_opts {
    const char *dir;       /* created with its parents, mode 0700 */
    const char *client_cn; /* NULL: "device-1"; also the PSK identity */
    /* Extra subjectAltNames of the server certificate, beside localhost,
     * 127.0.0.1 and ::1: DNS names ("*.example" allowed) or IP literals. */
    const char *const *server_names;
    size_t nserver_names;
    int days;   /* server and client validity, 0: 825; the CA gets max(3650, days) */
    bool force; /* replace existing files instead of keeping them */
};

struct m2m_devcerts_result {
    struct {
        const char *name; /* "ca.pem" ...: a static string */
        enum m2m_devcerts_action action;
    } files[M2M_DEVCERTS_NFILES];
    size_t nfiles;
    char warning[256]; /* non-empty: something the user should know */
    char err[256];     /* why m2m_devcerts_create failed */
};

/* Creates, under opts->dir, whatever of ca.pem/ca.key, server.pem/server.key,
 * client.pem/client.key and psk.txt is missing (everything with opts->force).
 * Keys and psk.txt are written mode 0600, certificates 0644, each through a
 * temporary file and a rename, so a file is either whole or absent.
 *
 * Without force, existing files are kept only if they are consistent: a
 * certificate without its key, a key that does not match its certificate, or
 * a certificate not issued by ca.pem is an error (nothing is written), so a
 * kept directory always verifies. Options such as client_cn only shape the
 * files created in this run.
 *
 * Returns 0, M2M_EINVAL for bad options, M2M_ECONFIG for an inconsistent
 * directory, M2M_EIO for a file system or OpenSSL failure; r->err says why. */
int m2m_devcerts_create(const struct m2m_devcerts_opts *opts, struct m2m_devcerts_result *r);

/* Checks the options m2m_devcerts_create would reject, for usage errors:
 * false with the reason in err. */
bool m2m_devcerts_valid_client_cn(const char *cn, char *err, size_t errcap);
bool m2m_devcerts_valid_server_name(const char *name, char *err, size_t errcap);

/* Describes for a person each certificate, key and PSK file found in dir:
 * subject, issuer, validity, subjectAltNames, key usages, key type, whether
 * the key matches and the certificate chains to ca.pem, and file modes (PSK
 * keys themselves are never printed). Returns 0 when every file found is
 * usable, M2M_ENOTFOUND when dir holds none of them, M2M_ECONFIG when one is
 * unreadable, expired, mismatched or does not verify. */
int m2m_devcerts_show(FILE *out, const char *dir);

#endif
