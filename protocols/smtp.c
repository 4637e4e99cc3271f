/*
 * smtp.c: placeholder until the smtp front lands: behaves as the passthrough relay.
 */
#include "protocols.h"

const struct protocol smtp_protocol = {
    .name = "smtp",
    .state_size = 0,
    .on_start = NULL,
};
