/*
 * session_auth.c: the auth services a session offers its protocol (protocol.h): a `sasl`
 * verification (a password check, or the steps of CRAM-MD5 / SCRAM-*, whose sasl_conn_t waits
 * in a parked job between steps, dropped when the exchange is abandoned) handed to the auth pool
 * and its result brought back on the worker's loop, the job deadline, the brute-force control
 * (delayed failure replies, per-session limit, bans, smart lockout over the user-name and
 * familiar-address tables) and the login / failure log lines. A job that outlives its session
 * never touches it; no password is ever logged, and every copy is wiped. Nothing a client sends
 * can trip an assertion here: a state it should not reach ends the session.
 */
#include <stdio.h>
#include <string.h>

#include "admission.h"
#include "auth.h"
#include "authguard.h"
#include "cluster.h"
#include "log.h"
#include "session.h"
#include "stats.h"
#include "session_env.h"

/* A job plus what the worker needs to take it back. The job comes first: auth_job_free()
 * frees the whole allocation. */
struct session_job {
    struct auth_job job;
    struct worker_msg msg;
    struct session_env *env; /* where to post the result */
    bool in_pool; /* submitted and not back yet; else parked between steps (s->auth_job) */
};

static struct session_job *
session_job_of(struct auth_job *j)
{
    return (struct session_job *)j;
}

static const char *
verifier_name(const struct session *s)
{
    switch (s->listener->auth_conf.verifier) {
    case VERIFIER_BACKEND:
        return "backend";
    case VERIFIER_SASL:
        return "sasl";
    }
    return "?";
}

static double
loop_now(const struct session *s)
{
    return ev_now(s->env->loop);
}

static void
deliver(struct session *s, enum auth_status status, const char *user, const char *challenge)
{
    s->auth_deadline = 0;
    session_input_resume(s);
    if (s->proto->on_auth_done == NULL)
        return;
    struct auth_result r = {.status = status, .user = user, .challenge = challenge};
    s->proto->on_auth_done(s, &r);
}

/* A mechanism's step came back: keep the job parked for the next step, or end it. */
static void
step_posted(struct session *s, struct session_job *sj)
{
    struct auth_job *j = &sj->job;
    if (j->status == AUTH_CONTINUE) {
        deliver(s, AUTH_CONTINUE, NULL, j->challenge); /* s->auth_job stays: parked */
        return;
    }
    s->auth_job = NULL;
    enum auth_status st = j->status;
    if (st == AUTH_OK && session_auth_banned(s, j->user, strlen(j->user)))
        st = AUTH_FAILED;
    deliver(s, st, j->user, NULL);
    auth_job_dispose(j);
}

/* On the worker's loop: the pool finished a job. */
static void
on_job_posted(struct worker_msg *m)
{
    struct session_job *sj = (struct session_job *)((char *)m - offsetof(struct session_job, msg));
    struct session *s = sj->job.owner;
    sj->in_pool = false;
    if (s == NULL || (s->closing && sj->job.kind != AUTH_JOB_CHECKPASS)) {
        /* the session ended or gave up waiting */
        if (s != NULL)
            s->auth_job = NULL;
        auth_job_dispose(&sj->job);
        return;
    }
    if (s->auth_job != &sj->job) { /* not the session's job any more: never its result */
        auth_job_dispose(&sj->job);
        return;
    }
    struct log_line l;
    log_begin(&l, sj->job.status == AUTH_TEMPFAIL ? LOG_WARN : LOG_DEBUG, EV_SASL_RESULT);
    if (!l.skip) {
        log_kv(&l, "sid", "%s", s->sid);
        log_kv(&l, "code", "%d", sj->job.sasl_code);
        log_kv_str(&l, "detail", sj->job.detail, strlen(sj->job.detail));
        log_end(&l);
    }
    if (sj->job.kind != AUTH_JOB_CHECKPASS) {
        step_posted(s, sj);
        session_timer_arm(s);
        return;
    }
    s->auth_job = NULL;
    if (!s->closing)
        deliver(s, sj->job.status, sj->job.user, NULL);
    session_timer_arm(s);
    auth_job_free(&sj->job);
}

