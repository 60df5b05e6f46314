/* The development PKI of `m2mkit certs`: see devcerts.h. */
#include "net/devcerts.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "m2m/err.h"

#define CA_ORG "m2mkit development CA - not for production"
#define CA_CN "m2mkit development CA"
#define LEAF_ORG "m2mkit development - not for production"
#define PSK_BYTES 16
/* notBefore an hour back, so that a device whose clock lags a little still
 * accepts a certificate made a minute ago. */
#define BACKDATE_SECONDS 3600

/* One certificate with its key: the CA, the server or the client. */
struct pair {
    const char *cert_name, *key_name;
    const char *what; /* for comments and messages */
    bool cert_exists, key_exists;
    X509 *cert;
    EVP_PKEY *key;
};

static void fail(char *err, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fail(char *err, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, cap, fmt, ap);
    va_end(ap);
}

/* Appends OpenSSL's first queued error, if any, to a message. */
static void fail_ssl(char *err, size_t cap, const char *what)
{
    unsigned long e = ERR_get_error();
    char reason[160] = "unknown OpenSSL error";
    if (e)
        ERR_error_string_n(e, reason, sizeof reason);
    ERR_clear_error();
    fail(err, cap, "%s: %s", what, reason);
}

static char *join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + 1 + strlen(name) + 1;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static bool exists(const char *dir, const char *name)
{
    char *p = join(dir, name);
    struct stat st;
    bool ok = p && stat(p, &st) == 0;
    free(p);
    return ok;
}

/* mkdir -p, every level created 0700: the last one holds private keys. */
static int make_dirs(const char *dir, char *err, size_t cap)
{
    size_t n = strlen(dir);
    char *p = malloc(n + 1);
    if (!p)
        return M2M_ENOMEM;
    memcpy(p, dir, n + 1);
    int rc = 0;
    for (size_t i = 1; i <= n && !rc; i++) {
        if (p[i] != '/' && p[i] != '\0')
            continue;
        char c = p[i];
        p[i] = '\0';
        if (mkdir(p, 0700) && errno != EEXIST) {
            fail(err, cap, "cannot create %s: %s", p, strerror(errno));
            rc = M2M_EIO;
        }
        p[i] = c;
    }
    free(p);
    struct stat st;
    if (!rc && (stat(dir, &st) || !S_ISDIR(st.st_mode))) {
        fail(err, cap, "%s is not a directory", dir);
        rc = M2M_EIO;
    }
    return rc;
}

/* Writes `comment` then `body` to dir/name through a temporary file and a
 * rename, with `mode` from the start, so a reader never sees half a key. */
static int write_file(const char *dir, const char *name, mode_t mode, const char *comment, const void *body,
                      size_t n, char *err, size_t cap)
{
    char *path = join(dir, name);
    char *tmp = join(dir, ".m2mkit-certs.XXXXXX");
    int rc = M2M_ENOMEM;
    int fd = -1;
    if (!path || !tmp)
        goto out;
    rc = M2M_EIO;
    fd = mkstemp(tmp); /* 0600 */
    if (fd < 0) {
        fail(err, cap, "cannot create a file in %s: %s", dir, strerror(errno));
        goto out;
    }
    size_t cn = strlen(comment);
    if (fchmod(fd, mode) || write(fd, comment, cn) != (ssize_t)cn || write(fd, body, n) != (ssize_t)n ||
        fsync(fd)) {
        fail(err, cap, "cannot write %s: %s", path, strerror(errno));
        goto out;
    }
    if (close(fd)) {
        fd = -1;
        fail(err, cap, "cannot write %s: %s", path, strerror(errno));
        goto out;
    }
    fd = -1;
    if (rename(tmp, path)) {
        fail(err, cap, "cannot rename to %s: %s", path, strerror(errno));
        goto out;
    }
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    if (rc && tmp)
        unlink(tmp);
    free(path);
    free(tmp);
    return rc;
}

