/*
 * config_impl.h: what the config files share and nobody else may include: the key table, the
 * loader state with its collected errors, and the per-section records. config_load.c reads the
 * file and tracks sections, config_keys.c parses values, config_check.c finishes and
 * cross-checks.
 */
#ifndef MOAT_CONFIG_IMPL_H
#define MOAT_CONFIG_IMPL_H

#include "config.h"

#define CONFIG_ERRORS_MAX 200
#define CONFIG_NAME_MAX 64

enum section_kind {
    SEC_MOAT = 0,
    SEC_TLS,
    SEC_LIMITS,
    SEC_TIMEOUTS,
    SEC_AUTH,
    SEC_ACCESS,
    SEC_BACKEND,
    SEC_LISTENER,
    SEC_DNS,
    SEC_CLUSTER,
    SEC_UNKNOWN /* skipped: its header already got an error */
};

enum key_type {
    KT_STR = 0,
    KT_BOOL,
    KT_UINT,
    KT_UINT_AUTO, /* "auto" = 0 */
    KT_DURATION,
    KT_SIZE,
    KT_RATE,
    KT_ENUM,
    KT_ADDR,
    KT_ADDR_OFF, /* "off" = length 0 */
    KT_CIDRS,
    KT_CERT,
    KT_KEY,
    KT_BACKEND_ADDRS
};

#define KF_REPEAT 1u /* may appear more than once in a section */

struct enum_name {
    const char *name;
    int value;
};

struct key_def {
    enum section_kind section;
    const char *key;
    enum key_type type;
    size_t offset;  /* of the field in the section's struct */
    size_t offset2; /* KT_ADDR*: of the socklen_t */
    const char *dflt;
    uint64_t min; /* KT_UINT, KT_SIZE; KT_DURATION: 1 = must not be 0 */
    uint64_t max; /* KT_UINT, KT_SIZE */
    const struct enum_name *names;
    unsigned flags;
};

/* A listener key that overrides [limits], [timeouts], [auth] or [access]; replayed at the end. */
struct config_override {
    const struct key_def *key;
    char *value;
    int line;
};

struct section_rec {
    enum section_kind kind;
    char *name; /* NULL for the global sections */
    int line;
    int *seen; /* per config_keys index: line where set, 0 if not */
    struct config_listener *listener;
    struct config_backend *backend;
    struct config_override *overrides;
    size_t noverrides;
};

struct load_error {
    int line;
    size_t seq;
    char *text;
};

struct loader {
    const char *name; /* file name for messages */
    struct config *config;
    /* the text and the line reader */
    const char *text;
    size_t len, pos;
    int line;
    bool syntax_pass; /* re-reading after an inih syntax error: no side effects */
    /* sections */
    struct section_rec *secs;
    size_t nsecs;
    struct section_rec *cur;
    /* errors */
    struct load_error *errs;
    size_t nerrs;   /* stored */
    size_t nerrors; /* found, including those past CONFIG_ERRORS_MAX */
};

extern const struct key_def config_keys[];
extern const size_t config_nkeys;

const char *config_section_name(enum section_kind kind);
const struct key_def *config_key_find(enum section_kind kind, const char *key);
/* s made printable and cut to fit size, for messages. */
const char *config_show(char *buf, size_t size, const char *s);
void config_error(struct loader *ld, int line, const char *key, const char *fmt, ...)
    MOAT_PRINTF(4, 5);
/* Parse value into its field of base (the struct of k's section). replace: a listener's first
 * allow/deny replaces the inherited list. */
void config_apply(struct loader *ld, const struct key_def *k, void *base, const char *value,
                  int line, bool replace);
void config_apply_defaults(struct loader *ld, enum section_kind kind, void *base);
/* Listener overrides, dependent defaults and cross-checks, after the whole file was read. */
void config_check(struct loader *ld);
void config_access_free(struct config_access *a);
/* config_dns.c: the [dns] section's list specification and thresholds; its memory. */
void config_check_dns(struct loader *ld);
void config_dns_free(struct config_dns *d);
void config_auth_free(struct config_auth *a);

#endif
