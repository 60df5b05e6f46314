/* UTF-8 validation (RFC 3629): rejects overlong forms, surrogates
 * (U+D800-U+DFFF), code points above U+10FFFF and truncated sequences. */
#ifndef M2M_BASE_UTF8_H
#define M2M_BASE_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum m2m_utf8_flags {
    M2M_UTF8_NO_NUL = 1,    /* U+0000 is refused too (MQTT) */
    M2M_UTF8_NO_CONTROL = 2 /* C0/C1 controls and U+007F are refused */
};

bool m2m_utf8_valid(const uint8_t *p, size_t n, unsigned flags);

#endif
