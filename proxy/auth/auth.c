/*
 * auth.c: the only file that includes <sasl/sasl.h>. Owns libsasl2's global state (pthread
 * mutexes installed before sasl_server_init, options from moat's config through SASL_CB_GETOPT,
 * never a system file), and the pool of threads that run its blocking calls. It never touches
 * a session or an event loop: a finished job goes back through its on_done. It never logs a
 * password, and wipes every credential as soon as the check returns.
 */
#include <pthread.h>
#include <sasl/sasl.h>
#include <sasl/saslutil.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "auth.h"
#include "log.h"
#include "scramfake.h"

/* libsasl2 stores every callback as int (*)(void); the detour through void (*)(void) is the
 * cast GCC accepts without -Wcast-function-type. */
#define SASL_FN(f) ((int (*)(void))(void (*)(void))(f))

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct auth_job *head, *tail; /* guarded by lock */
    size_t queued;                /* guarded by lock */
    bool stopping;                /* guarded by lock */
    bool ready;
    unsigned mechs; /* SASL_MECH_BIT mask of what the installed plugins offer */
    char realm[256];
    char mech_list[256];
    char pwcheck[32];
    char sasldb[1024];
    char saslauthd[1024];
    uint8_t fake_key[SCRAM_FAKE_KEY_LEN];     /* random per process: the salts of unknown users */
    uint64_t scram_first_ns[SASL_MECH_COUNT]; /* guarded by lock: a known user's first step */
    struct auth_client {
        struct ratetable_key key;
        uint32_t jobs;           /* in the pool: queued, running or stuck */
        uint32_t running;        /* on a pool thread now */
    } clients[AUTH_CLIENTS_MAX]; /* guarded by lock; jobs 0: a free slot */
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

/* --- libsasl2's mutexes: its defaults are no-ops --- */

static void *
mutex_alloc(void)
{
    pthread_mutex_t *m = xcalloc(1, sizeof(*m));
    pthread_mutex_init(m, NULL);
    return m;
}

static int
mutex_lock(void *m)
{
    return pthread_mutex_lock(m) == 0 ? SASL_OK : SASL_FAIL;
}

static int
mutex_unlock(void *m)
{
    return pthread_mutex_unlock(m) == 0 ? SASL_OK : SASL_FAIL;
}

static void
mutex_free(void *m)
{
    pthread_mutex_destroy(m);
    free(m);
}

/* --- options --- */

static const char *
pwcheck_name(const struct config_auth *a)
{
    return a->pwcheck_method == PWCHECK_SASLAUTHD ? "saslauthd" : "auxprop";
}

/* context: the job's config_auth, or NULL for the global defaults copied at init. Read-only:
 * called from pool threads. */
static int
on_getopt(void *context, const char *plugin, const char *option, const char **result, unsigned *len)
{
    const struct config_auth *a = context;
    const char *v = NULL;
    if (strcmp(option, "pwcheck_method") == 0)
        v = a ? pwcheck_name(a) : pool.pwcheck;
    else if (strcmp(option, "auxprop_plugin") == 0)
        v = "sasldb";
    else if (strcmp(option, "sasldb_path") == 0)
        v = a ? a->sasldb_path : pool.sasldb;
    else if (strcmp(option, "saslauthd_path") == 0)
        v = a ? a->saslauthd_path : pool.saslauthd;
    else if (strcmp(option, "mech_list") == 0)
        v = a ? a->mech_list : pool.mech_list;
    else if (strcmp(option, "log_level") == 0)
        v = "2";
    else if (strcmp(option, "scram_iteration_counter") == 0 && &auth_test_scram_iterations != NULL)
        v = auth_test_scram_iterations; /* tests only: not defined in moat (auth.h) */
    if (v == NULL || v[0] == '\0')
        return SASL_FAIL; /* unset: libsasl2's default */
    *result = v;
    if (len != NULL)
        *len = (unsigned)strlen(v);
    return SASL_OK;
}

/* libsasl2's own messages (they name users, never passwords) at debug level only. */
static int
on_sasl_log(void *context, int level, const char *message)
{
    if (message == NULL || level > SASL_LOG_WARN)
        return SASL_OK;
    struct log_line l;
    log_begin(&l, LOG_DEBUG, EV_SASL_LOG);
    if (!l.skip) {
        log_kv_str(&l, "msg", message, strlen(message));
        log_end(&l);
    }
    return SASL_OK;
}

