/*
 * session_fake_backend.c: see session_fake_backend.h. Replies are written at once when the
 * socket takes them, else buffered behind a write watcher; a connection that is told to close
 * flushes first. Lines over 64 KB are dropped whole (the backend stays in sync on the next LF).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "session_fake_backend.h"

#define IN_MAX (64 * 1024)

struct fconn {
    int fd;
    ev_io rd, wr;
    char *in;
    size_t in_len;
    bool in_overflow;
    char *out;
    size_t out_len, out_cap;
    bool close_after_flush;
    bool in_data;          /* SMTP: between DATA's 354 and the final dot */
    bool auth_continue;    /* AUTH / AUTHENTICATE without an initial response */
    char tag[64];          /* IMAP: the tag of the command waiting for its continuation */
    bool idling;           /* IMAP IDLE */
    unsigned long literal; /* IMAP: literal bytes still to skip */
    struct fconn *next;
};

static struct {
    struct ev_loop *loop;
    int lfd;
    ev_io accept_w;
    struct fake_behaviour b;
    bool fail_next;
    struct fconn *conns;
} fb = {.lfd = -1};

static void fconn_close(struct fconn *c, bool reset);

static void
fconn_flush(struct fconn *c)
{
    while (c->out_len > 0) {
        ssize_t n = send(c->fd, c->out, c->out_len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n <= 0) {
            fconn_close(c, true);
            return;
        }
        memmove(c->out, c->out + n, c->out_len - (size_t)n);
        c->out_len -= (size_t)n;
    }
    if (c->out_len > 0) {
        ev_io_start(fb.loop, &c->wr);
        return;
    }
    ev_io_stop(fb.loop, &c->wr);
    if (c->close_after_flush)
        fconn_close(c, false);
}

static void
say(struct fconn *c, const char *text)
{
    size_t n = strlen(text);
    if (c->out_len + n > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 1024;
        while (cap < c->out_len + n)
            cap *= 2;
        char *p = realloc(c->out, cap);
        if (p == NULL)
            abort();
        c->out = p;
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, text, n);
    c->out_len += n;
}