/* PEM through a memory BIO, then write_file. */
static int write_pem(const char *dir, const char *name, bool is_key, X509 *cert, EVP_PKEY *key,
                     const char *comment, char *err, size_t cap)
{
    /* A secure-heap BIO for keys: its buffer is cleansed when freed. */
    BIO *b = BIO_new(is_key ? BIO_s_secmem() : BIO_s_mem());
    if (!b)
        return M2M_ENOMEM;
    int ok =
        is_key ? PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL) : PEM_write_bio_X509(b, cert);
    int rc;
    if (!ok) {
        fail_ssl(err, cap, name);
        rc = M2M_EIO;
    } else {
        char *p;
        long n = BIO_get_mem_data(b, &p);
        rc = write_file(dir, name, is_key ? 0600 : 0644, comment, p, (size_t)n, err, cap);
    }
    BIO_free(b);
    return rc;
}

static X509 *read_cert(const char *path)
{
    BIO *b = BIO_new_file(path, "r");
    X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    return x;
}

static EVP_PKEY *read_key(const char *path)
{
    BIO *b = BIO_new_file(path, "r");
    EVP_PKEY *k = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    return k;
}

/* ---- options ---- */

bool m2m_devcerts_valid_client_cn(const char *cn, char *err, size_t errcap)
{
    size_t n = strlen(cn);
    if (n == 0 || n > 64) { /* ub-common-name, RFC 5280 */
        fail(err, errcap, "client CN must be 1 to 64 characters");
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)cn[i];
        /* ':' separates identity and key in psk.txt; '#' would start a comment there. */
        if (c < 0x20 || c == 0x7f || c == ':' || (i == 0 && (c == '#' || c == ' '))) {
            fail(err, errcap, "client CN '%s': no control characters or ':', no leading '#' or space", cn);
            return false;
        }
    }
    return true;
}

static bool is_ip(const char *s)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

bool m2m_devcerts_valid_server_name(const char *name, char *err, size_t errcap)
{
    if (is_ip(name))
        return true;
    const char *s = name;
    if (!strncmp(s, "*.", 2))
        s += 2;
    size_t n = strlen(s), label = 0;
    bool ok = n > 0 && n <= 253;
    for (size_t i = 0; ok && i <= n; i++) {
        char c = s[i];
        if (c == '.' || c == '\0') {
            ok = label > 0 && label <= 63 && s[i - 1] != '-';
            label = 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                   (c == '-' && label > 0)) {
            label++;
        } else {
            ok = false;
        }
    }
    if (!ok)
        fail(err, errcap, "server name '%s' is neither a DNS name nor an IP address", name);
    return ok;
}

/* ---- building certificates ---- */

enum role { ROLE_CA, ROLE_SERVER, ROLE_CLIENT };

static int add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_nconf_nid(NULL, &ctx, nid, value);
    int ok = e && X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
    return ok;
}

/* The subjectAltName built from structures, not from a config string, so a
 * name given on the command line cannot smuggle in other entries. */
static int add_san(X509 *x, const struct m2m_devcerts_opts *o)
{
    const char *fixed[] = {"localhost", "127.0.0.1", "::1"};
    size_t n = 3 + o->nserver_names;
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
    int ok = gens != NULL;
    for (size_t i = 0; ok && i < n; i++) {
        const char *s = i < 3 ? fixed[i] : o->server_names[i - 3];
        GENERAL_NAME *g = GENERAL_NAME_new();
        if (!g) {
            ok = 0;
            break;
        }
        if (is_ip(s)) {
            ASN1_OCTET_STRING *ip = a2i_IPADDRESS(s);
            ok = ip != NULL;
            if (ok)
                GENERAL_NAME_set0_value(g, GEN_IPADD, ip);
        } else {
            ASN1_IA5STRING *dns = ASN1_IA5STRING_new();
            ok = dns && ASN1_STRING_set(dns, s, (int)strlen(s));
            if (ok)
                GENERAL_NAME_set0_value(g, GEN_DNS, dns);
            else
                ASN1_IA5STRING_free(dns);
        }
        if (!ok || !sk_GENERAL_NAME_push(gens, g)) {
            GENERAL_NAME_free(g);
            ok = 0;
        }
    }
    ok = ok && X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT) == 1;
    GENERAL_NAMES_free(gens);
    return ok;
}

