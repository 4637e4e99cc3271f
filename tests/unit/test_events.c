/*
 * test_events.c: the one table of log events and close reasons (events.h): every name is a
 * lower-case word used once, the /metrics counters bound to them move, and the reasons that
 * end a session in order are exactly the ones that did before the table.
 */
#include <stdlib.h>

#include "events.h"
#include "test.h"

static bool
is_word(const char *s)
{
    if (s == NULL || *s == '\0')
        return false;
    for (; *s != '\0'; s++) {
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
            return false;
    }
    return true;
}

#define EVENT_ID(id, name, mark) id,
static const enum log_event all_events[] = {MOAT_LOG_EVENTS(EVENT_ID)};
#undef EVENT_ID
#define REASON_ID(id, name, orderly, farewell, mark) id,
static const enum close_reason all_reasons[] = {MOAT_CLOSE_REASONS(REASON_ID)};
#undef REASON_ID

static void
test_names(void)
{
    for (size_t i = 0; i < ARRAY_SIZE(all_events); i++) {
        CHECK(all_events[i] == (enum log_event)i); /* the ids are the table's indexes */
        CHECK(is_word(log_event_name(all_events[i])));
        for (size_t j = 0; j < i; j++)
            CHECK(strcmp(log_event_name(all_events[i]), log_event_name(all_events[j])) != 0);
    }
    for (size_t i = 0; i < ARRAY_SIZE(all_reasons); i++) {
        CHECK(all_reasons[i] == (enum close_reason)i);
        CHECK(is_word(close_reason_name(all_reasons[i])));
        for (size_t j = 0; j < i; j++)
            CHECK(strcmp(close_reason_name(all_reasons[i]), close_reason_name(all_reasons[j])) !=
                  0);
    }
    CHECK(REASON_NONE == 0);
    CHECK_STR(close_reason_name(REASON_NONE), "none");
    CHECK_STR(close_reason_name(REASON_IDLE_TIMEOUT), "idle_timeout");
    CHECK_STR(log_event_name(EV_CLOSE), "close");
    CHECK_STR(log_event_name(EV_RELAY_DENIED), "relay_denied");
}

static void
test_orderly_and_farewell(void)
{
    for (size_t i = 0; i < ARRAY_SIZE(all_reasons); i++) {
        enum close_reason r = all_reasons[i];
        bool orderly = r == REASON_CLIENT_QUIT || r == REASON_SHUTDOWN || r == REASON_BACKEND_EOF ||
                       r == REASON_CLIENT_EOF;
        CHECK(close_reason_orderly(r) == orderly);
    }
    CHECK(close_reason_farewell(REASON_IDLE_TIMEOUT) == FAREWELL_TIMEOUT);
    CHECK(close_reason_farewell(REASON_TOTAL_TIMEOUT) == FAREWELL_TIMEOUT);
    CHECK(close_reason_farewell(REASON_SHUTDOWN) == FAREWELL_SHUTDOWN);
    CHECK(close_reason_farewell(REASON_CLIENT_QUIT) == FAREWELL_NONE);
    CHECK(close_reason_farewell(REASON_HANDSHAKE_TIMEOUT) == FAREWELL_NONE);
}

static unsigned long long
refused(const struct stats_listener *l, enum stat_refusal r)
{
    return atomic_load(&l->refusals[r]);
}

static void
test_metrics(void)
{
    struct stats_listener *l = stats_register("events", "smtp");
    CHECK(l != NULL);
    if (l == NULL)
        return;
    stats_mark(l, log_event_mark(EV_RELAY_DENIED));
    stats_mark(l, log_event_mark(EV_SMUGGLING_ATTEMPT));
    stats_mark(l, log_event_mark(EV_DNSBL_REFUSED));
    stats_mark(l, log_event_mark(EV_BACKEND_CONNECT_FAILED));
    stats_mark(l, log_event_mark(EV_LOGIN)); /* moves nothing */
    CHECK(refused(l, STAT_REFUSED_RELAY) == 1);
    CHECK(refused(l, STAT_REFUSED_SMUGGLING) == 1);
    CHECK(refused(l, STAT_REFUSED_DNSBL) == 1);
    CHECK(atomic_load(&l->counters[STAT_BACKEND_CONNECT_FAILURES]) == 1);
    stats_mark(l, close_reason_mark(REASON_ALPN_MISMATCH)); /* a TLS failure and a refusal */
    CHECK(atomic_load(&l->tls_failures[STAT_TLS_FAIL_ALPN]) == 1);
    CHECK(refused(l, STAT_REFUSED_ALPN) == 1);
    stats_mark(l, close_reason_mark(REASON_HANDSHAKE_FAILED));
    stats_mark(l, close_reason_mark(REASON_HANDSHAKE_TIMEOUT));
    CHECK(atomic_load(&l->tls_failures[STAT_TLS_FAIL_HANDSHAKE]) == 1);
    CHECK(atomic_load(&l->tls_failures[STAT_TLS_FAIL_TIMEOUT]) == 1);
    stats_mark(l, close_reason_mark(REASON_LIMIT));
    stats_mark(l, close_reason_mark(REASON_TOO_MANY_COMMANDS));
    stats_mark(l, close_reason_mark(REASON_DENIED));
    stats_mark(l, close_reason_mark(REASON_IDLE_TIMEOUT)); /* moves nothing */
    CHECK(refused(l, STAT_REFUSED_LIMIT) == 2);
    CHECK(refused(l, STAT_REFUSED_ACCESS) == 1);
    stats_mark(NULL, STAT_MARK_REFUSED_LIMIT); /* a listener without a slot */
}

int
main(void)
{
    test_names();
    test_orderly_and_farewell();
    test_metrics();
    return test_finish("test_events");
}
