/*
 * test_proto_dialogue.c: the kit the three dialogues share (protocols/dialogue.c), against the
 * fake core: a command table's policy in its order (known, secret, served, in sequence), the
 * SASL step handler (a challenge in the protocol's prefix, credentials, cancel and bad lines
 * dropping the exchange), the state names, and one meaning of a lost backend.
 */
#include "dialogue.h"
#include "fake_session.h"
#include "protocols.h"
#include "test.h"

enum { ST_IDLE = 0, ST_USER, ST_LINE };
enum { V_NOOP = 1, V_PASS, V_AUTH, V_LATER };

static int handled;

static int
handler(struct session *s, const struct dialogue_call *c)
{
    handled++;
    return 0;
}

static const struct dialogue_command table[] = {
    {V_NOOP, NULL, DIALOGUE_IN(ST_IDLE) | DIALOGUE_IN(ST_USER), 0, handler},
    {V_PASS, NULL, DIALOGUE_IN(ST_USER), DIALOGUE_SECRET, handler},
    {V_AUTH, NULL, DIALOGUE_IN(ST_IDLE), DIALOGUE_SECRET, handler},
    {V_LATER, NULL, 0, 0, NULL},
};

static enum dialogue_verdict
find(struct session *s, int verb, unsigned state)
{
    const struct dialogue_command *c = NULL;
    enum dialogue_verdict v = dialogue_find(s, table, ARRAY_SIZE(table), verb, NULL, 0, state, &c);
    CHECK((v == DIALOGUE_UNKNOWN) == (c == NULL));
    return v;
}

static void
test_policy(void)
{
    struct session *s = fake_session_new(&pop3_protocol, LPROTO_POP3, LTLS_STARTTLS, IDENT_NONE);
    s->listener.auth = true;
    CHECK(find(s, V_NOOP, ST_IDLE) == DIALOGUE_RUN);
    CHECK(find(s, 99, ST_IDLE) == DIALOGUE_UNKNOWN);
    CHECK(find(s, V_LATER, ST_IDLE) == DIALOGUE_NOT_HERE);
    /* a secret before TLS is refused as such, whatever the state */
    CHECK(find(s, V_PASS, ST_IDLE) == DIALOGUE_NEEDS_TLS);
    CHECK(find(s, V_AUTH, ST_USER) == DIALOGUE_NEEDS_TLS);
    s->tls = true;
    CHECK(find(s, V_PASS, ST_USER) == DIALOGUE_RUN);
    CHECK(find(s, V_PASS, ST_IDLE) == DIALOGUE_OUT_OF_SEQUENCE);
    s->listener.auth = false; /* TLS, but no logins on this listener */
    CHECK(find(s, V_AUTH, ST_IDLE) == DIALOGUE_NEEDS_TLS);
    const struct dialogue_command named[] = {{-1, "LOGIN", DIALOGUE_IN(ST_IDLE), 0, handler}};
    const struct dialogue_command *c = NULL;
    CHECK(dialogue_find(s, named, 1, -1, "login", 5, ST_IDLE, &c) == DIALOGUE_RUN && c == named);
    CHECK(dialogue_find(s, named, 1, -1, "LOGI", 4, ST_IDLE, &c) == DIALOGUE_UNKNOWN);
    fake_session_free(s);
}

static unsigned state;
static int credentials, server_steps, ends_bad, ends_cancelled;

static void
await(struct session *s)
{
    state = ST_LINE;
}

static void
got_credentials(struct session *s)
{
    credentials++;
}

static void
server_step(struct session *s)
{
    server_steps++;
}

static void
ended(struct session *s, bool bad)
{
    state = ST_IDLE;
    if (bad)
        ends_bad++;
    else
        ends_cancelled++;
}

static const struct dialogue_sasl kit = {
    .challenge = "334 ",
    .await = await,
    .credentials = got_credentials,
    .server_step = server_step,
    .ended = ended,
};

static void
test_sasl(void)
{
    struct session *s =
        fake_session_new(&smtp_protocol, LPROTO_SUBMISSION, LTLS_STARTTLS, IDENT_NONE);
    struct sasl_exchange x = {0};
    /* LOGIN without an initial response: moat's first challenge, then the two lines */
    dialogue_sasl_start(s, &kit, &x, SASL_MECH_LOGIN, NULL, 0);
    CHECK_STR(fake_client_output(s), "334 VXNlcm5hbWU6\r\n");
    CHECK(state == ST_LINE);
    dialogue_sasl_step(s, &kit, &x, "YWxpY2U=", 8);
    CHECK_STR(fake_client_output(s), "334 UGFzc3dvcmQ6\r\n");
    dialogue_sasl_step(s, &kit, &x, "c2VjcmV0", 8);
    CHECK(credentials == 1);
    CHECK_STR(x.cred.user, "alice");
    sasl_exchange_wipe(&x);
    /* PLAIN with an initial response: the credentials at once */
    dialogue_sasl_start(s, &kit, &x, SASL_MECH_PLAIN, "AGFsaWNlAHNlY3JldA==", 20);
    CHECK(credentials == 2);
    sasl_exchange_wipe(&x);
    /* "*" cancels, an undecodable line is bad: the exchange is dropped either way */
    dialogue_sasl_start(s, &kit, &x, SASL_MECH_LOGIN, NULL, 0);
    dialogue_sasl_step(s, &kit, &x, "*", 1);
    CHECK(ends_cancelled == 1 && ends_bad == 0 && state == ST_IDLE && s->auth_aborted);
    dialogue_sasl_start(s, &kit, &x, SASL_MECH_LOGIN, NULL, 0);
    dialogue_sasl_step(s, &kit, &x, "!!!!", 4);
    CHECK(ends_bad == 1 && state == ST_IDLE);
    /* a mechanism the auth service runs: its step, and its challenge passed on as it came */
    (void)fake_client_output(s); /* the challenges of the exchanges above */
    dialogue_sasl_start(s, &kit, &x, SASL_MECH_CRAM_MD5, NULL, 0);
    CHECK(server_steps == 1);
    dialogue_sasl_challenge(s, &kit, "PDEyMzQ+");
    CHECK_STR(fake_client_output(s), "334 PDEyMzQ+\r\n");
    CHECK(state == ST_LINE && s->phase == PHASE_PREAUTH);
    sasl_exchange_wipe(&x);
    fake_session_free(s);
}

static void
test_states_and_backend(void)
{
    static const char *const names[] = {[ST_IDLE] = "idle", [ST_LINE] = "line"};
    const struct dialogue_states d = {names, ARRAY_SIZE(names), EV_SMTP_STATE};
    CHECK_STR(dialogue_state_name(&d, ST_IDLE), "idle");
    CHECK_STR(dialogue_state_name(&d, ST_USER), "?"); /* no name given */
    CHECK_STR(dialogue_state_name(&d, 40), "?");
    CHECK_STR(dialogue_backend_why(BACKEND_FAILED), "connect failed");
    CHECK_STR(dialogue_backend_why(BACKEND_TIMEOUT), "backend timeout");
    CHECK(dialogue_backend_reason(BACKEND_EOF) == REASON_BACKEND_EOF);
    CHECK(dialogue_backend_reason(BACKEND_ERROR) == REASON_BACKEND_ERROR);
    CHECK(dialogue_backend_reason(BACKEND_FAILED) == REASON_BACKEND_UNAVAILABLE);
    CHECK(dialogue_backend_reason(BACKEND_TIMEOUT) == REASON_BACKEND_TIMEOUT);
}

int
main(void)
{
    test_policy();
    test_sasl();
    test_states_and_backend();
    return test_finish("test_proto_dialogue");
}
