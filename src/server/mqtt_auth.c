/* mosquitto-compatible password and ACL files: loading, password checks,
 * ACL decisions. The rules are documented in mqtt_auth.h. */
#include "server/mqtt_auth.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "m2m/err.h"
#include "m2m/mqtt.h"

/* Files larger than this are refused: a password or ACL file is written by
 * a person or a script, never megabytes of it. */
#define AUTH_FILE_MAX (64u << 20)
/* Longest salt accepted from a file (mosquitto_passwd writes 12 bytes). */
#define SALT_MAX 64
/* Base64 text of SALT_MAX or M2M_MQTT_PW_HASH_LEN bytes. */
#define B64_MAX 88
/* MQTT strings are at most 65535 bytes: so are passwords and user names. */
#define MQTT_STR_MAX 65535u
/* Largest pattern expansion tried; past it the rule is treated as the safe
 * side (a deny matches, a grant does not). */
#define PATTERN_EXPANSION_MAX (1u << 20)

/* ---- password hashes ------------------------------------------------- */

struct pw_hash {
    uint8_t alg; /* enum m2m_mqtt_pw_alg */
    uint32_t iterations;
    size_t salt_len;
    uint8_t salt[SALT_MAX];
    uint8_t hash[M2M_MQTT_PW_HASH_LEN];
};

static bool b64_char(uint8_t c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
}

/* Strict standard base64 with padding (what mosquitto_passwd writes).
 * EVP_DecodeBlock alone accepts blanks and counts padding as zero bytes, so
 * the text is checked here and the padding subtracted. */
static int b64_decode(struct m2m_slice in, uint8_t *out, size_t cap, size_t *outlen)
{
    if (in.n == 0 || in.n % 4 != 0 || in.n > B64_MAX)
        return M2M_EMALFORMED;
    size_t pad = 0;
    for (size_t i = 0; i < in.n; i++) {
        uint8_t c = in.p[i];
        if (c == '=' && i + 2 >= in.n && (pad > 0 || i + 1 == in.n || in.p[i + 1] == '=')) {
            pad++;
            continue;
        }
        if (pad > 0 || !b64_char(c))
            return M2M_EMALFORMED;
    }
    uint8_t tmp[B64_MAX];
    int n = EVP_DecodeBlock(tmp, in.p, (int)in.n);
    if (n < 0 || (size_t)n < pad || (size_t)n - pad > cap)
        return M2M_EMALFORMED;
    *outlen = (size_t)n - pad;
    memcpy(out, tmp, *outlen);
    OPENSSL_cleanse(tmp, sizeof tmp);
    return 0;
}

/* Splits off the text up to the next '$' (or the end). */
static struct m2m_slice next_field(struct m2m_slice *rest)
{
    const uint8_t *d = memchr(rest->p, '$', rest->n);
    size_t n = d ? (size_t)(d - rest->p) : rest->n;
    struct m2m_slice f = {rest->p, n};
    rest->p += d ? n + 1 : n;
    rest->n -= d ? n + 1 : n;
    return f;
}

static int parse_iterations(struct m2m_slice s, uint32_t *out)
{
    if (s.n == 0 || s.n > 9)
        return M2M_EMALFORMED;
    uint32_t v = 0;
    for (size_t i = 0; i < s.n; i++) {
        if (s.p[i] < '0' || s.p[i] > '9')
            return M2M_EMALFORMED;
        v = v * 10 + (uint32_t)(s.p[i] - '0');
    }
    if (v < 1 || v > M2M_MQTT_PW_MAX_ITERATIONS)
        return M2M_EMALFORMED;
    *out = v;
    return 0;
}

