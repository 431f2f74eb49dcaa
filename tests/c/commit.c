/* Manual commit from C: a reader that received messages and committed only some of them
 * gives the role back; the next reader starts at the commit and receives the rest again.
 *
 * usage: commit NAME */
#include <string.h>

#include "common.h"

static uint64_t recv_seq(atbus_channel *ch) {
    uint8_t buf[256];
    size_t len = 0;
    uint64_t id, seq;
    OK(atbus_recv(ch, buf, sizeof buf, &len));
    CHECK(check_payload(buf, len, &id, &seq) == 0);
    CHECK(id == 5);
    return seq;
}

int main(int argc, char **argv) {
    atbus_channel *ch = NULL;
    uint8_t msg[100];
    uint64_t seq, after_first = 0, now = 0;
    size_t len = 0;

    CHECK(argc == 2);
    OK(atbus_create(argv[1], 1 << 20, NULL, &ch));
    for (seq = 0; seq < 4; seq++) {
        fill_payload(msg, 5, seq, sizeof msg);
        OK(atbus_send(ch, msg, sizeof msg));
    }
    /* No reader role yet: there is no position to give. */
    EXPECT(atbus_reader_position(ch, &now), ATBUS_ERR_INVALID_ARGUMENT);
    EXPECT(atbus_reader_commit(NULL, 0), ATBUS_ERR_INVALID_ARGUMENT);
    EXPECT(atbus_reader_set_manual_commit(NULL, 1), ATBUS_ERR_INVALID_ARGUMENT);

    OK(atbus_reader_set_manual_commit(ch, 1));
    EXPECT(atbus_reader_position(ch, NULL), ATBUS_ERR_INVALID_ARGUMENT);
    CHECK(recv_seq(ch) == 0);
    OK(atbus_reader_position(ch, &after_first));
    CHECK(recv_seq(ch) == 1);
    OK(atbus_reader_position(ch, &now));
    CHECK(now > after_first);
    /* Past what was received: refused, nothing changes. */
    EXPECT(atbus_reader_commit(ch, now + 1), ATBUS_ERR_INVALID_ARGUMENT);
    CHECK(strstr(atbus_last_error(), "cannot commit position") != NULL);
    OK(atbus_reader_commit(ch, after_first)); /* message 0 is handed back for good */
    OK(atbus_release_reader(ch));             /* message 1 was not committed */

    /* A new reader role starts at the commit: message 1 again, then 2 and 3. */
    CHECK(recv_seq(ch) == 1);
    CHECK(recv_seq(ch) == 2);
    CHECK(recv_seq(ch) == 3);
    EXPECT(atbus_recv(ch, msg, sizeof msg, &len), ATBUS_ERR_EMPTY);
    atbus_close(ch);
    OK(atbus_unlink(argv[1]));
    printf("commit ok\n");
    return 0;
}
