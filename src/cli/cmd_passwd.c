/* m2mkit passwd: manages a password file in mosquitto_passwd's format, so the
 * same file serves m2mkit's broker and mosquitto. The options are
 * mosquitto_passwd's; the file is replaced atomically (temporary file, then
 * rename) with mode 0600. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "base/utf8.h"
#include "cli.h"
#include "m2m/err.h"
#include "server/mqtt_auth.h"

#define PASSWD_FILE_MAX (64u << 20)
#define PASSWORD_MAX 65535u

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: m2mkit passwd [-H sha512 | -H sha512-pbkdf2] [-I iterations] [-c | -D] passwordfile "
        "username\n"
        "       m2mkit passwd [-H sha512 | -H sha512-pbkdf2] [-I iterations] [-c] -b passwordfile username "
        "password\n"
        "       m2mkit passwd [-I iterations] -U passwordfile\n"
        "\n"
        "Manages a password file for the MQTT broker (mosquitto_passwd's format; mosquitto reads\n"
        "it too). The password is asked twice on a terminal, or read as one line from stdin.\n"
        "\n"
        "  -b             batch mode: the password is the last argument\n"
        "  -c             create the file, replacing any existing one\n"
        "  -D             delete the user\n"
        "  -U             hash every plain-text password of the file in place\n"
        "  -H ALGORITHM   sha512-pbkdf2 ($7$, the default) or sha512 ($6$, mosquitto 1.x)\n"
        "  -I ITERATIONS  PBKDF2 iterations (default %d)\n"
        "  -h, --help     this help\n"
        "\n"
        "Exit status: 0 on success, 1 on failure, 2 for a usage error.\n",
        M2M_MQTT_PW_ITERATIONS);
}

/* A growing byte buffer for the new file. */
struct out {
    char *p;
    size_t n, cap;
    bool failed;
};

static void out_add(struct out *o, const void *p, size_t n)
{
    if (o->failed)
        return;
    if (o->n + n > o->cap) {
        size_t cap = o->cap ? o->cap : 1024;
        while (cap < o->n + n)
            cap *= 2;
        char *np = realloc(o->p, cap);
        if (!np) {
            o->failed = true;
            return;
        }
        o->p = np;
        o->cap = cap;
    }
    memcpy(o->p + o->n, p, n);
    o->n += n;
}

static void out_free(struct out *o)
{
    if (o->p)
        OPENSSL_cleanse(o->p, o->n);
    free(o->p);
}

static int read_all(const char *path, char **buf, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "m2mkit passwd: %s: %s\n", path, strerror(errno));
        return -1;
    }
    struct out o = {0};
    char chunk[8192];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0 && o.n <= PASSWD_FILE_MAX)
        out_add(&o, chunk, got);
    bool err = ferror(f) || o.failed || o.n > PASSWD_FILE_MAX;
    fclose(f);
    if (err) {
        fprintf(stderr, "m2mkit passwd: %s: cannot read (or larger than %u bytes)\n", path, PASSWD_FILE_MAX);
        out_free(&o);
        return -1;
    }
    out_add(&o, "", 1); /* so that an empty file still has a buffer */
    *buf = o.p;
    *len = o.n - 1;
    return 0;
}