/* "$7$iter$salt$hash" or "$6$salt$hash" into h. */
static int pw_hash_parse(struct m2m_slice s, struct pw_hash *h)
{
    if (s.n < 3 || s.p[0] != '$' || s.p[2] != '$')
        return M2M_EMALFORMED;
    struct m2m_slice rest = {s.p + 3, s.n - 3};
    if (s.p[1] == '7') {
        h->alg = M2M_MQTT_PW_SHA512_PBKDF2;
        if (parse_iterations(next_field(&rest), &h->iterations))
            return M2M_EMALFORMED;
    } else if (s.p[1] == '6') {
        h->alg = M2M_MQTT_PW_SHA512;
        h->iterations = 0;
    } else {
        return M2M_EMALFORMED;
    }
    struct m2m_slice salt = next_field(&rest);
    struct m2m_slice hash = next_field(&rest);
    size_t hash_len;
    if (rest.n != 0 || (hash.p + hash.n < s.p + s.n)) /* a fourth '$' */
        return M2M_EMALFORMED;
    if (b64_decode(salt, h->salt, sizeof h->salt, &h->salt_len) || h->salt_len == 0)
        return M2M_EMALFORMED;
    if (b64_decode(hash, h->hash, sizeof h->hash, &hash_len) || hash_len != M2M_MQTT_PW_HASH_LEN)
        return M2M_EMALFORMED;
    return 0;
}

/* The digest of `password` under h's algorithm and salt. */
static int pw_digest(const struct pw_hash *h, struct m2m_slice password, uint8_t out[M2M_MQTT_PW_HASH_LEN])
{
    if (password.n > MQTT_STR_MAX)
        return M2M_EINVAL;
    static const char empty[1] = "";
    const char *pw = password.n ? (const char *)password.p : empty;
    if (h->alg == M2M_MQTT_PW_SHA512_PBKDF2) {
        if (PKCS5_PBKDF2_HMAC(pw, (int)password.n, h->salt, (int)h->salt_len, (int)h->iterations,
                              EVP_sha512(), M2M_MQTT_PW_HASH_LEN, out) != 1)
            return M2M_EIO;
        return 0;
    }
    /* $6$: one SHA-512 over the password followed by the salt. */
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned int n = 0;
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha512(), NULL) == 1 &&
             EVP_DigestUpdate(ctx, pw, password.n) == 1 && EVP_DigestUpdate(ctx, h->salt, h->salt_len) == 1 &&
             EVP_DigestFinal_ex(ctx, out, &n) == 1 && n == M2M_MQTT_PW_HASH_LEN;
    EVP_MD_CTX_free(ctx);
    return ok ? 0 : M2M_EIO;
}

static int pw_hash_verify(const struct pw_hash *h, struct m2m_slice password)
{
    uint8_t d[M2M_MQTT_PW_HASH_LEN];
    int rc = pw_digest(h, password, d);
    if (rc == 0 && CRYPTO_memcmp(d, h->hash, sizeof d) != 0)
        rc = M2M_EINVAL;
    OPENSSL_cleanse(d, sizeof d);
    return rc == M2M_EIO ? M2M_EIO : rc ? M2M_EINVAL : 0;
}

int m2m_mqtt_pw_hash(char *out, size_t cap, enum m2m_mqtt_pw_alg alg, unsigned iterations,
                     struct m2m_slice password)
{
    struct pw_hash h = {.alg = (uint8_t)alg, .salt_len = M2M_MQTT_PW_SALT_LEN};
    if (alg == M2M_MQTT_PW_SHA512_PBKDF2) {
        if (iterations < 1 || iterations > M2M_MQTT_PW_MAX_ITERATIONS)
            return M2M_EINVAL;
        h.iterations = iterations;
    } else if (alg != M2M_MQTT_PW_SHA512) {
        return M2M_EINVAL;
    }
    if (password.n > MQTT_STR_MAX)
        return M2M_EINVAL;
    if (RAND_bytes(h.salt, (int)h.salt_len) != 1)
        return M2M_EIO;
    int rc = pw_digest(&h, password, h.hash);
    if (rc)
        return rc;
    /* EVP_EncodeBlock writes 4 characters per 3 bytes and a NUL. */
    unsigned char salt64[B64_MAX + 1], hash64[B64_MAX + 1];
    EVP_EncodeBlock(salt64, h.salt, (int)h.salt_len);
    EVP_EncodeBlock(hash64, h.hash, (int)sizeof h.hash);
    OPENSSL_cleanse(&h, sizeof h);
    int n = alg == M2M_MQTT_PW_SHA512_PBKDF2
                ? snprintf(out, cap, "$7$%u$%s$%s", iterations, (char *)salt64, (char *)hash64)
                : snprintf(out, cap, "$6$%s$%s", (char *)salt64, (char *)hash64);
    if (n < 0 || (size_t)n >= cap) {
        if (cap)
            out[0] = '\0';
        return M2M_ENOBUFS;
    }
    return 0;
}