static int set_name(X509_NAME *nm, const char *cn, const char *org)
{
    return X509_NAME_add_entry_by_txt(nm, "O", MBSTRING_UTF8, (const unsigned char *)org, -1, -1, 0) &&
           X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0);
}

/* A random positive 159-bit serial number, as RFC 5280 §4.1.2.2 allows. */
static int set_serial(X509 *x)
{
    BIGNUM *bn = BN_new();
    int ok = bn && BN_rand(bn, 159, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) &&
             BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
    BN_free(bn);
    return ok;
}

/* Issues a certificate for `key`; the CA signs itself (issuer NULL). */
static X509 *issue(enum role role, EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *issuer_key,
                   int days, const struct m2m_devcerts_opts *o)
{
    X509 *x = X509_new();
    bool ca = role == ROLE_CA;
    int ok = x && X509_set_version(x, X509_VERSION_3) && set_serial(x) &&
             X509_gmtime_adj(X509_getm_notBefore(x), -BACKDATE_SECONDS) &&
             X509_time_adj_ex(X509_getm_notAfter(x), days, 0, NULL) && X509_set_pubkey(x, key) &&
             set_name(X509_get_subject_name(x), cn, ca ? CA_ORG : LEAF_ORG) &&
             X509_set_issuer_name(x, ca ? X509_get_subject_name(x) : X509_get_subject_name(issuer));
    X509 *signer = ca ? x : issuer;
    if (ok && ca) {
        ok = add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") &&
             add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign") &&
             add_ext(x, x, NID_subject_key_identifier, "hash");
    } else if (ok) {
        ok = add_ext(x, signer, NID_basic_constraints, "critical,CA:FALSE") &&
             add_ext(x, signer, NID_key_usage, "critical,digitalSignature") &&
             add_ext(x, signer, NID_ext_key_usage, role == ROLE_SERVER ? "serverAuth" : "clientAuth") &&
             add_ext(x, signer, NID_subject_key_identifier, "hash") &&
             add_ext(x, signer, NID_authority_key_identifier, "keyid:always") &&
             (role != ROLE_SERVER || add_san(x, o));
    }
    ok = ok && X509_sign(x, ca ? key : issuer_key, EVP_sha256()) > 0;
    if (!ok) {
        X509_free(x);
        return NULL;
    }
    return x;
}

/* ---- the directory ---- */

static void pair_free(struct pair *p)
{
    X509_free(p->cert);
    EVP_PKEY_free(p->key);
    p->cert = NULL;
    p->key = NULL;
}

/* Loads an existing pair and checks it holds together; 0 when both files are
 * absent or the pair is whole. */
static int pair_load(const char *dir, struct pair *p, char *err, size_t cap)
{
    p->cert_exists = exists(dir, p->cert_name);
    p->key_exists = exists(dir, p->key_name);
    if (!p->cert_exists && !p->key_exists)
        return 0;
    if (p->cert_exists != p->key_exists) {
        fail(err, cap, "%s/%s exists without %s (--force replaces both)", dir,
             p->cert_exists ? p->cert_name : p->key_name, p->cert_exists ? p->key_name : p->cert_name);
        return M2M_ECONFIG;
    }
    char *cp = join(dir, p->cert_name), *kp = join(dir, p->key_name);
    if (cp && kp) {
        p->cert = read_cert(cp);
        p->key = read_key(kp);
    }
    int rc = 0;
    if (!p->cert || !p->key) {
        fail_ssl(err, cap, !p->cert ? p->cert_name : p->key_name);
        rc = M2M_ECONFIG;
    } else if (X509_check_private_key(p->cert, p->key) != 1) {
        ERR_clear_error();
        fail(err, cap, "%s/%s does not match %s (--force replaces both)", dir, p->key_name, p->cert_name);
        rc = M2M_ECONFIG;
    }
    free(cp);
    free(kp);
    return rc;
}

