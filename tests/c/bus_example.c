#include <stdio.h>
#include "atbus.h"

int main(int argc, char **argv) {
    const char *name = argc > 1 ? argv[1] : "/atbus-bus-example";
    atbus_bus *bus;
    atbus_endpoint *orders, *client;
    atbus_envelope env;
    char buf[256], names[8][64];
    size_t len, count;
    /* Create the bus if it is not there; other processes open it by name. */
    if (atbus_bus_open(name, ATBUS_BUS_CREATE, &bus) != ATBUS_OK ||
        atbus_bus_join(bus, "orders", &orders) != ATBUS_OK || /* usually one per process */
        atbus_bus_join(bus, "client", &client) != ATBUS_OK) {
        fprintf(stderr, "atbus: %s\n", atbus_last_error());
        return 1;
    }
    atbus_endpoint_send_to(client, "orders", "buy 10", 6, UINT64_MAX); /* waits for room */
    if (atbus_endpoint_recv(orders, buf, sizeof buf, &len, &env, 1000) == ATBUS_OK)
        printf("orders got \"%.*s\" from %s\n", (int)len, buf, env.from);
    /* A request waits for its reply, which the server sends from its receive loop with
       atbus_endpoint_reply(ep, &env, ...) (tests/c/bus_server.c). */
    int32_t rc = atbus_endpoint_request(client, "nobody", "price?", 6, buf, sizeof buf, &len,
                                        1000);
    printf("request to nobody: %s\n", atbus_strerror(rc));
    atbus_bus_members(bus, names, 8, &count);
    printf("%zu members: %s %s\n", count, names[0], names[1]);
    atbus_endpoint_close(client); /* leaves the bus: record freed, inbox unlinked */
    atbus_endpoint_close(orders);
    atbus_bus_close(bus);
    atbus_bus_unlink(name); /* the directory and every inbox it lists */
    return 0;
}