int m2m_mqtt_pw_verify(struct m2m_slice hash, struct m2m_slice password)
{
    struct pw_hash h;
    if (pw_hash_parse(hash, &h))
        return M2M_EMALFORMED;
    return pw_hash_verify(&h, password);
}

bool m2m_mqtt_pw_is_hash(struct m2m_slice hash)
{
    struct pw_hash h;
    return pw_hash_parse(hash, &h) == 0;
}

/* ---- the loaded files ------------------------------------------------ */

struct pw_user {
    char *name;
    size_t name_len;
    struct pw_hash h;
};

struct acl_rule {
    char *topic; /* NUL-terminated filter, %u/%c still in it for patterns */
    size_t len;
    uint8_t access; /* READ|WRITE bits; 0 = deny */
    bool has_u, has_c;
};

struct acl_list {
    struct acl_rule *v;
    size_t n, cap;
};

struct acl_user {
    char *name;
    struct acl_list rules;
};

struct m2m_mqtt_auth {
    bool has_passwords, has_acl;
    struct pw_user *users; /* sorted by name (bytes, then length) */
    size_t nusers;
    struct acl_list anon;
    struct acl_user *acl_users; /* sorted by name */
    size_t nacl_users;
    struct acl_list patterns;
};

static void acl_list_free(struct acl_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i].topic);
    free(l->v);
}

void m2m_mqtt_auth_free(struct m2m_mqtt_auth *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->nusers; i++)
        free(a->users[i].name);
    if (a->users)
        OPENSSL_cleanse(a->users, a->nusers * sizeof *a->users);
    free(a->users);
    acl_list_free(&a->anon);
    for (size_t i = 0; i < a->nacl_users; i++) {
        free(a->acl_users[i].name);
        acl_list_free(&a->acl_users[i].rules);
    }
    free(a->acl_users);
    acl_list_free(&a->patterns);
    free(a);
}

bool m2m_mqtt_auth_has_passwords(const struct m2m_mqtt_auth *a)
{
    return a && a->has_passwords;
}

bool m2m_mqtt_auth_has_acl(const struct m2m_mqtt_auth *a)
{
    return a && a->has_acl;
}

/* ---- parsing helpers ------------------------------------------------- */

/* Where a parse is, for "file:line: reason" messages. */
struct parse_pos {
    const char *file;
    unsigned line;
    char *err;
    size_t errcap;
};

