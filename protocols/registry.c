/*
 * registry.c: which protocol module serves which listener: one row per listener protocol. The
 * one place that knows every protocol table; the core only ever sees the table a listener was
 * given at load. A table without on_start is not implemented yet: the passthrough serves.
 */
#include "protocols.h"

static const struct protocol *const tables[] = {
    [LPROTO_SMTP] = &smtp_protocol,
    [LPROTO_SUBMISSION] = &smtp_protocol,
    [LPROTO_IMAP] = &imap_protocol,
    [LPROTO_POP3] = &pop3_protocol,
};

const struct protocol *
protocol_for(enum listener_proto p)
{
    const struct protocol *t = (size_t)p < ARRAY_SIZE(tables) ? tables[p] : NULL;
    return t != NULL && t->on_start != NULL ? t : &passthrough_protocol;
}

void
protocols_bind(struct config *conf)
{
    for (struct config_listener *l = conf->listeners; l != NULL; l = l->next)
        l->protocol = protocol_for(l->proto);
}
