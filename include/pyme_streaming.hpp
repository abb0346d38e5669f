// pyme_streaming.hpp -- header-only C++17 RAII wrapper over the C API in
// pyme_streaming.h (hand-written, not generated).
//
//   pyme::Options options;
//   options.add_server("127.0.0.1", 15348).on_complete([](const pyme::Outcome &o) { ... });
//   pyme::Streamer streamer(options);        // connects
//   streamer.put("series/frame00000.pzf", data, len, 0);
//   pyme::Stats stats = streamer.close();    // drains, waits for every answer
//
// Errors: every call that fails throws pyme::Error, carrying the status code
// (STREAMER_ERR_*) and the detailed last-error text of the calling thread.
// The exceptions are: destructors (never throw; they close, bounded: see
// below), close() / close_timeout() (they return the final statistics; a lost
// file shows in stats.files_failed / all_acknowledged()), and try_put(),
// which returns the status for hot loops that must not throw. A put after
// close() throws pyme::Error with STREAMER_ERR_CLOSED ("closed").
//
// Callbacks are std::function objects. They run on the threads the C header
// documents (distribution: the putting thread; filter and completion: library
// threads, overlapping across servers), and may call what the C header allows
// (stats, last_error, put: a put there never waits; flush/close/finalize
// throw STREAMER_ERR_IN_CALLBACK there). An exception escaping a callback is
// caught at the boundary: a distribution that throws fails that put
// (STREAMER_ERR_DISTRIBUTION_OUT_OF_RANGE), a filter that throws fails that
// file (STREAMER_ERR_FILTER), a completion that throws is ignored.
// A Streamer or Stream keeps the callbacks of its Options alive, so Options may
// be destroyed or changed after creating handles.
//
// Destruction: the destructor never blocks without limit. It closes with
// close_timeout(destructor_timeout()), by default 30 s; while an exception
// unwinds the stack (std::uncaught_exceptions() is higher than when the
// object was made) it uses unwinding_timeout(), by default 1 s, instead. At
// the limit the files still pending are given up (counted as failed, no
// completion callback runs for them), so a completion lambda that takes a
// lock the destroying thread holds cannot make it wait for ever. If a library
// thread is still inside such a callback at the limit plus 500 ms, it is left
// to finish on its own and the wrapper keeps the callback objects alive for
// it (a small deliberate leak, only in that case). Call close() yourself to
// wait for every answer.
//
// Thread safety is that of the C API: put/try_put/put_stream/stats/flush/
// last_error/n_servers may run concurrently; close and destruction must not.
#ifndef PYME_STREAMING_HPP
#define PYME_STREAMING_HPP

#if !defined(__cplusplus) || (__cplusplus < 201703L && (!defined(_MSVC_LANG) || _MSVC_LANG < 201703L))
#error "pyme_streaming.hpp needs C++17 or later (pyme_streaming.h alone works from C89 and C++98)"
#endif

#include <pyme_streaming.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <new>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace pyme {

using Stats = PymeStreamerStats;
using ServerStats = PymeStreamerServerStats;

/// True when every file accepted was acknowledged.
inline bool all_acknowledged(const Stats &stats) noexcept {
    return stats.files_acknowledged == stats.files_queued;
}

/// A failed call: the status code and the detailed message.
class Error : public std::runtime_error {
public:
    Error(int32_t status, const std::string &message)
        : std::runtime_error(message.empty() ? std::string(streamer_status_str(status))
                                             : std::string(streamer_status_str(status)) + ": " + message),
          status_(status) {}
    int32_t status() const noexcept { return status_; }

private:
    int32_t status_;
};

/// The end of one file, as given to the completion callback (valid during the call).
struct Outcome {
    std::string_view name;
    std::size_t server_index;
    int32_t status;       ///< STREAMER_OK when acknowledged
    int32_t http_status;  ///< 0 when the server did not answer
    uint64_t bytes;
    bool ok() const noexcept { return status == STREAMER_OK; }
};

