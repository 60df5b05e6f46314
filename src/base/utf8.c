#include "base/utf8.h"

static bool is_control(uint32_t cp)
{
    return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f);
}

bool m2m_utf8_valid(const uint8_t *p, size_t n, unsigned flags)
{
    size_t i = 0;
    while (i < n) {
        uint8_t b = p[i];
        uint32_t cp;
        size_t len;
        if (b < 0x80) {
            cp = b;
            len = 1;
        } else if ((b & 0xe0) == 0xc0) {
            cp = b & 0x1f;
            len = 2;
        } else if ((b & 0xf0) == 0xe0) {
            cp = b & 0x0f;
            len = 3;
        } else if ((b & 0xf8) == 0xf0) {
            cp = b & 0x07;
            len = 4;
        } else {
            return false;
        }
        if (n - i < len)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i + k] & 0x3f);
        }
        static const uint32_t min_for_len[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min_for_len[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        if ((flags & M2M_UTF8_NO_NUL) && cp == 0)
            return false;
        if ((flags & M2M_UTF8_NO_CONTROL) && is_control(cp))
            return false;
        i += len;
    }
    return true;
}