/* On a pool thread. */
static void
on_job_done(struct auth_job *j)
{
    struct session_job *sj = (struct session_job *)j;
    sj->env->post(sj->env, &sj->msg);
}

/* A result without asking the pool (banned, pool full): delivered from the timer, never from
 * inside the call that asked. */
static void
deliver_later(struct session *s, enum auth_status status)
{
    s->auth_early = status;
    s->auth_deadline = loop_now(s);
    session_timer_arm(s);
}

/* SSF_EXTERNAL: the key bits of the client's TLS cipher, from its name. */
static unsigned
ssf_of_cipher(const char *name)
{
    if (name == NULL)
        return 128;
    if (strstr(name, "AES256") != NULL || strstr(name, "AES-256") != NULL ||
        strstr(name, "CHACHA20") != NULL || strstr(name, "CAMELLIA256") != NULL)
        return 256;
    return 128; /* every suite wolfSSL is built to offer here is at least 128 bits */
}

static void
job_fill(struct session *s, struct auth_job *j, const struct credentials *c)
{
    j->conf = config_ref(s->conf);
    j->auth = &s->listener->auth_conf;
    j->service = s->proto->sasl_service;
    snprintf(j->local, sizeof(j->local), "%s;%u", s->local_addr, s->local_port);
    snprintf(j->remote, sizeof(j->remote), "%s;%u", s->client_addr, s->client_port);
    j->ssf = session_is_tls(s) ? ssf_of_cipher(s->tls_cipher) : 0;
    if (c != NULL)
        j->cred = *c;
    j->on_done = on_job_done;
    j->owner = s;
    admission_client_key(&j->client, s->listener, session_client_sockaddr(s));
}

/* Hand a job to the pool; false: refused (logged), answer a temporary failure. */
static bool
submit(struct session *s, struct auth_job *j)
{
    int r = auth_submit(j);
    if (r == AUTH_SUBMIT_OK)
        return true;
    const char *why = !auth_ready()                  ? "no_pool"
                      : r == AUTH_SUBMIT_CLIENT_BUSY ? "client_busy"
                                                     : "queue_full";
    session_log(s, LOG_WARN, EV_AUTH_UNAVAILABLE, "why=%s", why);
    return false;
}

static struct session_job *
session_job_new(struct session *s, const struct credentials *c)
{
    struct session_job *sj = xcalloc(1, sizeof(*sj));
    sj->msg.run = on_job_posted;
    sj->env = s->env;
    job_fill(s, &sj->job, c);
    return sj;
}

/* A new check or exchange while one is running: the protocols pause input until the result,
 * so only a defect gets here; the session ends rather than the process. A job parked between
 * steps of an exchange the protocol abandoned is dropped first. */
static bool
auth_busy(struct session *s)
{
    session_auth_abort(s);
    if (s->auth_job == NULL && s->auth_deadline == 0 && s->hold_until == 0)
        return false;
    session_log(s, LOG_WARN, EV_AUTH_BUSY, "state=%s",
                s->proto->state_name != NULL ? s->proto->state_name(s) : "?");
    session_close(s, REASON_PROTOCOL_ERROR);
    return true;
}

void
session_auth_verify(struct session *s, const struct credentials *c, enum sasl_mech m)
{
    if (auth_busy(s))
        return;
    session_input_pause(s);
    if (session_auth_banned(s, c->user, c->user_len)) {
        deliver_later(s, AUTH_FAILED);
        return;
    }
    struct session_job *sj = session_job_new(s, c);
    if (!submit(s, &sj->job)) {
        auth_job_free(&sj->job);
        deliver_later(s, AUTH_TEMPFAIL);
        return;
    }
    sj->in_pool = true;
    s->auth_job = &sj->job;
    s->auth_deadline = loop_now(s) + s->listener->auth_conf.verify_timeout_ms / 1000.0;
    session_timer_arm(s);
}

