/*
 * test_sendermap.c: sender_login_map parsing and lookups (sendermap.h).
 */
#include <string.h>

#include "sendermap.h"
#include "test.h"

static bool
allows(const struct sender_map *m, const char *addr, const char *login)
{
    return sender_map_allows(m, addr, strlen(addr), login);
}

int
main(void)
{
    const char *text = "# shared mailboxes\n"
                       "sales@example.test   alice@example.test,bob@example.test\n"
                       "\n"
                       "@lists.example.test  bob@example.test  # whole domain\r\n"
                       "  Info@Example.test\tALICE@example.test\n";
    const char *err = NULL;
    int line = -1;
    struct sender_map *m = sender_map_parse(text, strlen(text), &err, &line);
    CHECK(m != NULL);
    /* without an entry: only the login's own address */
    CHECK(allows(m, "alice@example.test", "alice@example.test"));
    CHECK(allows(m, "ALICE@example.TEST", "alice@example.test"));
    CHECK(!allows(m, "bob@example.test", "alice@example.test"));
    /* an entry lists who may use it, case-insensitively */
    CHECK(allows(m, "sales@example.test", "alice@example.test"));
    CHECK(allows(m, "Sales@Example.Test", "bob@example.test"));
    CHECK(!allows(m, "sales@example.test", "carol@example.test"));
    CHECK(allows(m, "info@example.test", "alice@example.test"));
    CHECK(!allows(m, "info@example.test", "bob@example.test"));
    /* a domain entry */
    CHECK(allows(m, "anything@lists.example.test", "bob@example.test"));
    CHECK(!allows(m, "anything@lists.example.test", "alice@example.test"));
    /* a prefix of a login is not the login */
    CHECK(!allows(m, "alice@example.tes", "alice@example.test"));
    CHECK(!allows(NULL, "x@y", "x@yz"));
    CHECK(allows(NULL, "x@y", "X@Y"));
    sender_map_free(m);

    const char *bad[] = {"sales@example.test\n", "sales@example.test a b\n",
                         "nodomain alice@example.test\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        line = -1;
        CHECK(sender_map_parse(bad[i], strlen(bad[i]), &err, &line) == NULL);
        CHECK(line == 1);
    }
    CHECK(sender_map_load("/nonexistent/map", &err, &line) == NULL && line == 0);
    return test_finish("test_sendermap");
}
