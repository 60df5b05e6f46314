/* mosquitto-compatible password and ACL files (src/server/mqtt_auth.c).
 * The password lines below were written once by Debian's mosquitto_passwd
 * 2.0.11 (`mosquitto_passwd -c -b`, `-H sha512`, `-U`); the one with 1000
 * iterations by Python's hashlib.pbkdf2_hmac, an independent PBKDF2. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "m2m/err.h"
#include "server/mqtt_auth.h"

static struct m2m_slice S(const char *s) {
    return (struct m2m_slice){(const uint8_t *)s, strlen(s)};
}

/* mosquitto_passwd -c -b pw alice secret; -b pw bob 'p@ss w0rd:x' */
#define ALICE_7                                                                                              \
    "alice:$7$101$m0v779AGc0WCg3eX$"                                                                         \
    "LS1QMlt5LnEtRYIOe63aZqUVwq7YR4wPxyQJ4vIpID9tYrSslwYrwVNQkkI8nzxSyrHiR8Ceyby"                            \
    "1f18CAzuY7w==\n"
#define BOB_7                                                                                                \
    "bob:$7$101$20U3m6+X1dqoVIzX$AHLgUAjC7dYISxqgRwT6fvUVDmy6jX0+"                                           \
    "5pYJHoptNImbXIybtCMUl2S3b3RlgVJ3yZfFAPLugEIhUDb"                                                        \
    "7tEu9Yw==\n"
/* mosquitto_passwd -H sha512 -c -b pw6 carol hunter2; -b pw6 dave '' */
#define CAROL_6                                                                                              \
    "carol:$6$S2Jft8iEC5SJfKsB$bAU1xvkjyjXUgusJS/"                                                           \
    "JLrv2g9TZbBDdBY7mBv0b7EDKRSprctkt+9TT+vBUnjyVvVjZaJCqdERu5k4kr"                                         \
    "Y8fUbg==\n"
#define DAVE_6                                                                                               \
    "dave:$6$2Enh8mVEJAnUTYOO$5JhUaGhfoyzkzPdaabX71zFMLdJN+Wy4Z7Wq/bQs/"                                     \
    "W8884S8kPlk7Zope07DS8cZdUC0t+tWys3hvWVIdci"                                                             \
    "FHA==\n"
/* printf 'eve:plain\n' > f; mosquitto_passwd -U f */
#define EVE_7                                                                                                \
    "eve:$7$101$3/soxnny45BhVZwJ$AUixYOkehKTMcCPM2hbdV6GjCyRdtnyG4GtUVBt1IXJpwU3YQAfY+GY07bDg/"              \
    "UDSOO+jbKnwFiLduJt"                                                                                     \
    "lZbXxGQ==\n"
/* hashlib.pbkdf2_hmac('sha512', b'iter-test', b'0123456789ab', 1000, 64) */
#define IVAN_7                                                                                               \
    "ivan:$7$1000$MDEyMzQ1Njc4OWFi$wmAEziuMmOBd3MIppCTNBjCaE2auI5v5Ts1oYWLWXGyxS91rqLGJmr2wZYfFW/"           \
    "PYXTeFmZcs9b3ScG"                                                                                       \
    "ZE0qZZzA==\n"

static struct m2m_mqtt_auth *
load(const char *pw, const char *acl)
{
    struct m2m_mqtt_auth *a = NULL;
    char err[256];
    int rc = m2m_mqtt_auth_parse(&a, pw, pw ? strlen(pw) : 0, "pw", acl, acl ? strlen(acl) : 0, "acl", err,
                                 sizeof err);
    if (rc)
        print_error("unexpected load error: %s\n", err);
    assert_int_equal(rc, 0);
    assert_non_null(a);
    return a;
}

/* Expects a load error whose message is exactly `want`. */
static void load_fails(const char *pw, const char *acl, const char *want)
{
    struct m2m_mqtt_auth *a = (struct m2m_mqtt_auth *)1;
    char err[256];
    int rc = m2m_mqtt_auth_parse(&a, pw, pw ? strlen(pw) : 0, "pw", acl, acl ? strlen(acl) : 0, "acl", err,
                                 sizeof err);
    assert_int_equal(rc, M2M_ECONFIG);
    assert_null(a);
    assert_string_equal(err, want);
}

