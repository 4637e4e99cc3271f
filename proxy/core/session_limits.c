/*
 * session_limits.c: services that let a protocol use time and the per-client rates without
 * seeing libev or the shared table: one protocol timer folded into the session's single
 * ev_timer, and the SMTP message / recipient rates counted per client address (locally, and
 * across the fleet when [cluster] is set).
 */
#include "admission.h"
#include "authguard.h"
#include "cluster.h"
#include "log.h"
#include "session.h"
#include "session_env.h"

void
session_timer_start(struct session *s, uint32_t ms)
{
    MOAT_ASSERT(s->proto->on_timer != NULL);
    s->proto_deadline = ev_now(s->env->loop) + ms / 1000.0;
    session_timer_arm(s);
}

void
session_timer_stop(struct session *s)
{
    s->proto_deadline = 0;
    session_timer_arm(s);
}

static const struct rate *
client_rate_of(const struct session *s, enum client_rate k, enum rate_kind *kind_out,
               const char **name_out)
{
    switch (k) {
    case CLIENT_RATE_MESSAGES:
        *kind_out = RATE_MESSAGES;
        *name_out = "messages_per_client";
        return &s->listener->limits.messages_per_client;
    case CLIENT_RATE_RECIPIENTS:
        *kind_out = RATE_RECIPIENTS;
        *name_out = "recipients_per_client";
        return &s->listener->limits.recipients_per_client;
    }
    MOAT_ASSERT(!"unknown client rate");
    return NULL;
}

bool
session_rate_allows(struct session *s, enum client_rate k)
{
    enum rate_kind kind;
    const char *name;
    const struct rate *r = client_rate_of(s, k, &kind, &name);
    struct ratetable *t = s->env->guard->clients;
    if (r->count == 0 || t == NULL)
        return true;
    struct ratetable_key key;
    admission_client_key(&key, s->listener, (const struct sockaddr *)&s->peer);
    if (ratetable_check(t, &key, kind, r, 1, moat_now_ms()) == RT_OK &&
        cluster_rate_allows(s->env, s->conf, &key, kind, r, 1))
        return true;
    bool dry = s->listener->limits.mode == MODE_LOG;
    session_log(s, LOG_INFO, dry ? EV_WOULD_REFUSE : EV_REFUSED, "reason=%s client=%s mode=%s",
                name, s->client_addr, dry ? "log" : "enforce");
    return dry;
}

void
session_rate_count(struct session *s, enum client_rate k)
{
    enum rate_kind kind;
    const char *name;
    const struct rate *r = client_rate_of(s, k, &kind, &name);
    struct ratetable *t = s->env->guard->clients;
    if (r->count == 0 || t == NULL)
        return;
    struct ratetable_key key;
    admission_client_key(&key, s->listener, (const struct sockaddr *)&s->peer);
    (void)ratetable_add(t, &key, kind, r, 1, moat_now_ms());
    cluster_rate_add(s->env, s->conf, &key, kind, r, 1);
}