static int fail(struct parse_pos *pp, int rc, const char *fmt, ...)
{
    if (pp->errcap == 0)
        return rc;
    int n = pp->line ? snprintf(pp->err, pp->errcap, "%s:%u: ", pp->file, pp->line)
                     : snprintf(pp->err, pp->errcap, "%s: ", pp->file);
    if (n >= 0 && (size_t)n < pp->errcap) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(pp->err + n, pp->errcap - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return rc;
}

static bool is_blank(uint8_t c)
{
    return c == ' ' || c == '\t';
}

static bool is_space(uint8_t c)
{
    return is_blank(c) || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

static struct m2m_slice trim(struct m2m_slice s)
{
    while (s.n && is_space(s.p[0])) {
        s.p++;
        s.n--;
    }
    while (s.n && is_space(s.p[s.n - 1]))
        s.n--;
    return s;
}

/* Next line of `text` without its line ending; false at the end. */
static bool next_line(struct m2m_slice *text, struct m2m_slice *line)
{
    if (text->n == 0)
        return false;
    const uint8_t *nl = memchr(text->p, '\n', text->n);
    size_t n = nl ? (size_t)(nl - text->p) : text->n;
    line->p = text->p;
    line->n = n;
    text->p += nl ? n + 1 : n;
    text->n -= nl ? n + 1 : n;
    return true;
}

/* A printable copy of at most 40 bytes of s, for error messages. */
static const char *shown(struct m2m_slice s, char buf[48])
{
    size_t n = s.n > 40 ? 40 : s.n;
    for (size_t i = 0; i < n; i++)
        buf[i] = (s.p[i] >= 0x20 && s.p[i] < 0x7f) ? (char)s.p[i] : '?';
    memcpy(buf + n, s.n > 40 ? "..." : "", s.n > 40 ? 4 : 1);
    return buf;
}

static char *dup_slice(struct m2m_slice s)
{
    char *c = malloc(s.n + 1);
    if (c) {
        memcpy(c, s.p, s.n);
        c[s.n] = '\0';
    }
    return c;
}

static int name_cmp(const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
    size_t n = an < bn ? an : bn;
    int c = n ? memcmp(a, b, n) : 0;
    return c ? c : (an > bn) - (an < bn);
}

static int pw_user_cmp(const void *x, const void *y)
{
    const struct pw_user *a = x, *b = y;
    return name_cmp((const uint8_t *)a->name, a->name_len, (const uint8_t *)b->name, b->name_len);
}

static int acl_user_cmp(const void *x, const void *y)
{
    const struct acl_user *a = x, *b = y;
    return strcmp(a->name, b->name);
}

/* ---- password file --------------------------------------------------- */

static int parse_passwords(struct m2m_mqtt_auth *a, struct m2m_slice text, struct parse_pos *pp)
{
    struct m2m_slice line;
    size_t cap = 0;
    char b[48];
    a->has_passwords = true;
    while (next_line(&text, &line)) {
        pp->line++;
        struct m2m_slice t = trim(line);
        if (t.n == 0 || t.p[0] == '#')
            continue;
        const uint8_t *colon = memchr(line.p, ':', line.n);
        if (!colon)
            return fail(pp, M2M_ECONFIG, "expected 'user:hash', found no ':'");
        struct m2m_slice name = {line.p, (size_t)(colon - line.p)};
        struct m2m_slice hash = trim((struct m2m_slice){colon + 1, line.n - name.n - 1});
        if (name.n == 0)
            return fail(pp, M2M_ECONFIG, "empty user name");
        if (name.n > MQTT_STR_MAX || memchr(name.p, '\0', name.n))
            return fail(pp, M2M_ECONFIG, "invalid user name");
        if (hash.n == 0)
            return fail(pp, M2M_ECONFIG, "user '%s' has no password hash", shown(name, b));
        struct pw_hash h;
        if (pw_hash_parse(hash, &h)) {
            if (hash.p[0] != '$')
                return fail(pp, M2M_ECONFIG,
                            "user '%s': plain-text password (hash the file with 'm2mkit passwd -U')",
                            shown(name, b));
            return fail(pp, M2M_ECONFIG, "user '%s': malformed password hash (expected $7$ or $6$)",
                        shown(name, b));
        }
        if (a->nusers == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            struct pw_user *v = realloc(a->users, ncap * sizeof *v);
            if (!v)
                return fail(pp, M2M_ENOMEM, "out of memory");
            a->users = v;
            cap = ncap;
        }
        struct pw_user *u = &a->users[a->nusers];
        u->name = dup_slice(name);
        if (!u->name)
            return fail(pp, M2M_ENOMEM, "out of memory");
        u->name_len = name.n;
        u->h = h;
        a->nusers++;
        OPENSSL_cleanse(&h, sizeof h);
    }
    pp->line = 0;
    if (a->nusers > 1)
        qsort(a->users, a->nusers, sizeof *a->users, pw_user_cmp);
    for (size_t i = 1; i < a->nusers; i++)
        if (pw_user_cmp(&a->users[i - 1], &a->users[i]) == 0)
            return fail(
                pp, M2M_ECONFIG, "user '%s' appears twice",
                shown((struct m2m_slice){(const uint8_t *)a->users[i].name, a->users[i].name_len}, b));
    return 0;
}

/* ---- ACL file -------------------------------------------------------- */

static int acl_push(struct acl_list *l, struct m2m_slice topic, uint8_t access, bool pattern)
{
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 8;
        struct acl_rule *v = realloc(l->v, ncap * sizeof *v);
        if (!v)
            return M2M_ENOMEM;
        l->v = v;
        l->cap = ncap;
    }
    struct acl_rule *r = &l->v[l->n];
    r->topic = dup_slice(topic);
    if (!r->topic)
        return M2M_ENOMEM;
    r->len = topic.n;
    r->access = access;
    r->has_u = pattern && strstr(r->topic, "%u") != NULL;
    r->has_c = pattern && strstr(r->topic, "%c") != NULL;
    l->n++;
    return 0;
}

/* Index of the section for `name`, created if new. */
static int acl_user_section(struct m2m_mqtt_auth *a, struct m2m_slice name, size_t *cap, size_t *idx)
{
    for (size_t i = 0; i < a->nacl_users; i++) {
        if (strlen(a->acl_users[i].name) == name.n && !memcmp(a->acl_users[i].name, name.p, name.n)) {
            *idx = i;
            return 0;
        }
    }
    if (a->nacl_users == *cap) {
        size_t ncap = *cap ? *cap * 2 : 8;
        struct acl_user *v = realloc(a->acl_users, ncap * sizeof *v);
        if (!v)
            return M2M_ENOMEM;
        a->acl_users = v;
        *cap = ncap;
    }
    struct acl_user *u = &a->acl_users[a->nacl_users];
    memset(u, 0, sizeof *u);
    u->name = dup_slice(name);
    if (!u->name)
        return M2M_ENOMEM;
    *idx = a->nacl_users++;
    return 0;
}

static bool word_is(struct m2m_slice w, const char *s)
{
    return w.n == strlen(s) && !memcmp(w.p, s, w.n);
}

/* Splits the first blank-separated word off `s` (which is trimmed). */
static struct m2m_slice next_word(struct m2m_slice *s)
{
    size_t i = 0;
    while (i < s->n && !is_blank(s->p[i]))
        i++;
    struct m2m_slice w = {s->p, i};
    *s = trim((struct m2m_slice){s->p + i, s->n - i});
    return w;
}

static int parse_acl(struct m2m_mqtt_auth *a, struct m2m_slice text, struct parse_pos *pp)
{
    struct m2m_slice line;
    size_t users_cap = 0;
    bool in_user = false;
    size_t cur = 0;
    char b[48];
    a->has_acl = true;
    while (next_line(&text, &line)) {
        pp->line++;
        struct m2m_slice rest = trim(line);
        if (rest.n == 0 || rest.p[0] == '#')
            continue;
        struct m2m_slice kw = next_word(&rest);
        if (word_is(kw, "user")) {
            if (rest.n == 0)
                return fail(pp, M2M_ECONFIG, "missing user name after 'user'");
            if (rest.n > MQTT_STR_MAX || memchr(rest.p, '\0', rest.n))
                return fail(pp, M2M_ECONFIG, "invalid user name");
            int rc = acl_user_section(a, rest, &users_cap, &cur);
            if (rc)
                return fail(pp, rc, "out of memory");
            in_user = true;
            continue;
        }
        bool pattern = word_is(kw, "pattern");
        if (!pattern && !word_is(kw, "topic"))
            return fail(pp, M2M_ECONFIG, "unknown keyword '%s' (expected topic, pattern or user)",
                        shown(kw, b));
        if (rest.n == 0)
            return fail(pp, M2M_ECONFIG, "missing topic after '%s'", pattern ? "pattern" : "topic");
        /* One word: the topic, read and write. More: an access word, then
         * the topic, which may hold blanks. */
        struct m2m_slice topic = rest;
        uint8_t access = M2M_MQTT_ACCESS_READ | M2M_MQTT_ACCESS_WRITE;
        struct m2m_slice w = next_word(&rest);
        if (rest.n != 0) {
            topic = rest;
            if (word_is(w, "read"))
                access = M2M_MQTT_ACCESS_READ;
            else if (word_is(w, "write"))
                access = M2M_MQTT_ACCESS_WRITE;
            else if (word_is(w, "readwrite"))
                access = M2M_MQTT_ACCESS_READ | M2M_MQTT_ACCESS_WRITE;
            else if (word_is(w, "deny"))
                access = 0;
            else
                return fail(pp, M2M_ECONFIG, "unknown access '%s' (expected read, write, readwrite or deny)",
                            shown(w, b));
        }
        if (!m2m_mqtt_filter_valid(topic))
            return fail(pp, M2M_ECONFIG, "invalid topic filter '%s'", shown(topic, b));
        struct acl_list *l = pattern ? &a->patterns : in_user ? &a->acl_users[cur].rules : &a->anon;
        if (acl_push(l, topic, access, pattern))
            return fail(pp, M2M_ENOMEM, "out of memory");
    }
    pp->line = 0;
    if (a->nacl_users > 1)
        qsort(a->acl_users, a->nacl_users, sizeof *a->acl_users, acl_user_cmp);
    return 0;
}

/* ---- loading --------------------------------------------------------- */

int m2m_mqtt_auth_parse(struct m2m_mqtt_auth **out, const char *pw_text, size_t pw_len, const char *pw_name,
                        const char *acl_text, size_t acl_len, const char *acl_name, char *err, size_t errcap)
{
    *out = NULL;
    if (errcap)
        err[0] = '\0';
    struct m2m_mqtt_auth *a = calloc(1, sizeof *a);
    struct parse_pos pp = {.file = pw_name ? pw_name : "password file", .err = err, .errcap = errcap};
    if (!a)
        return fail(&pp, M2M_ENOMEM, "out of memory");
    int rc = 0;
    if (pw_text)
        rc = parse_passwords(a, (struct m2m_slice){(const uint8_t *)pw_text, pw_len}, &pp);
    if (rc == 0 && acl_text) {
        pp = (struct parse_pos){.file = acl_name ? acl_name : "acl file", .err = err, .errcap = errcap};
        rc = parse_acl(a, (struct m2m_slice){(const uint8_t *)acl_text, acl_len}, &pp);
    }
    if (rc) {
        m2m_mqtt_auth_free(a);
        return rc;
    }
    *out = a;
    return 0;
}

/* Reads a whole file into a malloc'd buffer. */
static int read_file(const char *path, char **buf, size_t *len, char *err, size_t errcap)
{
    struct parse_pos pp = {.file = path, .err = err, .errcap = errcap};
    FILE *f = fopen(path, "rb");
    if (!f)
        return fail(&pp, M2M_EIO, "%s", strerror(errno));
    size_t cap = 4096, n = 0;
    char *p = malloc(cap);
    int rc = p ? 0 : fail(&pp, M2M_ENOMEM, "out of memory");
    while (rc == 0) {
        if (n == cap) {
            char *np = cap < AUTH_FILE_MAX ? realloc(p, cap * 2) : NULL;
            if (!np) {
                rc = fail(&pp, cap < AUTH_FILE_MAX ? M2M_ENOMEM : M2M_EIO,
                          cap < AUTH_FILE_MAX ? "out of memory" : "file too large");
                break;
            }
            p = np;
            cap *= 2;
        }
        size_t got = fread(p + n, 1, cap - n, f);
        n += got;
        if (got == 0) {
            if (ferror(f))
                rc = fail(&pp, M2M_EIO, "read error");
            break;
        }
    }
    fclose(f);
    if (rc) {
        free(p);
        return rc;
    }
    *buf = p;
    *len = n;
    return 0;
}

int m2m_mqtt_auth_load(struct m2m_mqtt_auth **out, const char *password_file, const char *acl_file, char *err,
                       size_t errcap)
{
    char *pw = NULL, *acl = NULL;
    size_t pwn = 0, acln = 0;
    int rc = 0;
    *out = NULL;
    if (password_file)
        rc = read_file(password_file, &pw, &pwn, err, errcap);
    if (rc == 0 && acl_file)
        rc = read_file(acl_file, &acl, &acln, err, errcap);
    if (rc == 0)
        rc = m2m_mqtt_auth_parse(out, pw, pwn, password_file, acl, acln, acl_file, err, errcap);
    if (pw)
        OPENSSL_cleanse(pw, pwn);
    free(pw);
    free(acl);
    return rc;
}

/* ---- checks ---------------------------------------------------------- */

int m2m_mqtt_auth_check(const struct m2m_mqtt_auth *a, struct m2m_slice user, struct m2m_slice password)
{
    const struct pw_user *u = NULL;
    if (a && a->has_passwords && a->nusers) {
        size_t lo = 0, hi = a->nusers;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            int c = name_cmp(user.p, user.n, (const uint8_t *)a->users[mid].name, a->users[mid].name_len);
            if (c == 0) {
                u = &a->users[mid];
                break;
            }
            if (c < 0)
                hi = mid;
            else
                lo = mid + 1;
        }
    }
    if (!u) {
        /* Spend what a real check costs, so that timing does not tell which
         * user names exist. */
        struct pw_hash dummy = {.alg = M2M_MQTT_PW_SHA512_PBKDF2,
                                .iterations = M2M_MQTT_PW_ITERATIONS,
                                .salt_len = M2M_MQTT_PW_SALT_LEN};
        (void)pw_hash_verify(&dummy, password);
        return M2M_ENOTFOUND;
    }
    return pw_hash_verify(&u->h, password);
}

