/*
 * cluster_msg.h: the messages of a fleet's bans channel (cluster.c): "c KEY MS" (a client ban),
 * "u KEY MS" (a user-name ban), "f USER CLIENT" (a login: the client is familiar for the user),
 * where KEY, USER and CLIENT are ratetable keys in hex (length byte, then the bytes). Pure:
 * format and parse, bounded, no allocation; peer (Redis) input never asserts.
 */
#ifndef MOAT_CLUSTER_MSG_H
#define MOAT_CLUSTER_MSG_H

#include "ratetable.h"

#define CLUSTER_KEY_HEX (2 * (1 + RATETABLE_KEY_MAX) + 1)
#define CLUSTER_MSG_MAX (2 + 2 * CLUSTER_KEY_HEX + 2)

enum cluster_msg_kind { CMSG_CLIENT_BAN = 0, CMSG_USER_BAN, CMSG_FAMILIAR };

struct cluster_msg {
    enum cluster_msg_kind kind;
    struct ratetable_key key;    /* the banned client or user; the user for CMSG_FAMILIAR */
    struct ratetable_key client; /* CMSG_FAMILIAR */
    uint64_t ban_ms;             /* bans: how long, > 0 */
};

void cluster_key_hex(const struct ratetable_key *k, char out[CLUSTER_KEY_HEX]);
/* One message into out (CLUSTER_MSG_MAX bytes). */
void cluster_msg_format(const struct cluster_msg *m, char *out, size_t cap);
/* 0, or -1 when p is not a well-formed message. */
int cluster_msg_parse(const char *p, size_t len, struct cluster_msg *out);

#endif
