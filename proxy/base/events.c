/*
 * events.c: the tables behind events.h, made from its lists, and their lookups. Pure data.
 */
#include "events.h"

struct event_row {
    const char *name;
    enum stat_mark mark;
};

static const struct event_row events[] = {
#define MOAT_EVENT_ROW(id, name, mark) [id] = {name, mark},
    MOAT_LOG_EVENTS(MOAT_EVENT_ROW)
#undef MOAT_EVENT_ROW
};

struct reason_row {
    const char *name;
    bool orderly;
    enum farewell farewell;
    enum stat_mark mark;
};

static const struct reason_row reasons[] = {
#define MOAT_REASON_ROW(id, name, orderly, farewell, mark) [id] = {name, orderly, farewell, mark},
    MOAT_CLOSE_REASONS(MOAT_REASON_ROW)
#undef MOAT_REASON_ROW
};

static const struct event_row *
event_row(enum log_event e)
{
    MOAT_ASSERT((size_t)e < ARRAY_SIZE(events));
    return &events[e];
}

static const struct reason_row *
reason_row(enum close_reason r)
{
    MOAT_ASSERT((size_t)r < ARRAY_SIZE(reasons));
    return &reasons[r];
}

const char *
log_event_name(enum log_event e)
{
    return event_row(e)->name;
}

enum stat_mark
log_event_mark(enum log_event e)
{
    return event_row(e)->mark;
}

const char *
close_reason_name(enum close_reason r)
{
    return (size_t)r < ARRAY_SIZE(reasons) ? reasons[r].name : "?";
}

bool
close_reason_orderly(enum close_reason r)
{
    return reason_row(r)->orderly;
}

enum farewell
close_reason_farewell(enum close_reason r)
{
    return reason_row(r)->farewell;
}

enum stat_mark
close_reason_mark(enum close_reason r)
{
    return reason_row(r)->mark;
}
