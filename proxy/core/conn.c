/*
 * conn.c: the connection layer under every session leg (client and backend). Owns the socket,
 * its ev_io watcher, the capped in/out buffers and, once started, the TLS layer. Reports events
 * to its owner; never decides protocol matters. Reading stops while the input buffer is full
 * (back-pressure); the STARTTLS switch discards whatever plaintext was buffered.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <unistd.h>

#include "conn.h"
#include "tls.h"

#define CONN_READS_PER_EVENT 4
#define CONN_CORK_MAX 16384 /* bytes a corked connection queues before it sends anyway */

static void conn_on_io(struct ev_loop *loop, ev_io *w, int revents);

void
conn_init(struct conn *c, struct ev_loop *loop, size_t in_cap, size_t out_cap,
          void (*on_event)(struct conn *, enum conn_event), void *owner)
{
    memset(c, 0, sizeof(*c));
    c->fd = -1;
    c->state = CONN_IDLE;
    c->loop = loop;
    c->on_event = on_event;
    c->owner = owner;
    buf_init(&c->in, in_cap);
    buf_init(&c->out, out_cap);
    ev_io_init(&c->io, conn_on_io, -1, 0);
    c->io.data = c;
}

/* The socket is non-blocking already: accept4() and socket() are given SOCK_NONBLOCK (the
 * two fcntl() calls per connection are saved). */
static void
socket_setup(int fd)
{
    int one = 1;
    /* Without it each small reply can wait ~40 ms for a delayed ACK. */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void
conn_update_io(struct conn *c)
{
    int want = 0;
    switch (c->state) {
    case CONN_IDLE:
    case CONN_CLOSED:
        break;
    case CONN_CONNECTING:
        want = EV_WRITE;
        break;
    case CONN_TLS_HANDSHAKE:
        want = c->tls_wants_write ? EV_WRITE : EV_READ;
        break;
    case CONN_PLAIN:
    case CONN_TLS:
        if (!c->read_paused && !c->eof && buf_room(&c->in) > 0)
            want |= EV_READ;
        if (c->out.len > 0 || c->tls_wants_write)
            want |= EV_WRITE;
        break;
    }
    if (ev_is_active(&c->io) && (c->io.events & (EV_READ | EV_WRITE)) == want)
        return;
    ev_io_stop(c->loop, &c->io);
    if (want != 0) {
        ev_io_set(&c->io, c->fd, want);
        ev_io_start(c->loop, &c->io);
    }
}

static void
conn_emit(struct conn *c, enum conn_event ev)
{
    c->on_event(c, ev);
}

static void
conn_fail(struct conn *c, const char *why)
{
    if (c->error == NULL)
        c->error = why;
    conn_emit(c, CONN_EV_ERROR);
}

void
conn_attach(struct conn *c, int fd)
{
    c->fd = fd;
    c->state = CONN_PLAIN;
    socket_setup(fd);
    conn_update_io(c);
}

int
conn_connect(struct conn *c, const struct sockaddr *sa, socklen_t len)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        c->error = strerror(errno);
        return -1;
    }
    socket_setup(fd);
    c->fd = fd;
    c->error = NULL;
    if (connect(fd, sa, len) != 0 && errno != EINPROGRESS) {
        c->error = strerror(errno);
        close(fd);
        c->fd = -1;
        return -1;
    }
    c->state = CONN_CONNECTING;
    conn_update_io(c);
    return 0;
}

/* Send (p, n) as far as the socket takes it; *sent_out: the bytes gone (TLS: one record per
 * call, 16 KB when there is that much). -1 on a fatal error. */
static int
conn_send(struct conn *c, const char *p, size_t n, size_t *sent_out)
{
    size_t sent = 0;
    int rc = 0;
    while (sent < n) {
        size_t k = 0;
        if (c->tls != NULL) {
            /* a record of 16 KB goes now; say whether another follows it in this call */
            tls_more_follows(c->tls, n - sent > TLS_RECORD_PLAIN_MAX);
            enum tls_status st = tls_write(c->tls, p + sent, n - sent, &k);
            if (st == TLS_WANT_WRITE || st == TLS_WANT_READ)
                break;
            if (st != TLS_OK) {
                c->error = tls_error(c->tls);
                rc = -1;
                break;
            }
        } else {
            ssize_t w = send(c->fd, p + sent, n - sent, MSG_NOSIGNAL);
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                    break;
                c->error = strerror(errno);
                rc = -1;
                break;
            }
            k = (size_t)w;
        }
        sent += k;
    }
    if (c->tls != NULL) {
        tls_more_follows(c->tls, false);
        if (sent < n)
            tls_push(c->tls); /* stopped before the last record: nothing may wait in the socket */
    }
    c->bytes_out += sent;
    *sent_out = sent;
    return rc;
}

