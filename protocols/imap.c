/*
 * imap.c: placeholder until the imap front lands: behaves as the passthrough relay.
 */
#include "protocols.h"

const struct protocol imap_protocol = {
    .name = "imap",
    .state_size = 0,
    .on_start = NULL,
};
