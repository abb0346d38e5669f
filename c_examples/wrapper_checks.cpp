// wrapper_checks.cpp -- checks of the C++ wrapper (pyme_streaming.hpp): every
// option, puts that allocate nothing, put_nocopy with owners, put after close,
// callbacks calling back, and the destructor's bounded close (during exception
// unwinding against a stalled server, and while the destroying thread holds a
// lock its completion lambda takes).
//
// Usage: wrapper_checks HOST:PORT STALLED_HOST:PORT ANSWER_ONCE_HOST:PORT [SLACK_MS]
//   HOST:PORT              a running PYME data server
//   STALLED_HOST:PORT      a server that reads requests and never answers
//   ANSWER_ONCE_HOST:PORT  answers 200 to names ending in "answered", never to others
// Prints every failed check and "N passed, M failed"; exits non-zero on failure.
#include <pyme_streaming.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

namespace {

std::atomic<int> passed{0};
std::atomic<int> failed{0};

#define CHECK(cond)                                                               \
    do {                                                                          \
        if (cond) {                                                               \
            ++passed;                                                             \
        } else {                                                                  \
            ++failed;                                                             \
            std::fprintf(stderr, "FAILED %s:%d: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                         \
    } while (0)

/// C++ allocations made by this thread (library threads run callbacks that may allocate).
thread_local long allocations = 0;

struct Address {
    std::string host;
    uint16_t port = 0;
};

Address parse_address(const char *text) {
    std::string all(text);
    auto colon = all.rfind(':');
    if (colon == std::string::npos) throw std::invalid_argument(all);
    return Address{all.substr(0, colon), static_cast<uint16_t>(std::stoi(all.substr(colon + 1)))};
}

long slack_ms = 1500;

double elapsed_ms(std::chrono::steady_clock::time_point since) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - since).count();
}

template <typename Condition>
bool wait_for(Condition condition, std::chrono::milliseconds limit = std::chrono::milliseconds(20000)) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (!condition()) {
        if (std::chrono::steady_clock::now() > deadline) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return true;
}

std::string unique(const std::string &name) { return "wrapper/" + std::to_string(::getpid()) + "/" + name; }

void check_every_option(const Address &live) {
    pyme::Options options;
    options.add_server(live.host, live.port)
        .distribution_kind(STREAMER_DISTRIBUTION_HASH)
        .fixed_server(0)
        .round_robin_start(0)
        .round_robin_start(-1)
        .queue_limits(8, 1 << 20)
        .timeouts(std::chrono::milliseconds(2000), std::chrono::milliseconds(10000))
        .put_timeout(std::chrono::milliseconds(5000))
        .put_timeout(std::nullopt)
        .failover(false)
        .require_all_servers(true)
        .on_server_state([](std::size_t, int32_t) {})
        .max_retries(3)
        .sender_poll(std::chrono::microseconds(500))
        .filter_gzip(6);
    pyme::PzfParams pzf;
    pzf.rows = 4;
    pzf.cols = 4;
    options.filter_pzf(pzf);
    options.filter_kind(STREAMER_FILTER_IDENTITY);
    try {
        options.filter_gzip(0);
        CHECK(false);
    } catch (const pyme::Error &error) {
        CHECK(error.status() == STREAMER_ERR_INVALID_ARGUMENT);
    }
    std::string spill = "/tmp/pyme_wrapper_spill_" + std::to_string(::getpid());
    options.spill_dir(spill);
    {
        pyme::Streamer streamer(options);
        CHECK(streamer.server_state(0) == STREAMER_SERVER_UP);
        streamer.put(unique("options").c_str(), "x", 1);
        streamer.flush();
        pyme::ServerStats counters = streamer.server_stats(0);
        CHECK(counters.size == sizeof counters);
        CHECK(counters.state == STREAMER_SERVER_UP);
        CHECK(counters.files_acknowledged == 1 && counters.bytes_acknowledged == 1);
        try {
            streamer.server_stats(SIZE_MAX);
            CHECK(false);
        } catch (const pyme::Error &error) {
            CHECK(error.status() == STREAMER_ERR_INVALID_ARGUMENT);
        }
        CHECK(pyme::all_acknowledged(streamer.close()));
    }
    pyme::Options discovery;
    discovery.serverfilter("no-such-cluster")
        .discovery_timeout(std::chrono::milliseconds(50))
        .discovery_sources(false, std::string("/nonexistent/_pyme-http.sqlite"));
    try {
        pyme::Streamer never(discovery);
        CHECK(false);
    } catch (const pyme::Error &error) {
        CHECK(error.status() == STREAMER_ERR_DISCOVERY);
    }
    CHECK(discovery.get() != nullptr);  // non-const access for C calls
    CHECK(streamer_options_set_max_retries(discovery.get(), 1) == STREAMER_OK);
    std::string remove = "rm -rf " + spill;
    CHECK(std::system(remove.c_str()) == 0);
}

void check_puts(const Address &live) {
    pyme::Options options;
    std::atomic<int> in_callback_refusals{0};
    pyme::Streamer *current = nullptr;
    std::mutex current_lock;
    options.add_server(live.host, live.port).on_complete([&](const pyme::Outcome &) {
        std::lock_guard<std::mutex> guard(current_lock);
        if (current == nullptr) return;
        try {
            current->flush();
        } catch (const pyme::Error &error) {
            if (error.status() == STREAMER_ERR_IN_CALLBACK) ++in_callback_refusals;
        }
        current->stats();  // works from a callback
    });
    pyme::Streamer streamer(options);
    {
        std::lock_guard<std::mutex> guard(current_lock);
        current = &streamer;
    }
    const std::string owned_name = unique("by_string");
    char view_text[64];
    std::snprintf(view_text, sizeof view_text, "wrapper/%d/by_view_and_more", static_cast<int>(::getpid()));
    std::string_view view(view_text, std::strlen(view_text) - std::strlen("_and_more"));
    const std::string literal_name = unique("by_pointer");
    const uint8_t bytes[] = {1, 2, 3};

    long before = allocations;
    streamer.put(literal_name.c_str(), bytes, sizeof bytes, 0);
    streamer.put(owned_name, bytes, sizeof bytes, 1);
    streamer.put(view, bytes, sizeof bytes, 2);
    int32_t status = streamer.try_put(view, bytes, sizeof bytes, 3);  // the same name: refused by the server later
    long after = allocations;
    CHECK(status == STREAMER_OK);
    CHECK(after == before);  // no put allocated on the C++ side

    // put_nocopy: shared ownership, and any callable run once at release.
    auto frame = std::make_shared<std::vector<uint8_t>>(4096, 7);
    streamer.put_nocopy(unique("shared"), frame->data(), frame->size(), 4, frame);
    std::atomic<int> returned_to_pool{0};
    std::atomic<int> refused_returned{0};
    static const uint8_t pooled[] = {9, 9};
    streamer.put_nocopy(unique("callable"), pooled, sizeof pooled, 5, [&returned_to_pool] { ++returned_to_pool; });
    try {
        streamer.put_nocopy(std::string_view("bad name"), pooled, sizeof pooled, 6,
                            [&refused_returned] { ++refused_returned; });
        CHECK(false);
    } catch (const pyme::Error &error) {
        CHECK(error.status() == STREAMER_ERR_INVALID_NAME);
    }
    // The refused put released at once; the accepted one is released once it is
    // sent, which may be before or after this line (so it has its own count).
    CHECK(refused_returned.load() == 1);
    CHECK(streamer.flush(std::chrono::milliseconds(20000)));
    {
        std::lock_guard<std::mutex> guard(current_lock);
        current = nullptr;
    }
    CHECK(in_callback_refusals.load() >= 1);
    pyme::Stats stats = streamer.close();
    CHECK(stats.size == sizeof stats);
    CHECK(stats.files_queued == 6 && stats.files_acknowledged == 5 && stats.files_failed == 1);
    CHECK(returned_to_pool.load() == 1 && refused_returned.load() == 1);  // each released once
    CHECK(frame.use_count() == 1);

    // After close: "closed", never a crash.
    try {
        streamer.put("wrapper/late", bytes, sizeof bytes);
        CHECK(false);
    } catch (const pyme::Error &error) {
        CHECK(error.status() == STREAMER_ERR_CLOSED);
        CHECK(std::strstr(error.what(), "closed") != nullptr);
    }
    CHECK(streamer.try_put("wrapper/late", bytes, sizeof bytes) == STREAMER_ERR_CLOSED);
    try {
        streamer.stats();
        CHECK(false);
    } catch (const pyme::Error &error) {
        CHECK(error.status() == STREAMER_ERR_CLOSED);
    }
    int late_releases = 0;
    try {
        streamer.put_nocopy(std::string_view("wrapper/late"), bytes, sizeof bytes, 0, [&late_releases] { ++late_releases; });
        CHECK(false);
    } catch (const pyme::Error &error) {
        CHECK(error.status() == STREAMER_ERR_CLOSED);
    }
    CHECK(late_releases == 1);
}

void check_stream(const Address &live, const Address &stalled) {
    pyme::Options options;
    pyme::Stream stream(live.host, live.port, options);
    stream.put(std::string_view(unique("stream0")), "a", 1);
    CHECK(stream.flush(std::chrono::milliseconds(20000)));
    pyme::Stats stats = stream.finalize(unique("end_of_stream"));
    CHECK(stats.files_acknowledged == 2);
    try {
        stream.put("wrapper/late", "b", 1);
        CHECK(false);
    } catch (const pyme::Error &error) {
        CHECK(error.status() == STREAMER_ERR_CLOSED);
    }

    options.timeouts(std::chrono::milliseconds(2000), std::chrono::milliseconds(60000));
    pyme::Stream slow(stalled.host, stalled.port, options);
    slow.put("wrapper/never", "c", 1);
    auto started = std::chrono::steady_clock::now();
    pyme::CloseResult closed = slow.close_timeout(std::chrono::milliseconds(200));
    CHECK(elapsed_ms(started) < 200 + 500 + slack_ms);
    CHECK(closed.timed_out() && closed.status == STREAMER_ERR_CLOSE_TIMEOUT);
    CHECK(closed.stats.files_failed == 1);
}

/// The destructor runs while an exception unwinds: it uses the short limit
/// (1 s by default), not the 60 s response timeout nor the 30 s normal limit.
void check_destructor_during_unwinding(const Address &stalled) {
    std::atomic<int> completions{0};
    pyme::Options options;
    options.add_server(stalled.host, stalled.port)
        .timeouts(std::chrono::milliseconds(2000), std::chrono::milliseconds(60000))
        .on_complete([&completions](const pyme::Outcome &) { ++completions; });
    std::chrono::steady_clock::time_point thrown;
    try {
        pyme::Streamer streamer(options);
        std::vector<uint8_t> frame(1 << 16, 3);
        for (int i = 0; i < 8; ++i) streamer.put(std::string_view(unique("unwind" + std::to_string(i))), frame.data(), frame.size(), i);
        thrown = std::chrono::steady_clock::now();
        throw std::runtime_error("the camera failed");
    } catch (const std::runtime_error &error) {
        double took = elapsed_ms(thrown);
        std::printf("destructor during unwinding (stalled server, 8 frames in flight): %.1f ms\n", took);
        CHECK(std::strcmp(error.what(), "the camera failed") == 0);
        CHECK(took >= pyme::default_unwinding_timeout.count());
        CHECK(took < pyme::default_unwinding_timeout.count() + 500 + slack_ms);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    CHECK(completions.load() == 0);  // no callback after the limit, none after the destructor
}

/// The destroying thread holds a lock that the completion lambda takes, and a
/// library thread is inside that lambda: the destructor must still return.
std::mutex shared_lock;
std::atomic<int> entered{0};
std::atomic<int> finished{0};

void check_destructor_with_the_lambdas_lock_held(const Address &answer_once) {
    pyme::Options options;
    options.add_server(answer_once.host, answer_once.port)
        .timeouts(std::chrono::milliseconds(2000), std::chrono::milliseconds(60000))
        .on_complete([](const pyme::Outcome &) {
            ++entered;
            std::lock_guard<std::mutex> guard(shared_lock);
            ++finished;
        });
    std::chrono::steady_clock::time_point destroying;
    {
        std::unique_lock<std::mutex> held(shared_lock);  // destroyed after the streamer
        pyme::Streamer streamer(options);
        streamer.set_destructor_timeouts(std::chrono::milliseconds(300), std::chrono::milliseconds(300));
        streamer.put(unique("locked_answered").c_str(), "a", 1);
        streamer.put(unique("locked_never").c_str(), "b", 1);
        CHECK(wait_for([] { return entered.load() == 1; }));
        destroying = std::chrono::steady_clock::now();
    }
    double took = elapsed_ms(destroying);
    std::printf("destructor with the lambda's lock held (limit 300 ms): %.1f ms\n", took);
    CHECK(took < 300 + 500 + slack_ms);
    // The lambda that was running finishes now, on its detached thread, with
    // its state kept alive by the wrapper; the given-up file gets no callback.
    CHECK(wait_for([] { return finished.load() == 1; }));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    CHECK(entered.load() == 1);
}

}  // namespace

void *operator new(std::size_t size) {
    ++allocations;
    if (void *memory = std::malloc(size == 0 ? 1 : size)) return memory;
    throw std::bad_alloc();
}
void *operator new(std::size_t size, const std::nothrow_t &) noexcept {
    ++allocations;
    return std::malloc(size == 0 ? 1 : size);
}
void operator delete(void *memory) noexcept { std::free(memory); }
void operator delete(void *memory, std::size_t) noexcept { std::free(memory); }

int main(int argc, char **argv) {
    if (argc != 4 && argc != 5) {
        std::fprintf(stderr, "usage: %s HOST:PORT STALLED_HOST:PORT ANSWER_ONCE_HOST:PORT [SLACK_MS]\n", argv[0]);
        return 2;
    }
    if (argc == 5) slack_ms = std::strtol(argv[4], nullptr, 10);
    try {
        Address live = parse_address(argv[1]);
        Address stalled = parse_address(argv[2]);
        Address answer_once = parse_address(argv[3]);
        check_every_option(live);
        check_puts(live);
        check_stream(live, stalled);
        check_destructor_during_unwinding(stalled);
        check_destructor_with_the_lambdas_lock_held(answer_once);
    } catch (const std::exception &error) {
        std::fprintf(stderr, "FAILED: unexpected exception: %s\n", error.what());
        ++failed;
    }
    std::printf("%d passed, %d failed\n", passed.load(), failed.load());
    return failed.load() == 0 ? 0 : 1;
}
