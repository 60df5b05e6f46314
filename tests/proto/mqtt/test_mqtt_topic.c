/* MQTT topic names, filters and matching (§4.7, §4.8.2), with the examples
 * of the specification. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "m2m/mqtt.h"

static struct m2m_slice S(const char *s) {
    return (struct m2m_slice){(const uint8_t *)s, strlen(s)};
}

static bool
match(const char *filter, const char *name)
{
    /* Every filter used here is valid and every name too. */
    assert_true(m2m_mqtt_filter_valid(S(filter)));
    assert_true(m2m_mqtt_topic_valid(S(name)));
    return m2m_mqtt_topic_match(S(filter), S(name));
}

static void test_topic_names(void **state)
{
    (void)state;
    assert_true(m2m_mqtt_topic_valid(S("sport/tennis/player1")));
    assert_true(m2m_mqtt_topic_valid(S("/")));
    assert_true(m2m_mqtt_topic_valid(S("//")));
    assert_true(m2m_mqtt_topic_valid(S(" ")));
    assert_true(m2m_mqtt_topic_valid(S("$SYS/broker")));
    assert_true(m2m_mqtt_topic_valid(S("caf\xc3\xa9/\xf0\x9f\x98\x80")));
    assert_false(m2m_mqtt_topic_valid(S("")));    /* [MQTT-4.7.3-1] */
    assert_false(m2m_mqtt_topic_valid(S("a/+"))); /* [MQTT-3.3.2-2] */
    assert_false(m2m_mqtt_topic_valid(S("a/#")));
    assert_false(m2m_mqtt_topic_valid(S("a+b")));
    assert_false(m2m_mqtt_topic_valid((struct m2m_slice){(const uint8_t *)"a\0b", 3})); /* [MQTT-4.7.3-2] */
    assert_false(m2m_mqtt_topic_valid(S("\xed\xa0\x80"))); /* surrogate, [MQTT-1.5.4-1] */
    assert_false(m2m_mqtt_topic_valid(S("\xc0\xaf")));     /* overlong */
    assert_false(m2m_mqtt_topic_valid(S("\xe2\x82")));     /* truncated */
}

static void test_filters(void **state)
{
    (void)state;
    const char *good[] = {"sport/tennis/player1/#",
                          "sport/#",
                          "#",
                          "+",
                          "+/tennis/#",
                          "sport/+/player1",
                          "/+",
                          "+/+",
                          "/",
                          "a//b",
                          "$SYS/#",
                          "$share/g/a/b",
                          "$share/group/#",
                          "$share/g/+",
                          "$share/g//",
                          "$shared/x",
                          "$sharex",
                          "$share"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        if (!m2m_mqtt_filter_valid(S(good[i])))
            fail_msg("should be valid: %s", good[i]);
    }
    /* [MQTT-4.7.1-2], [MQTT-4.7.1-3]: wildcards alone in their level, '#' last. */
    const char *bad[] = {"",
                         "sport/tennis#",
                         "sport/tennis/#/ranking",
                         "sport+",
                         "+sport",
                         "a/+b",
                         "#/a",
                         "##",
                         "++",
                         "a/#/",
                         "$share/",
                         "$share//a",
                         "$share/g",
                         "$share/g/",
                         "$share/+/a",
                         "$share/#/a",
                         "$share/g/a#",
                         "$share/g+/a"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (m2m_mqtt_filter_valid(S(bad[i])))
            fail_msg("should be invalid: %s", bad[i]);
    }
    assert_false(m2m_mqtt_filter_valid((struct m2m_slice){(const uint8_t *)"a\0", 2}));
    assert_false(m2m_mqtt_filter_valid(S("\xed\xbf\xbf/#")));

    struct m2m_slice g, f;
    assert_true(m2m_mqtt_filter_shared(S("$share/consumer1/sport/tennis/+"), &g, &f));
    assert_int_equal(g.n, 9);
    assert_memory_equal(g.p, "consumer1", 9);
    assert_int_equal(f.n, 14);
    assert_memory_equal(f.p, "sport/tennis/+", 14);
    assert_false(m2m_mqtt_filter_shared(S("sport/#"), &g, &f));
    assert_false(m2m_mqtt_filter_shared(S("$SHARE/g/a"), NULL, NULL));
}