static void record(struct m2m_devcerts_result *r, const char *name, bool existed, bool written)
{
    if (r->nfiles >= M2M_DEVCERTS_NFILES)
        return;
    r->files[r->nfiles].name = name;
    r->files[r->nfiles].action = !written  ? M2M_DEVCERTS_KEPT
                                 : existed ? M2M_DEVCERTS_REPLACED
                                           : M2M_DEVCERTS_CREATED;
    r->nfiles++;
}

/* Creates or keeps one pair; the CA passes issuer NULL. */
static int pair_make(const char *dir, struct pair *p, enum role role, const char *cn, const struct pair *ca,
                     int days, const struct m2m_devcerts_opts *o, struct m2m_devcerts_result *r)
{
    bool existed = p->cert_exists;
    if (p->cert && !o->force) {
        record(r, p->cert_name, true, false);
        record(r, p->key_name, true, false);
        return 0;
    }
    pair_free(p);
    p->key = EVP_EC_gen("P-256");
    if (!p->key) {
        fail_ssl(r->err, sizeof r->err, "P-256 key generation");
        return M2M_EIO;
    }
    p->cert = issue(role, p->key, cn, ca ? ca->cert : NULL, ca ? ca->key : NULL, days, o);
    if (!p->cert) {
        fail_ssl(r->err, sizeof r->err, p->cert_name);
        return M2M_EIO;
    }
    char kc[160], cc[160];
    snprintf(kc, sizeof kc, "# m2mkit %s private key: for development only, not for production\n", p->what);
    snprintf(cc, sizeof cc, "# m2mkit %s certificate: for development only, not for production\n", p->what);
    /* The key first: a crash in between leaves a key without a certificate,
     * which the next run reports instead of using. */
    int rc = write_pem(dir, p->key_name, true, NULL, p->key, kc, r->err, sizeof r->err);
    if (!rc)
        rc = write_pem(dir, p->cert_name, false, p->cert, NULL, cc, r->err, sizeof r->err);
    if (!rc) {
        record(r, p->cert_name, existed, true);
        record(r, p->key_name, existed, true);
    }
    return rc;
}

static int psk_make(const char *dir, const char *identity, bool force, struct m2m_devcerts_result *r)
{
    bool existed = exists(dir, "psk.txt");
    if (existed && !force) {
        record(r, "psk.txt", true, false);
        return 0;
    }
    unsigned char key[PSK_BYTES];
    if (RAND_bytes(key, sizeof key) != 1) {
        fail_ssl(r->err, sizeof r->err, "random PSK");
        return M2M_EIO;
    }
    char line[64 + 1 + 2 * PSK_BYTES + 2];
    int n = snprintf(line, sizeof line, "%s:", identity);
    for (size_t i = 0; i < sizeof key; i++)
        n += snprintf(line + n, sizeof line - (size_t)n, "%02x", key[i]);
    n += snprintf(line + n, sizeof line - (size_t)n, "\n");
    int rc =
        write_file(dir, "psk.txt", 0600,
                   "# m2mkit pre-shared keys (identity:hexkey): for development only, not for production\n",
                   line, (size_t)n, r->err, sizeof r->err);
    OPENSSL_cleanse(key, sizeof key);
    OPENSSL_cleanse(line, sizeof line);
    if (!rc)
        record(r, "psk.txt", existed, true);
    return rc;
}

/* Without force, a kept certificate must come from the kept CA, or the
 * directory would not verify. */
static int check_issued(const char *dir, const struct pair *ca, const struct pair *leaf, char *err,
                        size_t cap)
{
    if (!leaf->cert)
        return 0;
    if (!ca->cert) {
        fail(err, cap, "%s/%s was issued by a CA that is gone (--force issues everything anew)", dir,
             leaf->cert_name);
        return M2M_ECONFIG;
    }
    if (X509_check_issued(ca->cert, leaf->cert) != X509_V_OK || X509_verify(leaf->cert, ca->key) != 1) {
        ERR_clear_error();
        fail(err, cap, "%s/%s was not issued by %s (--force issues everything anew)", dir, leaf->cert_name,
             ca->cert_name);
        return M2M_ECONFIG;
    }
    return 0;
}

