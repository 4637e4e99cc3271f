/*
 * log.h: one line per event, key=value text (or JSON), written with a single write() so lines
 * from several threads never interleave. Values that a peer supplied go through log_kv_str(),
 * which escapes and truncates them; callers never escape. Secrets are never passed here.
 */
#ifndef MOAT_LOG_H
#define MOAT_LOG_H

#include "common.h"
#include "events.h"

enum log_level { LOG_ERROR = 0, LOG_WARN, LOG_INFO, LOG_DEBUG };

#define LOG_LINE_MAX 2048
#define LOG_PEER_STR_MAX 128 /* peer-supplied values are cut to this many bytes */

struct log_line {
    char buf[LOG_LINE_MAX];
    size_t len;
    bool json;
    bool skip; /* level filtered out: every call is a no-op */
};

/* format: 0 text, 1 json. path NULL = stderr. Returns -1 if the file cannot be opened. */
int log_init(int format, int level, const char *path);
int log_reopen(void);
bool log_enabled(enum log_level level);

void log_begin(struct log_line *l, enum log_level level, enum log_event ev);
void log_kv(struct log_line *l, const char *key, const char *fmt, ...) MOAT_PRINTF(3, 4);
void log_kv_str(struct log_line *l, const char *key, const char *p, size_t n);
void log_end(struct log_line *l);

/* Append "k=v k=v" text that moat itself made (never peer bytes): verbatim in text format, as
 * one "detail" field in JSON. */
void log_append_trusted(struct log_line *l, const char *text, size_t n);
/* Process-level messages (startup, errors without a session); fmt makes trusted k=v text. */
void log_msg(enum log_level level, enum log_event ev, const char *fmt, ...) MOAT_PRINTF(3, 4);

#endif
