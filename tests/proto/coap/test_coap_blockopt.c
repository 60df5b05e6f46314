/* Block1/Block2 option values (RFC 7959 §2.2) and Observe freshness
 * (RFC 7641 §3.4). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "m2m/coap.h"
#include "vclock.h"

/* A message holding one option `num` with the given raw bytes. */
static void with_raw(struct m2m_coap_msg *m, uint16_t num, const char *hex, uint8_t *store)
{
    size_t n = test_unhex(hex, store, 8);
    m2m_coap_msg_init(m, M2M_COAP_CON, M2M_COAP_GET);
    assert_int_equal(m2m_coap_add_opt(m, num, store, n), 0);
}

static void test_get_block(void **state)
{
    (void)state;
    struct m2m_coap_msg m;
    struct m2m_coap_block b;
    uint8_t raw[8];

    m2m_coap_msg_init(&m, M2M_COAP_CON, M2M_COAP_GET);
    assert_int_equal(m2m_coap_get_block(&m, M2M_COAP_OPT_BLOCK2, &b), M2M_ENOTFOUND);

    /* An empty value is NUM 0, M 0, SZX 0 (16 bytes). */
    with_raw(&m, M2M_COAP_OPT_BLOCK2, "", raw);
    assert_int_equal(m2m_coap_get_block(&m, M2M_COAP_OPT_BLOCK2, &b), 0);
    assert_int_equal(b.num, 0);
    assert_false(b.more);
    assert_int_equal(b.szx, 0);
    /* Block1 is not Block2. */
    assert_int_equal(m2m_coap_get_block(&m, M2M_COAP_OPT_BLOCK1, &b), M2M_ENOTFOUND);

    /* 0x0e: NUM 0, M 1, SZX 6 (1024). */
    with_raw(&m, M2M_COAP_OPT_BLOCK1, "0e", raw);
    assert_int_equal(m2m_coap_get_block(&m, M2M_COAP_OPT_BLOCK1, &b), 0);
    assert_int_equal(b.num, 0);
    assert_true(b.more);
    assert_int_equal(b.szx, 6);
    assert_int_equal(m2m_coap_block_size(b.szx), 1024);

    /* 0x1a: NUM 1, M 1, SZX 2 (64). */
    with_raw(&m, M2M_COAP_OPT_BLOCK2, "1a", raw);
    assert_int_equal(m2m_coap_get_block(&m, M2M_COAP_OPT_BLOCK2, &b), 0);
    assert_int_equal(b.num, 1);
    assert_true(b.more);
    assert_int_equal(b.szx, 2);

    /* Two and three bytes; the largest NUM, 2^20 - 1. */
    with_raw(&m, M2M_COAP_OPT_BLOCK2, "01 05", raw);
    assert_int_equal(m2m_coap_get_block(&m, M2M_COAP_OPT_BLOCK2, &b), 0);
    assert_int_equal(b.num, 16);
    assert_false(b.more);
    assert_int_equal(b.szx, 5);
    with_raw(&m, M2M_COAP_OPT_BLOCK2, "ff ff f6", raw);
    assert_int_equal(m2m_coap_get_block(&m, M2M_COAP_OPT_BLOCK2, &b), 0);
    assert_int_equal(b.num, 0xfffff);
    assert_false(b.more);
    assert_int_equal(b.szx, 6);

    /* SZX 7 (BERT) is for reliable transports only. */
    with_raw(&m, M2M_COAP_OPT_BLOCK2, "07", raw);
    assert_int_equal(m2m_coap_get_block(&m, M2M_COAP_OPT_BLOCK2, &b), M2M_EMALFORMED);
    with_raw(&m, M2M_COAP_OPT_BLOCK1, "ff ff ff", raw);
    assert_int_equal(m2m_coap_get_block(&m, M2M_COAP_OPT_BLOCK1, &b), M2M_EMALFORMED);
    /* More than three bytes, even with leading zeros. */
    with_raw(&m, M2M_COAP_OPT_BLOCK2, "00 00 00 16", raw);
    assert_int_equal(m2m_coap_get_block(&m, M2M_COAP_OPT_BLOCK2, &b), M2M_EMALFORMED);
    with_raw(&m, M2M_COAP_OPT_BLOCK2, "01 02 03 04 05", raw);
    assert_int_equal(m2m_coap_get_block(&m, M2M_COAP_OPT_BLOCK2, &b), M2M_EMALFORMED);
}

