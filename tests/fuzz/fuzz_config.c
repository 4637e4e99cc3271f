/*
 * fuzz_config.c: libFuzzer target for config_load_string: any bytes as a config file. It must
 * never crash, leak or hang, whatever sections, keys, values, lengths or NUL bytes come in.
 * Its corpus (tests/fuzz/corpus/config) replays under plain ctest through replay.c.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct config_errors errs;
    char *text = malloc(size + 1);

    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    struct config *c = config_load_string("fuzz.conf", text, &errs);
    if (c != NULL) {
        MOAT_ASSERT(errs.n == 0 && c->listeners != NULL);
        for (struct config_listener *l = c->listeners; l != NULL; l = l->next)
            MOAT_ASSERT(l->backend != NULL && l->addr_len > 0);
    } else {
        MOAT_ASSERT(errs.n > 0);
    }
    config_unref(c);
    config_errors_free(&errs);
    free(text);
    return 0;
}