static bool has_any(struct m2m_slice s, const char *set)
{
    for (size_t i = 0; i < s.n; i++)
        if (s.p[i] && strchr(set, s.p[i]))
            return true;
    return false;
}

static bool starts_with(struct m2m_slice s, const char *prefix)
{
    size_t n = strlen(prefix);
    return s.n >= n && !memcmp(s.p, prefix, n);
}

/* Does one rule filter match the topic name? A filter that reads as a
 * $share filter is compared as text by mosquitto, which can only match a
 * $share topic name, and those are refused before; so it never matches. */
static bool filter_matches(struct m2m_slice filter, struct m2m_slice topic)
{
    if (topic.n && topic.p[0] == '$' && (filter.n == 0 || filter.p[0] != '$'))
        return false;
    if (m2m_mqtt_filter_shared(filter, NULL, NULL))
        return false;
    return m2m_mqtt_topic_match(filter, topic);
}

static const struct acl_list *section_of(const struct m2m_mqtt_auth *a, const char *user)
{
    if (!user)
        return &a->anon;
    if (a->nacl_users == 0)
        return NULL;
    struct acl_user key = {.name = (char *)user};
    const struct acl_user *u = bsearch(&key, a->acl_users, a->nacl_users, sizeof key, acl_user_cmp);
    return u ? &u->rules : NULL;
}

