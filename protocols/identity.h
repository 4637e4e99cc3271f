/*
 * identity.h: the lines that tell a backend who the client is: SMTP XCLIENT (Postfix), IMAP ID
 * with Dovecot's x-* fields, POP3 XCLIENT (Dovecot). Pure: values in, bytes out; no session, no
 * I/O. The protocols send them during the hand-off and the backend check (moat -B) sends the
 * same bytes, so what the check proves is what moat really says.
 */
#ifndef MOAT_IDENTITY_H
#define MOAT_IDENTITY_H

#include "common.h"

#define IDENTITY_XCLIENT_LINE_MAX 510 /* 512 with CRLF: Postfix's line length for XCLIENT */
#define IDENTITY_LINE_MAX 512         /* IMAP ID and POP3 XCLIENT lines, CRLF included */

/* SMTP XCLIENT attributes; NULL values are left out. addr and destaddr are bare addresses: an
 * IPv6 one is sent as "IPV6:addr" (Postfix answers a bare one with 501 Bad ... syntax). */
struct identity_xclient {
    const char *helo;
    const char *proto; /* "ESMTP" or "SMTP" */
    const char *addr;
    const char *port;
    const char *name; /* a verified host name, [UNAVAILABLE] or [TEMPUNAVAIL] */
    const char *destaddr;
    const char *destport;
    const char *login;
};

/* Which attributes: all of them, or one half of a split pair (HELO/PROTO, then the rest). */
enum identity_xclient_part { XCLIENT_PART_ALL = 0, XCLIENT_PART_HELO, XCLIENT_PART_REST };

/* "XCLIENT NAME=xtext ..." without CRLF. Returns its length, or -1 when it does not fit cap or
 * is longer than IDENTITY_XCLIENT_LINE_MAX. */
int identity_smtp_xclient(const struct identity_xclient *x, enum identity_xclient_part part,
                          char *out, size_t cap);

/* The client as IMAP ID and POP3 XCLIENT describe it. */
struct identity_client {
    const char *addr; /* bare address, IPv4 or IPv6 */
    unsigned port;
    const char *local_addr; /* where the client connected to moat */
    unsigned local_port;
    const char *session; /* moat's session id */
};

/* "TAG ID (...)\r\n" with x-originating-ip/port, x-connected-ip/port, x-session-ext-id.
 * Returns its length, or -1 when it does not fit cap. */
int identity_imap_id(const char *tag, const struct identity_client *c, char *out, size_t cap);
/* "XCLIENT ADDR=... PORT=... SESSION=...\r\n"; length or -1. */
int identity_pop3_xclient(const struct identity_client *c, char *out, size_t cap);

#endif
