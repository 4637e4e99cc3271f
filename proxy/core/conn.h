/*
 * conn.h: one non-blocking socket with its libev watcher, an optional TLS layer and two capped
 * buffers. It reports what happened to its owner through one callback (READABLE, DRAINED,
 * TLS_READY, CONNECTED, EOF, ERROR); the owner consumes input with conn_consume() and queues
 * output with conn_write(). Back-pressure: a full input buffer stops reading from the socket.
 * The STARTTLS switch is here: flush the reply, discard every buffered plaintext byte, start TLS.
 */
#ifndef MOAT_CONN_H
#define MOAT_CONN_H

#include <ev.h>
#include <sys/socket.h>

#include "buf.h"
#include "common.h"

struct tls;
struct tls_ctx;

enum conn_event {
    CONN_EV_READABLE = 0, /* new bytes in c->in */
    CONN_EV_DRAINED,      /* c->out became empty after having been blocked */
    CONN_EV_TLS_STARTED,  /* the client's first handshake bytes arrived: TLS is now working */
    CONN_EV_TLS_READY,    /* handshake complete */
    CONN_EV_CONNECTED,    /* outgoing connect completed */
    CONN_EV_EOF,          /* peer closed (after any last READABLE) */
    CONN_EV_ERROR         /* socket or TLS error; c->error says which */
};

enum conn_state {
    CONN_IDLE = 0, /* no socket */
    CONN_CONNECTING,
    CONN_PLAIN,
    CONN_TLS_HANDSHAKE,
    CONN_TLS,
    CONN_CLOSED
};

struct conn {
    int fd;
    enum conn_state state;
    struct ev_loop *loop;
    ev_io io;
    struct tls *tls;
    struct buf in;
    struct buf out;
    void (*on_event)(struct conn *c, enum conn_event ev);
    void *owner;
    /* STARTTLS requested: switch once the output is flushed */
    struct tls_ctx *tls_pending;
    const char *alpn;
    bool alpn_strict;
    bool read_paused;     /* by the owner */
    bool eof;             /* peer closed its side */
    bool tls_wants_write; /* a TLS read needs the socket writable */
    bool write_blocked;   /* output waited for EV_WRITE; DRAINED is due when it empties */
    bool shut_wr_pending; /* conn_shutdown_write(): send FIN once the output is flushed */
    bool corked;          /* conn_cork(): writes are queued until conn_uncork() */
    bool tcp_corked;      /* TCP_CORK is set on the socket */
    bool hold_close;      /* conn_hold_until_close(): TCP_CORK stays until the close */
    bool no_tcp_cork;     /* not a TCP socket (a socketpair in tests): never tried again */
    unsigned hs_steps;    /* tls_handshake calls so far */
    uint64_t bytes_in;
    uint64_t bytes_out;
    uint64_t discarded_at_starttls;
    char last_out;    /* the last byte queued for output (0 before any): line boundaries */
    double last_read; /* ev_now() of the last byte read */
    const char *error;
};

void conn_init(struct conn *c, struct ev_loop *loop, size_t in_cap, size_t out_cap,
               void (*on_event)(struct conn *, enum conn_event), void *owner);
/* Adopt an accepted, already non-blocking socket (accept4 with SOCK_NONBLOCK); sets TCP_NODELAY. */
void conn_attach(struct conn *c, int fd);
/* Start a non-blocking connect; CONNECTED or ERROR follows. Returns -1 at once on failure. */
int conn_connect(struct conn *c, const struct sockaddr *sa, socklen_t len);
/* Queue bytes; -1 if they do not fit under the cap (nothing queued). */
int conn_write(struct conn *c, const char *p, size_t n);
/* Between conn_cork() and conn_uncork() writes are only queued; conn_uncork() sends them as one
 * write (one send(), one TLS record), as conn_write() would have sent them. A session corks its
 * client leg while it answers one batch of input, so a multi-line reply is not one packet per
 * line. conn_start_tls() and conn_close() uncork first. */
void conn_cork(struct conn *c);
void conn_uncork(struct conn *c);
/* The connection is about to close: what is still written and the close (TLS close_notify, FIN)
 * leave in as few packets as the kernel can make of them (TCP_CORK until the close). */
void conn_hold_until_close(struct conn *c);
size_t conn_out_pending(const struct conn *c);
void conn_consume(struct conn *c, size_t n);
void conn_pause_read(struct conn *c, bool pause);
/* TLS now (implicit TLS) or, if output is pending, as soon as it is flushed (STARTTLS).
 * Every input byte buffered at the switch is discarded. Returns -1 if TLS cannot start. */
int conn_start_tls(struct conn *c, struct tls_ctx *ctx, const char *alpn, bool strict);
bool conn_is_tls(const struct conn *c);
/* Half-close: no more bytes will be queued; FIN goes out once the output is flushed (plaintext
 * legs only: the backend side of a relay). */
void conn_shutdown_write(struct conn *c);
/* Idempotent. quiet: no TLS close_notify (error paths). */
void conn_close(struct conn *c, bool quiet);

#endif