/// How a close ended: its status (STREAMER_OK, STREAMER_ERR_FILES_FAILED,
/// STREAMER_ERR_CLOSE_TIMEOUT or STREAMER_ERR_CLOSE_DETACHED) and the final statistics.
struct CloseResult {
    int32_t status;
    Stats stats;
    bool timed_out() const noexcept {
        return status == STREAMER_ERR_CLOSE_TIMEOUT || status == STREAMER_ERR_CLOSE_DETACHED;
    }
};

/// A filter's output buffer (valid during the filter call).
class Buffer {
public:
    explicit Buffer(PymeStreamerBuffer *raw) noexcept : raw_(raw) {}
    void append(const void *data, std::size_t len) {
        if (streamer_buffer_append(raw_, static_cast<const uint8_t *>(data), len) != STREAMER_OK)
            throw Error(STREAMER_ERR_NULL_ARGUMENT, "streamer_buffer_append");
    }
    void reserve(std::size_t additional) { streamer_buffer_reserve(raw_, additional); }
    std::size_t size() const noexcept { return streamer_buffer_len(raw_); }

private:
    PymeStreamerBuffer *raw_;
};

using DistributionFunction = std::function<std::size_t(std::size_t n_servers, int64_t index, std::string_view name)>;
/// Writes the transformed bytes into `out`; returns false to fail the file.
using FilterFunction = std::function<bool(std::string_view name, const uint8_t *data, std::size_t len, Buffer &out)>;
using CompletionFunction = std::function<void(const Outcome &)>;
/// Told of every change of a server's state (a PymeStreamerServerState value);
/// see PymeStreamerServerStateFn for the thread and what it may call.
using ServerStateFunction = std::function<void(std::size_t server_index, int32_t state)>;

/// PZF parameters for Options::filter_pzf (see streamer_options_set_filter_pzf).
struct PzfParams {
    int32_t data_format = STREAMER_PZF_UINT16;
    uint32_t rows = 0;
    uint32_t cols = 0;
    uint32_t depth = 1;
    int32_t compression = STREAMER_PZF_HUFFMAN;
    int32_t quantization = STREAMER_PZF_QUANT_NONE;
    float quant_offset = 0.0f;
    float quant_scale = 1.0f;
};

