// include/atbus.h compiles as C++ (c++ -std=c++11 -Wall -Wextra -Werror -c), its
// functions have C linkage, and its structs have the layout of the Rust side, whose
// sizes and offsets the test passes in as -D definitions.
#include "atbus.h"

#include <cstddef>
#include <type_traits>

static_assert(std::is_standard_layout<atbus_config>::value, "atbus_config is plain data");
static_assert(std::is_trivially_copyable<atbus_stats>::value, "atbus_stats is plain data");
static_assert(sizeof(atbus_config) == RUST_CONFIG_SIZE, "atbus_config size");
static_assert(offsetof(atbus_config, size) == 0, "size comes first, in every version");
static_assert(offsetof(atbus_config, node_size) == RUST_CONFIG_NODE_SIZE, "node_size");
static_assert(offsetof(atbus_config, timeout_ms) == RUST_CONFIG_TIMEOUT_MS, "timeout_ms");
static_assert(offsetof(atbus_config, write_retries) == RUST_CONFIG_WRITE_RETRIES,
              "write_retries");
static_assert(offsetof(atbus_config, mode) == RUST_CONFIG_MODE, "mode");
static_assert(offsetof(atbus_config, protect_bytes) == RUST_CONFIG_PROTECT_BYTES,
              "protect_bytes");
static_assert(offsetof(atbus_config, detect_dead_writers) == RUST_CONFIG_DETECT_DEAD_WRITERS,
              "detect_dead_writers");
static_assert(offsetof(atbus_config, checksums) == RUST_CONFIG_CHECKSUMS, "checksums");
static_assert(offsetof(atbus_config, allow_shared_mode) == RUST_CONFIG_ALLOW_SHARED_MODE,
              "allow_shared_mode");
static_assert(sizeof(atbus_stats) == RUST_STATS_SIZE, "atbus_stats size");
static_assert(offsetof(atbus_stats, size) == 0, "size comes first, in every version");
static_assert(offsetof(atbus_stats, messages_sent) == RUST_STATS_MESSAGES_SENT,
              "the counters follow size");
static_assert(std::is_trivially_copyable<atbus_envelope>::value, "atbus_envelope is plain data");
static_assert(sizeof(atbus_envelope) == RUST_ENVELOPE_SIZE, "atbus_envelope size");
static_assert(offsetof(atbus_envelope, kind) == 0, "kind comes first");
static_assert(offsetof(atbus_envelope, from_pid) == RUST_ENVELOPE_FROM_PID, "from_pid");
static_assert(offsetof(atbus_envelope, correlation) == RUST_ENVELOPE_CORRELATION,
              "correlation");
static_assert(offsetof(atbus_envelope, from_generation) == RUST_ENVELOPE_FROM_GENERATION,
              "from_generation");
static_assert(offsetof(atbus_envelope, from) == RUST_ENVELOPE_FROM, "from");
static_assert(sizeof(((atbus_envelope *)nullptr)->from) == 64, "from holds 63 bytes and a NUL");
static_assert(ATBUS_OK == 0 && ATBUS_ERR_EMPTY < 0 && ATBUS_ERR_PANIC < 0, "codes");
static_assert(ATBUS_ERR_NAME_TAKEN < 0 && ATBUS_ERR_NO_SUCH_ENDPOINT < 0 &&
                  ATBUS_ERR_PEER_GONE < 0 && ATBUS_ERR_DIRECTORY_FULL < 0 &&
                  ATBUS_ERR_LOCK_BUSY < 0,
              "bus codes");
static_assert(ATBUS_BUS_CREATE == 1u && ATBUS_MSG_DATA == 0u && ATBUS_MSG_REQUEST == 1u &&
                  ATBUS_MSG_REPLY == 2u,
              "bus flags and kinds");

// Every function, taken by address with its exact C++ type.
extern "C" {
typedef int32_t (*create_fn)(const char *, size_t, const atbus_config *, atbus_channel **);
typedef int32_t (*recv_fn)(atbus_channel *, void *, size_t, size_t *);
}

int atbus_header_compiles_as_cpp() {
    create_fn create = &atbus_create;
    recv_fn recv = &atbus_recv;
    int32_t (*open)(const char *, atbus_channel **) = &atbus_open;
    int32_t (*open_ex)(const char *, uint32_t, atbus_channel **) = &atbus_open_ex;
    void (*close)(atbus_channel *) = &atbus_close;
    int32_t (*unlink)(const char *) = &atbus_unlink;
    int32_t (*send)(atbus_channel *, const void *, size_t) = &atbus_send;
    int32_t (*send_timeout)(atbus_channel *, const void *, size_t, uint64_t) =
        &atbus_send_timeout;
    int32_t (*release)(atbus_channel *) = &atbus_release_reader;
    int32_t (*stats)(const atbus_channel *, atbus_stats *) = &atbus_get_stats;
    int32_t (*config)(atbus_config *) = &atbus_config_init;
    int32_t (*config_default)(atbus_config *) = &atbus_config_default;
    size_t (*max_len)(const atbus_channel *) = &atbus_max_message_len;
    const char *(*strerror)(int32_t) = &atbus_strerror;
    const char *(*last_error)() = &atbus_last_error;
    // The bus calls, with the exact signatures of issue 24.
    int32_t (*bus_open)(const char *, uint32_t, struct atbus_bus **) = &atbus_bus_open;
    void (*bus_close)(struct atbus_bus *) = &atbus_bus_close;
    int32_t (*bus_unlink)(const char *) = &atbus_bus_unlink;
    int32_t (*bus_join)(struct atbus_bus *, const char *, struct atbus_endpoint **) =
        &atbus_bus_join;
    void (*ep_close)(struct atbus_endpoint *) = &atbus_endpoint_close;
    int32_t (*send_to)(struct atbus_endpoint *, const char *, const void *, size_t, uint64_t) =
        &atbus_endpoint_send_to;
    int32_t (*ep_recv)(struct atbus_endpoint *, void *, size_t, size_t *,
                       struct atbus_envelope *, uint64_t) = &atbus_endpoint_recv;
    int32_t (*request)(struct atbus_endpoint *, const char *, const void *, size_t, void *,
                       size_t, size_t *, uint64_t) = &atbus_endpoint_request;
    int32_t (*reply)(struct atbus_endpoint *, const struct atbus_envelope *, const void *,
                     size_t) = &atbus_endpoint_reply;
    int32_t (*ep_fd)(struct atbus_endpoint *) = &atbus_endpoint_fd;
    int32_t (*ep_arm)(struct atbus_endpoint *) = &atbus_endpoint_arm;
    int32_t (*members)(struct atbus_bus *, char (*)[64], size_t, size_t *) = &atbus_bus_members;
    bool bus_ok = bus_open != nullptr && bus_close != nullptr && bus_unlink != nullptr &&
                  bus_join != nullptr && ep_close != nullptr && send_to != nullptr &&
                  ep_recv != nullptr && request != nullptr && reply != nullptr &&
                  ep_fd != nullptr && ep_arm != nullptr && members != nullptr;
    return bus_ok && create != nullptr && recv != nullptr && open != nullptr && open_ex != nullptr &&
           close != nullptr &&
           unlink != nullptr && send != nullptr && send_timeout != nullptr &&
           release != nullptr && stats != nullptr && config != nullptr &&
           config_default != nullptr &&
           max_len != nullptr && strerror != nullptr && last_error != nullptr;
}