static int check(const struct m2m_mqtt_auth *a, const char *user, const char *pw)
{
    return m2m_mqtt_auth_check(a, S(user), S(pw));
}

/* ---- passwords ------------------------------------------------------- */

static void test_pbkdf2_vectors(void **state)
{
    (void)state;
    struct m2m_mqtt_auth *a = load(ALICE_7 BOB_7 EVE_7 IVAN_7, NULL);
    assert_true(m2m_mqtt_auth_has_passwords(a));
    assert_false(m2m_mqtt_auth_has_acl(a));
    assert_int_equal(check(a, "alice", "secret"), 0);
    assert_int_equal(check(a, "bob", "p@ss w0rd:x"), 0);
    assert_int_equal(check(a, "eve", "plain"), 0);
    assert_int_equal(check(a, "ivan", "iter-test"), 0);
    m2m_mqtt_auth_free(a);
}

static void test_sha512_vectors(void **state)
{
    (void)state;
    struct m2m_mqtt_auth *a = load(CAROL_6 DAVE_6, NULL);
    assert_int_equal(check(a, "carol", "hunter2"), 0);
    assert_int_equal(check(a, "dave", ""), 0);
    assert_int_equal(check(a, "dave", " "), M2M_EINVAL);
    m2m_mqtt_auth_free(a);
}

static void test_wrong_password_and_unknown_user(void **state)
{
    (void)state;
    struct m2m_mqtt_auth *a = load(ALICE_7 CAROL_6, NULL);
    assert_int_equal(check(a, "alice", "Secret"), M2M_EINVAL);
    assert_int_equal(check(a, "alice", "secret "), M2M_EINVAL);
    assert_int_equal(check(a, "alice", ""), M2M_EINVAL);
    assert_int_equal(check(a, "carol", "hunter"), M2M_EINVAL);
    assert_int_equal(check(a, "mallory", "secret"), M2M_ENOTFOUND);
    assert_int_equal(check(a, "alic", "secret"), M2M_ENOTFOUND);
    assert_int_equal(check(a, "alicea", "secret"), M2M_ENOTFOUND);
    assert_int_equal(check(a, "", "secret"), M2M_ENOTFOUND);
    /* The password is bytes: a NUL inside does not end it. */
    assert_int_equal(m2m_mqtt_auth_check(a, S("alice"), (struct m2m_slice){(const uint8_t *)"secret\0x", 8}),
                     M2M_EINVAL);
    m2m_mqtt_auth_free(a);
    /* No password file: nobody is known. */
    assert_int_equal(m2m_mqtt_auth_check(NULL, S("alice"), S("secret")), M2M_ENOTFOUND);
    assert_false(m2m_mqtt_auth_has_passwords(NULL));
}

static void test_password_file_layout(void **state)
{
    (void)state;
    /* CRLF line ends, comments, blank lines, no final newline, many users
     * (the lookup is a binary search over the sorted names). */
    char *text = malloc(200 * 200);
    assert_non_null(text);
    strcpy(text, "# made by hand\r\n\r\n" CAROL_6);
    for (int i = 0; i < 150; i++) {
        char line[200];
        snprintf(line, sizeof line, "user%03d:$6$S2Jft8iEC5SJfKsB$%s\n", i,
                 "bAU1xvkjyjXUgusJS/JLrv2g9TZbBDdBY7mBv0b7EDKRSprctkt+9TT+vBUnjyVvVjZaJCqdERu5k4krY8fUbg==");
        strcat(text, line);
    }
    strcat(text, "   \n" ALICE_7);
    text[strlen(text) - 1] = '\0';
    struct m2m_mqtt_auth *a = load(text, NULL);
    free(text);
    assert_int_equal(check(a, "alice", "secret"), 0);
    assert_int_equal(check(a, "carol", "hunter2"), 0);
    /* Same salt and hash as carol: same password, under another name. */
    assert_int_equal(check(a, "user000", "hunter2"), 0);
    assert_int_equal(check(a, "user149", "hunter2"), 0);
    assert_int_equal(check(a, "user150", "hunter2"), M2M_ENOTFOUND);
    m2m_mqtt_auth_free(a);

    /* An empty password file exists but knows nobody. */
    a = load("", NULL);
    assert_true(m2m_mqtt_auth_has_passwords(a));
    assert_int_equal(check(a, "alice", "secret"), M2M_ENOTFOUND);
    m2m_mqtt_auth_free(a);
}

