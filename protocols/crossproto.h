/*
 * crossproto.h: recognise another protocol's bytes at a mail front (ALPACA and cross-protocol
 * attacks): an HTTP request line or an HTTP header line. Such a client is closed at once
 * instead of being answered, so none of its bytes are reflected back. Pure.
 */
#ifndef MOAT_CROSSPROTO_H
#define MOAT_CROSSPROTO_H

#include "common.h"

/* Looks at the first line of (p, n) only; false while that line is incomplete. */
bool crossproto_http(const char *p, size_t n);

#endif