int m2m_devcerts_create(const struct m2m_devcerts_opts *o, struct m2m_devcerts_result *r)
{
    memset(r, 0, sizeof *r);
    const char *cn = o->client_cn ? o->client_cn : M2M_DEVCERTS_CLIENT_CN;
    int days = o->days ? o->days : M2M_DEVCERTS_LEAF_DAYS;
    if (!o->dir || !*o->dir) {
        fail(r->err, sizeof r->err, "no directory");
        return M2M_EINVAL;
    }
    if (days < 1 || days > M2M_DEVCERTS_MAX_DAYS) {
        fail(r->err, sizeof r->err, "days must be 1 to %d", M2M_DEVCERTS_MAX_DAYS);
        return M2M_EINVAL;
    }
    if (!m2m_devcerts_valid_client_cn(cn, r->err, sizeof r->err))
        return M2M_EINVAL;
    for (size_t i = 0; i < o->nserver_names; i++)
        if (!m2m_devcerts_valid_server_name(o->server_names[i], r->err, sizeof r->err))
            return M2M_EINVAL;

    int rc = make_dirs(o->dir, r->err, sizeof r->err);
    if (rc)
        return rc;
    struct stat st;
    if (!stat(o->dir, &st) && (st.st_mode & 077))
        snprintf(r->warning, sizeof r->warning, "%s is mode %04o: others can list it (0700 advised)", o->dir,
                 (unsigned)(st.st_mode & 07777));

    struct pair ca = {.cert_name = "ca.pem", .key_name = "ca.key", .what = "development CA"};
    struct pair srv = {.cert_name = "server.pem", .key_name = "server.key", .what = "development server"};
    struct pair cli = {.cert_name = "client.pem", .key_name = "client.key", .what = "development client"};
    /* Plan first: without force, nothing is written unless every kept file
     * holds together. */
    if (!o->force) {
        if (!rc)
            rc = pair_load(o->dir, &ca, r->err, sizeof r->err);
        if (!rc)
            rc = pair_load(o->dir, &srv, r->err, sizeof r->err);
        if (!rc)
            rc = pair_load(o->dir, &cli, r->err, sizeof r->err);
        if (!rc)
            rc = check_issued(o->dir, &ca, &srv, r->err, sizeof r->err);
        if (!rc)
            rc = check_issued(o->dir, &ca, &cli, r->err, sizeof r->err);
    } else {
        ca.cert_exists = exists(o->dir, ca.cert_name);
        srv.cert_exists = exists(o->dir, srv.cert_name);
        cli.cert_exists = exists(o->dir, cli.cert_name);
    }
    int ca_days = days > M2M_DEVCERTS_CA_DAYS ? days : M2M_DEVCERTS_CA_DAYS;
    if (!rc)
        rc = pair_make(o->dir, &ca, ROLE_CA, CA_CN, NULL, ca_days, o, r);
    if (!rc)
        rc = pair_make(o->dir, &srv, ROLE_SERVER, "localhost", &ca, days, o, r);
    if (!rc)
        rc = pair_make(o->dir, &cli, ROLE_CLIENT, cn, &ca, days, o, r);
    if (!rc)
        rc = psk_make(o->dir, cn, o->force, r);
    pair_free(&ca);
    pair_free(&srv);
    pair_free(&cli);
    return rc;
}

/* ---- show ---- */

static void print_name(BIO *b, const char *label, const X509_NAME *nm)
{
    BIO_printf(b, "  %-10s ", label);
    X509_NAME_print_ex(
        b, nm, 0, XN_FLAG_SEP_CPLUS_SPC | XN_FLAG_FN_SN | (ASN1_STRFLGS_RFC2253 & ~ASN1_STRFLGS_ESC_MSB));
    BIO_printf(b, "\n");
}

static void print_key_type(BIO *b, const EVP_PKEY *k)
{
    char group[64];
    size_t glen = 0;
    if (EVP_PKEY_get_group_name(k, group, sizeof group, &glen) == 1) {
        const char *nist = EC_curve_nid2nist(OBJ_sn2nid(group)); /* prime256v1 is P-256 */
        BIO_printf(b, "%s %s", EVP_PKEY_get0_type_name(k), nist ? nist : group);
    } else {
        BIO_printf(b, "%s %d bits", EVP_PKEY_get0_type_name(k), EVP_PKEY_get_bits(k));
    }
}