static void test_password_file_errors(void **state)
{
    (void)state;
    load_fails(ALICE_7 "bob\n", NULL, "pw:2: expected 'user:hash', found no ':'");
    load_fails("\n:$6$abcd$efgh\n", NULL, "pw:2: empty user name");
    load_fails("# x\nbob:\n", NULL, "pw:2: user 'bob' has no password hash");
    load_fails("bob:hunter2\n", NULL,
               "pw:1: user 'bob': plain-text password (hash the file with 'm2mkit passwd -U')");
    load_fails("bob:$5$abcd$efgh\n", NULL, "pw:1: user 'bob': malformed password hash (expected $7$ or $6$)");
    /* Truncated hash, bad base64, zero and huge iteration counts, a fourth field. */
    load_fails("bob:$7$101$m0v779AGc0WCg3eX$LS1QMlt5\n", NULL,
               "pw:1: user 'bob': malformed password hash (expected $7$ or $6$)");
    load_fails("bob:$6$S2Jft8iE*5SJfKsB$bAU1xvkjyjXUgusJS/"
               "JLrv2g9TZbBDdBY7mBv0b7EDKRSprctkt+9TT+vBUnjyVvVjZaJCqdERu5k4krY8f"
               "Ubg==\n",
               NULL, "pw:1: user 'bob': malformed password hash (expected $7$ or $6$)");
    load_fails("bob:$7$0$m0v779AGc0WCg3eX$"
               "LS1QMlt5LnEtRYIOe63aZqUVwq7YR4wPxyQJ4vIpID9tYrSslwYrwVNQkkI8nzxSyrHiR8Ceyby1"
               "f18CAzuY7w==\n",
               NULL, "pw:1: user 'bob': malformed password hash (expected $7$ or $6$)");
    load_fails("bob:$7$99999999$m0v779AGc0WCg3eX$"
               "LS1QMlt5LnEtRYIOe63aZqUVwq7YR4wPxyQJ4vIpID9tYrSslwYrwVNQkkI8nzxSyrHiR8"
               "Ceyby1f18CAzuY7w==\n",
               NULL, "pw:1: user 'bob': malformed password hash (expected $7$ or $6$)");
    load_fails("bob:$7$101$m0v779AGc0WCg3eX$"
               "LS1QMlt5LnEtRYIOe63aZqUVwq7YR4wPxyQJ4vIpID9tYrSslwYrwVNQkkI8nzxSyrHiR8Ceyb"
               "y1f18CAzuY7w==$\n",
               NULL, "pw:1: user 'bob': malformed password hash (expected $7$ or $6$)");
    load_fails(ALICE_7 CAROL_6 ALICE_7, NULL, "pw: user 'alice' appears twice");
}

static void test_load_from_files(void **state)
{
    (void)state;
    char dir[] = "/tmp/m2m-auth-test.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char pw[128], acl[128], err[256];
    snprintf(pw, sizeof pw, "%s/passwd", dir);
    snprintf(acl, sizeof acl, "%s/acl", dir);
    FILE *f = fopen(pw, "w");
    assert_non_null(f);
    fputs(ALICE_7, f);
    fclose(f);
    f = fopen(acl, "w");
    assert_non_null(f);
    fputs("user alice\ntopic read a/#\nbogus line\n", f);
    fclose(f);

    struct m2m_mqtt_auth *a = NULL;
    assert_int_equal(m2m_mqtt_auth_load(&a, pw, NULL, err, sizeof err), 0);
    assert_int_equal(check(a, "alice", "secret"), 0);
    m2m_mqtt_auth_free(a);

    assert_int_equal(m2m_mqtt_auth_load(&a, pw, acl, err, sizeof err), M2M_ECONFIG);
    assert_null(a);
    char want[256];
    snprintf(want, sizeof want, "%s:3: unknown keyword 'bogus' (expected topic, pattern or user)", acl);
    assert_string_equal(err, want);

    unlink(acl);
    assert_int_equal(m2m_mqtt_auth_load(&a, pw, acl, err, sizeof err), M2M_EIO);
    snprintf(want, sizeof want, "%s: No such file or directory", acl);
    assert_string_equal(err, want);
    unlink(pw);
    rmdir(dir);

    /* Neither file: no passwords, no ACL, everything allowed. */
    assert_int_equal(m2m_mqtt_auth_load(&a, NULL, NULL, err, sizeof err), 0);
    assert_false(m2m_mqtt_auth_has_passwords(a));
    assert_false(m2m_mqtt_auth_has_acl(a));
    m2m_mqtt_auth_free(a);
    m2m_mqtt_auth_free(NULL);
}