static const sasl_callback_t global_callbacks[] = {
    {SASL_CB_GETOPT, SASL_FN(on_getopt), NULL},
    {SASL_CB_LOG, SASL_FN(on_sasl_log), NULL},
    {SASL_CB_LIST_END, NULL, NULL},
};

static void
copy_opt(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

/* --- one check --- */

static enum auth_status
status_of(int code)
{
    switch (code) {
    case SASL_OK:
        return AUTH_OK;
    case SASL_BADAUTH:
    case SASL_NOUSER:
    case SASL_NOVERIFY:
    case SASL_NOAUTHZ:
    case SASL_EXPIRED:
    case SASL_DISABLED:
    case SASL_BADPROT:
    case SASL_BADPARAM:
    case SASL_ENCRYPT:
    case SASL_TOOWEAK:
        return AUTH_FAILED;
    default:
        return AUTH_TEMPFAIL; /* SASL_FAIL, SASL_UNAVAIL, SASL_TRYAGAIN, SASL_NOMEM, ... */
    }
}

/* A new server connection with moat's options; security layers off, TLS's strength given. */
static int
conn_new(struct auth_job *j, sasl_conn_t **conn_out)
{
    /* libsasl2 keeps the callbacks pointer for the connection's life */
    sasl_callback_t *cbs = xcalloc(3, sizeof(*cbs));
    j->sasl_callbacks = cbs;
    cbs[0] = (sasl_callback_t){SASL_CB_GETOPT, SASL_FN(on_getopt), (void *)j->auth};
    cbs[1] = (sasl_callback_t){SASL_CB_LOG, SASL_FN(on_sasl_log), NULL};
    cbs[2] = (sasl_callback_t){SASL_CB_LIST_END, NULL, NULL};
    int r =
        sasl_server_new(j->service, NULL, j->auth->realm, j->local, j->remote, cbs, 0, conn_out);
    if (r != SASL_OK) {
        *conn_out = NULL;
        return r;
    }
    sasl_security_properties_t props = {.min_ssf = 0, .max_ssf = 0, .maxbufsize = 0};
    props.security_flags = SASL_SEC_NOANONYMOUS;
    if (j->kind == AUTH_JOB_CHECKPASS)
        props.security_flags |= SASL_SEC_NOPLAINTEXT;
    sasl_ssf_t ssf = j->ssf;
    sasl_setprop(*conn_out, SASL_SEC_PROPS, &props);
    sasl_setprop(*conn_out, SASL_SSF_EXTERNAL, &ssf);
    return SASL_OK;
}

static void
conn_dispose(struct auth_job *j, sasl_conn_t *conn)
{
    if (conn != NULL)
        sasl_dispose(&conn);
    free(j->sasl_callbacks);
    j->sasl_callbacks = NULL;
    j->sasl_conn = NULL;
}

/* The outcome of a check or of a mechanism's last step: user name, detail, conn disposed. */
static void
job_finish(struct auth_job *j, sasl_conn_t *conn, int r, const char *fallback_user)
{
    j->sasl_code = r;
    j->status = status_of(r);
    const void *u = NULL;
    if (conn != NULL && sasl_getprop(conn, SASL_USERNAME, &u) == SASL_OK && u != NULL)
        copy_opt(j->user, sizeof(j->user), u);
    else
        copy_opt(j->user, sizeof(j->user), fallback_user);
    const char *d = conn != NULL ? sasl_errdetail(conn) : sasl_errstring(r, NULL, NULL);
    copy_opt(j->detail, sizeof(j->detail), r == SASL_OK ? "ok" : d);
    conn_dispose(j, conn);
}

static void
job_checkpass(struct auth_job *j)
{
    sasl_conn_t *conn = NULL;
    int r = conn_new(j, &conn);
    if (r == SASL_OK)
        r = sasl_checkpass(conn, j->cred.user, (unsigned)j->cred.user_len, j->cred.pass,
                           (unsigned)j->cred.pass_len);
    explicit_bzero(j->cred.pass, sizeof(j->cred.pass));
    j->cred.pass_len = 0;
    job_finish(j, conn, r, j->cred.user);
}

/* Cyrus SASL's SCRAM fails at once for a user it does not know, a known one only after its
 * challenge: instead of the failure, a synthetic challenge (scramfake.h) that fails at the next
 * step, as a wrong password does. Before j->in is wiped; false: no such luck, keep r. */
static bool
fake_scram_first(struct auth_job *j, int r)
{
    if (r != SASL_NOUSER || j->fake || j->in_len == 0 ||
        (j->mech != SASL_MECH_SCRAM_SHA_1 && j->mech != SASL_MECH_SCRAM_SHA_256))
        return false;
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    unsigned char rnd[SCRAM_FAKE_NONCE_LEN];
    char nonce[SCRAM_FAKE_NONCE_LEN + 1];
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
        return false;
    for (size_t i = 0; i < SCRAM_FAKE_NONCE_LEN; i++)
        nonce[i] = b64[rnd[i] & 63];
    nonce[SCRAM_FAKE_NONCE_LEN] = '\0';
    char first[AUTH_CHALLENGE_MAX];
    int n = scram_fake_first(j->mech, j->in, j->in_len, pool.fake_key, nonce, first, sizeof(first),
                             j->fake_user, sizeof(j->fake_user));
    unsigned b64_len = 0;
    if (n <= 0 ||
        sasl_encode64(first, (unsigned)n, j->challenge, sizeof(j->challenge), &b64_len) != SASL_OK)
        return false;
    j->fake = true;
    return true;
}

static uint64_t
mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* A SCRAM first step takes Cyrus a while for a known user (the salted password), next to no
 * time for an unknown one: how long the known ones take is learnt (a moving average), and a
 * synthetic answer waits until as long has passed. */
static void
scram_first_timing(struct auth_job *j, uint64_t start_ns, bool known)
{
    if (j->mech != SASL_MECH_SCRAM_SHA_1 && j->mech != SASL_MECH_SCRAM_SHA_256)
        return;
    uint64_t took = mono_ns() - start_ns;
    pthread_mutex_lock(&pool.lock);
    uint64_t *avg = &pool.scram_first_ns[j->mech];
    uint64_t want = *avg;
    if (known && took < 1000000000u)
        *avg = *avg == 0 ? took : (*avg * 7 + took) / 8;
    pthread_mutex_unlock(&pool.lock);
    if (known || want <= took)
        return;
    uint64_t wait = MOAT_MIN(want - took, (uint64_t)500000000u);
    struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)wait};
    nanosleep(&ts, NULL);
}