namespace detail {

template <typename Handle>
std::string last_error(int32_t (*fn)(const Handle *, char *, std::size_t, std::size_t *), const Handle *handle) {
    std::size_t len = 0;
    if (handle == nullptr || fn(handle, nullptr, 0, &len) != STREAMER_OK) return {};
    std::string text(len + 1, '\0');
    if (fn(handle, text.data(), text.size(), &len) != STREAMER_OK) return {};
    text.resize(len < text.size() ? len : text.size() - 1);
    return text;
}

inline std::size_t distribution_trampoline(void *user_data, std::size_t n_servers, int64_t index,
                                           const char *name) noexcept {
    try {
        return (*static_cast<DistributionFunction *>(user_data))(n_servers, index, name);
    } catch (...) {
        return n_servers;  // out of range: that put fails
    }
}

inline int32_t filter_trampoline(void *user_data, const char *name, const uint8_t *data, std::size_t len,
                                 PymeStreamerBuffer *out) noexcept {
    try {
        Buffer buffer(out);
        return (*static_cast<FilterFunction *>(user_data))(name, data, len, buffer) ? 0 : 1;
    } catch (...) {
        return -1;
    }
}

inline void server_state_trampoline(void *user_data, std::size_t server_index, int32_t state) noexcept {
    try {
        (*static_cast<ServerStateFunction *>(user_data))(server_index, state);
    } catch (...) {
    }
}

inline void completion_trampoline(void *user_data, const char *name, std::size_t server_index, int32_t status,
                                  int32_t http_status, uint64_t bytes) noexcept {
    try {
        (*static_cast<CompletionFunction *>(user_data))(Outcome{name, server_index, status, http_status, bytes});
    } catch (...) {
    }
}

/// What put_nocopy keeps until the library releases the bytes: an owner
/// (destroyed at release), or a callable (called, then destroyed).
template <typename Owner>
void release_trampoline(void *user_data, const uint8_t *, std::size_t) noexcept {
    Owner *owner = static_cast<Owner *>(user_data);
    if constexpr (std::is_invocable_v<Owner &>) {
        try {
            (*owner)();
        } catch (...) {
        }
    }
    delete owner;
}

/// The callbacks a handle keeps alive.
struct Callbacks {
    std::shared_ptr<DistributionFunction> distribution;
    std::shared_ptr<FilterFunction> filter;
    std::shared_ptr<CompletionFunction> completion;
    std::shared_ptr<ServerStateFunction> server_state;
};

/// A NUL-terminated copy of a name on the stack, so a put with a string_view
/// allocates nothing (names longer than the buffer, rare, use the heap).
class CName {
public:
    explicit CName(std::string_view name) {
        if (name.size() < sizeof small_) {
            std::memcpy(small_, name.data(), name.size());
            small_[name.size()] = '\0';
            text_ = small_;
        } else {
            large_.assign(name.data(), name.size());
            text_ = large_.c_str();
        }
    }
    const char *c_str() const noexcept { return text_; }

private:
    char small_[512];
    std::string large_;
    const char *text_;
};

/// The destructor's limit: the normal one, or the short one while an
/// exception unwinds past the object (it was made with fewer in flight).
inline uint32_t destructor_limit_ms(int exceptions_at_construction, std::chrono::milliseconds normal,
                                    std::chrono::milliseconds unwinding) noexcept {
    auto limit = std::uncaught_exceptions() > exceptions_at_construction ? unwinding : normal;
    auto ms = limit.count() < 0 ? 0 : limit.count();
    return ms >= static_cast<long long>(STREAMER_WAIT_FOREVER) ? STREAMER_WAIT_FOREVER - 1u
                                                                : static_cast<uint32_t>(ms);
}

/// After a close that left a thread inside a callback, the callbacks must
/// outlive that thread: they are kept for ever (see "Destruction" above), in a
/// list that is never destroyed (the thread may outlive static destructors).
inline void keep_alive_if_detached(int32_t status, Callbacks &callbacks) noexcept {
    if (status != STREAMER_ERR_CLOSE_DETACHED) return;
    static std::mutex *lock = new std::mutex();
    static std::vector<Callbacks> *kept = new std::vector<Callbacks>();
    try {
        std::lock_guard<std::mutex> guard(*lock);
        kept->push_back(std::move(callbacks));
    } catch (...) {
        new Callbacks(std::move(callbacks));  // out of memory: leak it rather than free it
    }
}

/// Destroyed inside one of its own callbacks, a handle cannot close there (it
/// would wait for that callback): a detached thread closes it once the
/// callback has returned. The callbacks must then outlive it: returns the
/// status that keeps them alive.
template <typename Handle>
int32_t close_elsewhere(Handle *raw, int32_t (*close)(Handle *)) noexcept {
    try {
        std::thread([raw, close] { close(raw); }).detach();
    } catch (...) {
        // No thread: the handle is leaked rather than waited for.
    }
    return STREAMER_ERR_CLOSE_DETACHED;
}

inline uint32_t to_ms(std::chrono::milliseconds limit) noexcept {
    if (limit.count() < 0) return 0;
    if (limit.count() >= static_cast<long long>(STREAMER_WAIT_FOREVER)) return STREAMER_WAIT_FOREVER - 1u;
    return static_cast<uint32_t>(limit.count());
}

}  // namespace detail

/// The destructor's limits (see "Destruction" at the top of this file).
inline constexpr std::chrono::milliseconds default_destructor_timeout{30000};
inline constexpr std::chrono::milliseconds default_unwinding_timeout{1000};

/// Settings for a Streamer or a Stream (move-only). Setters return *this.
class Options {
public:
    Options() {
        int32_t status = streamer_options_new(&raw_);
        if (status != STREAMER_OK) throw Error(status, "streamer_options_new");
    }
    Options(Options &&other) noexcept
        : raw_(std::exchange(other.raw_, nullptr)), callbacks_(std::move(other.callbacks_)) {}
    Options &operator=(Options &&other) noexcept {
        if (this != &other) {
            streamer_options_free(raw_);
            raw_ = std::exchange(other.raw_, nullptr);
            callbacks_ = std::move(other.callbacks_);
        }
        return *this;
    }
    Options(const Options &) = delete;
    Options &operator=(const Options &) = delete;
    ~Options() { streamer_options_free(raw_); }