static void print_sans(BIO *b, X509 *x)
{
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    if (!gens)
        return;
    BIO_printf(b, "  %-10s", "SANs:");
    for (int i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        int type;
        const ASN1_STRING *v = GENERAL_NAME_get0_value(g, &type);
        BIO_printf(b, "%s", i ? "," : "");
        if (type == GEN_DNS) {
            BIO_printf(b, " DNS:%.*s", ASN1_STRING_length(v), (const char *)ASN1_STRING_get0_data(v));
        } else if (type == GEN_IPADD) {
            char s[INET6_ADDRSTRLEN] = "?";
            int n = ASN1_STRING_length(v);
            if (n == 4 || n == 16)
                inet_ntop(n == 4 ? AF_INET : AF_INET6, ASN1_STRING_get0_data(v), s, sizeof s);
            BIO_printf(b, " IP:%s", s);
        } else {
            BIO_printf(b, " (type %d)", type);
        }
    }
    BIO_printf(b, "\n");
    GENERAL_NAMES_free(gens);
}

static void print_usages(BIO *b, X509 *x)
{
    uint32_t ku = X509_get_key_usage(x), xku = X509_get_extended_key_usage(x);
    BIO_printf(b, "  %-10s %s", "usage:", X509_check_ca(x) ? "CA" : "end entity");
    if (ku != UINT32_MAX) {
        if (ku & KU_DIGITAL_SIGNATURE)
            BIO_printf(b, ", digitalSignature");
        if (ku & KU_KEY_CERT_SIGN)
            BIO_printf(b, ", keyCertSign");
        if (ku & KU_CRL_SIGN)
            BIO_printf(b, ", cRLSign");
    }
    if (xku != UINT32_MAX) {
        if (xku & XKU_SSL_SERVER)
            BIO_printf(b, ", serverAuth");
        if (xku & XKU_SSL_CLIENT)
            BIO_printf(b, ", clientAuth");
    }
    BIO_printf(b, "\n");
}

/* Prints the mode and says whether a secret file is open to others. */
static bool print_mode(BIO *b, const char *path, bool secret)
{
    struct stat st;
    if (stat(path, &st))
        return false;
    unsigned m = (unsigned)(st.st_mode & 07777);
    bool open = secret && (m & 077);
    BIO_printf(b, " (mode %04o%s)", m, open ? ", readable by others" : "");
    return !open;
}

