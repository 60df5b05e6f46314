#include "base/log.h"

#include <stdarg.h>
#include <stdio.h>

void m2m_log(const struct m2m_logger *log, enum m2m_log_level lvl, const char *proto,
             const struct m2m_addr *peer, const char *fmt, ...)
{
    if (!m2m_log_on(log, lvl))
        return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    log->write(log->ctx, lvl, proto, peer, line);
}

const char *m2m_log_level_name(enum m2m_log_level lvl)
{
    static const char *names[] = {"error", "warn", "info", "debug"};
    return (unsigned)lvl < 4 ? names[lvl] : "?";
}
