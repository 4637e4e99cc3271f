/*
 * backendcheck_proto.c: the backend check's dialogues: SMTP (greeting, EHLO, a relay attempt
 * from moat's own address, XCLIENT or PROXY as a TEST-NET client and a relay attempt as that
 * client, XCLIENT/PROXY with an IPv6 client), IMAP (greeting, CAPABILITY, ID) and POP3
 * (greeting, CAPA, XCLIENT). The hand-off lines come from identity.h and proxy_proto.h, the
 * same bytes moat sends. Never completes a delivery: MAIL and RCPT at most, then RSET and QUIT.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "backendcheck_int.h"
#include "identity.h"
#include "smtp_parse.h"

#define BC_REPLY_LINES_MAX 200 /* lines of one reply (EHLO, CAPA) before giving up */

static const char *const ipv6_fix =
    "every IPv6 client of moat would get \"421 backend not ready\". Fix: inet_protocols = all in "
    "Postfix's main.cf (or -o inet_protocols=all on this service), or keep moat's listeners "
    "IPv4-only";

/* Copy a NUL-terminated string, cut to fit cap. */
static void
text_copy(char *out, size_t cap, const char *in)
{
    size_t n = strnlen(in, cap - 1);
    memcpy(out, in, n);
    out[n] = '\0';
}

static bool
is_proxy(const struct config_backend *b)
{
    return b->identity == IDENT_PROXY_V1 || b->identity == IDENT_PROXY_V2;
}

/* Is word one of the space-separated tokens of list (case-insensitive)? */
static bool
has_token(const char *list, const char *word)
{
    size_t k = strlen(word);
    for (const char *p = list; *p != '\0'; p++) {
        if ((p == list || p[-1] == ' ') && strncasecmp(p, word, k) == 0 &&
            (p[k] == ' ' || p[k] == '\0'))
            return true;
    }
    return false;
}

static void
report_auth(struct bc_target *t, const struct bc_family *f, const char *mechs, const char *hint)
{
    if (has_token(mechs, "PLAIN"))
        bc_report(t, "auth", BCHECK_OK, "mechanisms offered: %s", mechs);
    else if (f->plain_needed)
        bc_report(t, "auth", BCHECK_FAIL,
                  "moat replays the logins of listener %s as PLAIN, but the backend offers: %s%s",
                  f->listener->name, mechs[0] ? mechs : "none", hint);
    else
        bc_report(t, "auth", BCHECK_OK, "mechanisms offered: %s (not used by moat)",
                  mechs[0] ? mechs : "none");
}

/* --- SMTP --- */

struct smtp_reply {
    int code;
    char text[BC_TEXT_MAX]; /* the first line */
    bool xclient;           /* EHLO: XCLIENT offered */
    char auth[BC_TEXT_MAX]; /* EHLO: the AUTH mechanisms */
};

static int
smtp_read(struct bc_link *k, struct smtp_reply *r)
{
    memset(r, 0, sizeof(*r));
    char line[BC_LINE_MAX];
    for (int i = 0; i < BC_REPLY_LINES_MAX; i++) {
        int n = bc_line(k, line, sizeof(line));
        if (n < 0)
            return -1;
        bool last = false;
        if (smtp_reply_line(line, (size_t)n, &r->code, &last) != SMTP_PARSE_OK) {
            k->error = "not an SMTP reply";
            return -1;
        }
        if (i == 0)
            text_copy(r->text, sizeof(r->text), line);
        const char *kw = n > 4 ? line + 4 : "";
        if (strncasecmp(kw, "XCLIENT", 7) == 0 && (kw[7] == ' ' || kw[7] == '\0'))
            r->xclient = true;
        if (strncasecmp(kw, "AUTH", 4) == 0 && (kw[4] == ' ' || kw[4] == '='))
            text_copy(r->auth, sizeof(r->auth), kw + 5);
        if (last)
            return 0;
    }
    k->error = "too many reply lines";
    return -1;
}

static int
smtp_command(struct bc_link *k, struct smtp_reply *r, const char *line)
{
    memset(r, 0, sizeof(*r));
    if (bc_send(k, "%s\r\n", line) != 0)
        return -1;
    return smtp_read(k, r);
}

enum relay_outcome { RELAY_REFUSED = 0, RELAY_ACCEPTED, RELAY_UNCLEAR };

