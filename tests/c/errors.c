/* Reaches every ATBUS_ERR_* code that a C program can provoke, on purpose, and checks
 * that bad arguments give codes rather than crashes. (ATBUS_ERR_ABANDONED and
 * ATBUS_ERR_PANIC need a writer stopped or failing inside atbus: the Rust side of this
 * test provokes those through the same functions with fault injection.)
 *
 * usage: errors NAME_PREFIX SCRATCH_DIR
 * Channels are named NAME_PREFIX-<what>; files are made in SCRATCH_DIR. Everything is
 * removed on success; the Rust side removes what a failure leaves. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"

static char prefix[200];
static char scratch[300];

static const char *chan(const char *what) {
    static char names[16][256];
    static int next;
    char *n = names[next++ % 16];
    snprintf(n, sizeof names[0], "%s-%s", prefix, what);
    return n;
}

static const char *scratch_file(const char *what, size_t size, int byte) {
    static char path[512];
    FILE *f;
    size_t i;
    snprintf(path, sizeof path, "%s/%s", scratch, what);
    f = fopen(path, "wb");
    CHECK(f != NULL);
    for (i = 0; i < size; i++) {
        CHECK(fputc(byte, f) != EOF);
    }
    CHECK(fclose(f) == 0);
    return path;
}

/* Bad arguments of every kind: a code, never a crash; `*out` is NULL after a failure. */
static void invalid_arguments(void) {
    atbus_channel *ch;
    atbus_channel *const dummy = (atbus_channel *)&ch;
    atbus_config config;
    atbus_stats stats = { .size = sizeof stats };
    char longname[300];
    uint8_t buf[16];
    size_t len;
    const char *name = chan("args");

    EXPECT(atbus_config_init(NULL), ATBUS_ERR_INVALID_ARGUMENT);
    CHECK(strstr(atbus_last_error(), "NULL") != NULL);
    EXPECT(atbus_config_default(NULL), ATBUS_ERR_INVALID_ARGUMENT);

    ch = dummy;
    EXPECT(atbus_create(NULL, 1 << 20, NULL, &ch), ATBUS_ERR_INVALID_ARGUMENT);
    CHECK(ch == NULL);
    EXPECT(atbus_create(name, 1 << 20, NULL, NULL), ATBUS_ERR_INVALID_ARGUMENT);
    ch = dummy;
    EXPECT(atbus_create("/\xff\xfe", 1 << 20, NULL, &ch), ATBUS_ERR_INVALID_ARGUMENT);
    CHECK(ch == NULL);
    CHECK(strstr(atbus_last_error(), "UTF-8") != NULL);
    EXPECT(atbus_create("", 1 << 20, NULL, &ch), ATBUS_ERR_INVALID_ARGUMENT);
    EXPECT(atbus_create("/", 1 << 20, NULL, &ch), ATBUS_ERR_INVALID_ARGUMENT);
    memset(longname, 'a', sizeof longname - 1);
    longname[0] = '/';
    longname[sizeof longname - 1] = '\0';
    EXPECT(atbus_create(longname, 1 << 20, NULL, &ch), ATBUS_ERR_INVALID_ARGUMENT);
    EXPECT(atbus_open(NULL, &ch), ATBUS_ERR_INVALID_ARGUMENT);
    EXPECT(atbus_open(name, NULL), ATBUS_ERR_INVALID_ARGUMENT);
    EXPECT(atbus_open("/\xc3", &ch), ATBUS_ERR_INVALID_ARGUMENT);
    EXPECT(atbus_unlink(NULL), ATBUS_ERR_INVALID_ARGUMENT);
    EXPECT(atbus_unlink("/"), ATBUS_ERR_INVALID_ARGUMENT);

    /* Sizes: nothing, too small for two nodes, absurd. */
    EXPECT(atbus_create(name, 0, NULL, &ch), ATBUS_ERR_INVALID_ARGUMENT);
    CHECK(ch == NULL);
    EXPECT(atbus_create(name, 4096, NULL, &ch), ATBUS_ERR_INVALID_ARGUMENT);
    EXPECT(atbus_create(name, SIZE_MAX, NULL, &ch), ATBUS_ERR_INVALID_ARGUMENT);
    EXPECT(atbus_create(name, SIZE_MAX / 2 + 1, NULL, &ch), ATBUS_ERR_INVALID_ARGUMENT);

    /* Configurations out of range. */
    OK(atbus_config_init(&config));
    config.node_size = 100;
    EXPECT(atbus_create(name, 1 << 20, &config, &ch), ATBUS_ERR_INVALID_ARGUMENT);
    OK(atbus_config_init(&config));
    config.node_size = 1 << 17;
    EXPECT(atbus_create(name, 1 << 20, &config, &ch), ATBUS_ERR_INVALID_ARGUMENT);
    OK(atbus_config_init(&config));
    config.timeout_ms = 0;
    EXPECT(atbus_create(name, 1 << 20, &config, &ch), ATBUS_ERR_INVALID_ARGUMENT);
    OK(atbus_config_init(&config));
    config.timeout_ms = UINT64_MAX;
    EXPECT(atbus_create(name, 1 << 20, &config, &ch), ATBUS_ERR_INVALID_ARGUMENT);
    OK(atbus_config_init(&config));
    config.mode = 0400;
    EXPECT(atbus_create(name, 1 << 20, &config, &ch), ATBUS_ERR_INVALID_ARGUMENT);
    OK(atbus_config_init(&config));
    config.mode = 01600;
    EXPECT(atbus_create(name, 1 << 20, &config, &ch), ATBUS_ERR_INVALID_ARGUMENT);
    OK(atbus_config_init(&config));
    config.protect_bytes = 1 << 20;
    EXPECT(atbus_create(name, 1 << 20, &config, &ch), ATBUS_ERR_INVALID_ARGUMENT);
    CHECK(ch == NULL);
    /* The size field: unset (0), smaller than the first version, absurd. */
    OK(atbus_config_init(&config));
    CHECK(config.size == sizeof(atbus_config));
    config.size = 0;
    EXPECT(atbus_create(name, 1 << 20, &config, &ch), ATBUS_ERR_INVALID_ARGUMENT);
    CHECK(strstr(atbus_last_error(), "atbus_config_init") != NULL);
    config.size = offsetof(atbus_config, checksums); /* cuts off the last field */
    EXPECT(atbus_create(name, 1 << 20, &config, &ch), ATBUS_ERR_INVALID_ARGUMENT);
    config.size = 1 << 20;
    EXPECT(atbus_create(name, 1 << 20, &config, &ch), ATBUS_ERR_INVALID_ARGUMENT);
    CHECK(strstr(atbus_last_error(), "uninitialised") != NULL);
    /* None of the failures above left a channel behind. */
    EXPECT(atbus_open(name, &ch), ATBUS_ERR_NOT_FOUND);

    /* NULL handles and buffers. */
    OK(atbus_create(name, 1 << 20, NULL, &ch));
    EXPECT(atbus_send(NULL, "x", 1), ATBUS_ERR_INVALID_ARGUMENT);
    EXPECT(atbus_send(ch, NULL, 1), ATBUS_ERR_INVALID_ARGUMENT);
    EXPECT(atbus_send_timeout(NULL, "x", 1, 1), ATBUS_ERR_INVALID_ARGUMENT);
    EXPECT(atbus_recv(NULL, buf, sizeof buf, &len), ATBUS_ERR_INVALID_ARGUMENT);
    EXPECT(atbus_recv(ch, buf, sizeof buf, NULL), ATBUS_ERR_INVALID_ARGUMENT);
    len = 99;
    EXPECT(atbus_recv(ch, NULL, sizeof buf, &len), ATBUS_ERR_INVALID_ARGUMENT);
    CHECK(len == 0);
    EXPECT(atbus_get_stats(NULL, &stats), ATBUS_ERR_INVALID_ARGUMENT);
    EXPECT(atbus_get_stats(ch, NULL), ATBUS_ERR_INVALID_ARGUMENT);
    EXPECT(atbus_release_reader(NULL), ATBUS_ERR_INVALID_ARGUMENT);
    CHECK(atbus_max_message_len(NULL) == 0);
    atbus_close(NULL);
    /* None of it sent or received anything. */
    OK(atbus_get_stats(ch, &stats));
    CHECK(stats.messages_sent == 0 && stats.messages_received == 0);
    atbus_close(ch);
    OK(atbus_unlink(name));
}

