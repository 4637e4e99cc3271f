/*
 * crossproto.c: HTTP request and header lines, seen where a mail command was expected. A
 * browser made to talk to a mail port (ALPACA, cross-protocol scripting) sends exactly these;
 * a mail client never does.
 */
#include <string.h>
#include <strings.h>

#include "crossproto.h"

static const char *const methods[] = {"GET ",     "POST ",    "HEAD ",  "PUT ",  "DELETE ",
                                      "OPTIONS ", "CONNECT ", "TRACE ", "PATCH "};

static const char *const headers[] = {
    "host:",   "user-agent:",        "accept:",  "cookie:",    "content-type:", "content-length:",
    "origin:", "transfer-encoding:", "referer:", "connection:"};

static bool
has_prefix(const char *p, size_t n, const char *prefix, bool nocase)
{
    size_t k = strlen(prefix);
    if (n < k)
        return false;
    return nocase ? strncasecmp(p, prefix, k) == 0 : memcmp(p, prefix, k) == 0;
}

static bool
contains(const char *p, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++) {
        if (memcmp(p + i, needle, k) == 0)
            return true;
    }
    return false;
}

bool
crossproto_http(const char *p, size_t n)
{
    const char *lf = memchr(p, '\n', n);
    if (lf == NULL)
        return false;
    size_t len = (size_t)(lf - p);
    for (size_t i = 0; i < ARRAY_SIZE(methods); i++) {
        if (has_prefix(p, len, methods[i], false) && contains(p, len, " HTTP/"))
            return true;
    }
    for (size_t i = 0; i < ARRAY_SIZE(headers); i++) {
        if (has_prefix(p, len, headers[i], true))
            return true;
    }
    return false;
}