    Options &add_server(const std::string &host, uint16_t port) {
        return check(streamer_options_add_server(raw_, host.c_str(), port));
    }
    /// One of STREAMER_DISTRIBUTION_*.
    Options &distribution_kind(int32_t kind) {
        check(streamer_options_set_distribution_kind(raw_, kind));
        callbacks_.distribution.reset();
        return *this;
    }
    Options &fixed_server(std::size_t server) {
        check(streamer_options_set_fixed_server(raw_, server));
        callbacks_.distribution.reset();
        return *this;
    }
    /// Where round-robin starts: frame i on server (i + start) % n; negative
    /// (the default): a random start per streamer. 0 places as PYME does.
    Options &round_robin_start(int64_t start) {
        return check(streamer_options_set_round_robin_start(raw_, start));
    }
    Options &distribution(DistributionFunction function) {
        auto owned = std::make_shared<DistributionFunction>(std::move(function));
        check(streamer_options_set_distribution(raw_, detail::distribution_trampoline, owned.get()));
        callbacks_.distribution = std::move(owned);
        return *this;
    }
    Options &filter(FilterFunction function) {
        auto owned = std::make_shared<FilterFunction>(std::move(function));
        check(streamer_options_set_filter(raw_, detail::filter_trampoline, owned.get()));
        callbacks_.filter = std::move(owned);
        return *this;
    }
    /// One of STREAMER_FILTER_* (removes a filter function).
    Options &filter_kind(int32_t kind) {
        check(streamer_options_set_filter_kind(raw_, kind));
        callbacks_.filter.reset();
        return *this;
    }
    /// The built-in PZF filter (camera frames): see streamer_options_set_filter_pzf.
    Options &filter_pzf(const PzfParams &pzf) {
        check(streamer_options_set_filter_pzf(raw_, pzf.data_format, pzf.rows, pzf.cols, pzf.depth,
                                              pzf.compression, pzf.quantization, pzf.quant_offset,
                                              pzf.quant_scale));
        callbacks_.filter.reset();
        return *this;
    }
    /// gzip for the transport, level 1 (fast) to 9 (small).
    Options &filter_gzip(int32_t level) {
        check(streamer_options_set_filter_gzip(raw_, level));
        callbacks_.filter.reset();
        return *this;
    }
    Options &on_complete(CompletionFunction function) {
        auto owned = std::make_shared<CompletionFunction>(std::move(function));
        check(streamer_options_set_completion(raw_, detail::completion_trampoline, owned.get()));
        callbacks_.completion = std::move(owned);
        return *this;
    }
    Options &queue_limits(std::size_t max_files, uint64_t max_bytes) {
        return check(streamer_options_set_queue_limits(raw_, max_files, max_bytes));
    }
    /// The memory budget, all servers together (default 1 GiB).
    Options &memory_limit(uint64_t bytes) {
        return check(streamer_options_set_memory_limit(raw_, bytes));
    }
    Options &timeouts(std::chrono::milliseconds connect, std::chrono::milliseconds response) {
        return check(streamer_options_set_timeouts(raw_, detail::to_ms(connect), detail::to_ms(response)));
    }
    /// std::nullopt: a put waits for room as long as it takes.
    Options &put_timeout(std::optional<std::chrono::milliseconds> timeout) {
        return check(streamer_options_set_put_timeout(raw_, timeout ? static_cast<int64_t>(timeout->count()) : -1));
    }
    Options &failover(bool enabled) { return check(streamer_options_set_failover(raw_, enabled ? 1 : 0)); }
    /// true: the Streamer constructor throws unless every server can be reached
    /// (by default a server that cannot be reached starts down).
    Options &require_all_servers(bool required) {
        return check(streamer_options_set_require_all_servers(raw_, required ? 1 : 0));
    }
    /// Called on every change of a server's state (and at start for servers that are down).
    Options &on_server_state(ServerStateFunction function) {
        auto owned = std::make_shared<ServerStateFunction>(std::move(function));
        check(streamer_options_set_server_callback(raw_, detail::server_state_trampoline, owned.get()));
        callbacks_.server_state = std::move(owned);
        return *this;
    }
    Options &max_retries(uint32_t retries) { return check(streamer_options_set_max_retries(raw_, retries)); }
    Options &sender_poll(std::chrono::microseconds interval) {
        auto us = interval.count() < 0 ? 0 : interval.count();
        return check(streamer_options_set_sender_poll_us(raw_, static_cast<uint32_t>(us)));
    }
    Options &spill_dir(const std::string &folder) {
        return check(streamer_options_set_spill_dir(raw_, folder.c_str()));
    }
    /// Finds the cluster's servers by name when the streamer is made.
    Options &serverfilter(const std::string &serverfilter) {
        return check(streamer_options_set_serverfilter(raw_, serverfilter.c_str()));
    }
    /// After serverfilter().
    Options &discovery_timeout(std::chrono::milliseconds wait) {
        return check(streamer_options_set_discovery_timeout_ms(raw_, detail::to_ms(wait)));
    }
    /// After serverfilter(). registry_path: std::nullopt for the default file, "" for none.
    Options &discovery_sources(bool use_mdns, const std::optional<std::string> &registry_path) {
        return check(streamer_options_set_discovery_sources(raw_, use_mdns ? 1 : 0,
                                                            registry_path ? registry_path->c_str() : nullptr));
    }

