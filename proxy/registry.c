/*
 * registry.c: which protocol module serves which listener. The one place that knows every
 * protocol table. A table without on_start is not implemented yet: the passthrough serves.
 */
#include "protocols.h"
#include "session.h"

static const struct protocol *
implemented(const struct protocol *p)
{
    return p->on_start != NULL ? p : &passthrough_protocol;
}

const struct protocol *
protocol_for(enum listener_proto p, enum listener_tls tls)
{
    switch (p) {
    case LPROTO_SMTP:
    case LPROTO_SUBMISSION:
        return implemented(&smtp_protocol);
    case LPROTO_IMAP:
        return implemented(&imap_protocol);
    case LPROTO_POP3:
        return implemented(&pop3_protocol);
    }
    return &passthrough_protocol;
}
