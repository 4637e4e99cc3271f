/*
 * protocols.h: the protocol tables the core can plug into a listener. Each protocol module
 * defines one constant struct protocol; the registry (registry.c) picks one per listener.
 */
#ifndef MOAT_PROTOCOLS_H
#define MOAT_PROTOCOLS_H

#include "protocol.h"

/* Byte relay straight after accept (or the implicit TLS handshake): no pre-auth dialogue. */
extern const struct protocol passthrough_protocol;
extern const struct protocol smtp_protocol; /* MX and submission */
extern const struct protocol imap_protocol;
extern const struct protocol pop3_protocol;

/* The table that serves listener protocol p. */
const struct protocol *protocol_for(enum listener_proto p);
/* Give every listener of conf its protocol table; once per configuration, right after it is
 * loaded and before any listener or session uses it. */
void protocols_bind(struct config *conf);

#endif