/* MAIL FROM:<> and a RCPT to an outside domain, then RSET. text: the deciding reply. */
static enum relay_outcome
smtp_try_relay(struct bc_link *k, char *text, size_t cap)
{
    struct smtp_reply r;
    if (smtp_command(k, &r, "MAIL FROM:<>") != 0 || r.code / 100 != 2) {
        snprintf(text, cap, "MAIL FROM:<> got %.400s", r.code ? r.text : bc_error(k));
        return RELAY_UNCLEAR;
    }
    if (smtp_command(k, &r, "RCPT TO:<" BC_RELAY_RCPT ">") != 0) {
        snprintf(text, cap, "RCPT TO got %.400s", bc_error(k));
        return RELAY_UNCLEAR;
    }
    text_copy(text, cap, r.text);
    enum relay_outcome o = RELAY_UNCLEAR;
    if (r.code / 100 == 2)
        o = RELAY_ACCEPTED;
    else if (strstr(r.text, "5.7.1") != NULL || strcasestr(r.text, "relay") != NULL)
        o = RELAY_REFUSED;
    (void)smtp_command(k, &r, "RSET");
    return o;
}

/* Without any hand-off, from moat's own address: does the backend relay? */
static void
smtp_check_moat_trust(struct bc_target *t, struct bc_link *k, const struct bc_family *f)
{
    char text[BC_TEXT_MAX];
    enum relay_outcome o = smtp_try_relay(k, text, sizeof(text));
    if (o == RELAY_REFUSED) {
        bc_report(t, "relay_for_moat", BCHECK_OK,
                  "the backend does not relay for moat's own address %s (%s)", k->local, text);
    } else if (o == RELAY_UNCLEAR) {
        bc_report(t, "relay_for_moat", BCHECK_WARN, "inconclusive: %s", text);
    } else if (t->backend->identity == IDENT_NONE && f->unauthenticated_handoff) {
        bc_report(t, "relay_for_moat", BCHECK_FAIL,
                  "the backend relays for moat's own address %s (RCPT to an outside domain: %s) "
                  "and listener %s hands it unauthenticated clients without XCLIENT: they all "
                  "look like moat to it. Use identity = xclient, or take %s out of mynetworks",
                  k->local, text, f->listener->name, k->local);
    } else {
        bc_report(t, "relay_for_moat", BCHECK_WARN,
                  "the backend relays for moat's own address %s (RCPT to an outside domain: %s): "
                  "it trusts moat (mynetworks). moat must never let an unauthenticated client "
                  "reach it without XCLIENT: no listener with identity = none, nothing else on "
                  "that address",
                  k->local, text);
    }
}

/* Connect (PROXY header of family af first) and read the 220 greeting. */
static int
smtp_start(struct bc_target *t, struct bc_link *k, const struct bc_family *f, int af, bool first)
{
    struct smtp_reply r;
    if (bc_open(t, k, f, af, first) != 0)
        return -1;
    if (smtp_read(k, &r) == 0 && r.code == 220) {
        if (first)
            bc_report(t, "greeting", BCHECK_OK, "%s", r.text);
        return 0;
    }
    if (first && is_proxy(t->backend))
        bc_report(t, "greeting", BCHECK_FAIL,
                  "no 220 after the PROXY header (%s): does the backend expect one? (Postfix: "
                  "smtpd_upstream_proxy_protocol = haproxy)",
                  r.code ? r.text : bc_error(k));
    else if (first)
        bc_report(t, "greeting", BCHECK_FAIL, "no 220 greeting: %s", r.code ? r.text : bc_error(k));
    else
        bc_keep_error(k, r.code ? r.text : bc_error(k));
    bc_close(k);
    return -1;
}

/* XCLIENT for the TEST-NET client at addr, as moat builds it; the reply in r. */
static int
smtp_xclient(struct bc_link *k, struct smtp_reply *r, const char *addr)
{
    bool v6 = strchr(addr, ':') != NULL;
    char helo[64], port[16];
    snprintf(helo, sizeof(helo), v6 ? "[IPv6:%s]" : "[%s]", addr);
    snprintf(port, sizeof(port), "%u", BC_CLIENT_PORT);
    struct identity_xclient x = {.helo = helo,
                                 .proto = "ESMTP",
                                 .addr = addr,
                                 .port = port,
                                 .name = "[UNAVAILABLE]",
                                 .destaddr = v6 ? "2001:db8::2" : "192.0.2.2",
                                 .destport = "25"};
    char line[IDENTITY_XCLIENT_LINE_MAX + 1];
    memset(r, 0, sizeof(*r));
    if (identity_smtp_xclient(&x, XCLIENT_PART_ALL, line, sizeof(line)) < 0) {
        k->error = "XCLIENT line too long";
        return -1;
    }
    return smtp_command(k, r, line);
}