/* Substitutes %u and %c in a pattern into buf (or a malloc'd buffer, in
 * *heap). Returns false if the expansion is too large or memory is short. */
static bool expand(const struct acl_rule *r, struct m2m_slice user, struct m2m_slice cid, char *buf,
                   size_t cap, char **heap, struct m2m_slice *outp)
{
    size_t n = 0;
    for (size_t i = 0; i < r->len; i++) {
        if (r->topic[i] == '%' && i + 1 < r->len && (r->topic[i + 1] == 'u' || r->topic[i + 1] == 'c')) {
            n += r->topic[i + 1] == 'u' ? user.n : cid.n;
            i++;
        } else {
            n++;
        }
        if (n > PATTERN_EXPANSION_MAX)
            return false;
    }
    char *p = buf;
    *heap = NULL;
    if (n > cap) {
        p = *heap = malloc(n);
        if (!p)
            return false;
    }
    size_t o = 0;
    for (size_t i = 0; i < r->len; i++) {
        if (r->topic[i] == '%' && i + 1 < r->len && (r->topic[i + 1] == 'u' || r->topic[i + 1] == 'c')) {
            struct m2m_slice v = r->topic[i + 1] == 'u' ? user : cid;
            if (v.n)
                memcpy(p + o, v.p, v.n);
            o += v.n;
            i++;
        } else {
            p[o++] = r->topic[i];
        }
    }
    outp->p = (const uint8_t *)p;
    outp->n = o;
    return true;
}