    const PymeStreamerOptions *get() const noexcept { return raw_; }
    /// For C calls this wrapper does not cover (the callbacks set through it stay tracked).
    PymeStreamerOptions *get() noexcept { return raw_; }
    const detail::Callbacks &callbacks() const noexcept { return callbacks_; }
    std::string last_error() const { return detail::last_error(streamer_options_last_error, raw_); }

private:
    Options &check(int32_t status) {
        if (status != STREAMER_OK) throw Error(status, last_error());
        return *this;
    }

    PymeStreamerOptions *raw_ = nullptr;
    detail::Callbacks callbacks_;
};

/// Many servers behind one put (move-only). The destructor closes, bounded.
class Streamer {
public:
    explicit Streamer(const Options &options) : callbacks_(options.callbacks()) {
        int32_t status = streamer_new(options.get(), &raw_);
        if (status != STREAMER_OK) throw Error(status, options.last_error());
    }
    Streamer(Streamer &&other) noexcept
        : raw_(std::exchange(other.raw_, nullptr)), callbacks_(std::move(other.callbacks_)),
          destructor_timeout_(other.destructor_timeout_), unwinding_timeout_(other.unwinding_timeout_) {}
    Streamer &operator=(Streamer &&other) noexcept {
        if (this != &other) {
            close_for_destruction();
            raw_ = std::exchange(other.raw_, nullptr);
            callbacks_ = std::move(other.callbacks_);
            destructor_timeout_ = other.destructor_timeout_;
            unwinding_timeout_ = other.unwinding_timeout_;
        }
        return *this;
    }
    Streamer(const Streamer &) = delete;
    Streamer &operator=(const Streamer &) = delete;
    ~Streamer() { close_for_destruction(); }

