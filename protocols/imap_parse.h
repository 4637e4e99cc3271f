/*
 * imap_parse.h: the pure IMAP command parser moat uses before login: tag, command name and
 * arguments (atoms, quoted strings, literals {n} / {n+}, parentheses) of one command, literals
 * included. It never allocates and never copies: arguments point into the caller's buffer. It
 * must never tell the caller to send a continuation for a literal it would refuse.
 */
#ifndef MOAT_IMAP_PARSE_H
#define MOAT_IMAP_PARSE_H

#include "common.h"

#define IMAP_TAG_MAX 64        /* longest tag accepted (and echoed) */
#define IMAP_NAME_MAX 32       /* longest command name */
#define IMAP_ARGS_MAX 64       /* arguments per command, parentheses included */
#define IMAP_LINE_MAX 8192     /* octets per line pre-auth, terminator included */
#define IMAP_LITERAL_MAX 4096  /* octets per literal pre-auth (LITERAL- bound, RFC 7888) */
#define IMAP_COMMAND_MAX 16384 /* octets per command, lines and literals together */

enum imap_parse_status {
    IMAP_PARSE_OK = 0,            /* a whole command is in cmd; cmd->used octets */
    IMAP_PARSE_MORE,              /* incomplete: call again with more input */
    IMAP_PARSE_NEED_CONTINUATION, /* a synchronising literal will be accepted: send "+" */
    IMAP_PARSE_BAD,               /* syntax error; cmd->error says what */
    IMAP_PARSE_TOOBIG,            /* literal or command over the limits */
    IMAP_PARSE_TOO_LONG           /* no line end within IMAP_LINE_MAX */
};

enum imap_arg_type {
    IMAP_ARG_ATOM = 0,
    IMAP_ARG_QUOTED, /* p/len is the raw text between the quotes, escapes still in place */
    IMAP_ARG_LITERAL,
    IMAP_ARG_LIST_BEGIN,
    IMAP_ARG_LIST_END
};

struct imap_arg {
    enum imap_arg_type type;
    const char *p;
    size_t len;
};

struct imap_command {
    const char *tag; /* NULL unless the tag is valid (then safe to echo) */
    size_t tag_len;
    const char *name;
    size_t name_len;
    struct imap_arg args[IMAP_ARGS_MAX];
    size_t nargs;
    /* OK: octets of the command. BAD/TOOBIG/TOO_LONG: octets to drop; if skip_line is set the
     * caller must also drop input up to and including the next LF. NEED_CONTINUATION: the offset
     * where the literal's octets start (pass it back as cont_done once "+" is sent). */
    size_t used;
    bool skip_line;
    bool literal_nonsync; /* TOOBIG: the refused literal was {n+}, its octets will follow */
    const char *error;    /* BAD/TOOBIG: a fixed text for the reply */
};

/* Parse one command from the start of (p, n). cont_done is the largest literal offset for which
 * a continuation was already sent for this command (0: none). literal_max / line_max bound
 * literals and lines (at most the IMAP_* maxima). */
enum imap_parse_status imap_parse_command(const char *p, size_t n, size_t cont_done,
                                          size_t literal_max, size_t line_max,
                                          struct imap_command *cmd);

/* Copy an atom / quoted / literal argument to out (NUL-terminated), undoing quoted escapes.
 * Returns the length, or -1 if it does not fit or is not a string. */
int imap_arg_string(const struct imap_arg *a, char *out, size_t cap);
/* Whether an argument is the atom (case-insensitive) word. */
bool imap_arg_is_atom(const struct imap_arg *a, const char *word);
/* Whether c may appear in a tag (ASTRING-CHAR except "+"). */
bool imap_tag_char(unsigned char c);

#endif
