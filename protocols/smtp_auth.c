/*
 * smtp_auth.c: SMTP AUTH once the client's credentials are complete (or, for CRAM-MD5 and SCRAM,
 * each step run by the auth service, its challenges sent as 334): the listener's verifier
 * (the backend's own AUTH during the hand-off, or moat's auth service, after which the backend
 * is told the login with XCLIENT LOGIN= at the next MAIL), and the one failure path for both:
 * the same 535 for every cause, delayed and counted by the core. Credentials are wiped here.
 */
#include <stdio.h>
#include <string.h>

#include "smtp_int.h"

#define SMTP_AUTH_FAILED "535 5.7.8 Authentication credentials invalid\r\n"

void
smtp_auth_start(struct session *s)
{
    struct smtp_session *st = smtp_st(s);
    smtp_enter_state(s, SMTP_AUTH_VERIFY);
    if (session_listener(s)->auth_conf.verifier == VERIFIER_SASL) {
        session_set_phase(s, PHASE_AUTH);
        session_auth_verify(s, &st->sasl.cred, st->sasl.mech);
        return;
    }
    if (session_auth_banned(s, st->sasl.cred.user, st->sasl.cred.user_len)) {
        smtp_auth_failed(s);
        return;
    }
    smtp_handoff_start(s, true);
}

void
smtp_auth_server_step(struct session *s)
{
    struct smtp_session *st = smtp_st(s);
    smtp_enter_state(s, SMTP_AUTH_VERIFY);
    session_set_phase(s, PHASE_AUTH);
    session_auth_step(s, &st->sasl);
}

/* The name the client tried, for the failure log and the per-user count (mechanisms the auth
 * service runs carry no name moat parsed). */
static void
note_user(struct smtp_session *st, const char *user)
{
    if (!sasl_mech_is_server(st->sasl.mech) || user == NULL)
        return;
    size_t n = strlen(user);
    if (n > SASL_USER_MAX)
        n = SASL_USER_MAX;
    memcpy(st->sasl.cred.user, user, n);
    st->sasl.cred.user[n] = '\0';
    st->sasl.cred.user_len = n;
}

void
smtp_auth_failed(struct session *s)
{
    struct smtp_session *st = smtp_st(s);
    char bye[300];
    snprintf(bye, sizeof(bye),
             SMTP_AUTH_FAILED "421 4.7.0 %s Error: too many authentication failures\r\n",
             session_config(s)->hostname);
    smtp_enter_state(s, SMTP_READY);
    session_set_phase(s, PHASE_PREAUTH);
    session_auth_failed(s, st->sasl.cred.user, st->sasl.cred.user_len,
                        sasl_mech_name(st->sasl.mech), SMTP_AUTH_FAILED, bye);
    sasl_exchange_wipe(&st->sasl);
    smtp_resume(s);
}

/* The login is known: remember it for XCLIENT LOGIN= and sender checks. */
void
smtp_auth_succeeded(struct session *s, const char *user)
{
    struct smtp_session *st = smtp_st(s);
    size_t n = strlen(user);
    if (n > SASL_USER_MAX)
        n = SASL_USER_MAX;
    memcpy(st->login, user, n);
    st->login[n] = '\0';
    st->authenticated = true;
    session_auth_login(s, st->login, n, sasl_mech_name(st->sasl.mech));
    sasl_exchange_wipe(&st->sasl);
}

void
smtp_on_auth_done(struct session *s, const struct auth_result *r)
{
    struct smtp_session *st = smtp_st(s);
    if (st->state != SMTP_AUTH_VERIFY)
        return;
    switch (r->status) {
    case AUTH_OK:
        smtp_auth_succeeded(s, r->user != NULL && r->user[0] ? r->user : st->sasl.cred.user);
        smtp_enter_state(s, SMTP_READY);
        session_set_phase(s, PHASE_PREAUTH);
        session_replyf(s, "235 2.7.0 Authentication successful\r\n");
        return;
    case AUTH_FAILED:
        note_user(st, r->user);
        smtp_auth_failed(s);
        return;
    case AUTH_CONTINUE:
        dialogue_sasl_challenge(s, &smtp_sasl, r->challenge);
        smtp_resume(s);
        return;
    case AUTH_TEMPFAIL:
        sasl_exchange_wipe(&st->sasl);
        smtp_enter_state(s, SMTP_READY);
        session_set_phase(s, PHASE_PREAUTH);
        session_replyf(s, "454 4.7.0 Temporary authentication failure\r\n");
        smtp_resume(s);
        return;
    }
}
