/*
 * saslmech.h: the SASL PLAIN (RFC 4616) and LOGIN exchanges as the protocols see them: feed the
 * initial response or each client line, get back "need another line" (with the base64 challenge
 * to send), done (credentials filled), cancelled ("*") or bad. Pure apart from base64; the
 * credentials are wiped by sasl_exchange_wipe() and must never be logged.
 */
#ifndef MOAT_SASLMECH_H
#define MOAT_SASLMECH_H

#include "config.h"

#define SASL_RESP_MAX 2048 /* a decoded client response of a mechanism Cyrus SASL runs */
/* A decoded SCRAM response: Cyrus echoes the client's nonce into its challenge, so what it may
 * see is bounded well below what a challenge line can carry. */
#define SASL_SCRAM_RESP_MAX 1024

/* The outcome of a credential check by the auth service (verifier = sasl). */
enum auth_status {
    AUTH_OK = 0,   /* verified */
    AUTH_FAILED,   /* wrong password, unknown user, banned: one answer to the client */
    AUTH_TEMPFAIL, /* the verifier is down, slow or overloaded: try again later */
    AUTH_CONTINUE  /* session_auth_step(): send challenge, feed the client's next line */
};

/* PLAIN and LOGIN are framed here; the others are run by the auth service (Cyrus SASL), this
 * file only decoding their client lines (sasl_mech_is_server). */
enum sasl_mech {
    SASL_MECH_NONE = 0,
    SASL_MECH_PLAIN,
    SASL_MECH_LOGIN,
    SASL_MECH_CRAM_MD5,
    SASL_MECH_SCRAM_SHA_1,
    SASL_MECH_SCRAM_SHA_256
};
#define SASL_MECH_COUNT 6
#define SASL_MECH_BIT(m) (1u << (unsigned)(m))
#define SASL_MECHS_PLAIN_LOGIN (SASL_MECH_BIT(SASL_MECH_PLAIN) | SASL_MECH_BIT(SASL_MECH_LOGIN))

/* SERVER: a mechanism run by the auth service; the decoded line is in resp (has_resp). */
enum sasl_step {
    SASL_STEP_DONE = 0,
    SASL_STEP_CONTINUE,
    SASL_STEP_CANCEL,
    SASL_STEP_BAD,
    SASL_STEP_SERVER
};

struct credentials {
    char user[SASL_USER_MAX + 1];
    char pass[SASL_PASS_MAX + 1];
    size_t user_len;
    size_t pass_len;
};

struct sasl_exchange {
    enum sasl_mech mech;
    int step;
    struct credentials cred;
    /* sasl_mech_is_server(): the last client line, decoded; wiped by whoever consumes it. Its
     * SASL_RESP_MAX bytes exist only while a line waits (sasl_exchange_resp_wipe frees them),
     * so an idle session carries none. */
    unsigned char *resp;
    size_t resp_len;
    bool has_resp;       /* false: no initial response (the server speaks first) */
    bool server_started; /* the auth service holds this exchange's job (session_auth_step) */
};

/* Case-insensitive mechanism name; SASL_MECH_NONE if unknown. */
enum sasl_mech sasl_mech_parse(const char *p, size_t n);
const char *sasl_mech_name(enum sasl_mech m);
/* Whether the auth service runs the exchange (CRAM-MD5, SCRAM-*), not this file. */
bool sasl_mech_is_server(enum sasl_mech m);
/* A mech_list ("PLAIN LOGIN SCRAM-SHA-256", space or comma separated) as a mask of
 * SASL_MECH_BIT()s; unknown names are ignored. */
unsigned sasl_mech_list_parse(const char *list);
/* The mechanisms of mask in a fixed order, each preceded by prefix (" AUTH=", " "): the
 * length written, or -1 if cap is too small. */
int sasl_mechs_format(unsigned mask, const char *prefix, char *out, size_t cap);
/* x is zeroed or a previous exchange (its resp is freed). */
void sasl_exchange_start(struct sasl_exchange *x, enum sasl_mech m);
/* The challenge to send before the first client line when there was no initial response. */
const char *sasl_exchange_first_challenge(const struct sasl_exchange *x);
/* Feed one client line (base64, "=" for empty, "*" to cancel). On CONTINUE *challenge_out is the
 * base64 challenge to send next. */
enum sasl_step sasl_exchange_step(struct sasl_exchange *x, const char *line, size_t n,
                                  const char **challenge_out);
void sasl_exchange_wipe(struct sasl_exchange *x);
/* Wipe and free the decoded line (resp), keeping the rest of the exchange. */
void sasl_exchange_resp_wipe(struct sasl_exchange *x);
/* Wipe credentials (explicit_bzero of the whole struct; out of line, so the compiler neither
 * drops it nor mistakes the struct for its first field). */
void credentials_wipe(struct credentials *c);
/* base64("\0user\0pass") for replaying PLAIN to a backend. Returns length or -1. */
int sasl_plain_encode(const struct credentials *c, char *out, size_t cap);
/* Credentials from a protocol's own LOGIN/USER+PASS: copies, rejects NUL/CR/LF and oversize. */
int credentials_set(struct credentials *c, const char *user, size_t user_len, const char *pass,
                    size_t pass_len);

#endif