/* After the hand-off, as the TEST-NET client: a relay attempt must be refused. */
static void
smtp_check_honoured(struct bc_target *t, struct bc_link *k, const char *how)
{
    char text[BC_TEXT_MAX];
    enum relay_outcome o = smtp_try_relay(k, text, sizeof(text));
    if (o == RELAY_REFUSED)
        bc_report(t, "honoured", BCHECK_OK,
                  "a relay attempt as the TEST-NET client %s was refused (%s)", BC_CLIENT_V4, text);
    else if (o == RELAY_UNCLEAR)
        bc_report(t, "honoured", BCHECK_WARN, "inconclusive: %s", text);
    else
        bc_report(t, "honoured", BCHECK_FAIL,
                  "%s accepted but not honoured: a relay attempt as the TEST-NET client %s was "
                  "accepted (%s): the backend relays for the clients moat hands it. Check "
                  "mynetworks and smtpd_relay_restrictions",
                  how, BC_CLIENT_V4, text);
}

/* XCLIENT hand-off: offered to moat, accepted, honoured. Returns 0 when it was accepted. */
static int
smtp_check_xclient(struct bc_target *t, struct bc_link *k, const struct smtp_reply *ehlo,
                   struct smtp_reply *after)
{
    if (!ehlo->xclient) {
        bc_report(t, "identity", BCHECK_FAIL,
                  "XCLIENT is not offered to moat's address %s: moat would answer every client "
                  "\"421 backend not ready\". Postfix: smtpd_authorized_xclient_hosts = %s",
                  k->local, k->local);
        return -1;
    }
    struct smtp_reply r;
    if (smtp_xclient(k, &r, BC_CLIENT_V4) != 0 || r.code != 220) {
        bc_report(t, "identity", BCHECK_FAIL, "XCLIENT ADDR=%s refused: %s", BC_CLIENT_V4,
                  r.code ? r.text : bc_error(k));
        return -1;
    }
    bc_report(t, "identity", BCHECK_OK, "XCLIENT ADDR=%s accepted (%s)", BC_CLIENT_V4, r.text);
    if (smtp_command(k, after, "EHLO [" BC_CLIENT_V4 "]") != 0 || after->code != 250) {
        bc_report(t, "honoured", BCHECK_WARN, "EHLO after XCLIENT got %s",
                  after->code ? after->text : bc_error(k));
        return -1;
    }
    smtp_check_honoured(t, k, "XCLIENT");
    return 0;
}

/* A second connection for an IPv6 client: XCLIENT ADDR=IPV6:..., or a PROXY header. */
static void
smtp_check_ipv6(struct bc_target *t, const struct bc_family *f, const char *ehlo)
{
    struct bc_link k;
    struct smtp_reply r;
    bool proxy = is_proxy(t->backend);
    if (smtp_start(t, &k, f, AF_INET6, false) != 0) {
        bc_report(t, "ipv6", BCHECK_WARN, "%s for the IPv6 client %s (%s): %s",
                  proxy ? "no 220 after a PROXY header" : "no greeting", BC_CLIENT_V6, bc_error(&k),
                  ipv6_fix);
        return;
    }
    if (proxy) {
        bc_report(t, "ipv6", BCHECK_OK, "a PROXY header for the IPv6 client %s was accepted",
                  BC_CLIENT_V6);
    } else if (smtp_command(&k, &r, ehlo) != 0 || smtp_xclient(&k, &r, BC_CLIENT_V6) != 0 ||
               r.code != 220) {
        bc_report(t, "ipv6", BCHECK_WARN, "XCLIENT ADDR=IPV6:%s refused (%s): %s", BC_CLIENT_V6,
                  r.code ? r.text : bc_error(&k), ipv6_fix);
    } else {
        bc_report(t, "ipv6", BCHECK_OK, "XCLIENT ADDR=IPV6:%s accepted", BC_CLIENT_V6);
    }
    (void)bc_send(&k, "QUIT\r\n");
    bc_close(&k);
}