void
session_auth_step(struct session *s, struct sasl_exchange *x)
{
    struct session_job *sj = NULL;
    bool parked = s->auth_job != NULL && !session_job_of(s->auth_job)->in_pool;
    if (x->server_started && parked && s->auth_deadline == 0 && s->hold_until == 0) {
        sj = session_job_of(s->auth_job); /* the next step of this exchange */
        sj->job.kind = AUTH_JOB_STEP;
        session_input_pause(s);
    } else {
        if (auth_busy(s)) { /* drops the job of an abandoned exchange */
            sasl_exchange_resp_wipe(x);
            return;
        }
        session_input_pause(s);
        if (x->server_started || !sasl_mech_is_server(x->mech) ||
            session_auth_banned(s, NULL, 0)) { /* its job is gone, or not ours to run */
            sasl_exchange_resp_wipe(x);
            deliver_later(s, AUTH_FAILED);
            return;
        }
        sj = session_job_new(s, NULL);
        sj->job.kind = AUTH_JOB_START;
        sj->job.mech = x->mech;
        sj->job.has_in = x->has_resp;
        x->server_started = true;
    }
    size_t n = MOAT_MIN(x->resp_len, sizeof(sj->job.in));
    if (n > 0) /* resp is NULL for an empty response ("=") */
        memcpy(sj->job.in, x->resp, n);
    sj->job.in_len = n;
    sasl_exchange_resp_wipe(x);
    x->resp_len = 0;
    x->has_resp = false;
    s->auth_job = NULL;
    if (!submit(s, &sj->job)) {
        explicit_bzero(sj->job.in, sizeof(sj->job.in));
        auth_job_dispose(&sj->job);
        deliver_later(s, AUTH_TEMPFAIL);
        return;
    }
    sj->in_pool = true;
    s->auth_job = &sj->job;
    s->auth_deadline = loop_now(s) + s->listener->auth_conf.verify_timeout_ms / 1000.0;
    session_timer_arm(s);
}

void
session_auth_cancel(struct session *s)
{
    struct auth_job *j = s->auth_job;
    s->auth_job = NULL;
    s->auth_deadline = 0;
    if (j == NULL)
        return;
    if (session_job_of(j)->in_pool)
        j->owner = NULL; /* the job disposes of itself when it comes back */
    else
        auth_job_dispose(j); /* parked between steps: its sasl_conn_t goes in the pool */
}

void
session_auth_abort(struct session *s)
{
    if (s->auth_job != NULL && !session_job_of(s->auth_job)->in_pool)
        session_auth_cancel(s);
}

/* Whether the backend hand-off can tell the backend a login verified without a password. */
static bool
handoff_without_password(const struct protocol *p, const struct config_backend *b)
{
    if (b == NULL)
        return false;
    return ((p->handoff & HANDOFF_XCLIENT) && b->identity == IDENT_XCLIENT) ||
           ((p->handoff & HANDOFF_MASTER_USER) && b->master_user != NULL);
}

unsigned
session_auth_mechs(struct session *s)
{
    const struct config_listener *l = s->listener;
    if (l->auth_conf.verifier == VERIFIER_BACKEND)
        return SASL_MECHS_PLAIN_LOGIN;
    unsigned list = sasl_mech_list_parse(l->auth_conf.mech_list);
    unsigned server = list & auth_mechs_available() & ~SASL_MECHS_PLAIN_LOGIN;
    if (!handoff_without_password(s->proto, l->backend))
        server = 0;
    return (list & SASL_MECHS_PLAIN_LOGIN) | server;
}

/* The failure delay is over: the reply goes out, input flows again (or the session ends). */
static void
hold_release(struct session *s)
{
    s->hold_until = 0;
    if (s->hold_len > 0)
        session_reply(s, s->hold_reply, s->hold_len);
    explicit_bzero(s->hold_reply, sizeof(s->hold_reply));
    s->hold_len = 0;
    if (s->hold_close) {
        session_close(s, REASON_AUTH_FAILED);
        return;
    }
    s->env->kick(s->env, s);
}

bool
session_auth_on_timer(struct session *s, double now)
{
    if (s->hold_until > 0 && now >= s->hold_until) {
        hold_release(s);
        return true;
    }
    if (s->auth_deadline == 0 || now < s->auth_deadline)
        return false;
    enum auth_status st = s->auth_early;
    if (s->auth_job != NULL) {
        session_log(s, LOG_WARN, EV_AUTH_TIMEOUT, "verifier=sasl after_ms=%u",
                    s->listener->auth_conf.verify_timeout_ms);
        session_auth_cancel(s);
        st = AUTH_TEMPFAIL;
    }
    deliver(s, st, NULL, NULL);
    return true;
}

