#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "base/log.h"
#include "cli.h"
#include "net/addr.h"

static void write_line(void *ctx, enum m2m_log_level lvl, const char *proto, const struct m2m_addr *peer,
                       const char *line)
{
    (void)ctx;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char ts[32];
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    char who[80] = "-";
    if (peer && peer->len)
        m2m_addr_format(peer, who, sizeof who);
    fprintf(stderr, "%s.%03ldZ %s %s %s: %s\n", ts, (long)(tv.tv_usec / 1000), m2m_log_level_name(lvl),
            proto ? proto : "-", who, line);
}

void cli_logger_init(struct m2m_logger *log, enum m2m_log_level level)
{
    log->write = write_line;
    log->ctx = NULL;
    log->level = level;
}

bool cli_log_level_parse(const char *s, enum m2m_log_level *out)
{
    for (int l = M2M_LOG_ERROR; l <= M2M_LOG_DEBUG; l++) {
        if (!strcmp(s, m2m_log_level_name((enum m2m_log_level)l))) {
            *out = (enum m2m_log_level)l;
            return true;
        }
    }
    return false;
}
