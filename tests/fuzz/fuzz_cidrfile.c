/*
 * fuzz_cidrfile.c: libFuzzer target for CIDR list files ([access] allow/deny = file:PATH): the
 * input becomes a file's content (in a memfd), is read by cidr_list_add_file, and the resulting
 * list is matched against addresses made from the input and fed to the per-client key helper.
 * The reader must answer with entries or "line N: error", never crash, overflow or leak.
 */
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "confval.h"
#include "ratetable.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
match_some(const struct cidr_list *list, const uint8_t *data, size_t size)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6};
    memcpy(&sin.sin_addr, data, MOAT_MIN(size, sizeof(sin.sin_addr)));
    memcpy(&sin6.sin6_addr, data, MOAT_MIN(size, sizeof(sin6.sin6_addr)));
    (void)cidr_list_match(list, (struct sockaddr *)&sin);
    (void)cidr_list_match(list, (struct sockaddr *)&sin6);
    struct ratetable_key k;
    ratetable_key_addr(&k, (struct sockaddr *)&sin6, size > 0 ? data[0] : 64);
    char text[80];
    (void)ratetable_key_format(&k, text, sizeof(text));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = memfd_create("cidrs", MFD_CLOEXEC);
    if (fd < 0)
        return 0;
    if (write(fd, data, size) != (ssize_t)size) {
        close(fd);
        return 0;
    }
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    struct cidr_list list = {NULL, 0};
    const char *err = NULL;
    int line = 0;
    if (cidr_list_add_file(&list, path, &err, &line) != 0)
        MOAT_ASSERT(err != NULL);
    match_some(&list, data, size);
    cidr_list_free(&list);
    close(fd);
    return 0;
}