    /// Copies the bytes; index < 0: none. Throws pyme::Error. No allocation.
    void put(const char *name, const void *data, std::size_t len, int64_t index = -1) {
        check(try_put(name, data, len, index));
    }
    void put(const std::string &name, const void *data, std::size_t len, int64_t index = -1) {
        put(name.c_str(), data, len, index);
    }
    void put(std::string_view name, const void *data, std::size_t len, int64_t index = -1) {
        put(detail::CName(name).c_str(), data, len, index);
    }
    /// As put, but returns the status instead of throwing.
    int32_t try_put(const char *name, const void *data, std::size_t len, int64_t index = -1) noexcept {
        if (raw_ == nullptr) return STREAMER_ERR_CLOSED;
        return streamer_put(raw_, name, static_cast<const uint8_t *>(data), len, index);
    }
    int32_t try_put(const std::string &name, const void *data, std::size_t len, int64_t index = -1) noexcept {
        return try_put(name.c_str(), data, len, index);
    }
    int32_t try_put(std::string_view name, const void *data, std::size_t len, int64_t index = -1) noexcept {
        return try_put(detail::CName(name).c_str(), data, len, index);
    }
    /// Without copying: the bytes stay valid while `owner` lives. `owner` is
    /// moved into the library and destroyed when it no longer needs the bytes
    /// (a std::shared_ptr / std::unique_ptr / std::vector holding them), or,
    /// when callable, called with no argument then destroyed (return a frame to
    /// a pool). Exactly once, even when this throws.
    template <typename Owner>
    void put_nocopy(std::string_view name, const void *data, std::size_t len, int64_t index, Owner &&owner) {
        using Held = std::decay_t<Owner>;
        Held *held = new (std::nothrow) Held(std::forward<Owner>(owner));
        if (held == nullptr) {
            // No memory to keep the owner: release now, as promised, then fail.
            if constexpr (std::is_invocable_v<Owner &>) owner();
            throw std::bad_alloc();
        }
        if (raw_ == nullptr) {
            detail::release_trampoline<Held>(held, nullptr, 0);
            throw Error(STREAMER_ERR_CLOSED, "the streamer was closed");
        }
        check(streamer_put_nocopy(raw_, detail::CName(name).c_str(), static_cast<const uint8_t *>(data), len, index,
                                  detail::release_trampoline<Held>, held));
    }
    /// Without copying, with a C release function (see streamer_put_nocopy).
    void put_nocopy_raw(const char *name, const void *data, std::size_t len, int64_t index,
                        PymeStreamerReleaseFn release, void *release_user_data) {
        if (raw_ == nullptr) {
            if (release != nullptr) release(release_user_data, static_cast<const uint8_t *>(data), len);
            throw Error(STREAMER_ERR_CLOSED, "the streamer was closed");
        }
        check(streamer_put_nocopy(raw_, name, static_cast<const uint8_t *>(data), len, index, release,
                                  release_user_data));
    }
    void put_stream(std::size_t stream_index, std::string_view name, const void *data, std::size_t len) {
        if (raw_ == nullptr) throw Error(STREAMER_ERR_CLOSED, "the streamer was closed");
        check(streamer_put_stream(raw_, stream_index, detail::CName(name).c_str(), static_cast<const uint8_t *>(data),
                                  len));
    }
    /// Makes buffers for copies of `count` files of `file_bytes` ready now (call
    /// it when the camera is armed); returns how many: see streamer_prepare_buffers.
    std::size_t prepare_buffers(std::size_t file_bytes, std::size_t count) {
        std::size_t prepared = 0;
        check(streamer_prepare_buffers(open(), file_bytes, count, &prepared));
        return prepared;
    }
    /// Waits until every file has its outcome; false when the timeout passed first.
    bool flush(std::chrono::milliseconds timeout) {
        int32_t status = streamer_flush(open(), detail::to_ms(timeout));
        if (status == STREAMER_ERR_TIMEOUT) return false;
        check(status);
        return true;
    }
    void flush() { check(streamer_flush(open(), STREAMER_WAIT_FOREVER)); }
    std::size_t n_servers() const noexcept { return streamer_n_servers(raw_); }
    /// The state of server `index` now (a PymeStreamerServerState value); no lock a put takes.
    int32_t server_state(std::size_t index) const {
        int32_t state = STREAMER_SERVER_DOWN;
        check(streamer_server_state(open(), index, &state));
        return state;
    }
    /// The counters of server `index` now (`streamer_server_stats`); no lock a put takes.
    ServerStats server_stats(std::size_t index) const {
        ServerStats stats{};
        check(streamer_server_stats(open(), index, &stats, sizeof stats));
        return stats;
    }
    Stats stats() const {
        Stats stats{};
        check(streamer_stats(open(), &stats, sizeof stats));
        return stats;
    }
    std::string last_error() const { return detail::last_error(streamer_last_error, raw_); }
    /// Drains, waits for every answer, frees; returns the final statistics
    /// (check all_acknowledged()). The object is empty afterwards.
    Stats close() {
        Stats stats{};
        int32_t status = streamer_close_stats(open(), &stats, sizeof stats);
        if (status == STREAMER_ERR_IN_CALLBACK) check(status);
        raw_ = nullptr;
        if (status != STREAMER_OK && status != STREAMER_ERR_FILES_FAILED) throw Error(status, "streamer_close");
        return stats;
    }
    /// A close that returns within `limit` plus 500 ms (see streamer_close_timeout).
    CloseResult close_timeout(std::chrono::milliseconds limit) {
        CloseResult result{STREAMER_OK, Stats{}};
        result.status = streamer_close_timeout(open(), detail::to_ms(limit), &result.stats, sizeof result.stats);
        if (result.status == STREAMER_ERR_IN_CALLBACK) check(result.status);
        raw_ = nullptr;
        detail::keep_alive_if_detached(result.status, callbacks_);
        return result;
    }
    /// The destructor's limits (see "Destruction" at the top of this file).
    void set_destructor_timeouts(std::chrono::milliseconds normal, std::chrono::milliseconds unwinding) noexcept {
        destructor_timeout_ = normal;
        unwinding_timeout_ = unwinding;
    }
    PymeStreamer *get() noexcept { return raw_; }
    const PymeStreamer *get() const noexcept { return raw_; }

private:
    PymeStreamer *open() const {
        if (raw_ == nullptr) throw Error(STREAMER_ERR_CLOSED, "the streamer was closed");
        return raw_;
    }
    void check(int32_t status) const {
        if (status != STREAMER_OK) throw Error(status, last_error());
    }
    void close_for_destruction() noexcept {
        if (raw_ == nullptr) return;
        uint32_t limit = detail::destructor_limit_ms(exceptions_, destructor_timeout_, unwinding_timeout_);
        int32_t status = streamer_close_timeout(raw_, limit, nullptr, 0);
        if (status == STREAMER_ERR_IN_CALLBACK) status = detail::close_elsewhere(raw_, streamer_close);
        raw_ = nullptr;
        detail::keep_alive_if_detached(status, callbacks_);
    }

