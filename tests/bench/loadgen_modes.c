/*
 * moat_loadgen's protocol dialogues: what each mode says after each line the server sends.
 * One function per mode, each a small state machine on c->pstate; a reply out of script ends
 * the connection as failed (counted, first few printed). Never blocks, never allocates.
 */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loadgen.h"

static const char SMTP_TXN[] = "MAIL FROM:<bench@sender.test>\r\nRCPT TO:<%s>\r\nDATA\r\n";

/* SMTP: the final line of a reply ("250 ..." or a bare "250"), its code; else 0. */
static int
smtp_final(const char *line)
{
    if (strlen(line) < 3 || (line[3] != ' ' && line[3] != '\0'))
        return 0;
    return atoi(line);
}

static int
imap_tagged_ok(const char *line, char tag)
{
    return line[0] == tag && !strncmp(line + 1, " OK", 3);
}

/* hold: the session is up; it counts as done but its connection stays open. */
static void
hold_ready(struct conn *c)
{
    c->pstate = 2;
    c->ok = 1;
    st.ok++;
    st.active--;
}

static void
on_handshake(struct conn *c, const char *line)
{
    int good = !strncmp(line, "* OK", 4) || !strncmp(line, "220", 3) || !strncmp(line, "+OK", 3);
    if (!good)
        warnx("greeting: %s", line);
    double lat = now() - c->t0;
    sample(lat);
    if (good && c->ssl)
        note_tls(c);
    finish(c, good);
}

static void
on_hold(struct conn *c, const char *line)
{
    int code;
    if (c->pstate == 0) {
        if (opt.user && !strncmp(line, "* OK", 4)) {
            c->pstate = 1;
            sendf(c, "a LOGIN \"%s\" \"%s\"\r\n", opt.user, opt.pass);
        } else if (opt.ehlo && smtp_final(line) == 220) {
            c->pstate = 1;
            sendf(c, "EHLO bench.test\r\n");
        } else if (!opt.user && !opt.ehlo) {
            hold_ready(c);
        } else if (!strncmp(line, "* BYE", 5) || !strncmp(line, "-ERR", 4) ||
                   smtp_final(line) >= 400) {
            warnx("greeting: %s", line);
            finish(c, 0);
        }
    } else if (c->pstate == 1) {
        if (opt.user && !strncmp(line, "a ", 2)) {
            if (strncmp(line, "a OK", 4)) {
                warnx("login: %s", line);
                finish(c, 0);
                return;
            }
            hold_ready(c);
        } else if (opt.ehlo && (code = smtp_final(line)) != 0) {
            if (code != 250) {
                warnx("ehlo: %s", line);
                finish(c, 0);
                return;
            }
            hold_ready(c);
        }
    }
}

static void
on_smtp_send(struct conn *c, const char *line)
{
    int code = smtp_final(line);
    if (code == 0)
        return;
    if (c->pstate == 0) { /* greeting */
        if (code != 220)
            goto bad;
        c->pstate = 1;
        sendf(c, "EHLO bench.test\r\n");
    } else if (c->pstate == 1) { /* EHLO */
        if (code != 250)
            goto bad;
        c->pstate = 2;
        c->reply = 0;
        sendf(c, SMTP_TXN, opt.rcpt);
    } else if (c->pstate == 2) { /* MAIL, RCPT, DATA, final dot; repeated */
        int step = c->reply++ % 4;
        if ((step < 2 && code / 100 != 2) || (step == 2 && code != 354) ||
            (step == 3 && code != 250))
            goto bad;
        if (step == 2) {
            int more = c->sent + 1 < opt.per_conn;
            char next[256];
            snprintf(next, sizeof next, SMTP_TXN, opt.rcpt);
            sendf(c,
                  "From: bench@sender.test\r\nTo: %s\r\nSubject: moat bench %d\r\n\r\n"
                  "A small message of the SMTP benchmark.\r\n.\r\n%s",
                  opt.rcpt, c->sent, more ? next : "QUIT\r\n");
        } else if (step == 3) {
            c->sent++;
            st.msgs++;
            if (c->sent >= opt.per_conn)
                c->pstate = 3;
        }
    } else if (c->pstate == 3) { /* QUIT */
        finish(c, code == 221);
    }
    return;
bad:
    warnx("smtp: unexpected reply in step %d/%d: %s", c->pstate, c->reply, line);
    finish(c, 0);
}

