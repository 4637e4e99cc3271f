/*
 * auth.h: the `sasl` verifier: Cyrus SASL (sasldb through auxprop, or saslauthd) configured from
 * moat's [auth] section through callbacks, its blocking calls run in a small thread pool
 * ([moat] auth_threads). A job
 * carries copies of everything it needs (and a config reference), so it may outlive the session
 * that asked; the result goes back through the job's on_done, called on a pool thread.
 */
#ifndef MOAT_AUTH_H
#define MOAT_AUTH_H

#include "config.h"
#include "saslmech.h"
#include "ratetable.h"

#define AUTH_QUEUE_MAX 256
#define AUTH_CHALLENGE_MAX 2048 /* a server challenge, base64 */
#define AUTH_CLIENTS_MAX 512    /* clients with jobs in the pool at once (queued or running) */
/* A client may have max_checks_per_client checks running and this many times as many in the
 * pool in all (the rest wait their turn in the queue). */
#define AUTH_CLIENT_QUEUE_FACTOR 4

/* auth_submit() refusals */
enum { AUTH_SUBMIT_OK = 0, AUTH_SUBMIT_UNAVAILABLE = -1, AUTH_SUBMIT_CLIENT_BUSY = -2 };

/* What the pool does with a job. CHECKPASS: sasl_checkpass(cred). START / STEP: one step of a
 * mechanism Cyrus SASL runs (the sasl_conn_t stays in the job between steps while the status is
 * AUTH_CONTINUE, and is disposed of in the pool when it ends). DISPOSE: only drop the
 * sasl_conn_t, then the pool frees the job (on_done is not called). */
enum auth_job_kind { AUTH_JOB_CHECKPASS = 0, AUTH_JOB_START, AUTH_JOB_STEP, AUTH_JOB_DISPOSE };

struct auth_job {
    /* filled by the caller */
    enum auth_job_kind kind;
    enum sasl_mech mech;             /* START */
    unsigned char in[SASL_RESP_MAX]; /* START / STEP: the client's response, wiped by the pool */
    size_t in_len;
    bool has_in;         /* START: whether there was an initial response */
    struct config *conf; /* one reference, dropped by auth_job_free() */
    const struct config_auth *auth;
    const char *service;                 /* "smtp", "imap", "pop" */
    char local[INET6_ADDRSTRLEN + 8];    /* "a.b.c.d;port" */
    char remote[INET6_ADDRSTRLEN + 8];   /* "a.b.c.d;port" */
    unsigned ssf;                        /* of the client's TLS, for SSF_EXTERNAL */
    struct credentials cred;             /* wiped by the pool as soon as it is checked */
    void (*on_done)(struct auth_job *j); /* on a pool thread, unless auth is stopping */
    bool fake; /* SCRAM for an unknown user: a synthetic challenge was sent */
    char fake_user[SASL_USER_MAX + 1]; /* its user name, for the failure's log and count */
    struct ratetable_key client;       /* for [auth] max_checks_per_client (len 0: none) */
    bool counted;                      /* counted against client until the pool is done */
    bool running;                      /* pool: on a thread, counted in its client's running */
    void *owner;
    /* filled by the pool */
    void *sasl_conn;      /* sasl_conn_t between steps, owned by the job */
    void *sasl_callbacks; /* its callbacks (libsasl2 keeps the pointer), freed with it */
    char challenge[AUTH_CHALLENGE_MAX]; /* AUTH_CONTINUE: base64, possibly empty */
    enum auth_status status;
    int sasl_code;
    char user[SASL_USER_MAX + 1]; /* the canonical user name on success */
    char detail[256];             /* sasl_errdetail(): for the log, never for the client */
    struct auth_job *next;
};

/* Main thread, before workers start, once: sasl_set_mutex, sasl_server_init, the pool. The
 * global [auth] gives the defaults; a job's own config_auth overrides them. */
int auth_init(const struct config *conf, const char **err_out);
/* Whether auth_init() ran. */
bool auth_ready(void);
/* Queue a job; AUTH_SUBMIT_UNAVAILABLE when the pool is not running or the queue is full. Fair
 * to clients: a job runs only while its client (j->client) has fewer than [auth]
 * max_checks_per_client checks on a pool thread (running, or stuck after their session gave
 * up); the client's further checks wait in the queue, so a few clients with slow checks never
 * hold every thread while a mail client's parallel logins still go through one after another.
 * AUTH_SUBMIT_CLIENT_BUSY when the client already has AUTH_CLIENT_QUEUE_FACTOR times that many
 * in the pool: answer a temporary failure. On AUTH_SUBMIT_OK the pool owns j until on_done. */
int auth_submit(struct auth_job *j);
/* Wipe and free a job (drops its config reference). j must be the start of its allocation.
 * A job still holding a sasl_conn_t must go through auth_job_dispose() instead. */
void auth_job_free(struct auth_job *j);
/* Drop a job whatever it holds: its sasl_conn_t is disposed of in the pool (here only if the
 * pool cannot take it), then the job is freed. Never calls on_done. */
void auth_job_dispose(struct auth_job *j);
/* Which of the mechanisms moat knows libsasl2's plugins offer (SASL_MECH_BIT mask), as found
 * by auth_init(); 0 before. */
unsigned auth_mechs_available(void);
/* No more on_done calls after this returns; jobs finishing later are freed by the pool. Threads
 * stuck in a verifier are left alone (the process is exiting). */
void auth_stop(void);

/* In-process tests only (tests/fuzz/fuzz_session.c defines it): libsasl2's
 * scram_iteration_counter, so that a SCRAM exchange under the sanitizers takes microseconds
 * rather than 4096 instrumented HMACs. A weak reference: the moat binary has no such variable
 * (tests/integration/test_packaging.py checks) and always runs libsasl2's default. */
extern const char *const auth_test_scram_iterations __attribute__((weak));

#endif