    PymeStreamer *raw_ = nullptr;
    detail::Callbacks callbacks_;
    int exceptions_ = std::uncaught_exceptions();
    std::chrono::milliseconds destructor_timeout_ = default_destructor_timeout;
    std::chrono::milliseconds unwinding_timeout_ = default_unwinding_timeout;
};

/// One server (move-only). The destructor closes, bounded, as Streamer's.
class Stream {
public:
    Stream(const std::string &host, uint16_t port, const Options &options) : callbacks_(options.callbacks()) {
        int32_t status = stream_new(host.c_str(), port, options.get(), &raw_);
        if (status != STREAMER_OK) throw Error(status, options.last_error());
    }
    Stream(Stream &&other) noexcept
        : raw_(std::exchange(other.raw_, nullptr)), callbacks_(std::move(other.callbacks_)),
          destructor_timeout_(other.destructor_timeout_), unwinding_timeout_(other.unwinding_timeout_) {}
    Stream &operator=(Stream &&other) noexcept {
        if (this != &other) {
            close_for_destruction();
            raw_ = std::exchange(other.raw_, nullptr);
            callbacks_ = std::move(other.callbacks_);
            destructor_timeout_ = other.destructor_timeout_;
            unwinding_timeout_ = other.unwinding_timeout_;
        }
        return *this;
    }
    Stream(const Stream &) = delete;
    Stream &operator=(const Stream &) = delete;
    ~Stream() { close_for_destruction(); }

