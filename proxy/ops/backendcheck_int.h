/*
 * backendcheck_int.h: what the backend check's files share (backendcheck.c: the driver and the
 * thread; backendcheck_proto.c: the SMTP, IMAP and POP3 dialogues; backendcheck_link.c: the
 * connections and the report, below both). Not for anyone else.
 */
#ifndef MOAT_BACKENDCHECK_INT_H
#define MOAT_BACKENDCHECK_INT_H

#include <stdatomic.h>
#include <sys/socket.h>

#include "backendcheck.h"
#include "config.h"

#define BC_LINE_MAX 1024 /* a backend line longer than this is an error */
#define BC_TEXT_MAX 512  /* reply text kept for a report */

/* The client the check pretends to hand off: documentation addresses (RFC 5737, RFC 3849), so
 * a backend that honours the hand-off treats it as a stranger. */
#define BC_CLIENT_V4 "192.0.2.1"
#define BC_CLIENT_V6 "2001:db8::1"
#define BC_CLIENT_PORT 40000
#define BC_SESSION "backend-check"
/* Outside every backend's domains (RFC 2606 .example): a RCPT here is a relay attempt. */
#define BC_RELAY_RCPT "nobody@moat-relay-check.example"

/* Everything about the listeners in front of one backend, for one protocol family. */
struct bc_family {
    const struct config_listener *listener; /* the first listener of the family, or NULL */
    bool plain_needed; /* a listener's logins are replayed to the backend as AUTH PLAIN */
    bool unauthenticated_handoff; /* an MX listener hands unauthenticated clients to it */
};

/* One backend address being checked. */
struct bc_target {
    const struct config *conf;
    const struct config_backend *backend;
    const struct sockaddr *addr;
    socklen_t addr_len;
    char address[64]; /* text form, for the report */
    const atomic_bool *stop;
    unsigned connect_ms, reply_ms;
    void (*report)(const struct bcheck_line *line, void *arg);
    void *arg;
    unsigned failures, warnings;
};

/* One connection. */
struct bc_link {
    int fd;
    char in[BC_LINE_MAX * 4];
    size_t in_len;
    char local[64]; /* moat's address as the backend sees it */
    const char *error;
    char error_buf[128];
    const struct bc_target *t;
};

void bc_report(struct bc_target *t, const char *check, enum bcheck_status st, const char *fmt, ...)
    MOAT_PRINTF(4, 5);
/* Connect (reporting "reachable" when report_reach) and, for a PROXY identity, send the header
 * of a TEST-NET client of family af. -1 when the connection failed (reported). */
int bc_open(struct bc_target *t, struct bc_link *k, const struct bc_family *f, int af,
            bool report_reach);
void bc_close(struct bc_link *k);
/* Keep text (a reply, or the current error) as the link's error, for after bc_close(). */
void bc_keep_error(struct bc_link *k, const char *text);
int bc_send(struct bc_link *k, const char *fmt, ...) MOAT_PRINTF(2, 3);
int bc_send_raw(struct bc_link *k, const char *p, size_t n);
/* Why the link failed, for a report; never NULL. */
static inline const char *
bc_error(const struct bc_link *k)
{
    return k->error != NULL ? k->error : "no reply";
}
/* One line without CRLF into out (NUL-terminated, cut to printable ASCII); its length or -1. */
int bc_line(struct bc_link *k, char *out, size_t cap);

void bc_check_smtp(struct bc_target *t, const struct bc_family *f);
void bc_check_imap(struct bc_target *t, const struct bc_family *f);
void bc_check_pop3(struct bc_target *t, const struct bc_family *f);

#endif
