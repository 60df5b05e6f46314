#ifndef M2M_NET_COAP_WIRE_H
#define M2M_NET_COAP_WIRE_H

#include "m2m/coap.h"
#include "net/pump.h"

/* Drives a struct m2m_coap_ep (the `core` pointer) over UDP. */
extern const struct m2m_wire_ops m2m_coap_wire_ops;

#endif