/* One step of a mechanism libsasl2 runs: a challenge to send (AUTH_CONTINUE), or the end. */
static void
job_step(struct auth_job *j)
{
    uint64_t start_ns = mono_ns();
    bool first = j->in_len > 0 && !j->fake; /* a client-first, unless the exchange is past it */
    sasl_conn_t *conn = j->sasl_conn;
    const char *out = NULL;
    unsigned out_len = 0;
    int r = SASL_OK;
    if (j->kind == AUTH_JOB_START) {
        r = conn_new(j, &conn);
        if (r == SASL_OK)
            r = sasl_server_start(conn, sasl_mech_name(j->mech),
                                  j->has_in ? (const char *)j->in : NULL, (unsigned)j->in_len, &out,
                                  &out_len);
    } else if (conn != NULL) {
        r = sasl_server_step(conn, (const char *)j->in, (unsigned)j->in_len, &out, &out_len);
    } else {
        r = j->fake ? SASL_NOUSER : SASL_BADPROT; /* the end of a synthetic exchange */
    }
    bool fake = conn != NULL && fake_scram_first(j, r);
    explicit_bzero(j->in, sizeof(j->in));
    j->in_len = 0;
    if (fake) {
        scram_first_timing(j, start_ns, false);
        conn_dispose(j, conn);
        j->sasl_code = SASL_CONTINUE;
        j->status = AUTH_CONTINUE;
        copy_opt(j->detail, sizeof(j->detail), "continue");
        return;
    }
    if (r == SASL_CONTINUE && first && out_len > 0)
        scram_first_timing(j, start_ns, true);
    if (r == SASL_CONTINUE) {
        unsigned b64_len = 0;
        r = sasl_encode64(out != NULL ? out : "", out_len, j->challenge, sizeof(j->challenge),
                          &b64_len);
        if (r == SASL_OK) {
            j->sasl_conn = conn;
            j->sasl_code = SASL_CONTINUE;
            j->status = AUTH_CONTINUE;
            copy_opt(j->detail, sizeof(j->detail), "continue");
            return;
        }
    }
    job_finish(j, conn, r, j->fake ? j->fake_user : "");
}

