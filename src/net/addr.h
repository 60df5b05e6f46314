/* Conversions between sockaddr and the cores' opaque m2m_addr. */
#ifndef M2M_NET_ADDR_H
#define M2M_NET_ADDR_H

#include <stddef.h>
#include <sys/socket.h>

#include "m2m/types.h"

void m2m_addr_from_sockaddr(struct m2m_addr *a, const struct sockaddr *sa);
/* Fills ss; returns the sockaddr length, 0 if `a` holds no address. */
socklen_t m2m_addr_to_sockaddr(const struct m2m_addr *a, struct sockaddr_storage *ss);
/* "127.0.0.1:5683" or "[::1]:5683" into buf (at least 64 bytes). */
const char *m2m_addr_format(const struct m2m_addr *a, char *buf, size_t cap);
/* Parses a numeric IPv4 or IPv6 host and a port. */
int m2m_sockaddr_parse(const char *host, int port, struct sockaddr_storage *ss);

#endif
