/* `m2mkit serve`: every enabled protocol on one libuv loop until SIGINT or
 * SIGTERM, then a clean shutdown. */
#ifndef M2M_SERVER_SERVE_H
#define M2M_SERVER_SERVE_H

#include "m2m/types.h"
#include "server/conf.h"

/* Runs until a signal; returns 0 after a clean shutdown, or an error
 * (reported through `log`) if a listener could not start. */
int m2m_serve_run(const struct m2m_conf *conf, const struct m2m_logger *log);

#endif