void
bc_check_smtp(struct bc_target *t, const struct bc_family *f)
{
    const struct config_backend *b = t->backend;
    struct bc_link k;
    if (smtp_start(t, &k, f, AF_INET, true) != 0)
        return;
    struct smtp_reply ehlo, after;
    char line[300];
    snprintf(line, sizeof(line), "EHLO %s", b->helo_name ? b->helo_name : t->conf->hostname);
    if (smtp_command(&k, &ehlo, line) != 0 || ehlo.code != 250) {
        bc_report(t, "greeting", BCHECK_FAIL, "%s refused: %s", line,
                  ehlo.code ? ehlo.text : bc_error(&k));
        bc_close(&k);
        return;
    }
    const char *mechs = ehlo.auth;
    bool v6 = false;
    if (is_proxy(b)) {
        bc_report(t, "identity", BCHECK_OK, "%s header accepted (client %s)",
                  backend_identity_name(b->identity), BC_CLIENT_V4);
        smtp_check_honoured(t, &k, "the PROXY header");
        v6 = true;
    } else {
        smtp_check_moat_trust(t, &k, f);
        if (b->identity == IDENT_XCLIENT) {
            v6 = smtp_check_xclient(t, &k, &ehlo, &after) == 0;
            mechs = v6 ? after.auth : mechs;
        } else {
            bc_report(t, "identity", BCHECK_OK,
                      "identity = %s: the backend sees every client as moat's address %s",
                      backend_identity_name(b->identity), k.local);
        }
    }
    report_auth(t, f, mechs, "");
    (void)bc_send(&k, "QUIT\r\n");
    bc_close(&k);
    if (v6)
        smtp_check_ipv6(t, f, line);
}

/* --- IMAP --- */

/* Lines up to the tagged reply; "* CAPABILITY" text goes to caps. 'O', 'N', 'B', or -1. */
static int
imap_tagged(struct bc_link *k, const char *tag, char *caps, size_t cap, char *text, size_t tcap)
{
    char line[BC_LINE_MAX];
    size_t tl = strlen(tag);
    for (int i = 0; i < BC_REPLY_LINES_MAX; i++) {
        int n = bc_line(k, line, sizeof(line));
        if (n < 0)
            return -1;
        if (strncasecmp(line, "* CAPABILITY ", 13) == 0)
            text_copy(caps, cap, line + 13);
        if ((size_t)n > tl + 1 && strncmp(line, tag, tl) == 0 && line[tl] == ' ') {
            text_copy(text, tcap, line);
            return line[tl + 1];
        }
    }
    k->error = "too many reply lines";
    return -1;
}

/* "AUTH=PLAIN AUTH=LOGIN" in caps to "PLAIN LOGIN". */
static void
imap_mechs(const char *caps, char *out, size_t cap)
{
    size_t len = 0;
    out[0] = '\0';
    for (const char *p = caps; *p != '\0' && len + 1 < cap; p++) {
        if ((p != caps && p[-1] != ' ') || strncasecmp(p, "AUTH=", 5) != 0)
            continue;
        p += 5;
        size_t n = strcspn(p, " ]");
        int w = snprintf(out + len, cap - len, "%s%.*s", len ? " " : "", (int)n, p);
        if (w < 0 || (size_t)w >= cap - len)
            break;
        len += (size_t)w;
    }
}

static int
imap_start(struct bc_target *t, struct bc_link *k, const struct bc_family *f, int af, bool first,
           char *caps, size_t cap)
{
    char line[BC_LINE_MAX];
    if (bc_open(t, k, f, af, first) != 0)
        return -1;
    int n = bc_line(k, line, sizeof(line));
    if (n >= 4 && strncasecmp(line, "* OK", 4) == 0) {
        if (first)
            bc_report(t, "greeting", BCHECK_OK, "%s", line);
        const char *c = strstr(line, "[CAPABILITY ");
        if (c != NULL)
            snprintf(caps, cap, "%.*s", (int)strcspn(c + 12, "]"), c + 12);
        return 0;
    }
    if (first)
        bc_report(t, "greeting", BCHECK_FAIL, "no \"* OK\" greeting: %s",
                  n >= 0 ? line : bc_error(k));
    else
        bc_keep_error(k, n >= 0 ? line : bc_error(k));
    bc_close(k);
    return -1;
}

static int
imap_send_id(struct bc_link *k, const char *addr, char *text, size_t cap)
{
    struct identity_client c = {addr, BC_CLIENT_PORT,
                                strchr(addr, ':') ? "2001:db8::2" : "192.0.2.2", 993, BC_SESSION};
    char line[IDENTITY_LINE_MAX], caps[BC_TEXT_MAX];
    int n = identity_imap_id("c2", &c, line, sizeof(line));
    if (n < 0 || bc_send_raw(k, line, (size_t)n) != 0)
        return -1;
    return imap_tagged(k, "c2", caps, sizeof(caps), text, cap);
}

