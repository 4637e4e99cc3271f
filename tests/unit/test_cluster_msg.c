/*
 * test_cluster_msg.c: the fleet's bans channel messages (cluster_msg.h) round trip and refuse
 * every malformed shape; the Redis key names (cluster_schema.h).
 */
#include <arpa/inet.h>
#include <netinet/in.h>

#include "cluster_msg.h"
#include "cluster_schema.h"
#include "test.h"

static void
client_key(struct ratetable_key *k, const char *ip)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    inet_pton(AF_INET, ip, &a.sin_addr);
    ratetable_key_addr(k, (struct sockaddr *)&a, 64);
}

static bool
key_eq(const struct ratetable_key *a, const struct ratetable_key *b)
{
    return a->len == b->len && memcmp(a->bytes, b->bytes, a->len) == 0;
}

static void
test_round_trip(void)
{
    struct cluster_msg m = {.kind = CMSG_CLIENT_BAN, .ban_ms = 600000}, back;
    client_key(&m.key, "192.0.2.7");
    char text[CLUSTER_MSG_MAX];
    cluster_msg_format(&m, text, sizeof(text));
    CHECK_STR(text, "c 0504c0000207 600000");
    CHECK(cluster_msg_parse(text, strlen(text), &back) == 0);
    CHECK(back.kind == CMSG_CLIENT_BAN && back.ban_ms == 600000 && key_eq(&back.key, &m.key));
    m.kind = CMSG_USER_BAN;
    ratetable_key_user(&m.key, "alice@example.test", 18);
    cluster_msg_format(&m, text, sizeof(text));
    CHECK(cluster_msg_parse(text, strlen(text), &back) == 0);
    CHECK(back.kind == CMSG_USER_BAN && key_eq(&back.key, &m.key));
    m.kind = CMSG_FAMILIAR;
    client_key(&m.client, "198.51.100.1");
    cluster_msg_format(&m, text, sizeof(text));
    CHECK(cluster_msg_parse(text, strlen(text), &back) == 0);
    CHECK(back.kind == CMSG_FAMILIAR && key_eq(&back.key, &m.key) &&
          key_eq(&back.client, &m.client));
}

static void
test_bad(void)
{
    static const char *const bad[] = {
        "",
        "c",
        "x 0504c0000207 1",
        "c 0504c0000207",     /* no time */
        "c 0504c0000207 0",   /* no time */
        "c 0504c0000207 12a", /* not a number */
        "c 0604c0000207 1",   /* length byte does not match */
        "c 0504C0000207 1",   /* uppercase */
        "c 0504c000020 1",    /* odd hex */
        "c  0504c0000207 1",  /* double space */
        "c 0504c0000207 99999999999999999999",
        "f 0504c0000207", /* one key */
        "f 0504c0000207 05040a0b0c0d 1",
        "c 1904c0000207c0000207c0000207c0000207c0000207c0000207c0000207c0000207c0000207c00 1",
    };
    struct cluster_msg m;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (cluster_msg_parse(bad[i], strlen(bad[i]), &m) == 0)
            fprintf(stderr, "accepted: '%s'\n", bad[i]);
        CHECK(cluster_msg_parse(bad[i], strlen(bad[i]), &m) != 0);
    }
}

static void
test_keys(void)
{
    struct ratetable_key k;
    client_key(&k, "192.0.2.7");
    char out[CLUSTER_KEY_MAX];
    cluster_key("moat:", out, "c", &k, 0);
    CHECK_STR(out, "moat:c:{192.0.2.7}");
    cluster_key("fleet1:", out, "r", &k, 42);
    CHECK_STR(out, "fleet1:r:{192.0.2.7}:42");
    struct rate per_minute = {.count = 10, .window_ms = 60000}, none = {0};
    CHECK(cluster_window(&per_minute, 59999) == 1 && cluster_window(&per_minute, 60000) == 2);
    CHECK(cluster_window(&none, 123456) == 1);
    for (int s = 0; s < CLUSTER_SCRIPTS; s++)
        CHECK(cluster_scripts[s] != NULL && strstr(cluster_scripts[s], "redis.call") != NULL);
}

/* A fleet's rate is a sliding window: the previous window's count fades out across the current
 * one, so 10/min cannot become 20 across a boundary. */
static void
test_sliding_window(void)
{
    struct ratetable_key k;
    client_key(&k, "192.0.2.7");
    struct rate per_minute = {.count = 10, .window_ms = 60000}, none = {0};
    char cur[CLUSTER_KEY_MAX], prev[CLUSTER_KEY_MAX];
    cluster_rate_keys("moat:", cur, prev, "r", &k, &per_minute, 120000 + 5);
    CHECK_STR(cur, "moat:r:{192.0.2.7}:3");
    CHECK_STR(prev, "moat:r:{192.0.2.7}:2");
    cluster_rate_keys("moat:", cur, prev, "r", &k, &none, 120000);
    CHECK_STR(cur, "moat:r:{192.0.2.7}:1");
    CHECK_STR(prev, cur);
    /* the previous window counts fully at the boundary, half way through by half */
    CHECK(cluster_prev_weight(&per_minute, 120000) == CLUSTER_WEIGHT_ONE);
    CHECK(cluster_prev_weight(&per_minute, 150000) == CLUSTER_WEIGHT_ONE / 2);
    CHECK(cluster_prev_weight(&per_minute, 179999) == CLUSTER_WEIGHT_ONE / 60000);
    CHECK(cluster_prev_weight(&none, 150000) == 0);
    /* 10 just before the boundary: 1 ms after it, 9 still count (rounded down, as the local
     * table does), so one more is allowed, not ten */
    CHECK(cluster_rate_estimate(0, 10, cluster_prev_weight(&per_minute, 120001)) == 9);
    CHECK(cluster_rate_estimate(4, 10, cluster_prev_weight(&per_minute, 150000)) == 9);
    CHECK(cluster_rate_estimate(4, 10, cluster_prev_weight(&per_minute, 179999)) == 4);
    CHECK(cluster_rate_ttl(&per_minute) == 120000 && cluster_rate_ttl(&none) == 2);
}

int
main(void)
{
    test_round_trip();
    test_bad();
    test_keys();
    test_sliding_window();
    return test_finish("test_cluster_msg");
}