static void sayf(struct fconn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
sayf(struct fconn *c, const char *fmt, ...)
{
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    say(c, line);
}

static bool
is_cmd(const char *line, size_t len, const char *word)
{
    size_t w = strlen(word);
    return len >= w && strncasecmp(line, word, w) == 0 && (len == w || line[w] == ' ');
}

static bool
take_fail(void)
{
    bool f = fb.fail_next;
    fb.fail_next = false;
    return f;
}

/* --- Postfix --- */

static void
smtp_line(struct fconn *c, const char *line, size_t len)
{
    if (c->in_data) {
        if (len == 1 && line[0] == '.') {
            c->in_data = false;
            say(c, take_fail() ? "451 4.3.0 Error: queue file write error\r\n"
                               : "250 2.0.0 Ok: queued as FAKE1\r\n");
        }
        return;
    }
    if (c->auth_continue) {
        c->auth_continue = false;
        say(c, fb.b.reject_login ? "535 5.7.8 Error: authentication failed\r\n"
                                 : "235 2.7.0 Authentication successful\r\n");
        return;
    }
    if (take_fail()) {
        say(c, "451 4.3.5 Server configuration problem\r\n");
        return;
    }
    if (is_cmd(line, len, "EHLO")) {
        say(c, "250-fake.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-VRFY\r\n"
               "250-ETRN\r\n250-AUTH PLAIN LOGIN\r\n"
               "250-XCLIENT NAME ADDR PROTO HELO REVERSE_NAME PORT LOGIN DESTADDR DESTPORT\r\n"
               "250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n250 SMTPUTF8\r\n");
    } else if (is_cmd(line, len, "HELO")) {
        say(c, "250 fake.test\r\n");
    } else if (is_cmd(line, len, "XCLIENT")) {
        say(c, "220 fake.test ESMTP Postfix\r\n");
    } else if (is_cmd(line, len, "AUTH")) {
        const char *sp = len > 5 ? memchr(line + 5, ' ', len - 5) : NULL;
        if (sp == NULL) {
            c->auth_continue = true;
            say(c, "334 \r\n");
        } else {
            say(c, fb.b.reject_login ? "535 5.7.8 Error: authentication failed\r\n"
                                     : "235 2.7.0 Authentication successful\r\n");
        }
    } else if (is_cmd(line, len, "MAIL") || is_cmd(line, len, "RSET") ||
               is_cmd(line, len, "NOOP")) {
        say(c, "250 2.1.0 Ok\r\n");
    } else if (is_cmd(line, len, "RCPT")) {
        if (len > 9 && memmem(line, len, "reject", 6) != NULL)
            say(c, "550 5.1.1 <x>: Recipient address rejected: User unknown\r\n");
        else
            say(c, "250 2.1.5 Ok\r\n");
    } else if (is_cmd(line, len, "DATA")) {
        c->in_data = true;
        say(c, "354 End data with <CR><LF>.<CR><LF>\r\n");
    } else if (is_cmd(line, len, "BDAT")) {
        say(c, "250 2.0.0 Ok\r\n");
    } else if (is_cmd(line, len, "VRFY")) {
        say(c, "252 2.0.0 x\r\n");
    } else if (is_cmd(line, len, "QUIT")) {
        say(c, "221 2.0.0 Bye\r\n");
        c->close_after_flush = true;
    } else {
        say(c, "502 5.5.2 Error: command not recognized\r\n");
    }
}

/* --- Dovecot IMAP --- */

/* A line ending in {n} or {n+}: the literal that follows. */
static void
imap_literal(struct fconn *c, const char *line, size_t len)
{
    if (len < 3 || line[len - 1] != '}')
        return;
    size_t i = len - 1;
    bool nonsync = false;
    if (i > 0 && line[i - 1] == '+') {
        nonsync = true;
        i--;
    }
    size_t end = i;
    while (i > 0 && line[i - 1] >= '0' && line[i - 1] <= '9')
        i--;
    if (i == 0 || line[i - 1] != '{' || i == end || end - i > 9)
        return;
    c->literal = strtoul(line + i, NULL, 10);
    if (!nonsync)
        say(c, "+ OK\r\n");
}

static void
imap_line(struct fconn *c, const char *line, size_t len)
{
    if (c->idling) {
        if (len == 4 && strncasecmp(line, "DONE", 4) == 0) {
            c->idling = false;
            sayf(c, "%s OK Idle completed.\r\n", c->tag);
        }
        return;
    }
    if (c->auth_continue) {
        c->auth_continue = false;
        if (fb.b.reject_login)
            sayf(c, "%s NO [AUTHENTICATIONFAILED] Authentication failed.\r\n", c->tag);
        else
            sayf(c, "%s OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n", c->tag);
        return;
    }
    const char *sp = memchr(line, ' ', len);
    if (sp == NULL || sp == line || (size_t)(sp - line) >= sizeof(c->tag)) {
        say(c, "* BAD Error in IMAP command received by server.\r\n");
        imap_literal(c, line, len);
        return;
    }
    size_t tl = (size_t)(sp - line);
    memcpy(c->tag, line, tl);
    c->tag[tl] = '\0';
    const char *cmd = sp + 1;
    size_t clen = len - tl - 1;
    if (take_fail()) {
        sayf(c, "%s NO [UNAVAILABLE] Temporary failure\r\n", c->tag);
    } else if (is_cmd(cmd, clen, "ID")) {
        sayf(c, "* ID (\"name\" \"Dovecot\")\r\n%s OK ID completed.\r\n", c->tag);
    } else if (is_cmd(cmd, clen, "AUTHENTICATE")) {
        const char *sp2 = clen > 13 ? memchr(cmd + 13, ' ', clen - 13) : NULL;
        if (sp2 == NULL) {
            c->auth_continue = true;
            say(c, "+ \r\n");
        } else if (fb.b.reject_login) {
            sayf(c, "%s NO [AUTHENTICATIONFAILED] Authentication failed.\r\n", c->tag);
        } else {
            sayf(c, "%s OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n", c->tag);
        }
    } else if (is_cmd(cmd, clen, "LOGIN")) {
        if (fb.b.reject_login)
            sayf(c, "%s NO [AUTHENTICATIONFAILED] Authentication failed.\r\n", c->tag);
        else
            sayf(c, "%s OK Logged in\r\n", c->tag);
    } else if (is_cmd(cmd, clen, "SELECT") || is_cmd(cmd, clen, "EXAMINE")) {
        sayf(c, "* FLAGS (\\Seen)\r\n* 1 EXISTS\r\n* 0 RECENT\r\n%s OK [READ-WRITE] Done.\r\n",
             c->tag);
    } else if (is_cmd(cmd, clen, "FETCH") || is_cmd(cmd, clen, "UID")) {
        sayf(c, "* 1 FETCH (UID 1 BODY[] {7}\r\nhello\r\n)\r\n%s OK Fetch completed.\r\n", c->tag);
    } else if (is_cmd(cmd, clen, "CAPABILITY")) {
        sayf(c, "* CAPABILITY IMAP4rev1 IDLE\r\n%s OK Capability completed.\r\n", c->tag);
    } else if (is_cmd(cmd, clen, "IDLE")) {
        c->idling = true;
        say(c, "+ idling\r\n");
    } else if (is_cmd(cmd, clen, "LOGOUT")) {
        sayf(c, "* BYE Logging out\r\n%s OK Logout completed.\r\n", c->tag);
        c->close_after_flush = true;
    } else {
        sayf(c, "%s OK Completed.\r\n", c->tag);
    }
    imap_literal(c, line, len);
}

/* --- Dovecot POP3 --- */

static void
pop3_line(struct fconn *c, const char *line, size_t len)
{
    if (c->auth_continue) {
        c->auth_continue = false;
        say(c, fb.b.reject_login ? "-ERR [AUTH] Authentication failed.\r\n" : "+OK Logged in.\r\n");
        return;
    }
    if (take_fail()) {
        say(c, "-ERR [SYS/TEMP] Temporary failure\r\n");
    } else if (is_cmd(line, len, "XCLIENT")) {
        say(c, "+OK Updated\r\n");
    } else if (is_cmd(line, len, "AUTH")) {
        const char *sp = len > 5 ? memchr(line + 5, ' ', len - 5) : NULL;
        if (sp == NULL) {
            c->auth_continue = true;
            say(c, "+ \r\n");
        } else {
            say(c, fb.b.reject_login ? "-ERR [AUTH] Authentication failed.\r\n"
                                     : "+OK Logged in.\r\n");
        }
    } else if (is_cmd(line, len, "USER")) {
        say(c, "+OK\r\n");
    } else if (is_cmd(line, len, "PASS")) {
        say(c, fb.b.reject_login ? "-ERR [AUTH] Authentication failed.\r\n" : "+OK Logged in.\r\n");
    } else if (is_cmd(line, len, "STAT")) {
        say(c, "+OK 1 7\r\n");
    } else if (is_cmd(line, len, "LIST")) {
        say(c, "+OK 1 messages:\r\n1 7\r\n.\r\n");
    } else if (is_cmd(line, len, "UIDL")) {
        say(c, "+OK\r\n1 abc\r\n.\r\n");
    } else if (is_cmd(line, len, "RETR") || is_cmd(line, len, "TOP")) {
        say(c, "+OK 7 octets\r\nhello\r\n..dot\r\n.\r\n");
    } else if (is_cmd(line, len, "CAPA")) {
        say(c, "+OK\r\nTOP\r\nUIDL\r\nUSER\r\nSASL PLAIN\r\n.\r\n");
    } else if (is_cmd(line, len, "QUIT")) {
        say(c, "+OK Logging out.\r\n");
        c->close_after_flush = true;
    } else if (is_cmd(line, len, "DELE") || is_cmd(line, len, "NOOP") ||
               is_cmd(line, len, "RSET")) {
        say(c, "+OK\r\n");
    } else {
        say(c, "-ERR Unknown command.\r\n");
    }
}

static void
fconn_line(struct fconn *c, const char *line, size_t len)
{
    if (len > 0 && line[len - 1] == '\r')
        len--;
    switch (fb.b.proto) {
    case FAKE_SMTP:
        smtp_line(c, line, len);
        return;
    case FAKE_IMAP:
        imap_line(c, line, len);
        return;
    case FAKE_POP3:
        pop3_line(c, line, len);
        return;
    }
}

/* Take every complete line in c->in (skipping IMAP literals). */
static void
fconn_parse(struct fconn *c)
{
    size_t off = 0;
    while (off < c->in_len && !c->close_after_flush) {
        if (c->literal > 0) {
            size_t skip = c->in_len - off < c->literal ? c->in_len - off : c->literal;
            off += skip;
            c->literal -= skip;
            continue;
        }
        const char *lf = memchr(c->in + off, '\n', c->in_len - off);
        if (lf == NULL)
            break;
        size_t len = (size_t)(lf - (c->in + off));
        if (c->in_overflow)
            c->in_overflow = false;
        else
            fconn_line(c, c->in + off, len);
        off += len + 1;
    }
    if (c->close_after_flush)
        off = c->in_len;
    memmove(c->in, c->in + off, c->in_len - off);
    c->in_len -= off;
    if (c->in_len == IN_MAX) {
        c->in_overflow = true;
        c->in_len = 0;
    }
}

static void
on_read(struct ev_loop *loop, ev_io *w, int revents)
{
    struct fconn *c = w->data;
    ssize_t n = recv(c->fd, c->in + c->in_len, IN_MAX - c->in_len, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n <= 0) {
        fconn_close(c, true); /* moat closed first: a reset spares its socket the TIME_WAIT */
        return;
    }
    c->in_len += (size_t)n;
    fconn_parse(c);
    fconn_flush(c);
}

static void
on_write(struct ev_loop *loop, ev_io *w, int revents)
{
    fconn_flush(w->data);
}

static void
fconn_close(struct fconn *c, bool reset)
{
    if (reset) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    }
    for (struct fconn **pp = &fb.conns; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    }
    ev_io_stop(fb.loop, &c->rd);
    ev_io_stop(fb.loop, &c->wr);
    close(c->fd);
    free(c->in);
    free(c->out);
    free(c);
}

