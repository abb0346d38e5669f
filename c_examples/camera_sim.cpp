// camera_sim.cpp -- a simulated camera streaming frames at a fixed rate, with
// the C++17 RAII wrapper (pyme_streaming.hpp).
//
// Usage: camera_sim [-f FPS] [-n FRAMES] [-s FRAME_BYTES] [-p SERIES] HOST:PORT [HOST:PORT...]
//
// The camera thread produces one frame every 1/FPS seconds and puts it (a copy)
// as SERIES/frame%05d.raw, round-robin by frame number. It reports the put
// latency (median, p99, max) and whether any frame was late (a put that made
// the camera miss its next frame time). Exits non-zero when any frame was not
// acknowledged.
#include <pyme_streaming.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Config {
    double fps = 200.0;
    long frames = 400;
    std::size_t frame_bytes = 512 * 512 * 2;
    std::string series = "camera_sim";
    std::vector<std::pair<std::string, uint16_t>> servers;
};

bool parse(int argc, char **argv, Config &config) {
    for (int i = 1; i < argc; i++) {
        std::string arg = argv[i];
        if (arg == "-f" && i + 1 < argc) {
            config.fps = std::atof(argv[++i]);
        } else if (arg == "-n" && i + 1 < argc) {
            config.frames = std::atol(argv[++i]);
        } else if (arg == "-s" && i + 1 < argc) {
            config.frame_bytes = static_cast<std::size_t>(std::atol(argv[++i]));
        } else if (arg == "-p" && i + 1 < argc) {
            config.series = argv[++i];
        } else {
            auto colon = arg.rfind(':');
            if (colon == std::string::npos || colon == 0) return false;
            int port = std::atoi(arg.c_str() + colon + 1);
            if (port <= 0 || port > 65535) return false;
            config.servers.emplace_back(arg.substr(0, colon), static_cast<uint16_t>(port));
        }
    }
    return !config.servers.empty() && config.fps > 0 && config.frames > 0 && config.frame_bytes > 0;
}

struct CameraResult {
    std::vector<double> put_us;  // put latency of every frame, microseconds
    long late_frames = 0;
    long failed_puts = 0;
};

// The camera: one frame per period from its own thread, like a driver's acquisition loop.
CameraResult run_camera(pyme::Streamer &streamer, const Config &config) {
    CameraResult result;
    result.put_us.reserve(static_cast<std::size_t>(config.frames));
    std::vector<uint16_t> pixels(config.frame_bytes / 2 + 1);
    const auto period = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(1.0 / config.fps));
    auto next = Clock::now();
    char name[512];
    for (long frame = 0; frame < config.frames; frame++) {
        std::this_thread::sleep_until(next);
        for (std::size_t p = 0; p < pixels.size(); p += 64) pixels[p] = static_cast<uint16_t>(frame + p);
        std::snprintf(name, sizeof name, "%s/frame%05ld.raw", config.series.c_str(), frame);
        auto start = Clock::now();
        int32_t status = streamer.try_put(name, pixels.data(), config.frame_bytes, frame);
        auto end = Clock::now();
        if (status != STREAMER_OK) {
            result.failed_puts++;
            std::cerr << "camera_sim: put " << name << ": " << streamer_status_str(status) << ": "
                      << streamer.last_error() << "\n";
        }
        result.put_us.push_back(std::chrono::duration<double, std::micro>(end - start).count());
        next += period;
        if (end > next) result.late_frames++;
    }
    return result;
}

double percentile(std::vector<double> sorted, double q) {
    std::sort(sorted.begin(), sorted.end());
    auto index = static_cast<std::size_t>(q * static_cast<double>(sorted.size() - 1) + 0.5);
    return sorted[index];
}

}  // namespace

int main(int argc, char **argv) {
    Config config;
    if (!parse(argc, argv, config)) {
        std::cerr << "usage: " << argv[0] << " [-f FPS] [-n FRAMES] [-s FRAME_BYTES] [-p SERIES] HOST:PORT...\n";
        return 2;
    }
    try {
        std::atomic<long> failed_files{0};
        pyme::Options options;
        for (const auto &[host, port] : config.servers) options.add_server(host, port);
        options.distribution_kind(STREAMER_DISTRIBUTION_ROUND_ROBIN)
            .on_complete([&failed_files](const pyme::Outcome &outcome) {
                if (!outcome.ok()) failed_files++;
            });
        pyme::Streamer streamer(options);
        // Arming: buffers for the frames in flight are faulted in now, not by the first puts.
        streamer.prepare_buffers(config.frame_bytes, 4);

        CameraResult result;
        std::thread camera([&] { result = run_camera(streamer, config); });
        camera.join();
        pyme::Stats stats = streamer.close();

        std::printf("library %s, %zu servers, %ld frames of %zu bytes at %.0f fps\n",
                    std::string(pyme::version()).c_str(), config.servers.size(), config.frames,
                    config.frame_bytes, config.fps);
        std::printf("put latency: median %.1f us, p99 %.1f us, max %.1f us\n", percentile(result.put_us, 0.5),
                    percentile(result.put_us, 0.99), percentile(result.put_us, 1.0));
        std::printf("late frames: %ld%s\n", result.late_frames, result.late_frames ? "" : " (none late)");
        std::printf("acknowledged %llu of %llu, failed %llu\n", (unsigned long long)stats.files_acknowledged,
                    (unsigned long long)stats.files_queued, (unsigned long long)stats.files_failed);
        bool lost = result.failed_puts > 0 || failed_files > 0 || !pyme::all_acknowledged(stats) ||
                    stats.files_acknowledged != static_cast<uint64_t>(config.frames);
        if (lost) {
            std::cerr << "camera_sim: frames lost\n";
            return 1;
        }
        std::printf("all %ld frames acknowledged\n", config.frames);
        return 0;
    } catch (const pyme::Error &error) {
        std::cerr << "camera_sim: " << error.what() << " (status " << error.status() << ")\n";
        return 1;
    }
}
