/*
 * identity.c: builds the identity hand-off lines of identity.h. Owns nothing; the values come
 * from the session (or the backend check) and are either moat's own or already validated (a
 * host name that failed validation never gets here). SMTP values are xtext-encoded.
 */
#include <stdio.h>
#include <string.h>

#include "identity.h"
#include "smtp_parse.h"

static int
xclient_attr(char *out, size_t cap, const char *name, const char *prefix, const char *v)
{
    size_t k = strlen(name), pk = strlen(prefix);
    if (k + pk + 2 >= cap)
        return -1;
    out[0] = ' ';
    memcpy(out + 1, name, k);
    out[k + 1] = '=';
    memcpy(out + k + 2, prefix, pk);
    int n = smtp_xtext_encode(v, strlen(v), out + k + 2 + pk, cap - k - 2 - pk);
    return n < 0 ? -1 : (int)(k + 2 + pk) + n;
}

int
identity_smtp_xclient(const struct identity_xclient *x, enum identity_xclient_part part, char *out,
                      size_t cap)
{
    const char *names[] = {"HELO", "PROTO",    "ADDR",     "PORT",
                           "NAME", "DESTADDR", "DESTPORT", "LOGIN"};
    const char *values[] = {x->helo, x->proto,    x->addr,     x->port,
                            x->name, x->destaddr, x->destport, x->login};
    if (cap < 8)
        return -1;
    size_t len = 7;
    memcpy(out, "XCLIENT", 7);
    out[len] = '\0';
    for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
        if (values[i] == NULL || (part == XCLIENT_PART_HELO && i >= 2) ||
            (part == XCLIENT_PART_REST && i < 2))
            continue;
        /* Postfix wants IPv6 addresses as "IPV6:addr" in ADDR and DESTADDR alike */
        bool addr = i == 2 || i == 5;
        const char *prefix = addr && strchr(values[i], ':') != NULL ? "IPV6:" : "";
        int n = xclient_attr(out + len, cap - len, names[i], prefix, values[i]);
        if (n < 0)
            return -1;
        len += (size_t)n;
    }
    return len <= IDENTITY_XCLIENT_LINE_MAX ? (int)len : -1;
}

int
identity_imap_id(const char *tag, const struct identity_client *c, char *out, size_t cap)
{
    int n = snprintf(out, cap,
                     "%s ID (\"x-originating-ip\" \"%s\" \"x-originating-port\" \"%u\" "
                     "\"x-connected-ip\" \"%s\" \"x-connected-port\" \"%u\" "
                     "\"x-session-ext-id\" \"%s\")\r\n",
                     tag, c->addr, c->port, c->local_addr, c->local_port, c->session);
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

int
identity_pop3_xclient(const struct identity_client *c, char *out, size_t cap)
{
    int n =
        snprintf(out, cap, "XCLIENT ADDR=%s PORT=%u SESSION=%s\r\n", c->addr, c->port, c->session);
    return n < 0 || (size_t)n >= cap ? -1 : n;
}