static void
on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
    int fd = accept4(fb.lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return;
    if (fb.b.close_on_accept) {
        close(fd);
        return;
    }
    struct fconn *c = calloc(1, sizeof(*c));
    if (c == NULL || (c->in = malloc(IN_MAX)) == NULL)
        abort();
    c->fd = fd;
    ev_io_init(&c->rd, on_read, fd, EV_READ);
    ev_io_init(&c->wr, on_write, fd, EV_WRITE);
    c->rd.data = c->wr.data = c;
    ev_io_start(loop, &c->rd);
    c->next = fb.conns;
    fb.conns = c;
    static const char *const hello[3][2] = {
        {"220 fake.test ESMTP Postfix\r\n", "421 4.3.2 Service shutting down\r\n"},
        {"* OK [CAPABILITY IMAP4rev1 ID AUTH=PLAIN] Dovecot ready.\r\n", "* BYE Shutting down\r\n"},
        {"+OK Dovecot ready.\r\n", "-ERR [SYS/TEMP] Shutting down\r\n"},
    };
    say(c, hello[fb.b.proto][fb.b.refuse_greeting ? 1 : 0]);
    c->close_after_flush = fb.b.refuse_greeting;
    fconn_flush(c);
}

unsigned
fake_backend_start(struct ev_loop *loop)
{
    fb.loop = loop;
    fb.lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fb.lfd < 0)
        return 0;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    if (bind(fb.lfd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(fb.lfd, 64) != 0 ||
        getsockname(fb.lfd, (struct sockaddr *)&a, &alen) != 0) {
        close(fb.lfd);
        fb.lfd = -1;
        return 0;
    }
    ev_io_init(&fb.accept_w, on_accept, fb.lfd, EV_READ);
    ev_io_start(loop, &fb.accept_w);
    return ntohs(a.sin_port);
}