enum pattern_hit { PATTERN_NO, PATTERN_YES, PATTERN_UNSAFE };

/* Matches one pattern for this client. UNSAFE: the %u/%c value holds '+',
 * '#' or '/', or the expansion failed; the caller picks the safe side. */
static enum pattern_hit pattern_matches(const struct acl_rule *r, const char *user, struct m2m_slice cid,
                                        struct m2m_slice topic)
{
    struct m2m_slice u = {(const uint8_t *)user, user ? strlen(user) : 0};
    if (r->has_u && !user)
        return PATTERN_NO; /* %u rules are for clients with a user name */
    if ((r->has_u && has_any(u, "+#/")) || (r->has_c && has_any(cid, "+#/")))
        return PATTERN_UNSAFE;
    if (!r->has_u && !r->has_c)
        return filter_matches((struct m2m_slice){(const uint8_t *)r->topic, r->len}, topic) ? PATTERN_YES
                                                                                            : PATTERN_NO;
    char buf[256];
    char *heap;
    struct m2m_slice f;
    if (!expand(r, u, cid, buf, sizeof buf, &heap, &f))
        return PATTERN_UNSAFE;
    bool hit = filter_matches(f, topic);
    free(heap);
    return hit ? PATTERN_YES : PATTERN_NO;
}

