/*
 * test_conn.c: the connection layer's write batching and its order of events, over a real
 * socketpair and a libev loop. Corked writes leave as one write at conn_uncork() (the peer reads
 * nothing before it, everything in one read after it), a batch larger than the cork's room goes
 * out as it grows, and a write that fails because the peer went away is reported only after
 * what the peer had sent before it was read and handed to the owner.
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "test.h"

struct seen {
    enum conn_event order[16];
    int n;
    char data[256];
    size_t data_len;
};

static void
on_event(struct conn *c, enum conn_event ev)
{
    struct seen *s = c->owner;
    if (s->n < 16)
        s->order[s->n++] = ev;
    if (ev == CONN_EV_READABLE) {
        size_t k =
            c->in.len < sizeof(s->data) - s->data_len ? c->in.len : sizeof(s->data) - s->data_len;
        memcpy(s->data + s->data_len, c->in.data, k);
        s->data_len += k;
        conn_consume(c, c->in.len);
    }
}

static ssize_t
peer_read(int fd, char *buf, size_t cap)
{
    ssize_t n = recv(fd, buf, cap, MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : n;
}

/* c: our end of a socketpair with 4 KB buffers; sv[1]: the peer's */
static void
pair_open(struct ev_loop *loop, struct conn *c, struct seen *s, int sv[2])
{
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
    conn_init(c, loop, 4096, 4096, on_event, s);
    conn_attach(c, sv[0]);
}

static void
test_cork_batches(struct ev_loop *loop)
{
    int sv[2];
    struct seen s = {0};
    struct conn c;
    pair_open(loop, &c, &s, sv);
    char buf[8192];

    conn_cork(&c);
    CHECK(conn_write(&c, "250-one\r\n", 9) == 0);
    CHECK(conn_write(&c, "250 two\r\n", 9) == 0);
    CHECK(peer_read(sv[1], buf, sizeof(buf)) == 0); /* nothing left while corked */
    CHECK(conn_out_pending(&c) == 18);
    conn_uncork(&c);
    CHECK(conn_out_pending(&c) == 0);
    ssize_t n = peer_read(sv[1], buf, sizeof(buf));
    CHECK(n == 18 && memcmp(buf, "250-one\r\n250 two\r\n", 18) == 0); /* one read: one write */

    /* a batch past half the buffer (2 KB here) goes out as it grows, in order */
    conn_cork(&c);
    char line[1000];
    memset(line, 'x', sizeof(line));
    for (int i = 0; i < 5; i++)
        CHECK(conn_write(&c, line, sizeof(line)) == 0);
    CHECK(conn_out_pending(&c) < 2048);
    size_t got = 0;
    while ((n = peer_read(sv[1], buf, sizeof(buf))) > 0)
        got += (size_t)n;
    CHECK(got >= 2000 && got < 5000);
    conn_uncork(&c);
    while ((n = peer_read(sv[1], buf, sizeof(buf))) > 0)
        got += (size_t)n;
    CHECK(got == 5000);

    /* uncorking with nothing queued, twice, does nothing */
    conn_uncork(&c);
    conn_cork(&c);
    conn_uncork(&c);
    CHECK(peer_read(sv[1], buf, sizeof(buf)) == 0);

    /* a close drops the cork with the connection */
    conn_cork(&c);
    CHECK(conn_write(&c, "bye\r\n", 5) == 0);
    conn_close(&c, true);
    CHECK(!c.corked);
    close(sv[1]);
}

static void
test_failed_write_after_last_bytes(struct ev_loop *loop)
{
    int sv[2];
    struct seen s = {0};
    struct conn c;
    pair_open(loop, &c, &s, sv);
    /* the peer says its last words and goes away before we have read them */
    CHECK(send(sv[1], "421 closing\r\n", 13, 0) == 13);
    close(sv[1]);
    CHECK(conn_write(&c, "RCPT TO:<x@y>\r\n", 15) == 0); /* EPIPE: reported from the loop */
    for (int i = 0; i < 10 && s.n < 2; i++)
        ev_run(loop, EVRUN_NOWAIT);
    CHECK(s.n >= 2);
    CHECK(s.order[0] == CONN_EV_READABLE); /* the last words first */
    CHECK(s.data_len == 13 && memcmp(s.data, "421 closing\r\n", 13) == 0);
    CHECK(s.order[s.n - 1] == CONN_EV_EOF || s.order[s.n - 1] == CONN_EV_ERROR);
    conn_close(&c, true);
}

int
main(void)
{
    signal(SIGPIPE, SIG_IGN);
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    test_cork_batches(loop);
    test_failed_write_after_last_bytes(loop);
    ev_loop_destroy(loop);
    return test_finish("test_conn");
}