void
fake_backend_set(const struct fake_behaviour *b)
{
    fb.b = *b;
    fb.fail_next = false;
}

void
fake_backend_fail_next(void)
{
    fb.fail_next = true;
}

void
fake_backend_close_all(bool reset)
{
    while (fb.conns != NULL)
        fconn_close(fb.conns, reset);
}

void
fake_backend_inject(bool long_line)
{
    static char junk[9001];
    if (junk[0] == '\0')
        memset(junk, 'x', sizeof(junk) - 1);
    for (struct fconn *c = fb.conns; c != NULL; c = c->next) {
        say(c, long_line ? junk : "junk the client did not ask for\r\n");
        fconn_flush(c);
        break; /* one connection at most: the list may change under fconn_flush */
    }
}

static bool
fd_readable(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, 0) == 1;
}

bool
fake_backend_quiet(void)
{
    if (fb.lfd >= 0 && fd_readable(fb.lfd))
        return false;
    for (struct fconn *c = fb.conns; c != NULL; c = c->next) {
        if (c->out_len > 0 || fd_readable(c->fd))
            return false;
    }
    return true;
}

unsigned
fake_backend_conns(void)
{
    unsigned n = 0;
    for (struct fconn *c = fb.conns; c != NULL; c = c->next)
        n++;
    return n;
}

void
fake_backend_stop(void)
{
    fake_backend_close_all(true);
    if (fb.lfd >= 0) {
        ev_io_stop(fb.loop, &fb.accept_w);
        close(fb.lfd);
        fb.lfd = -1;
    }
}
