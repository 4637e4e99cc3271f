/*
 * backendcheck.c: the backend self-check's driver (see backendcheck.h): which protocols each
 * backend serves (from the listeners in front of it), the run over every backend address,
 * `moat -B`'s output and the thread that runs the same checks at start and on reload. It never
 * blocks the proxy: the thread is the only place it runs inside a serving moat, and a stop
 * request ends it within BC_SLICE_MS (backendcheck_link.c).
 */
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "backendcheck_int.h"
#include "log.h"

#define BC_REPLY_MAX_MS 10000u /* a reply later than this (or backend_reply) is a failure */

/* --- the run --- */

/* What the listeners in front of b need from it, per family: 0 SMTP, 1 IMAP, 2 POP3. */
static void
backend_families(const struct config *conf, const struct config_backend *b, struct bc_family fam[3])
{
    for (const struct config_listener *l = conf->listeners; l != NULL; l = l->next) {
        if (l->backend != b)
            continue;
        size_t i = l->proto == LPROTO_IMAP ? 1 : l->proto == LPROTO_POP3 ? 2 : 0;
        if (fam[i].listener == NULL)
            fam[i].listener = l;
        /* IMAP and POP3 replay every login as PLAIN; SMTP only for verifier = backend */
        if (i != 0 || (l->auth && l->auth_conf.verifier == VERIFIER_BACKEND))
            fam[i].plain_needed = true;
        if (l->proto == LPROTO_SMTP)
            fam[i].unauthenticated_handoff = true;
    }
}

static unsigned
run_checks(const struct config *conf, const atomic_bool *stop,
           void (*report)(const struct bcheck_line *line, void *arg), void *arg,
           unsigned *warnings_out)
{
    unsigned failures = 0, warnings = 0;
    for (const struct config_backend *b = conf->backends; b != NULL; b = b->next) {
        struct bc_family fam[3] = {{0}};
        backend_families(conf, b, fam);
        for (size_t i = 0; i < b->naddrs && !(stop != NULL && atomic_load(stop)); i++) {
            struct bc_target t = {
                .conf = conf,
                .backend = b,
                .addr = (const struct sockaddr *)&b->addrs[i],
                .addr_len = b->addr_lens[i],
                .stop = stop,
                .connect_ms = conf->timeouts.backend_connect_ms,
                .reply_ms = MOAT_MIN(conf->timeouts.backend_reply_ms, BC_REPLY_MAX_MS),
                .report = report,
                .arg = arg,
            };
            confval_addr_format(t.addr, t.address, sizeof(t.address));
            if (fam[0].listener != NULL)
                bc_check_smtp(&t, &fam[0]);
            if (fam[1].listener != NULL)
                bc_check_imap(&t, &fam[1]);
            if (fam[2].listener != NULL)
                bc_check_pop3(&t, &fam[2]);
            if (fam[0].listener == NULL && fam[1].listener == NULL && fam[2].listener == NULL)
                bc_report(&t, "reachable", BCHECK_OK, "no listener uses this backend: not checked");
            failures += t.failures;
            warnings += t.warnings;
        }
    }
    *warnings_out = warnings;
    return failures;
}

static void
print_line(const struct bcheck_line *l, void *arg)
{
    FILE *out = arg;
    fprintf(out, "%-4s %s %s %s: %s\n", bcheck_status_name(l->status), l->backend, l->address,
            l->check, l->detail);
    fflush(out);
}

unsigned
backendcheck_print(const struct config *conf, FILE *out)
{
    unsigned warnings = 0;
    unsigned failures = run_checks(conf, NULL, print_line, out, &warnings);
    fprintf(out, "%u failed, %u warnings\n", failures, warnings);
    return failures;
}

/* --- at start and on reload: a thread, warnings in the log --- */

struct bc_job {
    pthread_t thread;
    atomic_bool stop;
    struct config *conf; /* one reference */
};

static struct bc_job *running; /* main thread only */

static void
log_result(const struct bcheck_line *l, void *arg)
{
    if (l->status == BCHECK_OK)
        return;
    struct log_line line;
    log_begin(&line, LOG_WARN, EV_BACKEND_CHECK);
    log_kv(&line, "backend", "%s", l->backend);
    log_kv(&line, "address", "%s", l->address);
    log_kv(&line, "check", "%s", l->check);
    log_kv(&line, "status", "%s", bcheck_status_name(l->status));
    log_kv(&line, "detail", "%s", l->detail);
    log_end(&line);
}

static void *
job_main(void *arg)
{
    struct bc_job *job = arg;
    unsigned warnings = 0;
    unsigned failures = run_checks(job->conf, &job->stop, log_result, NULL, &warnings);
    if (!atomic_load(&job->stop))
        log_msg(failures + warnings > 0 ? LOG_WARN : LOG_INFO, EV_BACKEND_CHECK_DONE,
                "failed=%u warnings=%u hint=\"moat -B -c FILE prints every check\"", failures,
                warnings);
    return NULL;
}

void
backendcheck_start(struct config *conf)
{
    backendcheck_stop();
    struct bc_job *job = xcalloc(1, sizeof(*job));
    atomic_init(&job->stop, false);
    job->conf = config_ref(conf);
    /* signals stay with the main loop: the thread starts with all of them blocked */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int r = pthread_create(&job->thread, NULL, job_main, job);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (r != 0) {
        log_msg(LOG_WARN, EV_BACKEND_CHECK_DONE, "error=\"cannot start a thread\"");
        config_unref(job->conf);
        free(job);
        return;
    }
    running = job;
}

void
backendcheck_stop(void)
{
    struct bc_job *job = running;
    if (job == NULL)
        return;
    running = NULL;
    atomic_store(&job->stop, true);
    pthread_join(job->thread, NULL);
    config_unref(job->conf);
    free(job);
}
