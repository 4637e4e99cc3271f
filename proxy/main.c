/*
 * main.c: moat's entry point and main thread. Loads and checks the configuration (`-t` prints
 * every error as FILE:LINE: key: what is wrong), builds TLS, binds listeners, drops privileges,
 * starts the workers and then runs the signal handling and accept loop until SIGTERM/SIGINT,
 * when it stops accepting, drains the workers and exits 0. SIGHUP builds a new generation off
 * to the side and switches to it only if it is complete; `-T` prints DANE TLSA records; `-B`
 * checks the backends (also run at start and after a reload, off the serving path).
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>

#include "cluster.h"
#include "config.h"
#include "admission.h"
#include "auth.h"
#include "authguard.h"
#include "backendcheck.h"
#include "listener.h"
#include "log.h"
#include "metrics.h"
#include "protocols.h"
#include "stats.h"
#include "tls.h"
#include "worker.h"

struct runtime {
    struct config *conf;
    struct tls_ctx *tls;
    struct listeners *listeners;
    struct worker **workers;
    unsigned nworkers;
    struct metrics *metrics;
    struct authguard *guard; /* admission's per-client table and the login ban tables */
    bool stopping;
};

static void
usage(FILE *f)
{
    fprintf(f, "usage: moat [-t|-T|-B] -c FILE | -V\n"
               "  -c FILE  configuration file (INI)\n"
               "  -t       check the configuration, print every error, exit\n"
               "  -T       print the DANE TLSA 3 1 1 record of each certificate, exit\n"
               "  -B       check every backend as moat would talk to it (reachable, greeting,\n"
               "           identity hand-off accepted and honoured, relay for moat's address,\n"
               "           IPv6 clients, AUTH), one line per check; exit 1 if one failed\n"
               "  -V       print the version and wolfSSL's build features, exit\n"
               "  -h       this help\n");
}

static bool
config_needs_tls(const struct config *conf)
{
    for (const struct config_listener *l = conf->listeners; l != NULL; l = l->next) {
        if (l->tls != LTLS_NONE)
            return true;
    }
    return conf->tls.ncerts > 0;
}

/* Build the TLS policy; on failure put FILE:LINE: certificate: why in msg (cap bytes). */
static struct tls_ctx *
build_tls(const struct config *conf, bool *failed, char *msg, size_t cap)
{
    *failed = false;
    if (!config_needs_tls(conf))
        return NULL;
    const char *err = NULL;
    int idx = -1;
    struct tls_ctx *tls = tls_ctx_new(&conf->tls, &err, &idx);
    if (tls != NULL)
        return tls;
    *failed = true;
    if (idx >= 0) {
        const struct config_cert *c = &conf->tls.certs[idx];
        snprintf(msg, cap, "%s:%d: certificate: %s ('%s', '%s')", conf->path, c->line, err,
                 c->cert_file, c->key_file ? c->key_file : "");
    } else {
        snprintf(msg, cap, "%s: tls: %s", conf->path, err);
    }
    return NULL;
}

#define CERT_EXPIRY_WARN_S (14 * 86400)

/* Each certificate's expiry into /metrics, and a warning for each that ends within 14 days. */
static void
note_certificates(const struct config *conf, const struct tls_ctx *tls)
{
    const char *files[CONFIG_MAX_CERTS];
    time_t not_after[CONFIG_MAX_CERTS];
    size_t n = tls != NULL ? conf->tls.ncerts : 0;
    time_t now = time(NULL);
    for (size_t i = 0; i < n; i++) {
        files[i] = conf->tls.certs[i].cert_file;
        not_after[i] = tls_ctx_cert_not_after(tls, i);
        long long left = (long long)(not_after[i] - now);
        if (not_after[i] != 0 && left < CERT_EXPIRY_WARN_S)
            log_msg(LOG_WARN, left > 0 ? EV_CERTIFICATE_EXPIRING : EV_CERTIFICATE_EXPIRED,
                    "file=\"%s\" days_left=%lld not_after=%lld", files[i], left / 86400,
                    (long long)not_after[i]);
    }
    stats_set_certs(n, files, not_after);
}