/* Write as much of c->out as the socket takes. -1 on a fatal error. */
static int
conn_flush(struct conn *c)
{
    size_t sent = 0;
    int rc = conn_send(c, c->out.data, c->out.len, &sent);
    if (sent > 0)
        buf_consume(&c->out, sent);
    return rc;
}

static int conn_write_out(struct conn *c, const char *p, size_t n, bool live);

/* With nothing queued, the bytes go straight from the caller's buffer to the socket (or TLS),
 * and only what the socket does not take is copied into c->out. After a TLS WANT_WRITE the
 * same bytes come back from c->out, as wolfSSL requires. While corked they only queue. */
int
conn_write(struct conn *c, const char *p, size_t n)
{
    if (c->state == CONN_CLOSED || c->state == CONN_IDLE)
        return -1;
    if (n > buf_room(&c->out))
        return -1;
    if (n > 0)
        c->last_out = p[n - 1];
    bool live = c->state == CONN_PLAIN || c->state == CONN_TLS;
    /* corked: queue, up to half the buffer (a long batch goes out as it grows, as before) */
    if (live && c->corked && c->out.len + n <= MOAT_MIN(CONN_CORK_MAX, c->out.cap / 2)) {
        (void)buf_append(&c->out, p, n); /* fits: checked above; sent by conn_uncork() */
        return 0;
    }
    return conn_write_out(c, p, n, live);
}

/* conn_write() past the checks: (p, n) go out now, after whatever c->out holds. */
static int
conn_write_out(struct conn *c, const char *p, size_t n, bool live)
{
    int rc = 0;
    if (live && c->out.len == 0) {
        size_t sent = 0;
        rc = conn_send(c, p, n, &sent);
        if (rc == 0)
            (void)buf_append(&c->out, p + sent, n - sent); /* fits: checked above */
    } else {
        if (n > 0)
            (void)buf_append(&c->out, p, n);
        if (live)
            rc = conn_flush(c);
    }
    if (live) {
        if (rc != 0) {
            /* Reported from the watcher, never from inside the caller's call. */
            buf_clear(&c->out);
            if (c->error == NULL)
                c->error = "write failed";
            ev_feed_event(c->loop, &c->io, EV_CUSTOM);
            return 0;
        }
        if (c->out.len > 0)
            c->write_blocked = true;
    }
    conn_update_io(c);
    return 0;
}

void
conn_cork(struct conn *c)
{
    c->corked = true;
}

void
conn_uncork(struct conn *c)
{
    if (!c->corked)
        return;
    c->corked = false;
    bool live = c->state == CONN_PLAIN || c->state == CONN_TLS;
    if (!live || c->out.len == 0)
        return;
    (void)conn_write_out(c, NULL, 0, true); /* the queued bytes, as one write */
    if (c->out.len == 0 && c->shut_wr_pending)
        conn_shutdown_write(c);
}

size_t
conn_out_pending(const struct conn *c)
{
    return c->out.len;
}

void
conn_consume(struct conn *c, size_t n)
{
    bool was_full = buf_room(&c->in) == 0;
    buf_consume(&c->in, n);
    if (c->state != CONN_PLAIN && c->state != CONN_TLS)
        return;
    conn_update_io(c);
    /* wolfSSL may hold decrypted bytes that no socket event will announce. */
    if (was_full && c->tls != NULL && tls_pending(c->tls) > 0)
        ev_feed_event(c->loop, &c->io, EV_READ);
}

void
conn_pause_read(struct conn *c, bool pause)
{
    if (c->read_paused == pause)
        return;
    c->read_paused = pause;
    if (c->state != CONN_PLAIN && c->state != CONN_TLS)
        return;
    conn_update_io(c);
    if (!pause && (c->in.len > 0 || (c->tls != NULL && tls_pending(c->tls) > 0)))
        ev_feed_event(c->loop, &c->io, EV_READ);
}

static void
conn_switch_to_tls(struct conn *c)
{
    c->discarded_at_starttls += c->in.len;
    buf_clear(&c->in);
    c->state = CONN_TLS_HANDSHAKE;
    c->tls_wants_write = false;
    conn_update_io(c);
}

