/*
 * registry.c: which protocol module serves which listener. The one place that knows every
 * protocol table.
 */
#include "protocols.h"
#include "session.h"

const struct protocol *
protocol_for(enum listener_proto p, enum listener_tls tls)
{
    switch (p) {
    case LPROTO_SMTP:
    case LPROTO_SUBMISSION:
    case LPROTO_IMAP:
    case LPROTO_POP3:
        return &passthrough_protocol;
    }
    return &passthrough_protocol;
}