static void
on_imap_fetch(struct conn *c, const char *line)
{
    size_t len = strlen(line);
    if (len > 2 && line[len - 1] == '}') { /* "* 1 FETCH (BODY[] {N}" */
        const char *brace = strrchr(line, '{');
        if (brace)
            c->literal = atoll(brace + 1);
        return;
    }
    if (c->pstate == 0 && !strncmp(line, "* OK", 4)) {
        c->pstate = 1;
        sendf(c, "a LOGIN \"%s\" \"%s\"\r\n", opt.user, opt.pass);
    } else if (c->pstate == 1 && !strncmp(line, "a ", 2)) {
        if (!imap_tagged_ok(line, 'a'))
            goto bad;
        c->pstate = 2;
        sendf(c, "b SELECT INBOX\r\n");
    } else if (c->pstate == 2 && !strncmp(line, "b ", 2)) {
        if (!imap_tagged_ok(line, 'b'))
            goto bad;
        c->pstate = 3;
        st.t_first = c->t_cmd = now();
        sendf(c, "c FETCH 1 BODY.PEEK[]\r\n");
    } else if (c->pstate == 3 && !strncmp(line, "c ", 2)) {
        if (!imap_tagged_ok(line, 'c'))
            goto bad;
        st.t_last = now();
        sample(st.t_last - c->t_cmd);
        st.msgs++;
        if (++c->fetches < opt.total) {
            c->t_cmd = now();
            sendf(c, "c FETCH 1 BODY.PEEK[]\r\n");
        } else {
            c->pstate = 4;
            sendf(c, "z LOGOUT\r\n");
        }
    } else if (c->pstate == 4 && !strncmp(line, "z ", 2)) {
        finish(c, 1);
    }
    return;
bad:
    warnx("imap: %s", line);
    finish(c, 0);
}

/* imap-login: greeting, LOGIN, NOOP (the operation ends at its OK), LOGOUT. */
static void
on_imap_login(struct conn *c, const char *line)
{
    if (c->pstate == 0) {
        if (strncmp(line, "* OK", 4))
            goto bad;
        c->pstate = 1;
        sendf(c, "a LOGIN \"%s\" \"%s\"\r\n", opt.user, opt.pass);
    } else if (c->pstate == 1 && !strncmp(line, "a ", 2)) {
        if (!imap_tagged_ok(line, 'a'))
            goto bad;
        c->pstate = 2;
        sendf(c, "b NOOP\r\n");
    } else if (c->pstate == 2 && !strncmp(line, "b ", 2)) {
        if (!imap_tagged_ok(line, 'b'))
            goto bad;
        sample(now() - c->t0);
        st.msgs++;
        c->pstate = 3;
        sendf(c, "z LOGOUT\r\n");
    } else if (c->pstate == 3 && !strncmp(line, "z ", 2)) {
        finish(c, 1);
    }
    return;
bad:
    warnx("imap-login: step %d: %s", c->pstate, line);
    finish(c, 0);
}

/* The message of smtp-submit: headers, then 76-character lines up to opt.body_bytes. */
static const char *
submit_body(size_t *len_out)
{
    static char body[OUTBUF];
    static size_t len;
    if (len == 0) {
        len = (size_t)snprintf(body, sizeof body,
                               "From: %s\r\nTo: %s\r\nSubject: moat bench submission\r\n\r\n",
                               opt.user, opt.rcpt);
        const char *row = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                          "+/0123456789ab\r\n";
        size_t rl = strlen(row);
        while (len + rl + 3 < sizeof body && len + rl <= opt.body_bytes) {
            memcpy(body + len, row, rl);
            len += rl;
        }
        memcpy(body + len, ".\r\n", 3);
        len += 3;
    }
    *len_out = len;
    return body;
}

/* smtp-submit: one message per connection, lockstep: EHLO, AUTH PLAIN, MAIL, RCPT, DATA, the
 * body; the operation ends at the 250 after the final dot; then QUIT. */