static void
imap_check_ipv6(struct bc_target *t, const struct bc_family *f)
{
    struct bc_link k;
    char caps[BC_TEXT_MAX] = "", text[BC_TEXT_MAX] = "";
    bool proxy = is_proxy(t->backend);
    if (imap_start(t, &k, f, AF_INET6, false, caps, sizeof(caps)) != 0) {
        bc_report(t, "ipv6", BCHECK_WARN, "no greeting for the IPv6 client %s: %s", BC_CLIENT_V6,
                  bc_error(&k));
        return;
    }
    int r = proxy ? 'O' : imap_send_id(&k, BC_CLIENT_V6, text, sizeof(text));
    if (r == 'O')
        bc_report(t, "ipv6", BCHECK_OK, "%s for the IPv6 client %s accepted",
                  proxy ? "a PROXY header" : "ID", BC_CLIENT_V6);
    else
        bc_report(t, "ipv6", BCHECK_WARN, "ID for the IPv6 client %s refused: %s", BC_CLIENT_V6,
                  r > 0 ? text : bc_error(&k));
    (void)bc_send(&k, "c9 LOGOUT\r\n");
    bc_close(&k);
}

void
bc_check_imap(struct bc_target *t, const struct bc_family *f)
{
    struct bc_link k;
    char caps[BC_TEXT_MAX] = "", text[BC_TEXT_MAX] = "", mechs[BC_TEXT_MAX];
    if (imap_start(t, &k, f, AF_INET, true, caps, sizeof(caps)) != 0)
        return;
    if (caps[0] == '\0' && (bc_send(&k, "c1 CAPABILITY\r\n") != 0 ||
                            imap_tagged(&k, "c1", caps, sizeof(caps), text, sizeof(text)) != 'O'))
        bc_report(t, "greeting", BCHECK_WARN, "CAPABILITY failed: %s",
                  text[0] ? text : bc_error(&k));
    enum backend_identity id = t->backend->identity;
    bool v6 = is_proxy(t->backend);
    if (v6) {
        bc_report(t, "identity", BCHECK_OK, "%s header accepted (client %s)",
                  backend_identity_name(id), BC_CLIENT_V4);
    } else if (id == IDENT_ID && !has_token(caps, "ID")) {
        bc_report(t, "identity", BCHECK_FAIL, "the backend does not offer ID (capabilities: %s)",
                  caps);
    } else if (id == IDENT_ID) {
        int r = imap_send_id(&k, BC_CLIENT_V4, text, sizeof(text));
        v6 = r == 'O';
        bc_report(t, "identity", v6 ? BCHECK_OK : BCHECK_FAIL,
                  "ID with x-originating-ip %s %s: %s%s", BC_CLIENT_V4, v6 ? "accepted" : "refused",
                  r > 0 ? text : bc_error(&k),
                  v6 ? " (Dovecot uses it when moat's address is in login_trusted_networks)" : "");
    } else {
        bc_report(t, "identity", BCHECK_OK,
                  "identity = %s: the backend sees every client as moat's address %s",
                  backend_identity_name(id), k.local);
    }
    imap_mechs(caps, mechs, sizeof(mechs));
    report_auth(t, f, mechs,
                has_token(caps, "LOGINDISABLED")
                    ? " (LOGINDISABLED: Dovecot wants TLS or login_trusted_networks)"
                    : "");
    (void)bc_send(&k, "c9 LOGOUT\r\n");
    bc_close(&k);
    if (v6)
        imap_check_ipv6(t, f);
}

/* --- POP3 --- */

static int
pop3_start(struct bc_target *t, struct bc_link *k, const struct bc_family *f, int af, bool first,
           char *greeting, size_t cap)
{
    if (bc_open(t, k, f, af, first) != 0)
        return -1;
    int n = bc_line(k, greeting, cap);
    if (n >= 3 && strncmp(greeting, "+OK", 3) == 0) {
        if (first)
            bc_report(t, "greeting", BCHECK_OK, "%s", greeting);
        return 0;
    }
    if (first)
        bc_report(t, "greeting", BCHECK_FAIL, "no +OK greeting: %s",
                  n >= 0 ? greeting : bc_error(k));
    else
        bc_keep_error(k, n >= 0 ? greeting : bc_error(k));
    bc_close(k);
    return -1;
}

