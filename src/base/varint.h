/* Variable byte integers as MQTT and others use them: 7 bits per byte,
 * least significant group first, high bit = more. At most `max_bytes`
 * bytes (4 for MQTT, limit 268,435,455). */
#ifndef M2M_BASE_VARINT_H
#define M2M_BASE_VARINT_H

#include <stddef.h>
#include <stdint.h>

#include "base/cursor.h"

/* Reads one varint. M2M_EMALFORMED if it runs past the input or past
 * max_bytes (at most 5), if it does not fit 32 bits, or if it is not
 * minimally encoded (a trailing 0x00 group); the cursor is then left where
 * it was. */
int m2m_varint_read(struct m2m_rcur *c, size_t max_bytes, uint32_t *v);
/* Writes one varint; M2M_EINVAL if v needs more than max_bytes. */
int m2m_varint_write(struct m2m_wcur *c, size_t max_bytes, uint32_t v);
/* Number of bytes the encoding of v takes. */
size_t m2m_varint_size(uint32_t v);

#endif
