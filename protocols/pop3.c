/*
 * pop3.c: placeholder until the pop3 front lands: behaves as the passthrough relay.
 */
#include "protocols.h"

const struct protocol pop3_protocol = {
    .name = "pop3",
    .state_size = 0,
    .on_start = NULL,
};