/* mosquitto's fixed rules for '$' topics; false: refused whatever the ACL. */
static bool dollar_allows(struct m2m_slice topic, enum m2m_mqtt_access acc)
{
    static const uint8_t bridge_state[] = "$SYS/broker/connection/+/state";
    if (topic.n == 0 || topic.p[0] != '$')
        return true;
    if (starts_with(topic, "$SYS"))
        return acc != M2M_MQTT_ACCESS_WRITE ||
               m2m_mqtt_topic_match((struct m2m_slice){bridge_state, sizeof bridge_state - 1}, topic);
    if (starts_with(topic, "$share"))
        return acc == M2M_MQTT_ACCESS_SUBSCRIBE;
    return true;
}

bool m2m_mqtt_acl_allows(const struct m2m_mqtt_auth *a, const char *user, struct m2m_slice client_id,
                         struct m2m_slice topic, enum m2m_mqtt_access acc)
{
    /* mosquitto 2.0's acl_file grants every subscription and filters each
     * delivered message with a READ check instead. */
    if (acc == M2M_MQTT_ACCESS_SUBSCRIBE)
        return true;
    if (acc != M2M_MQTT_ACCESS_READ && acc != M2M_MQTT_ACCESS_WRITE)
        return false;
    if (!m2m_mqtt_topic_valid(topic) || !dollar_allows(topic, acc))
        return false;
    if (!a || !a->has_acl)
        return true;

    const struct acl_list *sec = section_of(a, user);
    /* 1. and 2.: any matching deny wins. */
    for (size_t i = 0; sec && i < sec->n; i++)
        if (sec->v[i].access == 0 &&
            filter_matches((struct m2m_slice){(const uint8_t *)sec->v[i].topic, sec->v[i].len}, topic))
            return false;
    for (size_t i = 0; i < a->patterns.n; i++)
        if (a->patterns.v[i].access == 0 &&
            pattern_matches(&a->patterns.v[i], user, client_id, topic) != PATTERN_NO)
            return false;
    /* 3. the client's own section. */
    for (size_t i = 0; sec && i < sec->n; i++)
        if ((sec->v[i].access & acc) &&
            filter_matches((struct m2m_slice){(const uint8_t *)sec->v[i].topic, sec->v[i].len}, topic))
            return true;
    /* 4. no patterns for names that could inject wildcards. */
    struct m2m_slice u = {(const uint8_t *)user, user ? strlen(user) : 0};
    if (has_any(u, "+#") || has_any(client_id, "+#"))
        return false;
    /* 5. granting patterns. */
    for (size_t i = 0; i < a->patterns.n; i++)
        if ((a->patterns.v[i].access & acc) &&
            pattern_matches(&a->patterns.v[i], user, client_id, topic) == PATTERN_YES)
            return true;
    return false;
}