static void test_add_block(void **state)
{
    (void)state;
    static const struct {
        struct m2m_coap_block b;
        const char *hex;
    } vec[] = {
        {{0, false, 0}, ""},
        {{0, true, 6}, "0e"},
        {{1, true, 2}, "1a"},
        {{15, false, 6}, "f6"},
        {{16, false, 5}, "01 05"},
        {{4095, true, 6}, "ff fe"},
        {{4096, false, 0}, "01 00 00"},
        {{0xfffff, true, 6}, "ff ff fe"},
    };
    for (size_t i = 0; i < sizeof vec / sizeof vec[0]; i++) {
        struct m2m_coap_msg m;
        uint8_t want[4];
        size_t wn = test_unhex(vec[i].hex, want, sizeof want);
        m2m_coap_msg_init(&m, M2M_COAP_CON, M2M_COAP_GET);
        assert_int_equal(m2m_coap_add_block(&m, M2M_COAP_OPT_BLOCK2, &vec[i].b), 0);
        assert_int_equal(m.nopt, 1);
        assert_int_equal(m.opt[0].num, M2M_COAP_OPT_BLOCK2);
        assert_int_equal(m.opt[0].len, wn);
        assert_memory_equal(m.opt[0].val, want, wn);
        struct m2m_coap_block back;
        assert_int_equal(m2m_coap_get_block(&m, M2M_COAP_OPT_BLOCK2, &back), 0);
        assert_int_equal(back.num, vec[i].b.num);
        assert_int_equal(back.more, vec[i].b.more);
        assert_int_equal(back.szx, vec[i].b.szx);
    }
    struct m2m_coap_msg m;
    m2m_coap_msg_init(&m, M2M_COAP_CON, M2M_COAP_GET);
    struct m2m_coap_block bad = {0, false, 7};
    assert_int_equal(m2m_coap_add_block(&m, M2M_COAP_OPT_BLOCK1, &bad), M2M_EINVAL);
    bad.szx = 6;
    bad.num = 0x100000;
    assert_int_equal(m2m_coap_add_block(&m, M2M_COAP_OPT_BLOCK1, &bad), M2M_EINVAL);
    assert_int_equal(m.nopt, 0);
}

static void test_szx_for(void **state)
{
    (void)state;
    static const struct {
        size_t bytes;
        uint8_t szx;
    } vec[] = {{0, 0},   {1, 0},    {15, 0},   {16, 0},   {31, 0},    {32, 1},
               {63, 1},  {64, 2},   {127, 2},  {128, 3},  {256, 4},   {511, 4},
               {512, 5}, {1023, 5}, {1024, 6}, {1152, 6}, {65536, 6}, {SIZE_MAX, 6}};
    for (size_t i = 0; i < sizeof vec / sizeof vec[0]; i++)
        assert_int_equal(m2m_coap_szx_for(vec[i].bytes), vec[i].szx);
    for (uint8_t s = 0; s <= 6; s++) {
        assert_int_equal(m2m_coap_block_size(s), 16u << s);
        assert_int_equal(m2m_coap_szx_for(m2m_coap_block_size(s)), s);
    }
}

static void test_observe_fresher(void **state)
{
    (void)state;
    const m2m_time t = 1000000;
    /* Plain order, same time. */
    assert_true(m2m_coap_observe_fresher(1, t, 2, t));
    assert_false(m2m_coap_observe_fresher(2, t, 1, t));
    assert_false(m2m_coap_observe_fresher(5, t, 5, t));
    /* Just inside and just outside half the 24-bit space. */
    assert_true(m2m_coap_observe_fresher(0, t, 0x7fffff, t));
    assert_false(m2m_coap_observe_fresher(0, t, 0x800000, t));
    assert_false(m2m_coap_observe_fresher(0x800000, t, 0, t));
    assert_true(m2m_coap_observe_fresher(0x800001, t, 0, t));
    /* Wrap-around: 0 after 0xffffff is newer, and the reverse is not. */
    assert_true(m2m_coap_observe_fresher(0xffffff, t, 0, t));
    assert_true(m2m_coap_observe_fresher(0xfffff0, t, 5, t));
    assert_false(m2m_coap_observe_fresher(0, t, 0xffffff, t));
    /* Only 24 bits count. */
    assert_true(m2m_coap_observe_fresher(0x1000001, t, 2, t));
    assert_false(m2m_coap_observe_fresher(0x2000005, t, 0x1000005, t));

    /* The 128 s rule: an older number is still fresh once more than 128 s
     * have passed since the last notification, not at exactly 128 s. */
    assert_false(m2m_coap_observe_fresher(10, t, 5, t + 128000));
    assert_true(m2m_coap_observe_fresher(10, t, 5, t + 128001));
    assert_true(m2m_coap_observe_fresher(10, t, 10, t + 200000));
    assert_false(m2m_coap_observe_fresher(10, t, 5, t - 200000));

    /* Extreme times neither overflow nor flip the answer. */
    assert_false(m2m_coap_observe_fresher(10, M2M_NEVER, 5, M2M_NEVER));
    assert_false(m2m_coap_observe_fresher(10, M2M_NEVER - 1000, 5, M2M_NEVER));
    assert_true(m2m_coap_observe_fresher(10, INT64_MIN, 5, M2M_NEVER));
    assert_true(m2m_coap_observe_fresher(10, 0, 5, M2M_NEVER));
    assert_false(m2m_coap_observe_fresher(10, M2M_NEVER, 5, INT64_MIN));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_block),
        cmocka_unit_test(test_add_block),
        cmocka_unit_test(test_szx_for),
        cmocka_unit_test(test_observe_fresher),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