static void not_found_and_exists(void) {
    atbus_channel *ch = NULL, *other = NULL;
    const char *name = chan("exists");
    EXPECT(atbus_open(name, &ch), ATBUS_ERR_NOT_FOUND);
    CHECK(strstr(atbus_last_error(), name) != NULL);
    EXPECT(atbus_unlink(name), ATBUS_ERR_NOT_FOUND);
    OK(atbus_create(name, 1 << 20, NULL, &ch));
    EXPECT(atbus_create(name, 1 << 20, NULL, &other), ATBUS_ERR_EXISTS);
    CHECK(other == NULL);
    atbus_close(ch);
    OK(atbus_unlink(name));
    EXPECT(atbus_unlink(name), ATBUS_ERR_NOT_FOUND);
}

/* atbus_stats.size: a program built against an older, smaller struct gets the counters
 * that fit and no byte past its struct; an unset or impossible size is refused with
 * nothing written. `now` holds the counters just read with the full struct. */
static void stats_sizes(atbus_channel *ch, const atbus_stats *now) {
    /* The struct as an older header declared it (two counters), then bytes that are not
     * the library's to write. */
    struct older_stats {
        size_t size;
        uint64_t messages_sent;
        uint64_t bytes_sent;
    };
    struct {
        struct older_stats stats;
        unsigned char after[64];
    } older;
    atbus_stats unset;
    size_t i, bad_sizes[] = {0, 4, sizeof(size_t) + 4, sizeof(atbus_stats) + 3, 1 << 20};

    memset(&older, 0xab, sizeof older);
    older.stats.size = sizeof older.stats;
    OK(atbus_get_stats(ch, (atbus_stats *)&older.stats));
    CHECK(older.stats.size == sizeof older.stats);
    CHECK(older.stats.messages_sent == now->messages_sent);
    CHECK(older.stats.bytes_sent == now->bytes_sent);
    for (i = 0; i < sizeof older.after; i++)
        CHECK(older.after[i] == 0xab);

    for (i = 0; i < sizeof bad_sizes / sizeof bad_sizes[0]; i++) {
        memset(&unset, 0xcd, sizeof unset);
        unset.size = bad_sizes[i];
        EXPECT(atbus_get_stats(ch, &unset), ATBUS_ERR_INVALID_ARGUMENT);
        CHECK(strstr(atbus_last_error(), "sizeof(atbus_stats)") != NULL);
        CHECK(unset.size == bad_sizes[i] && unset.messages_sent == 0xcdcdcdcdcdcdcdcdull);
    }
}