static void
job_run(struct auth_job *j)
{
    switch (j->kind) {
    case AUTH_JOB_CHECKPASS:
        job_checkpass(j);
        return;
    case AUTH_JOB_START:
    case AUTH_JOB_STEP:
        job_step(j);
        return;
    case AUTH_JOB_DISPOSE:
        conn_dispose(j, j->sasl_conn);
        return;
    }
}

/* A job nobody will take back: its sasl_conn_t goes first. On a pool thread, or at stop. */
static void
job_drop(struct auth_job *j)
{
    conn_dispose(j, j->sasl_conn);
    auth_job_free(j);
}

/* The client's entry in the pool: its slot, else a free one (taken for it), else NULL. Under
 * the lock. */
static struct auth_client *
client_slot(const struct ratetable_key *k)
{
    size_t free_slot = AUTH_CLIENTS_MAX;
    for (size_t i = 0; i < AUTH_CLIENTS_MAX; i++) {
        if (pool.clients[i].jobs == 0) {
            if (free_slot == AUTH_CLIENTS_MAX)
                free_slot = i;
        } else if (pool.clients[i].key.len == k->len &&
                   memcmp(pool.clients[i].key.bytes, k->bytes, k->len) == 0) {
            return &pool.clients[i];
        }
    }
    if (free_slot == AUTH_CLIENTS_MAX)
        return NULL;
    pool.clients[free_slot].key = *k;
    pool.clients[free_slot].running = 0;
    return &pool.clients[free_slot];
}

/* The job left the pool's hands (done, or dropped): its client may submit again. Under the
 * lock. */
static void
client_release(struct auth_job *j)
{
    if (!j->counted)
        return;
    j->counted = false;
    struct auth_client *c = client_slot(&j->client);
    if (c == NULL)
        return;
    if (c->jobs > 0)
        c->jobs--;
    if (j->running && c->running > 0)
        c->running--;
}

/* The first queued job that may run now: a disposal always may; a check only while its client
 * has fewer than max_checks_per_client running, so a client's slow checks wait behind each
 * other and never take every thread. Unlinked and marked running. Under the lock. */
static struct auth_job *
queue_take(void)
{
    struct auth_job *prev = NULL;
    for (struct auth_job *j = pool.head; j != NULL; prev = j, j = j->next) {
        struct auth_client *c = j->counted ? client_slot(&j->client) : NULL;
        if (c != NULL && c->running >= j->auth->max_checks_per_client)
            continue;
        if (prev != NULL)
            prev->next = j->next;
        else
            pool.head = j->next;
        if (pool.tail == j)
            pool.tail = prev;
        pool.queued--;
        if (c != NULL)
            c->running++;
        j->running = c != NULL;
        return j;
    }
    return NULL;
}

static void *
pool_main(void *arg)
{
    for (;;) {
        pthread_mutex_lock(&pool.lock);
        struct auth_job *j;
        while ((j = queue_take()) == NULL)
            pthread_cond_wait(&pool.cond, &pool.lock);
        pthread_mutex_unlock(&pool.lock);

        job_run(j);

        /* under the lock: auth_stop() waits for a post in progress and prevents later ones */
        pthread_mutex_lock(&pool.lock);
        if (j->running)
            pthread_cond_broadcast(&pool.cond); /* its client's next check may run now */
        client_release(j);
        if (pool.stopping || j->kind == AUTH_JOB_DISPOSE)
            job_drop(j);
        else
            j->on_done(j);
        pthread_mutex_unlock(&pool.lock);
    }
    return NULL;
}

/* The mechanisms moat knows that the installed plugins offer (whatever mech_list says: each
 * listener's own mech_list filters later). */
static unsigned
mechs_installed(void)
{
    unsigned mask = 0;
    const char **names = sasl_global_listmech();
    for (size_t i = 0; names != NULL && names[i] != NULL; i++) {
        enum sasl_mech m = sasl_mech_parse(names[i], strlen(names[i]));
        if (m != SASL_MECH_NONE)
            mask |= SASL_MECH_BIT(m);
    }
    return mask;
}