static void test_hash_round_trip(void **state)
{
    (void)state;
    char h[M2M_MQTT_PW_HASH_MAX];
    assert_int_equal(m2m_mqtt_pw_hash(h, sizeof h, M2M_MQTT_PW_SHA512_PBKDF2, 101, S("s3cret")), 0);
    /* $7$101$ + 16 base64 salt characters + $ + 88 hash characters. */
    assert_int_equal(strncmp(h, "$7$101$", 7), 0);
    assert_int_equal(strlen(h), 7 + 16 + 1 + 88);
    assert_true(m2m_mqtt_pw_is_hash(S(h)));
    assert_int_equal(m2m_mqtt_pw_verify(S(h), S("s3cret")), 0);
    assert_int_equal(m2m_mqtt_pw_verify(S(h), S("s3cre")), M2M_EINVAL);

    char h2[M2M_MQTT_PW_HASH_MAX];
    assert_int_equal(m2m_mqtt_pw_hash(h2, sizeof h2, M2M_MQTT_PW_SHA512_PBKDF2, 101, S("s3cret")), 0);
    assert_string_not_equal(h, h2); /* a fresh salt each time */

    assert_int_equal(m2m_mqtt_pw_hash(h, sizeof h, M2M_MQTT_PW_SHA512_PBKDF2, 5000, S("x")), 0);
    assert_int_equal(strncmp(h, "$7$5000$", 8), 0);
    assert_int_equal(m2m_mqtt_pw_verify(S(h), S("x")), 0);

    assert_int_equal(m2m_mqtt_pw_hash(h, sizeof h, M2M_MQTT_PW_SHA512, 0, S("old style")), 0);
    assert_int_equal(strncmp(h, "$6$", 3), 0);
    assert_int_equal(m2m_mqtt_pw_verify(S(h), S("old style")), 0);

    assert_int_equal(m2m_mqtt_pw_hash(h, sizeof h, M2M_MQTT_PW_SHA512_PBKDF2, 0, S("x")), M2M_EINVAL);
    assert_int_equal(m2m_mqtt_pw_hash(h, 20, M2M_MQTT_PW_SHA512_PBKDF2, 101, S("x")), M2M_ENOBUFS);
    assert_int_equal(m2m_mqtt_pw_verify(S("plain"), S("plain")), M2M_EMALFORMED);
    assert_false(m2m_mqtt_pw_is_hash(S("plain")));
    assert_false(m2m_mqtt_pw_is_hash(S("$7$101$abc")));
}

/* ---- ACL ------------------------------------------------------------- */

#define R M2M_MQTT_ACCESS_READ
#define W M2M_MQTT_ACCESS_WRITE
#define SUB M2M_MQTT_ACCESS_SUBSCRIBE

static bool allows(const struct m2m_mqtt_auth *a, const char *user, const char *cid, const char *topic,
                   enum m2m_mqtt_access acc)
{
    return m2m_mqtt_acl_allows(a, user, S(cid), S(topic), acc);
}

#define ACL                                                                                                  \
    "# anonymous clients\n"                                                                                  \
    "topic read public/#\n"                                                                                  \
    "topic readwrite sandbox/+\n"                                                                            \
    "\n"                                                                                                     \
    "user alice\n"                                                                                           \
    "topic readwrite alice/#\n"                                                                              \
    "topic read   shared/#\n"                                                                                \
    "topic write  inbox/bob\n"                                                                               \
    "topic deny shared/secret\n"                                                                             \
    "topic read $SYS/#\n"                                                                                    \
    "\n"                                                                                                     \
    "user bob\n"                                                                                             \
    "topic inbox/bob\n"                                                                                      \
    "topic read has space/x y\n"                                                                             \
    "\n"                                                                                                     \
    "pattern readwrite devices/%u/#\n"                                                                       \
    "pattern write clients/%c/status\n"