/* §4.7.1.2 multi-level wildcard examples. */
static void test_match_hash(void **state)
{
    (void)state;
    const char *f = "sport/tennis/player1/#";
    assert_true(match(f, "sport/tennis/player1"));
    assert_true(match(f, "sport/tennis/player1/ranking"));
    assert_true(match(f, "sport/tennis/player1/score/wimbledon"));
    assert_false(match(f, "sport/tennis/player2"));
    assert_false(match(f, "sport/tennis"));
    assert_true(match("sport/#", "sport"));
    assert_true(match("sport/#", "sport/"));
    assert_true(match("#", "sport/tennis"));
    assert_true(match("#", "/"));
    assert_false(match("sport/#", "sports"));
}

/* §4.7.1.3 single-level wildcard examples. */
static void test_match_plus(void **state)
{
    (void)state;
    assert_true(match("sport/tennis/+", "sport/tennis/player1"));
    assert_true(match("sport/tennis/+", "sport/tennis/player2"));
    assert_false(match("sport/tennis/+", "sport/tennis/player1/ranking"));
    assert_false(match("sport/tennis/+", "sport/tennis"));
    assert_false(match("sport/+", "sport"));
    assert_true(match("sport/+", "sport/"));
    assert_true(match("+/+", "/finance"));
    assert_true(match("/+", "/finance"));
    assert_false(match("+", "/finance"));
    assert_true(match("+", "finance"));
    assert_true(match("+/tennis/#", "sport/tennis/player1"));
    assert_true(match("sport/+/player1", "sport/tennis/player1"));
    assert_false(match("sport/+/player1", "sport/tennis/player2"));
    assert_true(match("a//c", "a//c"));
    assert_true(match("a/+/c", "a//c"));
    assert_false(match("a/b", "a/b/"));
    assert_false(match("a/b/", "a/b"));
    /* Case-sensitive, exact levels. */
    assert_false(match("ACCOUNTS", "Accounts"));
    assert_true(match("Accounts payable", "Accounts payable"));
    assert_false(match("a/b", "a/bc"));
}

/* §4.7.2: topics starting with '$' and leading wildcards ([MQTT-4.7.2-1]). */
static void test_match_dollar(void **state)
{
    (void)state;
    assert_false(match("#", "$SYS/monitor/Clients"));
    assert_false(match("+/monitor/Clients", "$SYS/monitor/Clients"));
    assert_true(match("$SYS/#", "$SYS/monitor/Clients"));
    assert_true(match("$SYS/monitor/+", "$SYS/monitor/Clients"));
    assert_false(match("+", "$SYS"));
    assert_true(match("$SYS", "$SYS"));
    assert_true(match("a/#", "a/$SYS")); /* only the first level is special */
    assert_true(match("+/+", "a/$b"));
}

static void test_match_shared(void **state)
{
    (void)state;
    assert_true(match("$share/g/sport/+", "sport/tennis"));
    assert_false(match("$share/g/sport/+", "sport"));
    assert_true(match("$share/g/#", "any/thing"));
    assert_false(match("$share/g/#", "$SYS/x"));
    assert_false(m2m_mqtt_topic_match(S(""), S("a")));
    assert_false(m2m_mqtt_topic_match(S("a"), S("")));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_topic_names),  cmocka_unit_test(test_filters),
        cmocka_unit_test(test_match_hash),   cmocka_unit_test(test_match_plus),
        cmocka_unit_test(test_match_dollar), cmocka_unit_test(test_match_shared),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