/* FULL, TIMEOUT, TOO_LARGE, EMPTY, BUFFER_TOO_SMALL on one small channel. */
static void ring_codes(void) {
    atbus_channel *ch = NULL;
    atbus_stats stats = { .size = sizeof stats };
    uint8_t msg[1000], big[1000];
    size_t len, max;
    uint64_t n = 0, i, id, seq;
    const char *name = chan("ring");

    OK(atbus_create(name, 64 << 10, NULL, &ch));
    max = atbus_max_message_len(ch);
    CHECK(max > 1000);

    EXPECT(atbus_recv(ch, big, sizeof big, &len), ATBUS_ERR_EMPTY);
    CHECK(len == 0);
    /* The hot-path outcomes leave a fixed text, not a formatted one. */
    CHECK(strcmp(atbus_last_error(), "no message ready") == 0);
    EXPECT(atbus_recv_timeout(ch, big, sizeof big, &len, 1), ATBUS_ERR_TIMEOUT);
    CHECK(len == 0);

    /* Too large: refused before the data pointer is read at all. */
    EXPECT(atbus_send(ch, msg, max + 1), ATBUS_ERR_TOO_LARGE);
    EXPECT(atbus_send(ch, msg, SIZE_MAX), ATBUS_ERR_TOO_LARGE);
    EXPECT(atbus_send_timeout(ch, msg, SIZE_MAX, 1), ATBUS_ERR_TOO_LARGE);
    CHECK(strstr(atbus_last_error(), "at most") != NULL);

    /* Fill the ring until it refuses. */
    for (;;) {
        int32_t rc;
        fill_payload(msg, 1, n, sizeof msg);
        rc = atbus_send(ch, msg, sizeof msg);
        if (rc == ATBUS_ERR_FULL) {
            CHECK(strcmp(atbus_last_error(),
                         "channel is full: retry later (or use atbus_send_timeout)") == 0);
            break;
        }
        OK(rc);
        n++;
        CHECK(n < 1000);
    }
    CHECK(n > 10);
    EXPECT(atbus_send_timeout(ch, msg, sizeof msg, 1), ATBUS_ERR_TIMEOUT);
    OK(atbus_get_stats(ch, &stats));
    CHECK(stats.full >= 1);
    CHECK(stats.messages_sent == n);
    stats_sizes(ch, &stats);

    /* A buffer too small: the size needed, and the message stays in the ring. */
    EXPECT(atbus_recv(ch, big, 10, &len), ATBUS_ERR_BUFFER_TOO_SMALL);
    CHECK(len == sizeof msg);
    EXPECT(atbus_recv(ch, NULL, 0, &len), ATBUS_ERR_BUFFER_TOO_SMALL);
    CHECK(len == sizeof msg);
    EXPECT(atbus_recv(ch, big, sizeof msg - 1, &len), ATBUS_ERR_BUFFER_TOO_SMALL);
    CHECK(len == sizeof msg);
    for (i = 0; i < n; i++) {
        OK(atbus_recv(ch, big, sizeof big, &len));
        CHECK(len == sizeof msg);
        CHECK(check_payload(big, len, &id, &seq) == 0);
        CHECK(id == 1 && seq == i);
    }
    EXPECT(atbus_recv(ch, big, sizeof big, &len), ATBUS_ERR_EMPTY);
    /* Room again. */
    OK(atbus_send(ch, msg, sizeof msg));
    atbus_close(ch);
    OK(atbus_unlink(name));
}

