/*
 * pop3_parse.h: the pure POP3 command-line parser (RFC 1939, RFC 2449 §4). It finds one line in
 * the client's bytes, refuses NUL and stray CR, and splits a command into keyword and argument
 * text as (pointer, length) views into the caller's buffer. It never allocates, never copies and
 * knows nothing about sessions or state.
 */
#ifndef MOAT_POP3_PARSE_H
#define MOAT_POP3_PARSE_H

#include "common.h"

/* RFC 2449 §4 says 255 octets per command line; moat is lenient up to this (terminator
 * included). SASL responses are not commands and may be longer (RFC 5034 §4). */
#define POP3_LINE_MAX 512
#define POP3_SASL_LINE_MAX 2048
#define POP3_KEYWORD_MAX 16

enum pop3_parse { POP3_PARSE_OK = 0, POP3_PARSE_MORE, POP3_PARSE_BAD, POP3_PARSE_TOO_LONG };

enum pop3_cmd {
    POP3_CMD_UNKNOWN = 0,
    POP3_CMD_CAPA,
    POP3_CMD_STLS,
    POP3_CMD_USER,
    POP3_CMD_PASS,
    POP3_CMD_AUTH,
    POP3_CMD_QUIT,
    POP3_CMD_NOOP,
    POP3_CMD_APOP,
    /* transaction-state commands: known, never allowed before login */
    POP3_CMD_STAT,
    POP3_CMD_LIST,
    POP3_CMD_RETR,
    POP3_CMD_DELE,
    POP3_CMD_RSET,
    POP3_CMD_TOP,
    POP3_CMD_UIDL,
    POP3_CMD_LAST
};

struct pop3_line {
    const char *p; /* the line without its terminator */
    size_t len;
};

struct pop3_command {
    enum pop3_cmd cmd;
    const char *keyword;
    size_t keyword_len;
    const char *args; /* everything after the first space; may be empty */
    size_t args_len;
};

/* Take one line from (p, n). max counts the terminator. OK: *line_out and *used_out (bytes to
 * consume, terminator included). MORE: no LF yet and n < max. TOO_LONG: no LF within max bytes;
 * *used_out is the bytes scanned (all without a LF): consume them and discard up to the next LF.
 * BAD: a complete line holding NUL or a CR before its end; *used_out covers the line, *err_out
 * says why. */
enum pop3_parse pop3_take_line(const char *p, size_t n, size_t max, struct pop3_line *line_out,
                               size_t *used_out, const char **err_out);

/* Split a line into keyword and arguments. BAD (with *err_out) for an empty line or a keyword
 * that is not 1..POP3_KEYWORD_MAX letters; an unknown keyword is OK with POP3_CMD_UNKNOWN. */
enum pop3_parse pop3_parse_command(const struct pop3_line *line, struct pop3_command *cmd_out,
                                   const char **err_out);

/* The first space-separated word of (p, n) in *word_out, and what follows the single space after
 * it in *rest_out (empty if none). Returns false if the word is empty. */
bool pop3_split_word(const char *p, size_t n, struct pop3_line *word_out,
                     struct pop3_line *rest_out);

const char *pop3_cmd_name(enum pop3_cmd c);

#endif
