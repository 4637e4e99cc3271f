/*
 * backendcheck.h: the backend self-check (`moat -B`, and at start and on reload as log
 * warnings). For every address of every backend it connects as moat would and reports, one
 * line per check: reachable, greeting, the identity hand-off (XCLIENT / ID / PROXY) accepted and
 * honoured, whether the backend relays for moat's own address, whether it takes an IPv6 client
 * address, and the AUTH mechanisms it offers. It never completes a delivery.
 */
#ifndef MOAT_BACKENDCHECK_H
#define MOAT_BACKENDCHECK_H

#include <stdio.h>

#include "common.h"

struct config;

enum bcheck_status { BCHECK_OK = 0, BCHECK_WARN, BCHECK_FAIL };

/* One result. detail may quote the backend: it is cut to printable ASCII. */
struct bcheck_line {
    const char *backend; /* the backend's section name */
    const char *address; /* "127.0.0.1:10025", "[::1]:143" */
    const char *check;   /* reachable, greeting, identity, honoured, relay_for_moat, ipv6, auth */
    enum bcheck_status status;
    const char *detail;
};

const char *bcheck_status_name(enum bcheck_status s);

/* -B: every check of every backend of conf printed to out, one line each, and a summary.
 * Returns the number of failed checks (0: exit status 0). Blocks for as long as it takes. */
unsigned backendcheck_print(const struct config *conf, FILE *out);

/* At start and after a reload: run the checks on a thread of their own (takes a reference to
 * conf) and log every warn/fail result as a warning; the caller never waits. A check still
 * running is stopped first. */
void backendcheck_start(struct config *conf);
/* At shutdown: stop a running check and wait for it (a fraction of a second). */
void backendcheck_stop(void);

#endif
