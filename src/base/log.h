/* One-line logs: protocol, peer and reason. Formatting lives here; where the
 * line goes is the caller's m2m_logger (the CLI writes to stderr). */
#ifndef M2M_BASE_LOG_H
#define M2M_BASE_LOG_H

#include "m2m/types.h"

#if defined(__GNUC__)
#define M2M_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define M2M_PRINTF(a, b)
#endif

/* Formats and hands one line to `log` if `lvl` passes its level. A NULL
 * logger is silent. Lines longer than 512 bytes are truncated. */
void m2m_log(const struct m2m_logger *log, enum m2m_log_level lvl, const char *proto,
             const struct m2m_addr *peer, const char *fmt, ...) M2M_PRINTF(5, 6);

static inline int m2m_log_on(const struct m2m_logger *log, enum m2m_log_level lvl)
{
    return log && log->write && lvl <= log->level;
}

const char *m2m_log_level_name(enum m2m_log_level lvl);

#endif