/* One reader per channel: a second handle, in this process, is refused until the
 * first gives the role back. */
static void reader_busy(void) {
    atbus_channel *a = NULL, *b = NULL;
    uint8_t buf[64];
    size_t len;
    const char *name = chan("busy");
    OK(atbus_create(name, 1 << 20, NULL, &a));
    OK(atbus_open(name, &b));
    OK(atbus_send(b, "one", 3));
    OK(atbus_send(b, "two", 3));
    OK(atbus_recv(a, buf, sizeof buf, &len));
    CHECK(len == 3 && memcmp(buf, "one", 3) == 0);
    EXPECT(atbus_recv(b, buf, sizeof buf, &len), ATBUS_ERR_READER_BUSY);
    CHECK(strstr(atbus_last_error(), "reader role") != NULL);
    OK(atbus_release_reader(a));
    OK(atbus_release_reader(a)); /* not holding it: still fine */
    OK(atbus_recv(b, buf, sizeof buf, &len));
    CHECK(len == 3 && memcmp(buf, "two", 3) == 0);
    EXPECT(atbus_recv(a, buf, sizeof buf, &len), ATBUS_ERR_READER_BUSY);
    /* Closing the reader's handle gives the role back too. */
    atbus_close(b);
    EXPECT(atbus_recv(a, buf, sizeof buf, &len), ATBUS_ERR_EMPTY);
    atbus_close(a);
    OK(atbus_unlink(name));
}

/* Objects that are not usable segments (file paths: a name with two slashes). */
static void bad_segments(void) {
    atbus_channel *ch = NULL;
    const char *path;

    path = scratch_file("garbage", 8192, 0xAB);
    EXPECT(atbus_open(path, &ch), ATBUS_ERR_BAD_SEGMENT);
    CHECK(ch == NULL);
    CHECK(strstr(atbus_last_error(), "not an atbus segment") != NULL);
    CHECK(unlink(path) == 0);

    path = scratch_file("short", 100, 0);
    EXPECT(atbus_open(path, &ch), ATBUS_ERR_BAD_SEGMENT);
    CHECK(unlink(path) == 0);

    /* All zeros: looks like a segment whose creator has not written the magic yet. */
    path = scratch_file("zeros", 8192, 0);
    EXPECT(atbus_open(path, &ch), ATBUS_ERR_NOT_INITIALIZED);
    CHECK(ch == NULL);
    CHECK(unlink(path) == 0);

    /* A path through a regular file: ENOTDIR, an operating-system error. */
    path = scratch_file("file", 1, 0);
    {
        char through[600];
        snprintf(through, sizeof through, "%s/channel", path);
        EXPECT(atbus_open(through, &ch), ATBUS_ERR_IO);
        CHECK(ch == NULL);
        EXPECT(atbus_create(through, 1 << 20, NULL, &ch), ATBUS_ERR_IO);
    }
    CHECK(unlink(path) == 0);
}

