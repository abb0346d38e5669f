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
// (STREAMER_ERR_*) and the handle's detailed last-error text. The exceptions
// are: destructors (never throw; they close), close() (returns the final
// statistics; a lost file shows in stats.files_failed / all_acknowledged()),
// and try_put(), which returns the status for hot loops that must not throw.
//
// Callbacks are std::function objects. They run on the threads the C header
// documents (distribution: the putting thread; filter and completion: library
// threads, overlapping across servers). An exception escaping a callback is
// caught at the boundary: a distribution that throws fails that put
// (STREAMER_ERR_DISTRIBUTION_OUT_OF_RANGE), a filter that throws fails that
// file (STREAMER_ERR_FILTER), a completion that throws is ignored.
// A Streamer or Stream keeps the callbacks of its Options alive, so Options may
// be destroyed or changed after creating handles.
//
// Thread safety is that of the C API: put/try_put/put_stream/stats/flush/
// last_error/n_servers may run concurrently; close and destruction must not.
#ifndef PYME_STREAMING_HPP
#define PYME_STREAMING_HPP

#include <pyme_streaming.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace pyme {

using Stats = StreamerStats;

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

/// A filter's output buffer (valid during the filter call).
class Buffer {
public:
    explicit Buffer(StreamerBuffer *raw) noexcept : raw_(raw) {}
    void append(const void *data, std::size_t len) {
        if (streamer_buffer_append(raw_, static_cast<const uint8_t *>(data), len) != STREAMER_OK)
            throw Error(STREAMER_ERR_NULL_ARGUMENT, "streamer_buffer_append");
    }
    void reserve(std::size_t additional) { streamer_buffer_reserve(raw_, additional); }
    std::size_t size() const noexcept { return streamer_buffer_len(raw_); }

private:
    StreamerBuffer *raw_;
};

using DistributionFunction = std::function<std::size_t(std::size_t n_servers, int64_t index, std::string_view name)>;
/// Writes the transformed bytes into `out`; returns false to fail the file.
using FilterFunction = std::function<bool(std::string_view name, const uint8_t *data, std::size_t len, Buffer &out)>;
using CompletionFunction = std::function<void(const Outcome &)>;

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
                                 StreamerBuffer *out) noexcept {
    try {
        Buffer buffer(out);
        return (*static_cast<FilterFunction *>(user_data))(name, data, len, buffer) ? 0 : 1;
    } catch (...) {
        return -1;
    }
}

inline void completion_trampoline(void *user_data, const char *name, std::size_t server_index, int32_t status,
                                  int32_t http_status, uint64_t bytes) noexcept {
    try {
        (*static_cast<CompletionFunction *>(user_data))(Outcome{name, server_index, status, http_status, bytes});
    } catch (...) {
    }
}

/// The callbacks a handle keeps alive.
struct Callbacks {
    std::shared_ptr<DistributionFunction> distribution;
    std::shared_ptr<FilterFunction> filter;
    std::shared_ptr<CompletionFunction> completion;
};

}  // namespace detail

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
    Options &on_complete(CompletionFunction function) {
        auto owned = std::make_shared<CompletionFunction>(std::move(function));
        check(streamer_options_set_completion(raw_, detail::completion_trampoline, owned.get()));
        callbacks_.completion = std::move(owned);
        return *this;
    }
    Options &queue_limits(std::size_t max_files, uint64_t max_bytes) {
        return check(streamer_options_set_queue_limits(raw_, max_files, max_bytes));
    }
    Options &timeouts(std::chrono::milliseconds connect, std::chrono::milliseconds response) {
        return check(streamer_options_set_timeouts(raw_, static_cast<uint32_t>(connect.count()),
                                                   static_cast<uint32_t>(response.count())));
    }
    /// std::nullopt: a put waits for room as long as it takes.
    Options &put_timeout(std::optional<std::chrono::milliseconds> timeout) {
        return check(streamer_options_set_put_timeout(raw_, timeout ? static_cast<int64_t>(timeout->count()) : -1));
    }

    const StreamerOptions *get() const noexcept { return raw_; }
    const detail::Callbacks &callbacks() const noexcept { return callbacks_; }
    std::string last_error() const { return detail::last_error(streamer_options_last_error, raw_); }

private:
    Options &check(int32_t status) {
        if (status != STREAMER_OK) throw Error(status, last_error());
        return *this;
    }

    StreamerOptions *raw_ = nullptr;
    detail::Callbacks callbacks_;
};

/// Many servers behind one put (move-only). The destructor closes.
class Streamer {
public:
    explicit Streamer(const Options &options) : callbacks_(options.callbacks()) {
        int32_t status = streamer_new(options.get(), &raw_);
        if (status != STREAMER_OK) throw Error(status, options.last_error());
    }
    Streamer(Streamer &&other) noexcept
        : raw_(std::exchange(other.raw_, nullptr)), callbacks_(std::move(other.callbacks_)) {}
    Streamer &operator=(Streamer &&other) noexcept {
        if (this != &other) {
            streamer_close(raw_);
            raw_ = std::exchange(other.raw_, nullptr);
            callbacks_ = std::move(other.callbacks_);
        }
        return *this;
    }
    Streamer(const Streamer &) = delete;
    Streamer &operator=(const Streamer &) = delete;
    ~Streamer() { streamer_close(raw_); }

