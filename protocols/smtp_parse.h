/*
 * smtp_parse.h: the pure SMTP parsers of the front: a command line into verb and arguments,
 * MAIL/RCPT paths and their parameters, backend reply lines, and the xtext encoder for XCLIENT.
 * Nothing here allocates, keeps state between calls or touches a session; every function takes
 * (pointer, length) and hands back pointers into the caller's bytes.
 */
#ifndef MOAT_SMTP_PARSE_H
#define MOAT_SMTP_PARSE_H

#include "common.h"

#define SMTP_CMD_LINE_MAX 2048   /* octets including CRLF (Postfix line_length_limit) */
#define SMTP_AUTH_LINE_MAX 12288 /* RFC 4954 §4 */
#define SMTP_REPLY_LINE_MAX 4096
#define SMTP_HELO_MAX 255
#define SMTP_PATH_MAX 256

enum smtp_verb {
    SMTP_VERB_UNKNOWN = 0,
    SMTP_VERB_EHLO,
    SMTP_VERB_HELO,
    SMTP_VERB_STARTTLS,
    SMTP_VERB_AUTH,
    SMTP_VERB_MAIL,
    SMTP_VERB_RCPT,
    SMTP_VERB_DATA,
    SMTP_VERB_RSET,
    SMTP_VERB_NOOP,
    SMTP_VERB_QUIT,
    SMTP_VERB_HELP,
    SMTP_VERB_REFUSED, /* known but never offered: VRFY EXPN ETRN BDAT XCLIENT XFORWARD TURN ... */
    SMTP_VERB_HTTP     /* an HTTP request line (GET / POST / CONNECT ...): cross-protocol attack */
};

enum smtp_parse_status { SMTP_PARSE_OK = 0, SMTP_PARSE_BAD };

struct smtp_cmd {
    enum smtp_verb verb;
    const char *args; /* after the verb and its separating spaces; may be empty */
    size_t args_len;
};

/* A command line without its terminator. BAD for NUL, CR or other control bytes. */
enum smtp_parse_status smtp_cmd_parse(const char *p, size_t n, struct smtp_cmd *out);
const char *smtp_verb_name(enum smtp_verb v);

struct smtp_path {
    const char *addr; /* between < and >, without a source route; may be empty (null path) */
    size_t addr_len;
    const char *domain; /* after the last '@' of addr; NULL when there is none */
    size_t domain_len;
    const char *params; /* ESMTP parameters after the path; may be empty */
    size_t params_len;
    bool source_route; /* "<@a,@b:user@d>" was given */
};

/* MAIL/RCPT arguments: "FROM:<path> params" (prefix "FROM:") or "TO:<path> params". */
enum smtp_parse_status smtp_path_parse(const char *args, size_t n, const char *prefix,
                                       struct smtp_path *out);
/* Find ESMTP parameter KEY (case-insensitive) in params; *val_out is empty for "KEY". */
bool smtp_param_find(const char *params, size_t n, const char *key, const char **val_out,
                     size_t *len_out);
/* Parse a decimal SIZE value; -1 when it is not a number or overflows. */
int smtp_size_parse(const char *p, size_t n, uint64_t *out);

/* One backend reply line: "DDD" (alone), "DDD text" or "DDD-text". *last_out says whether it
 * ends the reply. BAD for anything else. */
enum smtp_parse_status smtp_reply_line(const char *p, size_t n, int *code_out, bool *last_out);

/* xtext (RFC 3461 §4): "+XX" for '+', '=', and bytes outside 0x21..0x7e. Returns the encoded
 * length, or -1 when it does not fit cap (including the NUL). */
int smtp_xtext_encode(const char *p, size_t n, char *out, size_t cap);

/* Case-insensitive: is domain (p, n) one of the space/comma separated names of list? A trailing
 * dot on the domain is ignored. */
bool smtp_domain_in_list(const char *p, size_t n, const char *list);
/* Case-insensitive equality of two byte strings. */
bool smtp_equal_nocase(const char *a, size_t an, const char *b, size_t bn);

#endif