int
conn_start_tls(struct conn *c, struct tls_ctx *ctx, const char *alpn, bool strict)
{
    if (c->tls != NULL || c->tls_pending != NULL)
        return -1;
    if (c->state != CONN_PLAIN)
        return -1;
    conn_uncork(c); /* the plaintext answer goes out before the switch */
    c->tls_pending = tls_ctx_ref(ctx);
    c->alpn = alpn;
    c->alpn_strict = strict;
    if (c->out.len == 0)
        conn_switch_to_tls(c);
    return 0;
}

bool
conn_is_tls(const struct conn *c)
{
    return c->state == CONN_TLS;
}

static void
tcp_cork(struct conn *c, bool on)
{
    int v = on;
    if (c->fd < 0 || c->no_tcp_cork)
        return;
    if (setsockopt(c->fd, IPPROTO_TCP, TCP_CORK, &v, sizeof(v)) == 0)
        c->tcp_corked = on;
    else if (errno == EOPNOTSUPP || errno == ENOPROTOOPT)
        c->no_tcp_cork = true;
}

void
conn_hold_until_close(struct conn *c)
{
    /* nothing left to say (no reply queued, no close_notify to come): the FIN goes alone */
    if ((c->state != CONN_PLAIN && c->state != CONN_TLS) || (c->out.len == 0 && c->tls == NULL))
        return;
    c->hold_close = true;
    if (!c->tcp_corked)
        tcp_cork(c, true);
}

static void conn_on_readable(struct conn *c);

static void
conn_do_handshake(struct conn *c)
{
    if (c->tls == NULL) {
        /* Created only now that the client has sent something: idle connects cost no TLS. */
        c->tls = tls_new(c->tls_pending, c->fd, c->alpn, c->alpn_strict);
        tls_ctx_unref(c->tls_pending);
        c->tls_pending = NULL;
        if (c->tls == NULL) {
            conn_fail(c, "cannot create TLS session");
            return;
        }
        conn_emit(c, CONN_EV_TLS_STARTED);
        if (c->state != CONN_TLS_HANDSHAKE)
            return;
    }
    /* Past the first flight a step may finish the handshake: the server's last messages (a
     * TLS 1.3 session ticket) then wait in the socket for the first answer (a greeting, or the
     * reply to a command that came with the client's Finished) and leave in one packet. */
    bool hold = c->hs_steps++ > 0;
    if (hold)
        tcp_cork(c, true);
    enum tls_status st = tls_handshake(c->tls);
    switch (st) {
    case TLS_OK:
        c->state = CONN_TLS;
        c->tls_wants_write = false;
        c->last_read = ev_now(c->loop);
        conn_update_io(c);
        conn_emit(c, CONN_EV_TLS_READY);
        /* Application data may have come with the client's Finished: answered now, so the
         * answer joins the ticket. */
        if (c->state == CONN_TLS && tls_pending(c->tls) > 0)
            conn_on_readable(c);
        if (hold && c->state != CONN_CLOSED && !c->hold_close)
            tcp_cork(c, false);
        return;
    case TLS_WANT_READ:
    case TLS_WANT_WRITE:
        if (hold)
            tcp_cork(c, false);
        c->tls_wants_write = st == TLS_WANT_WRITE;
        conn_update_io(c);
        return;
    case TLS_CLOSED:
    case TLS_ERROR:
        if (hold)
            tcp_cork(c, false);
        conn_fail(c, tls_error(c->tls));
        return;
    }
}

/* Read what the socket (or TLS) has, up to the free room. Returns -1 on a fatal error. */
static int
conn_fill(struct conn *c, bool *got_out)
{
    for (int i = 0; i < CONN_READS_PER_EVENT && !c->eof; i++) {
        char *tail = buf_tail(&c->in);
        if (tail == NULL)
            break;
        size_t room = buf_tail_room(&c->in), n = 0;
        if (c->tls != NULL) {
            enum tls_status st = tls_read(c->tls, tail, room, &n);
            if (st == TLS_WANT_READ)
                break;
            if (st == TLS_WANT_WRITE) {
                c->tls_wants_write = true;
                break;
            }
            if (st == TLS_CLOSED) {
                c->eof = true;
                break;
            }
            if (st == TLS_ERROR) {
                c->error = tls_error(c->tls);
                return -1;
            }
        } else {
            ssize_t r = recv(c->fd, tail, room, 0);
            if (r == 0) {
                c->eof = true;
                break;
            }
            if (r < 0) {
                if (errno == EINTR)
                    continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                    break;
                if (errno == ECONNRESET) {
                    c->eof = true;
                    break;
                }
                c->error = strerror(errno);
                return -1;
            }
            n = (size_t)r;
        }
        buf_commit(&c->in, n);
        c->bytes_in += n;
        *got_out = true;
    }
    if (c->in.len == 0)
        buf_clear(&c->in); /* a read that found nothing leaves no allocation behind */
    return 0;
}