/* Writes the new content next to the file, then renames it over it. */
static int write_atomic(const char *path, const struct out *o)
{
    size_t n = strlen(path) + sizeof ".XXXXXX";
    char *tmp = malloc(n);
    if (!tmp)
        return -1;
    snprintf(tmp, n, "%s.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        fprintf(stderr, "m2mkit passwd: cannot create a temporary file for %s: %s\n", path, strerror(errno));
        free(tmp);
        return -1;
    }
    int rc = fchmod(fd, 0600);
    for (size_t off = 0; rc == 0 && off < o->n;) {
        ssize_t w = write(fd, o->p + off, o->n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            rc = -1;
        else
            off += (size_t)w;
    }
    if (rc == 0)
        rc = fsync(fd);
    if (close(fd) != 0)
        rc = -1;
    if (rc == 0)
        rc = rename(tmp, path);
    if (rc != 0) {
        fprintf(stderr, "m2mkit passwd: cannot write %s: %s\n", path, strerror(errno));
        unlink(tmp);
    }
    free(tmp);
    return rc;
}

static bool username_ok(const char *u)
{
    size_t n = strlen(u);
    if (n == 0 || n > 65535) {
        fprintf(stderr, "m2mkit passwd: the user name must be 1 to 65535 bytes long\n");
        return false;
    }
    if (strchr(u, ':')) {
        fprintf(stderr, "m2mkit passwd: the user name must not contain ':'\n");
        return false;
    }
    if (!m2m_utf8_valid((const uint8_t *)u, n, M2M_UTF8_NO_NUL | M2M_UTF8_NO_CONTROL)) {
        fprintf(stderr, "m2mkit passwd: the user name must be UTF-8 without control characters\n");
        return false;
    }
    return true;
}

/* Reads one line into buf (without its end); false at EOF before any byte. */
static bool read_line(FILE *f, char *buf, size_t cap)
{
    if (!fgets(buf, (int)cap, f))
        return false;
    buf[strcspn(buf, "\r\n")] = '\0';
    return true;
}

static bool prompt(const char *what, char *buf, size_t cap)
{
    struct termios old, quiet;
    bool restore = tcgetattr(STDIN_FILENO, &old) == 0;
    if (restore) {
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
    }
    fputs(what, stderr);
    fflush(stderr);
    bool ok = read_line(stdin, buf, cap);
    if (restore)
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
    fputc('\n', stderr);
    return ok;
}

/* The new password: asked twice on a terminal, else one line of stdin. */
static int get_password(char *buf, size_t cap)
{
    if (isatty(STDIN_FILENO)) {
        char again[PASSWORD_MAX + 2];
        bool ok = prompt("Password: ", buf, cap) && prompt("Reenter password: ", again, sizeof again);
        bool same = ok && strcmp(buf, again) == 0;
        OPENSSL_cleanse(again, sizeof again);
        if (!same) {
            fprintf(stderr, "m2mkit passwd: the passwords do not match\n");
            return -1;
        }
    } else if (!read_line(stdin, buf, cap)) {
        fprintf(stderr, "m2mkit passwd: no password on stdin\n");
        return -1;
    }
    if (buf[0] == '\0') {
        fprintf(stderr, "m2mkit passwd: empty password\n");
        return -1;
    }
    if (strlen(buf) > PASSWORD_MAX) {
        fprintf(stderr, "m2mkit passwd: the password is longer than %u bytes\n", PASSWORD_MAX);
        return -1;
    }
    return 0;
}

struct opts {
    enum m2m_mqtt_pw_alg alg;
    unsigned iterations;
};

/* Appends "user:hash\n". */
static int add_entry(struct out *o, const struct opts *op, const char *user, size_t ulen, const char *pw,
                     size_t pwlen)
{
    char h[M2M_MQTT_PW_HASH_MAX];
    int rc = m2m_mqtt_pw_hash(h, sizeof h, op->alg, op->iterations,
                              (struct m2m_slice){(const uint8_t *)pw, pwlen});
    if (rc) {
        fprintf(stderr, "m2mkit passwd: cannot hash the password: %s\n", m2m_strerror(rc));
        return -1;
    }
    out_add(o, user, ulen);
    out_add(o, ":", 1);
    out_add(o, h, strlen(h));
    out_add(o, "\n", 1);
    return 0;
}

/* Walks the lines of `text`; line holds one line without its '\n'. */
static bool next_line(const char **text, const char *end, const char **line, size_t *len)
{
    if (*text >= end)
        return false;
    const char *nl = memchr(*text, '\n', (size_t)(end - *text));
    *line = *text;
    *len = nl ? (size_t)(nl - *text) : (size_t)(end - *text);
    *text = nl ? nl + 1 : end;
    return true;
}

static bool line_is_user(const char *line, size_t len, const char *user)
{
    size_t ulen = strlen(user);
    return len > ulen && line[ulen] == ':' && !memcmp(line, user, ulen);
}

/* Rewrites the file: set (pw != NULL) or delete the user. */
static int update(const char *path, const struct opts *op, bool create, const char *user, const char *pw)
{
    char *text = NULL;
    size_t len = 0;
    if (!create && read_all(path, &text, &len))
        return CLI_PROTO_ERROR;
    struct out o = {0};
    bool found = false;
    int rc = 0;
    const char *cur = text, *end = text ? text + len : NULL, *line;
    size_t n;
    while (cur && next_line(&cur, end, &line, &n)) {
        if (!line_is_user(line, n, user)) {
            out_add(&o, line, n);
            out_add(&o, "\n", 1);
        } else if (pw && !found) {
            rc = add_entry(&o, op, user, strlen(user), pw, strlen(pw));
        }
        found |= line_is_user(line, n, user);
        if (rc)
            break;
    }
    if (rc == 0 && pw && !found)
        rc = add_entry(&o, op, user, strlen(user), pw, strlen(pw));
    if (rc == 0 && !pw && !found) {
        fprintf(stderr, "m2mkit passwd: user %s not found in %s\n", user, path);
        rc = -1;
    }
    if (rc == 0 && o.failed) {
        fprintf(stderr, "m2mkit passwd: out of memory\n");
        rc = -1;
    }
    if (rc == 0)
        rc = write_atomic(path, &o);
    out_free(&o);
    if (text)
        OPENSSL_cleanse(text, len);
    free(text);
    return rc ? CLI_PROTO_ERROR : CLI_OK;
}

/* -U: hashes every plain-text password; hashed ones are kept. */
static int upgrade(const char *path, const struct opts *op)
{
    char *text = NULL;
    size_t len = 0;
    if (read_all(path, &text, &len))
        return CLI_PROTO_ERROR;
    struct out o = {0};
    int rc = 0;
    unsigned lineno = 0;
    const char *cur = text, *end = text + len, *line;
    size_t n;
    while (rc == 0 && next_line(&cur, end, &line, &n)) {
        lineno++;
        size_t t = n;
        while (t && (line[t - 1] == '\r' || line[t - 1] == ' ' || line[t - 1] == '\t'))
            t--;
        const char *colon = memchr(line, ':', t);
        if (t == 0 || line[0] == '#') {
            out_add(&o, line, n);
            out_add(&o, "\n", 1);
        } else if (!colon || colon == line) {
            fprintf(stderr, "m2mkit passwd: %s:%u: expected 'user:password'\n", path, lineno);
            rc = -1;
        } else {
            struct m2m_slice pw = {(const uint8_t *)colon + 1, t - (size_t)(colon + 1 - line)};
            /* Anything shaped like "$6$..." or "$7$..." is left alone, so
             * that running -U twice never hashes a hash. */
            bool hashed = pw.n >= 3 && pw.p[0] == '$' && (pw.p[1] == '6' || pw.p[1] == '7') && pw.p[2] == '$';
            if (hashed && !m2m_mqtt_pw_is_hash(pw))
                fprintf(stderr, "m2mkit passwd: %s:%u: warning: malformed hash left as it is\n", path,
                        lineno);
            if (hashed) {
                out_add(&o, line, n);
                out_add(&o, "\n", 1);
            } else {
                rc = add_entry(&o, op, line, (size_t)(colon - line), (const char *)pw.p, pw.n);
            }
        }
    }
    if (rc == 0 && o.failed) {
        fprintf(stderr, "m2mkit passwd: out of memory\n");
        rc = -1;
    }
    if (rc == 0)
        rc = write_atomic(path, &o);
    out_free(&o);
    OPENSSL_cleanse(text, len);
    free(text);
    return rc ? CLI_PROTO_ERROR : CLI_OK;
}

/* --check FILE USER PASSWORD (for scripts and tests): exit 0 if the file
 * accepts this password, 1 if not, with the reason on stderr. */
static int check(const char *path, const char *user, const char *pw)
{
    struct m2m_mqtt_auth *a;
    char err[512];
    int rc = m2m_mqtt_auth_load(&a, path, NULL, err, sizeof err);
    if (rc) {
        fprintf(stderr, "m2mkit passwd: %s\n", err);
        return CLI_PROTO_ERROR;
    }
    rc = m2m_mqtt_auth_check(a, (struct m2m_slice){(const uint8_t *)user, strlen(user)},
                             (struct m2m_slice){(const uint8_t *)pw, strlen(pw)});
    m2m_mqtt_auth_free(a);
    if (rc) {
        fprintf(stderr, "m2mkit passwd: %s\n", rc == M2M_ENOTFOUND ? "unknown user" : "wrong password");
        return CLI_PROTO_ERROR;
    }
    return CLI_OK;
}

int cmd_passwd(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"help", no_argument, NULL, 'h'},
        {"check", no_argument, NULL, 'K'},
        {NULL, 0, NULL, 0},
    };
    struct opts op = {.alg = M2M_MQTT_PW_SHA512_PBKDF2, .iterations = M2M_MQTT_PW_ITERATIONS};
    bool batch = false, create = false, del = false, upgrade_mode = false, check_mode = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "+bcDUH:I:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'b': batch = true; break;
        case 'c': create = true; break;
        case 'D': del = true; break;
        case 'U': upgrade_mode = true; break;
        case 'K': check_mode = true; break;
        case 'H':
            if (!strcmp(optarg, "sha512-pbkdf2")) {
                op.alg = M2M_MQTT_PW_SHA512_PBKDF2;
            } else if (!strcmp(optarg, "sha512")) {
                op.alg = M2M_MQTT_PW_SHA512;
            } else {
                fprintf(stderr, "m2mkit passwd: unknown hash '%s' (sha512-pbkdf2 or sha512)\n", optarg);
                return CLI_USAGE;
            }
            break;
        case 'I': {
            char *e;
            errno = 0;
            unsigned long v = strtoul(optarg, &e, 10);
            if (errno || *e || optarg[0] == '-' || v < 1 || v > M2M_MQTT_PW_MAX_ITERATIONS) {
                fprintf(stderr, "m2mkit passwd: -I needs 1 to %d iterations\n", M2M_MQTT_PW_MAX_ITERATIONS);
                return CLI_USAGE;
            }
            op.iterations = (unsigned)v;
            break;
        }
        case 'h': usage(stdout); return CLI_OK;
        default: usage(stderr); return CLI_USAGE;
        }
    }
    int nargs = argc - optind;
    char **args = argv + optind;
    if (check_mode) {
        if (nargs != 3 || batch || create || del || upgrade_mode) {
            usage(stderr);
            return CLI_USAGE;
        }
        return check(args[0], args[1], args[2]);
    }
    if (upgrade_mode) {
        if (nargs != 1 || batch || create || del) {
            usage(stderr);
            return CLI_USAGE;
        }
        return upgrade(args[0], &op);
    }
    if ((create && del) || (batch && del) || nargs != (batch ? 3 : 2)) {
        usage(stderr);
        return CLI_USAGE;
    }
    if (!username_ok(args[1]))
        return CLI_USAGE;
    if (del)
        return update(args[0], &op, false, args[1], NULL);
    if (batch) {
        if (strlen(args[2]) > PASSWORD_MAX) {
            fprintf(stderr, "m2mkit passwd: the password is longer than %u bytes\n", PASSWORD_MAX);
            return CLI_USAGE;
        }
        return update(args[0], &op, create, args[1], args[2]);
    }
    /* Refuse a missing file before asking for a password. */
    if (!create && access(args[0], F_OK) != 0) {
        fprintf(stderr, "m2mkit passwd: %s: %s (use -c to create it)\n", args[0], strerror(errno));
        return CLI_PROTO_ERROR;
    }
    char *pw = malloc(PASSWORD_MAX + 2);
    if (!pw)
        return CLI_FAILED;
    int rc = get_password(pw, PASSWORD_MAX + 2) ? CLI_PROTO_ERROR : update(args[0], &op, create, args[1], pw);
    OPENSSL_cleanse(pw, PASSWORD_MAX + 2);
    free(pw);
    return rc;
}