    /// Copies the bytes; index < 0: none. Throws pyme::Error.
    void put(const std::string &name, const void *data, std::size_t len, int64_t index = -1) {
        check(try_put(name, data, len, index));
    }
    /// As put, but returns the status instead of throwing.
    int32_t try_put(const std::string &name, const void *data, std::size_t len, int64_t index = -1) noexcept {
        return streamer_put(raw_, name.c_str(), static_cast<const uint8_t *>(data), len, index);
    }
    /// Without copying: see streamer_put_nocopy (release runs exactly once, even when this throws).
    void put_nocopy(const std::string &name, const void *data, std::size_t len, int64_t index,
                    StreamerReleaseFn release, void *release_user_data) {
        check(streamer_put_nocopy(raw_, name.c_str(), static_cast<const uint8_t *>(data), len, index, release,
                                  release_user_data));
    }
    void put_stream(std::size_t stream_index, const std::string &name, const void *data, std::size_t len) {
        check(streamer_put_stream(raw_, stream_index, name.c_str(), static_cast<const uint8_t *>(data), len));
    }
    /// Makes buffers for copies of `count` files of `file_bytes` ready now (call
    /// it when the camera is armed); returns how many: see streamer_prepare_buffers.
    std::size_t prepare_buffers(std::size_t file_bytes, std::size_t count) {
        std::size_t prepared = 0;
        check(streamer_prepare_buffers(raw_, file_bytes, count, &prepared));
        return prepared;
    }
    /// Waits until every file has its outcome; false when the timeout passed first.
    bool flush(std::chrono::milliseconds timeout) {
        int32_t status = streamer_flush(raw_, static_cast<uint32_t>(timeout.count()));
        if (status == STREAMER_ERR_TIMEOUT) return false;
        check(status);
        return true;
    }
    void flush() { check(streamer_flush(raw_, STREAMER_WAIT_FOREVER)); }
    std::size_t n_servers() const noexcept { return streamer_n_servers(raw_); }
    Stats stats() const {
        Stats stats{};
        check(streamer_stats(raw_, &stats));
        return stats;
    }
    std::string last_error() const { return detail::last_error(streamer_last_error, raw_); }
    /// Drains, waits for every answer, frees; returns the final statistics
    /// (check all_acknowledged()). The object is empty afterwards.
    Stats close() {
        Stats stats{};
        int32_t status = streamer_close_stats(std::exchange(raw_, nullptr), &stats);
        if (status != STREAMER_OK && status != STREAMER_ERR_FILES_FAILED) throw Error(status, "streamer_close");
        return stats;
    }
    ::Streamer *get() const noexcept { return raw_; }

private:
    void check(int32_t status) const {
        if (status != STREAMER_OK) throw Error(status, last_error());
    }

    ::Streamer *raw_ = nullptr;
    detail::Callbacks callbacks_;
};

/// One server (move-only). The destructor closes.
class Stream {
public:
    Stream(const std::string &host, uint16_t port, const Options &options) : callbacks_(options.callbacks()) {
        int32_t status = stream_new(host.c_str(), port, options.get(), &raw_);
        if (status != STREAMER_OK) throw Error(status, options.last_error());
    }
    Stream(Stream &&other) noexcept : raw_(std::exchange(other.raw_, nullptr)), callbacks_(std::move(other.callbacks_)) {}
    Stream &operator=(Stream &&other) noexcept {
        if (this != &other) {
            stream_close(raw_);
            raw_ = std::exchange(other.raw_, nullptr);
            callbacks_ = std::move(other.callbacks_);
        }
        return *this;
    }
    Stream(const Stream &) = delete;
    Stream &operator=(const Stream &) = delete;
    ~Stream() { stream_close(raw_); }

    void put(const std::string &name, const void *data, std::size_t len) {
        check(stream_put(raw_, name.c_str(), static_cast<const uint8_t *>(data), len));
    }
    /// Sends the end-of-stream sentinel and waits for every answer; returns the
    /// final statistics (a lost file shows there). Later puts throw STREAMER_ERR_CLOSED.
    Stats finalize(const std::string &sentinel_name) {
        int32_t status = stream_finalize(raw_, sentinel_name.c_str());
        if (status != STREAMER_OK && status != STREAMER_ERR_FILES_FAILED) check(status);
        return stats();
    }
    Stats stats() const {
        Stats stats{};
        check(stream_stats(raw_, &stats));
        return stats;
    }
    std::string last_error() const { return detail::last_error(stream_last_error, raw_); }
    /// Sends what is queued (no sentinel), waits, frees; returns the final statistics.
    Stats close() {
        Stats stats{};
        int32_t status = stream_close_stats(std::exchange(raw_, nullptr), &stats);
        if (status != STREAMER_OK && status != STREAMER_ERR_FILES_FAILED) throw Error(status, "stream_close");
        return stats;
    }
    ::Stream *get() const noexcept { return raw_; }

private:
    void check(int32_t status) const {
        if (status != STREAMER_OK) throw Error(status, last_error());
    }

    ::Stream *raw_ = nullptr;
    detail::Callbacks callbacks_;
};

/// The library's version at run time.
inline std::string_view version() noexcept { return streamer_version(); }

}  // namespace pyme

#endif  // PYME_STREAMING_HPP