/* A channel of mode 0600 refuses a process of another user (root: a child that drops
 * to nobody) or its owner once the mode is 0 (not root). */
static void permission(void) {
    atbus_channel *ch = NULL;
    const char *name = chan("perm");
    char path[300];
    OK(atbus_create(name, 1 << 20, NULL, &ch));
    atbus_close(ch);
    if (geteuid() == 0) {
        int status;
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            atbus_channel *c = NULL;
            if (setgid(65534) != 0 || setuid(65534) != 0) {
                perror("dropping to nobody");
                _exit(2);
            }
            EXPECT(atbus_open(name, &c), ATBUS_ERR_PERMISSION);
            CHECK(c == NULL);
            EXPECT(atbus_unlink(name), ATBUS_ERR_PERMISSION);
            _exit(0);
        }
        CHECK(waitpid(pid, &status, 0) == pid);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    } else {
        snprintf(path, sizeof path, "/dev/shm%s", name);
        CHECK(chmod(path, 0) == 0);
        EXPECT(atbus_open(name, &ch), ATBUS_ERR_PERMISSION);
        CHECK(ch == NULL);
    }
    OK(atbus_unlink(name));
}

/* Another user's channel, or one others may write: refused for writing unless the caller
 * opts in with atbus_open_ex(ATBUS_OPEN_ALLOW_FOREIGN); a mode wider than 0600 needs
 * allow_shared_mode at creation. Needs root to give the object away (chown to nobody). */
static void untrusted(void) {
    atbus_channel *ch = NULL, *dummy = (atbus_channel *)&ch;
    atbus_config config;
    char path[300];
    struct stat st;
    const char *name = chan("untrusted");

    CHECK(geteuid() == 0); /* chown to another user needs root (the tests run as root) */
    snprintf(path, sizeof path, "/dev/shm%s", name);

    OK(atbus_config_default(&config));
    CHECK(config.allow_shared_mode == false);
    config.mode = 0660;
    EXPECT(atbus_create(name, 1 << 20, &config, &ch), ATBUS_ERR_INVALID_ARGUMENT);
    CHECK(strstr(atbus_last_error(), "allow_shared_mode") != NULL);
    config.allow_shared_mode = true;
    OK(atbus_create(name, 1 << 20, &config, &ch));
    atbus_close(ch);
    CHECK(stat(path, &st) == 0 && (st.st_mode & 07777) == 0660);
    /* Group-writable: refused, then opened on request. */
    ch = dummy;
    EXPECT(atbus_open(name, &ch), ATBUS_ERR_UNTRUSTED);
    CHECK(ch == NULL);
    CHECK(strstr(atbus_last_error(), "writable by users other than its owner") != NULL);
    CHECK(strstr(atbus_last_error(), "ATBUS_OPEN_ALLOW_FOREIGN") != NULL);
    EXPECT(atbus_open_ex(name, 0, &ch), ATBUS_ERR_UNTRUSTED);
    OK(atbus_open_ex(name, ATBUS_OPEN_ALLOW_FOREIGN, &ch));
    OK(atbus_send(ch, "shared", 6));
    atbus_close(ch);

    /* Owned by nobody, mode 0600: refused, then opened on request. */
    CHECK(chmod(path, 0600) == 0);
    CHECK(chown(path, 65534, 65534) == 0);
    EXPECT(atbus_open(name, &ch), ATBUS_ERR_UNTRUSTED);
    CHECK(strstr(atbus_last_error(), "uid 65534") != NULL);
    CHECK(strstr(atbus_last_error(), "0600") != NULL);
    OK(atbus_open_ex(name, ATBUS_OPEN_ALLOW_FOREIGN, &ch));
    OK(atbus_send(ch, "foreign", 7));
    atbus_close(ch);

    /* Unknown flags are refused, not ignored. */
    ch = dummy;
    EXPECT(atbus_open_ex(name, 2, &ch), ATBUS_ERR_INVALID_ARGUMENT);
    CHECK(ch == NULL);
    EXPECT(atbus_open_ex(name, ATBUS_OPEN_ALLOW_FOREIGN | 0x80000000u, &ch),
           ATBUS_ERR_INVALID_ARGUMENT);
    EXPECT(atbus_open_ex(NULL, 0, &ch), ATBUS_ERR_INVALID_ARGUMENT);
    EXPECT(atbus_open_ex(name, 0, NULL), ATBUS_ERR_INVALID_ARGUMENT);
    OK(atbus_unlink(name));
}