/* CAPA: the SASL mechanisms into mechs. */
static int
pop3_capa(struct bc_link *k, char *mechs, size_t cap)
{
    char line[BC_LINE_MAX];
    mechs[0] = '\0';
    if (bc_send(k, "CAPA\r\n") != 0 || bc_line(k, line, sizeof(line)) < 0)
        return -1;
    if (strncmp(line, "+OK", 3) != 0)
        return -1;
    for (int i = 0; i < BC_REPLY_LINES_MAX; i++) {
        if (bc_line(k, line, sizeof(line)) < 0)
            return -1;
        if (strcmp(line, ".") == 0)
            return 0;
        if (strncasecmp(line, "SASL ", 5) == 0)
            text_copy(mechs, cap, line + 5);
    }
    return -1;
}

static int
pop3_xclient(struct bc_link *k, const char *addr, char *reply, size_t cap)
{
    struct identity_client c = {addr, BC_CLIENT_PORT,
                                strchr(addr, ':') ? "2001:db8::2" : "192.0.2.2", 110, BC_SESSION};
    char line[IDENTITY_LINE_MAX];
    int n = identity_pop3_xclient(&c, line, sizeof(line));
    if (n < 0 || bc_send_raw(k, line, (size_t)n) != 0 || bc_line(k, reply, cap) < 0)
        return -1;
    return strncmp(reply, "+OK", 3) == 0 ? 0 : -1;
}

static void
pop3_check_ipv6(struct bc_target *t, const struct bc_family *f)
{
    struct bc_link k;
    char text[BC_TEXT_MAX] = "";
    bool proxy = is_proxy(t->backend);
    if (pop3_start(t, &k, f, AF_INET6, false, text, sizeof(text)) != 0) {
        bc_report(t, "ipv6", BCHECK_WARN, "no greeting for the IPv6 client %s: %s", BC_CLIENT_V6,
                  bc_error(&k));
        return;
    }
    if (proxy || pop3_xclient(&k, BC_CLIENT_V6, text, sizeof(text)) == 0)
        bc_report(t, "ipv6", BCHECK_OK, "%s for the IPv6 client %s accepted",
                  proxy ? "a PROXY header" : "XCLIENT", BC_CLIENT_V6);
    else
        bc_report(t, "ipv6", BCHECK_WARN, "XCLIENT ADDR=%s refused: %s", BC_CLIENT_V6,
                  text[0] ? text : bc_error(&k));
    (void)bc_send(&k, "QUIT\r\n");
    bc_close(&k);
}

void
bc_check_pop3(struct bc_target *t, const struct bc_family *f)
{
    struct bc_link k;
    char greeting[BC_TEXT_MAX], text[BC_TEXT_MAX] = "", mechs[BC_TEXT_MAX] = "";
    if (pop3_start(t, &k, f, AF_INET, true, greeting, sizeof(greeting)) != 0)
        return;
    if (pop3_capa(&k, mechs, sizeof(mechs)) != 0)
        bc_report(t, "greeting", BCHECK_WARN, "CAPA failed: %s",
                  bc_error(&k) ? bc_error(&k) : "-ERR");
    enum backend_identity id = t->backend->identity;
    bool v6 = is_proxy(t->backend);
    if (v6) {
        bc_report(t, "identity", BCHECK_OK, "%s header accepted (client %s)",
                  backend_identity_name(id), BC_CLIENT_V4);
    } else if (id == IDENT_XCLIENT) {
        v6 = pop3_xclient(&k, BC_CLIENT_V4, text, sizeof(text)) == 0;
        if (v6)
            bc_report(t, "identity", BCHECK_OK, "XCLIENT ADDR=%s accepted (%s)", BC_CLIENT_V4,
                      text);
        else
            bc_report(t, "identity", BCHECK_FAIL,
                      "XCLIENT ADDR=%s refused (%s): Dovecot takes XCLIENT only from "
                      "login_trusted_networks (moat's address is %s)",
                      BC_CLIENT_V4, text[0] ? text : bc_error(&k), k.local);
    } else {
        bc_report(t, "identity", BCHECK_OK,
                  "identity = %s: the backend sees every client as moat's address %s",
                  backend_identity_name(id), k.local);
    }
    report_auth(t, f, mechs, "");
    (void)bc_send(&k, "QUIT\r\n");
    bc_close(&k);
    if (v6)
        pop3_check_ipv6(t, f);
}