static void
raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static void
drop_privileges(const struct config *conf)
{
    if (geteuid() != 0)
        return;
    if (conf->user == NULL) {
        /* checked at startup (root_refused); only allow_root = yes gets here */
        log_msg(LOG_WARN, EV_RUNNING_AS_ROOT, "hint=\"set [moat] user to drop privileges\"");
        return;
    }
    struct passwd *pw = getpwnam(conf->user);
    if (pw == NULL)
        fatal("user '%s' does not exist", conf->user);
    gid_t gid = pw->pw_gid;
    if (conf->group != NULL) {
        struct group *gr = getgrnam(conf->group);
        if (gr == NULL)
            fatal("group '%s' does not exist", conf->group);
        gid = gr->gr_gid;
    }
    if (setgroups(1, &gid) != 0 || setgid(gid) != 0 || setuid(pw->pw_uid) != 0)
        fatal("cannot drop privileges to %s: %s", conf->user, strerror(errno));
    if (setuid(0) == 0)
        fatal("privilege drop did not stick");
    (void)prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    log_msg(LOG_INFO, EV_PRIVILEGES_DROPPED, "user=%s uid=%u gid=%u", conf->user,
            (unsigned)pw->pw_uid, (unsigned)gid);
}

static void
on_stop_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    struct runtime *rt = w->data;
    if (rt->stopping)
        return;
    rt->stopping = true;
    log_msg(LOG_INFO, EV_SHUTDOWN, "signal=%d grace_ms=%u", w->signum, rt->conf->shutdown_grace_ms);
    listeners_close(rt->listeners);
    rt->listeners = NULL;
    workers_drain(rt->workers, rt->nworkers, rt->conf->shutdown_grace_ms / 1000.0);
    ev_break(loop, EVBREAK_ALL);
}

static void
on_reopen_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    if (log_reopen() != 0)
        log_msg(LOG_ERROR, EV_LOG_REOPEN_FAILED, "error=\"%s\"", strerror(errno));
}

static void
log_reload_error(const char *text)
{
    struct log_line l;
    log_begin(&l, LOG_ERROR, EV_RELOAD_ERROR);
    log_kv_str(&l, "error", text, strlen(text));
    log_end(&l);
}

static size_t
count_ratetable(void *t)
{
    return ratetable_count(t);
}

static size_t
count_familiar(void *f)
{
    return familiar_count(f);
}

/* The bounded tables on /metrics: how full each is. */
static void
tables_shown(const struct authguard *g, const struct config *conf)
{
    if (g->clients != NULL)
        stats_table(STAT_TABLE_CLIENTS, count_ratetable, g->clients, conf->max_tracked_clients);
    if (g->users != NULL)
        stats_table(STAT_TABLE_USERS, count_ratetable, g->users, conf->max_tracked_users);
    if (g->familiar != NULL)
        stats_table(STAT_TABLE_FAMILIAR, count_familiar, g->familiar,
                    familiar_capacity(g->familiar));
}

/* Settings that only a restart changes: say so instead of half-applying them. */
static void
reload_warn_restart(const struct config *old, const struct config *conf)
{
    const char *key = NULL;
    if (old->workers != conf->workers)
        key = "workers";
    else if ((old->user == NULL) != (conf->user == NULL) ||
             (old->user != NULL && strcmp(old->user, conf->user) != 0))
        key = "user";
    else if (old->log_format != conf->log_format || old->log_level != conf->log_level ||
             (old->log_file == NULL) != (conf->log_file == NULL) ||
             (old->log_file != NULL && strcmp(old->log_file, conf->log_file) != 0))
        key = "log_format/log_level/log_file";
    else if (old->max_tracked_clients != conf->max_tracked_clients ||
             old->max_tracked_users != conf->max_tracked_users ||
             old->max_familiar != conf->max_familiar)
        key = "max_tracked_clients/max_tracked_users/max_familiar";
    else if (old->auth_threads != conf->auth_threads)
        key = "auth_threads";
    else if (old->cluster.redis_addr_len != conf->cluster.redis_addr_len ||
             memcmp(&old->cluster.redis_addr, &conf->cluster.redis_addr,
                    conf->cluster.redis_addr_len) != 0)
        key = "cluster";
    if (key != NULL)
        log_msg(LOG_WARN, EV_RELOAD_PARTIAL, "key=%s error=\"changes only with a restart\"", key);
}

/* SIGHUP: build the new generation off to the side; switch only if all of it works. Live
 * sessions keep the generation (and TLS policy) they started with. */