static void test_acl_anonymous_section(void **state)
{
    (void)state;
    struct m2m_mqtt_auth *a = load(NULL, ACL);
    assert_true(m2m_mqtt_auth_has_acl(a));
    assert_true(allows(a, NULL, "c1", "public/news", R));
    assert_true(allows(a, NULL, "c1", "public", R)); /* '#' includes its parent level */
    assert_false(allows(a, NULL, "c1", "public/news", W));
    assert_true(allows(a, NULL, "c1", "sandbox/x", W));
    assert_true(allows(a, NULL, "c1", "sandbox/x", R));
    assert_false(allows(a, NULL, "c1", "sandbox/x/y", R));
    assert_false(allows(a, NULL, "c1", "alice/x", R));
    /* %u patterns never match an anonymous client; %c ones do. */
    assert_false(allows(a, NULL, "c1", "devices/c1/x", W));
    assert_true(allows(a, NULL, "c1", "clients/c1/status", W));
    assert_false(allows(a, NULL, "c1", "clients/c2/status", W));
    /* The anonymous section is not a default for named users. */
    assert_false(allows(a, "carol", "c1", "public/news", R));
    m2m_mqtt_auth_free(a);
}

static void test_acl_user_section(void **state)
{
    (void)state;
    struct m2m_mqtt_auth *a = load(NULL, ACL);
    assert_true(allows(a, "alice", "c", "alice/x/y", R));
    assert_true(allows(a, "alice", "c", "alice/x/y", W));
    assert_true(allows(a, "alice", "c", "shared/doc", R));
    assert_false(allows(a, "alice", "c", "shared/doc", W));
    assert_true(allows(a, "alice", "c", "inbox/bob", W));
    assert_false(allows(a, "alice", "c", "inbox/bob", R));
    assert_false(allows(a, "alice", "c", "public/news", R));
    /* No access word: readwrite. A topic may hold blanks. */
    assert_true(allows(a, "bob", "c", "inbox/bob", R));
    assert_true(allows(a, "bob", "c", "inbox/bob", W));
    assert_true(allows(a, "bob", "c", "has space/x y", R));
    assert_false(allows(a, "bob", "c", "alice/x", R));
    /* A user without a section gets the patterns only. */
    assert_true(allows(a, "carol", "c", "devices/carol/t", W));
    assert_false(allows(a, "carol", "c", "devices/alice/t", W));
    m2m_mqtt_auth_free(a);
}

static void test_acl_patterns(void **state)
{
    (void)state;
    struct m2m_mqtt_auth *a = load(NULL, ACL);
    assert_true(allows(a, "alice", "c", "devices/alice/temp", R));
    assert_true(allows(a, "alice", "c", "devices/alice", W));
    assert_false(allows(a, "alice", "c", "devices/bob/temp", R));
    assert_true(allows(a, "alice", "dev-7", "clients/dev-7/status", W));
    assert_false(allows(a, "alice", "dev-7", "clients/dev-7/status", R));
    assert_false(allows(a, "alice", "dev-7", "clients/dev-8/status", W));
    /* Values that would change the pattern's shape never match. */
    assert_false(allows(a, "a/b", "c", "devices/a/b/x", W));
    assert_false(allows(a, "+", "c", "devices/x/y", W));
    assert_false(allows(a, "#", "c", "devices/x", W));
    assert_false(allows(a, "bob", "x/y", "clients/x/y/status", W));
    assert_false(allows(a, "bob", "#", "clients/a/status", W));
    /* mosquitto: a user name or client id with '+' or '#' gets no pattern
     * grant at all, even one that does not substitute it. */
    struct m2m_mqtt_auth *b = load(NULL, "pattern read open/#\npattern read own/%u\n");
    assert_true(allows(b, "joe", "c", "open/x", R));
    assert_true(allows(b, NULL, "c", "open/x", R));
    assert_false(allows(b, "joe+", "c", "open/x", R));
    assert_false(allows(b, "joe", "c#", "open/x", R));
    assert_true(allows(b, "joe/x", "c", "open/x", R)); /* '/' only spoils patterns using it */
    assert_false(allows(b, "joe/x", "c", "own/joe/x", R));
    /* Substitution anywhere in a level, several times. */
    struct m2m_mqtt_auth *c = load(NULL, "pattern read x/%u-%c/%u\n");
    assert_true(allows(c, "joe", "7", "x/joe-7/joe", R));
    assert_false(allows(c, "joe", "7", "x/joe-8/joe", R));
    m2m_mqtt_auth_free(c);
    m2m_mqtt_auth_free(b);
    m2m_mqtt_auth_free(a);
}

