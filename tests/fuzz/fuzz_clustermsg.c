/*
 * fuzz_clustermsg.c: the fleet's bans channel parser with arbitrary bytes (what a Redis, or
 * anyone who can publish on it, sends); a message that parses formats back to the same text.
 */
#include <string.h>

#include "cluster_msg.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    struct cluster_msg m;
    if (cluster_msg_parse((const char *)data, size, &m) != 0)
        return 0;
    MOAT_ASSERT(m.key.len <= RATETABLE_KEY_MAX && m.client.len <= RATETABLE_KEY_MAX);
    char text[CLUSTER_MSG_MAX];
    cluster_msg_format(&m, text, sizeof(text));
    MOAT_ASSERT(strlen(text) == size && memcmp(text, data, size) == 0);
    return 0;
}