static void
on_reload_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    struct runtime *rt = w->data;
    if (rt->stopping)
        return;
    struct config_errors errs = {0};
    struct config *conf = config_load(rt->conf->path, &errs);
    for (size_t i = 0; conf == NULL && i < errs.n; i++)
        log_reload_error(errs.lines[i]);
    config_errors_free(&errs);
    if (conf == NULL) {
        log_msg(LOG_ERROR, EV_RELOAD_FAILED, "reason=config generation=kept");
        return;
    }
    protocols_bind(conf);
    char err[768];
    bool failed;
    struct tls_ctx *tls = build_tls(conf, &failed, err, sizeof(err));
    if (failed) {
        log_reload_error(err);
        log_msg(LOG_ERROR, EV_RELOAD_FAILED, "reason=tls generation=kept");
        config_unref(conf);
        return;
    }
    if (listeners_reload(rt->listeners, conf, tls, err, sizeof(err)) != 0) {
        log_reload_error(err);
        log_msg(LOG_ERROR, EV_RELOAD_FAILED, "reason=listeners generation=kept");
        tls_ctx_unref(tls);
        config_unref(conf);
        return;
    }
    reload_warn_restart(rt->conf, conf);
    metrics_reload(rt->metrics, conf);
    tls_ctx_unref(rt->tls);
    config_unref(rt->conf);
    rt->conf = conf;
    rt->tls = tls;
    log_msg(LOG_INFO, EV_RELOADED, "certificates=%zu", conf->tls.ncerts);
    note_certificates(conf, tls);
    backendcheck_start(conf);
}

static unsigned
worker_count(const struct config *conf)
{
    if (conf->workers > 0)
        return conf->workers;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (unsigned)MOAT_MIN(n, 64) : 1;
}

/* Cyrus SASL and its pool when a listener uses verifier = sasl. Before any thread starts:
 * sasl_server_init is not thread-safe. */
static int
auth_start(const struct config *conf)
{
    for (const struct config_listener *l = conf->listeners; l != NULL; l = l->next) {
        if (l->auth_conf.verifier != VERIFIER_SASL)
            continue;
        const char *err = NULL;
        if (auth_init(conf, &err) != 0) {
            log_msg(LOG_ERROR, EV_STARTUP_FAILED, "error=\"sasl: %s\"", err);
            fprintf(stderr, "moat: sasl: %s\n", err);
            return -1;
        }
        break;
    }
    return 0;
}

static int
run(struct config *conf, struct tls_ctx *tls)
{
    struct runtime rt = {.conf = conf, .tls = tls};
    if (log_init(conf->log_format == LOG_FORMAT_JSON, conf->log_level, conf->log_file) != 0) {
        fprintf(stderr, "moat: cannot open log file %s: %s\n", conf->log_file, strerror(errno));
        return 1;
    }
    if (geteuid() == 0 && conf->user == NULL && !conf->allow_root) {
        /* a front facing the internet must not keep root: say so before binding anything */
        log_msg(LOG_ERROR, EV_ROOT_REFUSED, "hint=\"set [moat] user (or allow_root = yes)\"");
        fprintf(stderr, "moat: refusing to run as root: set [moat] user = an unprivileged account "
                        "(or allow_root = yes)\n");
        return 1;
    }
    note_certificates(conf, tls);
    raise_nofile();
    char err[256];
    rt.listeners = listeners_open(conf, err, sizeof(err));
    if (rt.listeners == NULL) {
        log_msg(LOG_ERROR, EV_STARTUP_FAILED, "error=\"%s\"", err);
        fprintf(stderr, "moat: %s\n", err);
        return 1;
    }
    rt.metrics = metrics_open(conf, err, sizeof(err));
    if (rt.metrics == NULL && err[0] != '\0') {
        log_msg(LOG_ERROR, EV_STARTUP_FAILED, "error=\"%s\"", err);
        fprintf(stderr, "moat: %s\n", err);
        listeners_close(rt.listeners);
        return 1;
    }
    drop_privileges(conf);

    /* Signals are handled on the main loop only: block them before any thread starts. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    if (auth_start(conf) != 0)
        return 1;
    rt.nworkers = worker_count(conf);
    rt.guard = authguard_new(admission_start(conf), conf->max_tracked_users, conf->max_familiar);
    tables_shown(rt.guard, conf);
    rt.workers = workers_start(rt.nworkers, rt.guard);
    for (unsigned i = 0; i < rt.nworkers; i++)
        cluster_start(worker_env(rt.workers[i]), conf);

    struct ev_loop *loop = ev_default_loop(EVFLAG_AUTO | EVFLAG_NOENV);
    ev_signal sig_term, sig_int, sig_hup, sig_usr1;
    ev_signal_init(&sig_term, on_stop_signal, SIGTERM);
    ev_signal_init(&sig_int, on_stop_signal, SIGINT);
    ev_signal_init(&sig_hup, on_reload_signal, SIGHUP);
    ev_signal_init(&sig_usr1, on_reopen_signal, SIGUSR1);
    sig_term.data = sig_int.data = sig_hup.data = sig_usr1.data = &rt;
    ev_signal_start(loop, &sig_term);
    ev_signal_start(loop, &sig_int);
    ev_signal_start(loop, &sig_hup);
    ev_signal_start(loop, &sig_usr1);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);

    listeners_start(rt.listeners, loop, conf, tls, rt.workers, rt.nworkers);
    metrics_start(rt.metrics, loop, conf);
    log_msg(LOG_INFO, EV_STARTED, "workers=%u", rt.nworkers);
    backendcheck_start(conf); /* a thread: warnings in the log, never a delay */
    ev_run(loop, 0);

    backendcheck_stop();
    auth_stop();
    workers_join(rt.workers, rt.nworkers);
    authguard_free(rt.guard);
    listeners_close(rt.listeners);
    metrics_close(rt.metrics);
    /* the generation in force now (a reload may have replaced the one passed in) */
    tls_ctx_unref(rt.tls);
    config_unref(rt.conf);
    log_msg(LOG_INFO, EV_STOPPED, "status=0");
    return 0;
}