static void test_acl_deny_precedence(void **state)
{
    (void)state;
    struct m2m_mqtt_auth *a = load(NULL, ACL);
    /* alice's deny comes after the broader grant in the file and still wins. */
    assert_false(allows(a, "alice", "c", "shared/secret", R));
    assert_true(allows(a, "alice", "c", "shared/secrets", R));
    m2m_mqtt_auth_free(a);

    /* A deny pattern beats a grant of the user's own section (mosquitto
     * would let the section win: see mqtt_auth.h). */
    a = load(NULL, "user alice\ntopic readwrite #\npattern deny %u/private/#\npattern deny locked\n");
    assert_true(allows(a, "alice", "c", "bob/private/x", R));
    assert_false(allows(a, "alice", "c", "alice/private/x", R));
    assert_false(allows(a, "alice", "c", "alice/private", W));
    assert_false(allows(a, "alice", "c", "locked", W));
    assert_true(allows(a, "alice", "c", "unlocked", W));
    /* An unsafe value in a deny pattern counts as a match. */
    assert_false(allows(a, "al/ice", "c", "anything", R));
    m2m_mqtt_auth_free(a);

    /* Deny with wildcards; grants listed before and after. */
    a = load(NULL, "topic read a/#\ntopic deny a/+/hidden\ntopic read b/#\n");
    assert_true(allows(a, NULL, "c", "a/x/shown", R));
    assert_false(allows(a, NULL, "c", "a/x/hidden", R));
    assert_false(allows(a, NULL, "c", "a/y/hidden", R));
    assert_true(allows(a, NULL, "c", "b/x/hidden", R));
    m2m_mqtt_auth_free(a);
}

static void test_acl_subscribe(void **state)
{
    (void)state;
    struct m2m_mqtt_auth *a = load(NULL, ACL);
    /* mosquitto 2.0: every subscription is granted, wildcards included ... */
    assert_true(allows(a, "alice", "c", "#", SUB));
    assert_true(allows(a, "alice", "c", "shared/+", SUB));
    assert_true(allows(a, NULL, "c", "alice/#", SUB));
    assert_true(allows(a, NULL, "c", "$share/g/alice/#", SUB));
    /* ... and each message delivered is checked with READ on its topic. */
    assert_true(allows(a, "alice", "c", "shared/doc", R));
    assert_false(allows(a, "alice", "c", "shared/secret", R));
    assert_false(allows(a, "alice", "c", "other/doc", R));
    /* READ and WRITE take topic names, not filters. */
    assert_false(allows(a, "alice", "c", "alice/#", R));
    assert_false(allows(a, "alice", "c", "alice/+", W));
    assert_false(allows(a, "alice", "c", "", W));
    m2m_mqtt_auth_free(a);
}

static void test_acl_dollar_topics(void **state)
{
    (void)state;
    struct m2m_mqtt_auth *a = load(NULL, ACL "user root\ntopic readwrite #\ntopic readwrite $SYS/#\n");
    /* '#' does not reach $SYS; an explicit $SYS rule does. */
    assert_true(allows(a, "root", "c", "any/thing", R));
    assert_true(allows(a, "root", "c", "$SYS/broker/uptime", R));
    assert_false(allows(a, "bob", "c", "$SYS/broker/uptime", R));
    assert_true(allows(a, "alice", "c", "$SYS/broker/uptime", R));
    struct m2m_mqtt_auth *b = load(NULL, "user root\ntopic readwrite #\ntopic readwrite +/broker/#\n");
    assert_false(allows(b, "root", "c", "$SYS/broker/uptime", R));
    assert_false(allows(b, "root", "c", "$other", R));
    m2m_mqtt_auth_free(b);
    /* Clients never publish to $SYS except a bridge's state, with or
     * without an ACL file. */
    assert_false(allows(a, "root", "c", "$SYS/broker/uptime", W));
    assert_true(allows(a, "root", "c", "$SYS/broker/connection/br1/state", W));
    assert_false(allows(NULL, NULL, "c", "$SYS/x", W));
    assert_true(allows(NULL, NULL, "c", "$SYS/x", R));
    assert_true(allows(NULL, NULL, "c", "$SYS/broker/connection/br1/state", W));
    /* $share is for subscriptions only. */
    assert_false(allows(NULL, NULL, "c", "$share/g/t", W));
    assert_false(allows(a, "root", "c", "$share/g/t", R));
    m2m_mqtt_auth_free(a);
}

