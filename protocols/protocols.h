/*
 * protocols.h: the protocol tables the core can plug into a listener. Each protocol module
 * defines one constant struct protocol; the registry in proxy/registry.c picks one per listener.
 */
#ifndef MOAT_PROTOCOLS_H
#define MOAT_PROTOCOLS_H

#include "protocol.h"

/* Byte relay straight after accept (or the implicit TLS handshake): no pre-auth dialogue. */
extern const struct protocol passthrough_protocol;
extern const struct protocol smtp_protocol; /* MX and submission */
extern const struct protocol imap_protocol;
extern const struct protocol pop3_protocol;

#endif
