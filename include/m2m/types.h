/* Small value types shared by every layer: slices, time, randomness,
 * opaque peer addresses and the logging sink. Header only. */
#ifndef M2M_TYPES_H
#define M2M_TYPES_H

#include <stddef.h>
#include <stdint.h>

/* A borrowed view of bytes. Whoever hands one out states how long it lives. */
struct m2m_slice {
    const uint8_t *p;
    size_t n;
};

/* Milliseconds on a monotonic clock chosen by the caller (virtual in tests). */
typedef int64_t m2m_time;
#define M2M_NEVER INT64_MAX

/* Randomness is injected: cores never pick their own source. */
struct m2m_rng {
    void (*fill)(void *ctx, uint8_t *buf, size_t n);
    void *ctx;
};

/* A transport address as opaque bytes (the net layer stores a sockaddr
 * here). Cores only compare, hash and copy it. */
#define M2M_ADDR_MAX 28
struct m2m_addr {
    uint8_t len;
    uint8_t b[M2M_ADDR_MAX];
};

enum m2m_log_level { M2M_LOG_ERROR, M2M_LOG_WARN, M2M_LOG_INFO, M2M_LOG_DEBUG };

/* Where a core's log lines go. `peer` may be NULL; `line` has no newline. */
struct m2m_logger {
    void (*write)(void *ctx, enum m2m_log_level lvl, const char *proto, const struct m2m_addr *peer,
                  const char *line);
    void *ctx;
    enum m2m_log_level level;
};

#endif