static void
conn_on_readable(struct conn *c)
{
    bool got = false;
    if (conn_fill(c, &got) != 0) {
        conn_fail(c, c->error);
        return;
    }
    if (got) {
        c->last_read = ev_now(c->loop);
        conn_emit(c, CONN_EV_READABLE);
        if (c->state == CONN_CLOSED)
            return;
    }
    if (c->eof) {
        conn_update_io(c);
        conn_emit(c, CONN_EV_EOF);
        return;
    }
    conn_update_io(c);
    /* TLS may hold more than this event's reads took (decrypted, or read ahead from a drained
     * socket): no socket event will announce it. */
    if (c->state == CONN_TLS && !c->read_paused && buf_room(&c->in) > 0 && tls_pending(c->tls) > 0)
        ev_feed_event(c->loop, &c->io, EV_READ);
}

static void
conn_on_writable(struct conn *c)
{
    if (c->tls_wants_write) {
        c->tls_wants_write = false;
        conn_on_readable(c);
        if (c->state == CONN_CLOSED)
            return;
    }
    if (conn_flush(c) != 0) {
        conn_fail(c, c->error);
        return;
    }
    if (c->out.len == 0 && c->shut_wr_pending)
        conn_shutdown_write(c);
    if (c->out.len == 0 && c->write_blocked) {
        c->write_blocked = false;
        conn_update_io(c);
        if (c->tls_pending != NULL && c->tls == NULL && c->state == CONN_PLAIN)
            conn_switch_to_tls(c);
        conn_emit(c, CONN_EV_DRAINED);
        return;
    }
    conn_update_io(c);
}

static void
conn_on_connected(struct conn *c)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        err = errno;
    if (err != 0) {
        c->error = strerror(err);
        conn_emit(c, CONN_EV_ERROR);
        return;
    }
    c->state = CONN_PLAIN;
    conn_update_io(c);
    conn_emit(c, CONN_EV_CONNECTED);
}

static void
conn_on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    struct conn *c = w->data;
    if (c->state == CONN_CLOSED || c->state == CONN_IDLE)
        return;
    if (revents & EV_CUSTOM) {
        /* A write failed (the peer reset). What it sent before it went away is read and
         * handled first: a server's last reply (Postfix's 550 and 421 before it closes with
         * our pipelined commands unread) must reach the client, not a "connection lost". */
        const char *why = c->error ? c->error : "write failed";
        if ((c->state == CONN_PLAIN || c->state == CONN_TLS) && !c->eof) {
            c->error = NULL;
            conn_on_readable(c);
            if (c->state == CONN_CLOSED || c->error != NULL)
                return; /* handled, or a read error reported */
        }
        if (c->state != CONN_CLOSED)
            conn_fail(c, why);
        return;
    }
    if (c->tls != NULL && (revents & EV_READ))
        tls_on_readable(c->tls);
    switch (c->state) {
    case CONN_IDLE:
    case CONN_CLOSED:
        return;
    case CONN_CONNECTING:
        conn_on_connected(c);
        return;
    case CONN_TLS_HANDSHAKE:
        conn_do_handshake(c);
        return;
    case CONN_PLAIN:
    case CONN_TLS:
        if (revents & EV_WRITE) {
            conn_on_writable(c);
            if (c->state == CONN_CLOSED)
                return;
        }
        if (revents & EV_READ)
            conn_on_readable(c);
        return;
    }
}

void
conn_shutdown_write(struct conn *c)
{
    c->shut_wr_pending = true;
    if (c->state != CONN_PLAIN || c->out.len > 0)
        return;
    c->shut_wr_pending = false;
    (void)shutdown(c->fd, SHUT_WR);
}

void
conn_close(struct conn *c, bool quiet)
{
    if (c->state == CONN_CLOSED)
        return;
    ev_io_stop(c->loop, &c->io);
    ev_clear_pending(c->loop, &c->io);
    if (c->tls != NULL) {
        if (c->state == CONN_TLS)
            tls_shutdown(c->tls, quiet);
        tls_free(c->tls);
        c->tls = NULL;
    }
    if (c->tls_pending != NULL) {
        tls_ctx_unref(c->tls_pending);
        c->tls_pending = NULL;
    }
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    buf_free(&c->in);
    buf_free(&c->out);
    c->corked = c->tcp_corked = c->hold_close = c->no_tcp_cork = false;
    c->state = CONN_CLOSED;
}