bool
session_auth_banned(struct session *s, const char *user, size_t user_len)
{
    struct ratetable_key k;
    admission_client_key(&k, s->listener, session_client_sockaddr(s));
    return authguard_banned(s->env->guard, &s->listener->auth_conf, &k, user, user_len,
                            moat_now_ms());
}

static void
log_failure(struct session *s, const char *user, size_t user_len, const char *mech,
            const struct authguard_verdict *v, bool last)
{
    stats_add(s->stats, STAT_AUTH_FAILURE, 1); /* /metrics, whatever the log level */
    struct log_line l;
    log_begin(&l, LOG_INFO, EV_AUTH_FAILED);
    if (l.skip)
        return;
    log_kv(&l, "sid", "%s", s->sid);
    log_kv(&l, "client", "%s", s->client_addr);
    log_kv_str(&l, "user", user != NULL ? user : "", user != NULL ? user_len : 0);
    log_kv(&l, "mech", "%s", mech);
    log_kv(&l, "verifier", "%s", verifier_name(s));
    log_kv(&l, "failures", "%u", s->auth_failures);
    log_kv(&l, "client_failures", "%u", v->ip_failures);
    log_kv(&l, "delay_ms", "%u", v->delay_ms);
    if (v->ip_banned)
        log_kv(&l, "ban", "client");
    if (v->user_banned)
        log_kv(&l, "ban_user", "yes");
    if (v->familiar)
        log_kv(&l, "familiar", "yes");
    if (last)
        log_kv(&l, "close", "max_failures");
    log_end(&l);
}

void
session_auth_failed(struct session *s, const char *user, size_t user_len, const char *mech,
                    const char *reply, const char *final_reply)
{
    const struct config_auth *a = &s->listener->auth_conf;
    struct authguard_verdict v = {0};
    s->auth_failures++;
    struct ratetable_key k;
    admission_client_key(&k, s->listener, session_client_sockaddr(s));
    authguard_failure(s->env->guard, a, &k, user, user_len, s->auth_failures, moat_now_ms(), &v);
    cluster_auth_failure(s->env, s->conf, a, &k, user, user_len, v.familiar);
    bool last = a->max_failures > 0 && s->auth_failures >= a->max_failures;
    log_failure(s, user, user_len, mech, &v, last);
    int n = snprintf(s->hold_reply, sizeof(s->hold_reply), "%s", last ? final_reply : reply);
    if (n <= 0 || (size_t)n >= sizeof(s->hold_reply)) { /* a hostname too long for the reply */
        explicit_bzero(s->hold_reply, sizeof(s->hold_reply));
        session_close(s, REASON_INTERNAL);
        return;
    }
    s->hold_len = (size_t)n;
    s->hold_close = last;
    s->hold_until = loop_now(s) + v.delay_ms / 1000.0;
    if (v.delay_ms == 0) {
        hold_release(s);
        return;
    }
    session_timer_arm(s);
}

void
session_auth_login(struct session *s, const char *user, size_t user_len, const char *mech)
{
    char name[sizeof(s->user)];
    size_t n = MOAT_MIN(user_len, sizeof(name) - 1);
    memcpy(name, user, n);
    name[n] = '\0';
    session_set_user(s, name);
    struct ratetable_key k;
    admission_client_key(&k, s->listener, session_client_sockaddr(s));
    authguard_login(s->env->guard, &k, user, user_len, moat_now_ms());
    cluster_login(s->env, s->conf, &k, user, user_len);
    struct log_line l;
    log_begin(&l, LOG_INFO, EV_LOGIN);
    if (l.skip)
        return;
    log_kv(&l, "sid", "%s", s->sid);
    log_kv(&l, "client", "%s", s->client_addr);
    log_kv_str(&l, "user", user, user_len);
    log_kv(&l, "mech", "%s", mech);
    log_kv(&l, "verifier", "%s", verifier_name(s));
    log_end(&l);
}