/* -T: one TLSA 3 1 1 record (DANE-EE, SubjectPublicKeyInfo, SHA-256) per certificate. */
static int
print_tlsa(const struct config *conf)
{
    for (size_t i = 0; i < conf->tls.ncerts; i++) {
        const struct config_cert *c = &conf->tls.certs[i];
        unsigned char h[32];
        const char *err = NULL;
        if (tls_spki_sha256(c->cert_file, h, &err) != 0) {
            fprintf(stderr, "%s:%d: certificate: %s ('%s')\n", conf->path, c->line, err,
                    c->cert_file);
            return 1;
        }
        printf("; %s\n_25._tcp.%s. IN TLSA 3 1 1 ", c->cert_file, conf->hostname);
        for (size_t j = 0; j < sizeof(h); j++)
            printf("%02x", h[j]);
        printf("\n");
    }
    return 0;
}

int
main(int argc, char **argv)
{
    const char *path = NULL;
    bool check_only = false;
    bool tlsa = false;
    bool check_backends = false;
    int opt;
    while ((opt = getopt(argc, argv, "c:tTBhV")) != -1) {
        switch (opt) {
        case 'c':
            path = optarg;
            break;
        case 't':
            check_only = true;
            break;
        case 'T':
            tlsa = true;
            break;
        case 'B':
            check_backends = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("moat %s\n", MOAT_VERSION);
            tls_library_describe(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (path == NULL) {
        usage(stderr);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    tls_library_init();

    struct config_errors errs = {0};
    struct config *conf = config_load(path, &errs);
    if (conf == NULL) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "%s\n", errs.lines[i]);
        config_errors_free(&errs);
        return 1;
    }
    config_errors_free(&errs);
    protocols_bind(conf);
    if (check_backends) {
        unsigned failed = backendcheck_print(conf, stdout);
        config_unref(conf);
        tls_library_cleanup();
        return failed > 0 ? 1 : 0;
    }
    if (tlsa) {
        int trc = print_tlsa(conf);
        config_unref(conf);
        tls_library_cleanup();
        return trc;
    }
    bool tls_failed;
    char tls_err[768];
    struct tls_ctx *tls = build_tls(conf, &tls_failed, tls_err, sizeof(tls_err));
    if (tls_failed) {
        fprintf(stderr, "%s\n", tls_err);
        config_unref(conf);
        return 1;
    }
    if (check_only) {
        printf("%s: configuration ok\n", path);
        tls_ctx_unref(tls);
        config_unref(conf);
        tls_library_cleanup();
        return 0;
    }
    int rc = run(conf, tls); /* takes over conf and tls */
    tls_library_cleanup();
    return rc;
}
