#include <stdio.h>
#include "atbus.h"

int main(int argc, char **argv) {
    const char *name = argc > 1 ? argv[1] : "/atbus-example";
    atbus_channel *ch;
    atbus_stats stats = { .size = sizeof stats };
    char buf[256];
    size_t len;
    /* 1 MiB channel, default configuration; other processes atbus_open() it by name. */
    if (atbus_create(name, 1 << 20, NULL, &ch) != ATBUS_OK) {
        fprintf(stderr, "atbus_create: %s\n", atbus_last_error());
        return 1;
    }
    atbus_send(ch, "hello", 5);                    /* any thread, any process */
    int32_t rc = atbus_recv(ch, buf, sizeof buf, &len); /* one reader per channel */
    if (rc == ATBUS_OK)
        printf("received %.*s\n", (int)len, buf);
    else
        printf("atbus_recv: %s\n", atbus_strerror(rc));
    atbus_get_stats(ch, &stats);
    printf("sent %llu, received %llu\n", (unsigned long long)stats.messages_sent,
           (unsigned long long)stats.messages_received);
    atbus_close(ch);   /* the channel stays until unlinked */
    atbus_unlink(name);
    return 0;
}