/* Timeouts too long for the clock (UINT64_MAX ms) mean "wait as long as it takes": with
 * room, or a message waiting, the call returns at once, never ATBUS_ERR_PANIC. */
static void huge_timeouts(void) {
    atbus_channel *ch = NULL;
    uint8_t buf[16];
    size_t len = 0;
    const char *name = chan("huge");
    OK(atbus_create(name, 1 << 20, NULL, &ch));
    OK(atbus_send_timeout(ch, "forever", 7, UINT64_MAX));
    OK(atbus_send_timeout(ch, "long", 4, UINT64_MAX / 2));
    OK(atbus_recv_timeout(ch, buf, sizeof buf, &len, UINT64_MAX));
    CHECK(len == 7 && memcmp(buf, "forever", 7) == 0);
    OK(atbus_recv_timeout(ch, buf, sizeof buf, &len, UINT64_MAX / 2));
    CHECK(len == 4 && memcmp(buf, "long", 4) == 0);
    atbus_close(ch);
    OK(atbus_unlink(name));
}

/* A channel larger than the file system holding it: refused at creation, not left
 * behind. */
static void no_space(void) {
    atbus_channel *ch = NULL;
    struct statvfs fs;
    size_t total;
    const char *name = chan("nospace");
    CHECK(statvfs("/dev/shm", &fs) == 0);
    total = (size_t)fs.f_blocks * (size_t)fs.f_frsize;
    CHECK(total > 0 && total < SIZE_MAX / 4);
    EXPECT(atbus_create(name, 2 * total, NULL, &ch), ATBUS_ERR_NO_SPACE);
    CHECK(ch == NULL);
    CHECK(strstr(atbus_last_error(), "no room") != NULL);
    EXPECT(atbus_open(name, &ch), ATBUS_ERR_NOT_FOUND);
}

/* Every code has its own description; unknown codes have one too. */
static void strerror_table(void) {
    int32_t code, other;
    CHECK(strcmp(atbus_strerror(ATBUS_OK), "success") == 0);
    for (code = ATBUS_ERR_READER_ROLE_LOST; code <= ATBUS_OK; code++) {
        const char *s = atbus_strerror(code);
        CHECK(s != NULL && *s != '\0');
        CHECK(strcmp(s, atbus_strerror(1)) != 0);
        for (other = ATBUS_ERR_READER_ROLE_LOST; other < code; other++) {
            CHECK(strcmp(s, atbus_strerror(other)) != 0);
        }
    }
    CHECK(strcmp(atbus_strerror(1), "unknown atbus error code") == 0);
    CHECK(strcmp(atbus_strerror(-1000), "unknown atbus error code") == 0);
    CHECK(strcmp(atbus_strerror(INT32_MIN), "unknown atbus error code") == 0);
}

int main(int argc, char **argv) {
    CHECK(argc == 3);
    snprintf(prefix, sizeof prefix, "%s", argv[1]);
    snprintf(scratch, sizeof scratch, "%s", argv[2]);
    CHECK(*atbus_last_error() == '\0'); /* nothing failed yet on this thread */
    strerror_table();
    invalid_arguments();
    not_found_and_exists();
    ring_codes();
    reader_busy();
    bad_segments();
    permission();
    untrusted();
    huge_timeouts();
    no_space();
    printf("errors ok\n");
    return 0;
}