    void put(const char *name, const void *data, std::size_t len) { check(try_put(name, data, len)); }
    void put(const std::string &name, const void *data, std::size_t len) { put(name.c_str(), data, len); }
    void put(std::string_view name, const void *data, std::size_t len) {
        put(detail::CName(name).c_str(), data, len);
    }
    int32_t try_put(const char *name, const void *data, std::size_t len) noexcept {
        if (raw_ == nullptr) return STREAMER_ERR_CLOSED;
        return stream_put(raw_, name, static_cast<const uint8_t *>(data), len);
    }
    bool flush(std::chrono::milliseconds timeout) {
        int32_t status = stream_flush(open(), detail::to_ms(timeout));
        if (status == STREAMER_ERR_TIMEOUT) return false;
        check(status);
        return true;
    }
    /// Sends the end-of-stream sentinel and waits for every answer; returns the
    /// final statistics (a lost file shows there). Later puts throw STREAMER_ERR_CLOSED.
    Stats finalize(std::string_view sentinel_name) {
        int32_t status = stream_finalize(open(), detail::CName(sentinel_name).c_str());
        if (status != STREAMER_OK && status != STREAMER_ERR_FILES_FAILED) check(status);
        return stats();
    }
    Stats stats() const {
        Stats stats{};
        check(stream_stats(open(), &stats, sizeof stats));
        return stats;
    }
    /// The state of the server now (a PymeStreamerServerState value).
    int32_t server_state() const {
        int32_t state = STREAMER_SERVER_DOWN;
        check(stream_server_state(open(), &state));
        return state;
    }
    std::string last_error() const { return detail::last_error(stream_last_error, raw_); }
    /// Sends what is queued (no sentinel), waits, frees; returns the final statistics.
    Stats close() {
        Stats stats{};
        int32_t status = stream_close_stats(open(), &stats, sizeof stats);
        if (status == STREAMER_ERR_IN_CALLBACK) check(status);
        raw_ = nullptr;
        if (status != STREAMER_OK && status != STREAMER_ERR_FILES_FAILED) throw Error(status, "stream_close");
        return stats;
    }
    /// A close that returns within `limit` plus 500 ms (see stream_close_timeout).
    CloseResult close_timeout(std::chrono::milliseconds limit) {
        CloseResult result{STREAMER_OK, Stats{}};
        result.status = stream_close_timeout(open(), detail::to_ms(limit), &result.stats, sizeof result.stats);
        if (result.status == STREAMER_ERR_IN_CALLBACK) check(result.status);
        raw_ = nullptr;
        detail::keep_alive_if_detached(result.status, callbacks_);
        return result;
    }
    void set_destructor_timeouts(std::chrono::milliseconds normal, std::chrono::milliseconds unwinding) noexcept {
        destructor_timeout_ = normal;
        unwinding_timeout_ = unwinding;
    }
    PymeStream *get() noexcept { return raw_; }
    const PymeStream *get() const noexcept { return raw_; }

private:
    PymeStream *open() const {
        if (raw_ == nullptr) throw Error(STREAMER_ERR_CLOSED, "the stream was closed");
        return raw_;
    }
    void check(int32_t status) const {
        if (status != STREAMER_OK) throw Error(status, last_error());
    }
    void close_for_destruction() noexcept {
        if (raw_ == nullptr) return;
        uint32_t limit = detail::destructor_limit_ms(exceptions_, destructor_timeout_, unwinding_timeout_);
        int32_t status = stream_close_timeout(raw_, limit, nullptr, 0);
        if (status == STREAMER_ERR_IN_CALLBACK) status = detail::close_elsewhere(raw_, stream_close);
        raw_ = nullptr;
        detail::keep_alive_if_detached(status, callbacks_);
    }

    PymeStream *raw_ = nullptr;
    detail::Callbacks callbacks_;
    int exceptions_ = std::uncaught_exceptions();
    std::chrono::milliseconds destructor_timeout_ = default_destructor_timeout;
    std::chrono::milliseconds unwinding_timeout_ = default_unwinding_timeout;
};

/// The library's version at run time.
inline std::string_view version() noexcept { return streamer_version(); }

}  // namespace pyme

#endif  // PYME_STREAMING_HPP