/* One certificate and, if any, its key; false when something is wrong. */
static bool show_pair(BIO *b, const char *dir, const char *cert_name, const char *key_name, X509 *ca)
{
    char *cp = join(dir, cert_name), *kp = join(dir, key_name);
    bool good = true;
    X509 *x = cp ? read_cert(cp) : NULL;
    BIO_printf(b, "%s\n", cp ? cp : cert_name);
    if (!x) {
        ERR_clear_error();
        BIO_printf(b, "  not a PEM certificate\n");
        good = false;
        goto out;
    }
    print_name(b, "subject:", X509_get_subject_name(x));
    if (X509_check_issued(x, x) == X509_V_OK)
        BIO_printf(b, "  %-10s (self-signed)\n", "issuer:");
    else
        print_name(b, "issuer:", X509_get_issuer_name(x));
    BIO_printf(b, "  %-10s ", "valid:");
    ASN1_TIME_print(b, X509_get0_notBefore(x));
    BIO_printf(b, " .. ");
    ASN1_TIME_print(b, X509_get0_notAfter(x));
    int day = 0, sec = 0;
    if (X509_cmp_current_time(X509_get0_notAfter(x)) < 0) {
        BIO_printf(b, " EXPIRED");
        good = false;
    } else if (X509_cmp_current_time(X509_get0_notBefore(x)) > 0) {
        BIO_printf(b, " NOT YET VALID");
        good = false;
    } else if (ASN1_TIME_diff(&day, &sec, NULL, X509_get0_notAfter(x))) {
        BIO_printf(b, " (%d days left)", day);
    }
    BIO_printf(b, "\n");
    print_sans(b, x);
    print_usages(b, x);

    BIO_printf(b, "  %-10s ", "key:");
    EVP_PKEY *pub = X509_get0_pubkey(x);
    if (pub)
        print_key_type(b, pub);
    if (kp && access(kp, F_OK) == 0) {
        EVP_PKEY *k = read_key(kp);
        bool match = k && X509_check_private_key(x, k) == 1;
        ERR_clear_error();
        BIO_printf(b, ", %s %s", key_name, match ? "matches" : "DOES NOT MATCH");
        good = print_mode(b, kp, true) && match && good;
        EVP_PKEY_free(k);
    } else {
        BIO_printf(b, ", no %s", key_name);
    }
    BIO_printf(b, "\n");

    if (ca && x != ca) {
        X509_STORE *st = X509_STORE_new();
        X509_STORE_CTX *ctx = X509_STORE_CTX_new();
        int ok = st && ctx && X509_STORE_add_cert(st, ca) && X509_STORE_CTX_init(ctx, st, x, NULL) &&
                 X509_verify_cert(ctx) == 1;
        BIO_printf(b, "  %-10s %s\n", "chain:",
                   ok ? "verifies against ca.pem"
                      : (ctx ? X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)) : "?"));
        good = good && ok;
        X509_STORE_CTX_free(ctx);
        X509_STORE_free(st);
        ERR_clear_error();
    }
out:
    X509_free(x);
    free(cp);
    free(kp);
    return good;
}

/* psk.txt: identities and mode, never the keys. */
static bool show_psk(BIO *b, const char *path)
{
    FILE *f = fopen(path, "r");
    BIO_printf(b, "%s\n", path);
    if (!f) {
        BIO_printf(b, "  cannot read: %s\n", strerror(errno));
        return false;
    }
    char line[1024];
    int count = 0, bad = 0;
    BIO_printf(b, "  %-10s", "psk:");
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '#' || line[0] == '\0')
            continue;
        const char *colon = strrchr(line, ':');
        size_t hl = colon ? strlen(colon + 1) : 0;
        bool ok = colon && colon != line && hl >= 2 && hl % 2 == 0 &&
                  strspn(colon + 1, "0123456789abcdefABCDEF") == hl;
        if (!ok) {
            bad++;
            continue;
        }
        BIO_printf(b, " %.*s (%zu-bit key)", (int)(colon - line), line, hl * 4);
        count++;
    }
    fclose(f);
    if (!count)
        BIO_printf(b, " none");
    BIO_printf(b, "\n  %-10s", "file:");
    bool good = print_mode(b, path, true);
    if (bad)
        BIO_printf(b, ", %d malformed line(s)", bad);
    BIO_printf(b, "\n");
    return good && !bad && count > 0;
}

int m2m_devcerts_show(FILE *out, const char *dir)
{
    static const char *const pairs[][2] = {
        {"ca.pem", "ca.key"}, {"server.pem", "server.key"}, {"client.pem", "client.key"}};
    BIO *b = BIO_new_fp(out, BIO_NOCLOSE);
    if (!b)
        return M2M_ENOMEM;
    char *cap = join(dir, "ca.pem");
    X509 *ca = cap ? read_cert(cap) : NULL;
    ERR_clear_error();
    int found = 0;
    bool good = true;
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        if (!exists(dir, pairs[i][0]))
            continue;
        if (found++)
            BIO_printf(b, "\n");
        good = show_pair(b, dir, pairs[i][0], pairs[i][1], i == 0 ? NULL : ca) && good;
    }
    char *pp = join(dir, "psk.txt");
    if (pp && access(pp, F_OK) == 0) {
        if (found++)
            BIO_printf(b, "\n");
        good = show_psk(b, pp) && good;
    }
    free(pp);
    free(cap);
    X509_free(ca);
    BIO_free(b);
    if (!found)
        return M2M_ENOTFOUND;
    return good ? 0 : M2M_ECONFIG;
}
