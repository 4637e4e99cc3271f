/*
 * saslmech.c: SASL PLAIN and LOGIN framing for every protocol front. PLAIN must carry an empty
 * authzid or one equal to the login; no field may hold NUL, CR or LF; sizes are bounded.
 * Lines of the mechanisms the auth service runs (CRAM-MD5, SCRAM-*) are only decoded here.
 * Decoded buffers are wiped after use.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "saslmech.h"
#include "tls.h"

#define B64_USERNAME "VXNlcm5hbWU6" /* "Username:" */
#define B64_PASSWORD "UGFzc3dvcmQ6" /* "Password:" */

enum sasl_mech
sasl_mech_parse(const char *p, size_t n)
{
    for (int m = SASL_MECH_PLAIN; m < SASL_MECH_COUNT; m++) {
        const char *name = sasl_mech_name((enum sasl_mech)m);
        if (strlen(name) == n && strncasecmp(p, name, n) == 0)
            return (enum sasl_mech)m;
    }
    return SASL_MECH_NONE;
}

const char *
sasl_mech_name(enum sasl_mech m)
{
    switch (m) {
    case SASL_MECH_PLAIN:
        return "PLAIN";
    case SASL_MECH_LOGIN:
        return "LOGIN";
    case SASL_MECH_CRAM_MD5:
        return "CRAM-MD5";
    case SASL_MECH_SCRAM_SHA_1:
        return "SCRAM-SHA-1";
    case SASL_MECH_SCRAM_SHA_256:
        return "SCRAM-SHA-256";
    case SASL_MECH_NONE:
        return "none";
    }
    return "none";
}

bool
sasl_mech_is_server(enum sasl_mech m)
{
    switch (m) {
    case SASL_MECH_CRAM_MD5:
    case SASL_MECH_SCRAM_SHA_1:
    case SASL_MECH_SCRAM_SHA_256:
        return true;
    case SASL_MECH_NONE:
    case SASL_MECH_PLAIN:
    case SASL_MECH_LOGIN:
        return false;
    }
    return false;
}

unsigned
sasl_mech_list_parse(const char *list)
{
    unsigned mask = 0;
    const char *p = list != NULL ? list : "";
    while (*p != '\0') {
        size_t skip = strspn(p, " ,\t");
        p += skip;
        size_t n = strcspn(p, " ,\t");
        if (n == 0)
            break;
        enum sasl_mech m = sasl_mech_parse(p, n);
        if (m != SASL_MECH_NONE)
            mask |= SASL_MECH_BIT(m);
        p += n;
    }
    return mask;
}

int
sasl_mechs_format(unsigned mask, const char *prefix, char *out, size_t cap)
{
    size_t used = 0;
    if (cap == 0)
        return -1;
    out[0] = '\0';
    for (int m = SASL_MECH_PLAIN; m < SASL_MECH_COUNT; m++) {
        if (!(mask & SASL_MECH_BIT(m)))
            continue;
        int n = snprintf(out + used, cap - used, "%s%s", prefix, sasl_mech_name((enum sasl_mech)m));
        if (n < 0 || (size_t)n >= cap - used)
            return -1;
        used += (size_t)n;
    }
    return (int)used;
}

void
sasl_exchange_start(struct sasl_exchange *x, enum sasl_mech m)
{
    sasl_exchange_resp_wipe(x);
    explicit_bzero(x, sizeof(*x));
    x->mech = m;
}

const char *
sasl_exchange_first_challenge(const struct sasl_exchange *x)
{
    return x->mech == SASL_MECH_LOGIN ? B64_USERNAME : "";
}

static bool
field_ok(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\0' || p[i] == '\r' || p[i] == '\n')
            return false;
    }
    return true;
}

int
credentials_set(struct credentials *c, const char *user, size_t user_len, const char *pass,
                size_t pass_len)
{
    if (user_len == 0 || user_len > SASL_USER_MAX || pass_len > SASL_PASS_MAX ||
        !field_ok((const unsigned char *)user, user_len) ||
        !field_ok((const unsigned char *)pass, pass_len))
        return -1;
    memcpy(c->user, user, user_len);
    c->user[user_len] = '\0';
    c->user_len = user_len;
    memcpy(c->pass, pass, pass_len);
    c->pass[pass_len] = '\0';
    c->pass_len = pass_len;
    return 0;
}

