#include "vclock.h"

#include <stdio.h>
#include <string.h>

struct m2m_addr test_addr(uint8_t n)
{
    struct m2m_addr a;
    memset(&a, 0, sizeof a);
    a.len = 6;
    a.b[0] = 127;
    a.b[3] = n;
    a.b[4] = 0x16;
    a.b[5] = 0x33;
    return a;
}

const char *test_hex(const uint8_t *p, size_t n, char *buf, size_t cap)
{
    size_t off = 0;
    buf[0] = 0;
    for (size_t i = 0; i < n && off + 4 < cap; i++)
        off += (size_t)snprintf(buf + off, cap - off, "%s%02x", i ? " " : "", p[i]);
    return buf;
}

static int nib(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

size_t test_unhex(const char *s, uint8_t *out, size_t cap)
{
    size_t n = 0;
    while (*s && n < cap) {
        if (nib(s[0]) < 0) {
            s++;
            continue;
        }
        if (nib(s[1]) < 0)
            break;
        out[n++] = (uint8_t)(nib(s[0]) * 16 + nib(s[1]));
        s += 2;
    }
    return n;
}