static void
on_smtp_submit(struct conn *c, const char *line)
{
    static const int expect[] = {220, 250, 235, 250, 250, 354, 250, 221};
    int code = smtp_final(line);
    if (code == 0)
        return;
    if (c->pstate > 7 || code != expect[c->pstate]) {
        warnx("smtp-submit: step %d: %s", c->pstate, line);
        finish(c, 0);
        return;
    }
    switch (c->pstate++) {
    case 0:
        sendf(c, "EHLO bench.test\r\n");
        break;
    case 1: {
        char plain[512], b64[800];
        int n = snprintf(plain, sizeof plain, "%c%s%c%s", 0, opt.user, 0, opt.pass);
        EVP_EncodeBlock((unsigned char *)b64, (unsigned char *)plain, n);
        sendf(c, "AUTH PLAIN %s\r\n", b64);
        break;
    }
    case 2:
        sendf(c, "MAIL FROM:<%s>\r\n", opt.user);
        break;
    case 3:
        sendf(c, "RCPT TO:<%s>\r\n", opt.rcpt);
        break;
    case 4:
        sendf(c, "DATA\r\n");
        break;
    case 5: {
        size_t len;
        const char *body = submit_body(&len);
        send_bytes(c, body, len);
        break;
    }
    case 6:
        sample(now() - c->t0);
        st.msgs++;
        sendf(c, "QUIT\r\n");
        break;
    case 7:
        finish(c, 1);
        break;
    }
}

/* starttls: EHLO, STARTTLS, the handshake, EHLO again (the operation ends at its 250), QUIT.
 * With -P the same without STARTTLS and the handshake: EHLO, EHLO, QUIT. */
static void
on_starttls(struct conn *c, const char *line)
{
    int code = smtp_final(line);
    if (code == 0)
        return;
    if (c->pstate == 0 && code == 220) {
        c->pstate = 1;
        sendf(c, "EHLO bench.test\r\n");
    } else if (c->pstate == 1 && code == 250 && opt.no_starttls) {
        c->pstate = 4;
        sendf(c, "EHLO bench.test\r\n");
    } else if (c->pstate == 1 && code == 250) {
        c->pstate = 2;
        sendf(c, "STARTTLS\r\n");
    } else if (c->pstate == 2 && code == 220) {
        c->pstate = 3;
        tls_start(c);
    } else if (c->pstate == 4 && code == 250) {
        sample(now() - c->t0);
        st.msgs++;
        c->pstate = 5;
        sendf(c, "QUIT\r\n");
    } else if (c->pstate == 5 && code == 221) {
        finish(c, 1);
    } else {
        warnx("starttls: step %d: %s", c->pstate, line);
        finish(c, 0);
    }
}

void
on_tls_ready(struct conn *c)
{
    if (opt.mode != M_HANDSHAKE)
        note_tls(c);
    if (opt.mode == M_STARTTLS && c->pstate == 3) {
        c->pstate = 4;
        sendf(c, "EHLO bench.test\r\n");
    }
}

int
on_eof_expected(struct conn *c)
{
    switch (opt.mode) {
    case M_SMTP_SEND:
        return c->pstate == 3;
    case M_IMAP_LOGIN:
        return c->pstate == 3;
    case M_SMTP_SUBMIT:
        return c->pstate == 7;
    case M_STARTTLS:
        return c->pstate == 5;
    case M_HANDSHAKE:
    case M_HOLD:
    case M_IMAP_FETCH:
        return 0;
    }
    return 0;
}

void
on_line(struct conn *c, char *line)
{
    if (opt.verbose)
        fprintf(stderr, "<< %s\n", line);
    switch (opt.mode) {
    case M_HANDSHAKE:
        on_handshake(c, line);
        break;
    case M_HOLD:
        on_hold(c, line);
        break;
    case M_SMTP_SEND:
        on_smtp_send(c, line);
        break;
    case M_IMAP_FETCH:
        on_imap_fetch(c, line);
        break;
    case M_IMAP_LOGIN:
        on_imap_login(c, line);
        break;
    case M_SMTP_SUBMIT:
        on_smtp_submit(c, line);
        break;
    case M_STARTTLS:
        on_starttls(c, line);
        break;
    }
}