static enum sasl_step
plain_step(struct sasl_exchange *x, const unsigned char *d, size_t n)
{
    const unsigned char *z1 = memchr(d, '\0', n);
    if (z1 == NULL)
        return SASL_STEP_BAD;
    size_t authz_len = (size_t)(z1 - d);
    const unsigned char *user = z1 + 1;
    size_t rest = n - authz_len - 1;
    const unsigned char *z2 = memchr(user, '\0', rest);
    if (z2 == NULL)
        return SASL_STEP_BAD;
    size_t user_len = (size_t)(z2 - user);
    const unsigned char *pass = z2 + 1;
    size_t pass_len = rest - user_len - 1;
    if (authz_len > 0 && (authz_len != user_len || memcmp(d, user, user_len) != 0))
        return SASL_STEP_BAD; /* acting as another user is not offered */
    if (pass_len == 0)
        return SASL_STEP_BAD;
    if (credentials_set(&x->cred, (const char *)user, user_len, (const char *)pass, pass_len))
        return SASL_STEP_BAD;
    return SASL_STEP_DONE;
}

/* A line for the auth service: decoded into x->resp ("=" is an empty response). */
static enum sasl_step
server_line(struct sasl_exchange *x, const char *line, size_t n)
{
    sasl_exchange_resp_wipe(x);
    x->has_resp = true;
    if (n == 1 && line[0] == '=')
        return SASL_STEP_SERVER;
    x->resp = xmalloc(SASL_RESP_MAX);
    int len = tls_base64_decode(line, n, x->resp, SASL_RESP_MAX);
    if (len < 0) {
        sasl_exchange_resp_wipe(x);
        x->has_resp = false;
        return SASL_STEP_BAD;
    }
    bool scram = x->mech == SASL_MECH_SCRAM_SHA_1 || x->mech == SASL_MECH_SCRAM_SHA_256;
    if (scram && len > SASL_SCRAM_RESP_MAX) {
        sasl_exchange_resp_wipe(x);
        x->has_resp = false;
        return SASL_STEP_BAD;
    }
    x->resp_len = (size_t)len;
    x->step++;
    return SASL_STEP_SERVER;
}

enum sasl_step
sasl_exchange_step(struct sasl_exchange *x, const char *line, size_t n, const char **challenge_out)
{
    *challenge_out = NULL;
    if (n == 1 && line[0] == '*')
        return SASL_STEP_CANCEL;
    if (sasl_mech_is_server(x->mech))
        return server_line(x, line, n);
    unsigned char d[SASL_USER_MAX + SASL_PASS_MAX + 8];
    int len = 0;
    if (!(n == 1 && line[0] == '=')) {
        len = tls_base64_decode(line, n, d, sizeof(d));
        if (len < 0)
            return SASL_STEP_BAD;
    }
    enum sasl_step r = SASL_STEP_BAD;
    switch (x->mech) {
    case SASL_MECH_PLAIN:
        r = plain_step(x, d, (size_t)len);
        break;
    case SASL_MECH_LOGIN:
        if (x->step == 0) {
            if (len == 0 || len > SASL_USER_MAX || !field_ok(d, (size_t)len))
                break;
            memcpy(x->cred.user, d, (size_t)len);
            x->cred.user[len] = '\0';
            x->cred.user_len = (size_t)len;
            x->step = 1;
            *challenge_out = B64_PASSWORD;
            r = SASL_STEP_CONTINUE;
        } else {
            if (len == 0 || len > SASL_PASS_MAX || !field_ok(d, (size_t)len))
                break;
            memcpy(x->cred.pass, d, (size_t)len);
            x->cred.pass[len] = '\0';
            x->cred.pass_len = (size_t)len;
            r = SASL_STEP_DONE;
        }
        break;
    case SASL_MECH_CRAM_MD5:
    case SASL_MECH_SCRAM_SHA_1:
    case SASL_MECH_SCRAM_SHA_256:
    case SASL_MECH_NONE:
        break;
    }
    explicit_bzero(d, sizeof(d));
    return r;
}

void
credentials_wipe(struct credentials *c)
{
    explicit_bzero(c, sizeof(*c));
}

void
sasl_exchange_wipe(struct sasl_exchange *x)
{
    sasl_exchange_resp_wipe(x);
    explicit_bzero(x, sizeof(*x));
}

void
sasl_exchange_resp_wipe(struct sasl_exchange *x)
{
    if (x->resp != NULL) {
        explicit_bzero(x->resp, SASL_RESP_MAX);
        free(x->resp);
        x->resp = NULL;
    }
    x->resp_len = 0;
}

int
sasl_plain_encode(const struct credentials *c, char *out, size_t cap)
{
    unsigned char raw[SASL_USER_MAX + SASL_PASS_MAX + 4];
    size_t n = 0;
    raw[n++] = '\0';
    memcpy(raw + n, c->user, c->user_len);
    n += c->user_len;
    raw[n++] = '\0';
    memcpy(raw + n, c->pass, c->pass_len);
    n += c->pass_len;
    int r = tls_base64_encode(raw, n, out, cap);
    explicit_bzero(raw, sizeof(raw));
    return r;
}
