/*
 * session_fake_backend.h: an in-process stand-in for Postfix and Dovecot for the session fuzz
 * target (fuzz_session.c): one listening socket on 127.0.0.1, driven by the caller's libev loop,
 * that answers line by line like the real servers do for what moat sends them (greeting, EHLO,
 * XCLIENT, AUTH PLAIN, ID, AUTHENTICATE, MAIL/RCPT/DATA, SELECT, RETR, QUIT ...).
 */
#ifndef MOAT_FUZZ_SESSION_FAKE_BACKEND_H
#define MOAT_FUZZ_SESSION_FAKE_BACKEND_H

#include <ev.h>
#include <stdbool.h>

enum fake_proto { FAKE_SMTP = 0, FAKE_IMAP, FAKE_POP3 };

/* How the backend behaves for the current input. */
struct fake_behaviour {
    enum fake_proto proto;
    bool reject_login;    /* 535 / NO / -ERR to every login */
    bool refuse_greeting; /* 421 / * BYE / -ERR greeting, then close */
    bool close_on_accept; /* accept, then close at once */
};

/* Listen on 127.0.0.1:ephemeral; returns the port, or 0 on failure. */
unsigned fake_backend_start(struct ev_loop *loop);
void fake_backend_set(const struct fake_behaviour *b);
/* The next command gets a temporary error (4xx / NO / -ERR). */
void fake_backend_fail_next(void);
/* Unsolicited bytes from the backend: a junk line, or 9000 bytes without a line end. */
void fake_backend_inject(bool long_line);
/* Close every accepted connection now: moat sees EOF, or with reset a connection reset (which
 * also spares moat's socket the TIME_WAIT when it had closed its side already). */
void fake_backend_close_all(bool reset);
/* Nothing to accept, to read or to write: the backend side is at rest. */
bool fake_backend_quiet(void);
/* Open connections (for the per-input check that everything was closed). */
unsigned fake_backend_conns(void);
void fake_backend_stop(void);

#endif