int
auth_init(const struct config *conf, const char **err_out)
{
    const struct config_auth *a = &conf->auth;
    copy_opt(pool.realm, sizeof(pool.realm), a->realm);
    copy_opt(pool.mech_list, sizeof(pool.mech_list), a->mech_list);
    copy_opt(pool.pwcheck, sizeof(pool.pwcheck), pwcheck_name(a));
    copy_opt(pool.sasldb, sizeof(pool.sasldb), a->sasldb_path);
    copy_opt(pool.saslauthd, sizeof(pool.saslauthd), a->saslauthd_path);
    if (getrandom(pool.fake_key, sizeof(pool.fake_key), 0) != (ssize_t)sizeof(pool.fake_key)) {
        *err_out = "no random bytes for the SCRAM key";
        return -1;
    }
    sasl_set_mutex(mutex_alloc, mutex_lock, mutex_unlock, mutex_free);
    int r = sasl_server_init(global_callbacks, "moat");
    if (r != SASL_OK) {
        *err_out = sasl_errstring(r, NULL, NULL);
        return -1;
    }
    pool.mechs = mechs_installed();
    for (unsigned i = 0; i < conf->auth_threads; i++) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&attr, thread_stack_bytes(512 * 1024));
        int e = pthread_create(&t, &attr, pool_main, NULL);
        pthread_attr_destroy(&attr);
        if (e != 0) {
            *err_out = "cannot start the auth threads";
            return -1;
        }
    }
    pool.ready = true;
    char names[256];
    if (sasl_mechs_format(pool.mechs, " ", names, sizeof(names)) < 0)
        names[0] = '\0';
    log_msg(LOG_INFO, EV_AUTH_READY, "threads=%u pwcheck_method=%s mech_list=\"%s\" plugins=\"%s\"",
            conf->auth_threads, pool.pwcheck, pool.mech_list, names[0] ? names + 1 : "");
    return 0;
}

bool
auth_ready(void)
{
    return pool.ready;
}

int
auth_submit(struct auth_job *j)
{
    pthread_mutex_lock(&pool.lock);
    if (!pool.ready || pool.stopping || pool.queued >= AUTH_QUEUE_MAX) {
        pthread_mutex_unlock(&pool.lock);
        return AUTH_SUBMIT_UNAVAILABLE;
    }
    uint32_t max = j->auth != NULL ? j->auth->max_checks_per_client : 0;
    if (j->kind != AUTH_JOB_DISPOSE && j->client.len > 0 && max > 0) {
        struct auth_client *c = client_slot(&j->client);
        if (c == NULL || c->jobs >= max * AUTH_CLIENT_QUEUE_FACTOR) {
            pthread_mutex_unlock(&pool.lock);
            return AUTH_SUBMIT_CLIENT_BUSY;
        }
        c->jobs++;
        j->counted = true;
        j->running = false;
    }
    j->next = NULL;
    if (pool.tail != NULL)
        pool.tail->next = j;
    else
        pool.head = j;
    pool.tail = j;
    pool.queued++;
    pthread_cond_signal(&pool.cond);
    pthread_mutex_unlock(&pool.lock);
    return AUTH_SUBMIT_OK;
}

void
auth_job_dispose(struct auth_job *j)
{
    if (j == NULL)
        return;
    if (j->sasl_conn == NULL) {
        auth_job_free(j);
        return;
    }
    j->kind = AUTH_JOB_DISPOSE;
    if (auth_submit(j) != AUTH_SUBMIT_OK)
        job_drop(j); /* the pool is gone or full: dispose of it here, it does no I/O */
}

unsigned
auth_mechs_available(void)
{
    return pool.mechs;
}

void
auth_job_free(struct auth_job *j)
{
    if (j == NULL)
        return;
    MOAT_ASSERT(j->sasl_conn == NULL);
    if (j->conf != NULL)
        config_unref(j->conf);
    explicit_bzero(j, sizeof(*j));
    free(j);
}

void
auth_stop(void)
{
    pthread_mutex_lock(&pool.lock);
    pool.stopping = true;
    while (pool.head != NULL) {
        struct auth_job *j = pool.head;
        pool.head = j->next;
        job_drop(j);
    }
    pool.tail = NULL;
    pool.queued = 0;
    pthread_mutex_unlock(&pool.lock);
}