static void test_acl_without_file(void **state)
{
    (void)state;
    assert_true(allows(NULL, NULL, "c", "any/thing", R));
    assert_true(allows(NULL, "joe", "c", "any/thing", W));
    struct m2m_mqtt_auth *a = load(ALICE_7, NULL);
    assert_true(allows(a, "alice", "c", "any/thing", W));
    m2m_mqtt_auth_free(a);
    /* An ACL file with no rule for anyone denies everything but SUBSCRIBE. */
    a = load(NULL, "# nothing\n");
    assert_false(allows(a, NULL, "c", "any/thing", R));
    assert_false(allows(a, "joe", "c", "any/thing", W));
    assert_true(allows(a, "joe", "c", "#", SUB));
    m2m_mqtt_auth_free(a);
}

static void test_acl_sections_merge(void **state)
{
    (void)state;
    /* A user named twice keeps both sets of rules; a `user` line's name may
     * hold blanks; lines may be indented. */
    struct m2m_mqtt_auth *a = load(NULL, "user zed\ntopic read z1\nuser amy\ntopic read a1\n"
                                         "user zed\n  topic read z2\nuser big name  \ntopic read b1\n");
    assert_true(allows(a, "zed", "c", "z1", R));
    assert_true(allows(a, "zed", "c", "z2", R));
    assert_false(allows(a, "zed", "c", "a1", R));
    assert_true(allows(a, "amy", "c", "a1", R));
    assert_true(allows(a, "big name", "c", "b1", R));
    m2m_mqtt_auth_free(a);
}

static void test_acl_errors(void **state)
{
    (void)state;
    load_fails(NULL, "topic read a\nuser\n", "acl:2: missing user name after 'user'");
    load_fails(NULL, "topic\n", "acl:1: missing topic after 'topic'");
    load_fails(NULL, "\n\npattern   \n", "acl:3: missing topic after 'pattern'");
    load_fails(NULL, "topic readonly a/b\n",
               "acl:1: unknown access 'readonly' (expected read, write, readwrite or deny)");
    load_fails(NULL, "topic read a/#/b\n", "acl:1: invalid topic filter 'a/#/b'");
    load_fails(NULL, "topic read a+\n", "acl:1: invalid topic filter 'a+'");
    load_fails(NULL, "# ok\ntopics read a\n",
               "acl:2: unknown keyword 'topics' (expected topic, pattern or user)");
    /* Errors in the password file are reported before the ACL is read. */
    load_fails("x\n", "bad\n", "pw:1: expected 'user:hash', found no ':'");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pbkdf2_vectors),
        cmocka_unit_test(test_sha512_vectors),
        cmocka_unit_test(test_wrong_password_and_unknown_user),
        cmocka_unit_test(test_password_file_layout),
        cmocka_unit_test(test_password_file_errors),
        cmocka_unit_test(test_load_from_files),
        cmocka_unit_test(test_hash_round_trip),
        cmocka_unit_test(test_acl_anonymous_section),
        cmocka_unit_test(test_acl_user_section),
        cmocka_unit_test(test_acl_patterns),
        cmocka_unit_test(test_acl_deny_precedence),
        cmocka_unit_test(test_acl_subscribe),
        cmocka_unit_test(test_acl_dollar_topics),
        cmocka_unit_test(test_acl_without_file),
        cmocka_unit_test(test_acl_sections_merge),
        cmocka_unit_test(test_acl_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
