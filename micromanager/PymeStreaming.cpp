// PymeStreaming: a Micro-Manager device adapter with one device, PymeStreamer, an
// ImageProcessor that streams every frame of a sequence acquisition to PYME data
// servers as <SeriesName>/frame%05d.pzf (with metadata.json first and events.json
// last), through pyme-streaming's C API (linked statically).
//
// MMCore calls Process() for every frame a camera inserts, on the camera's thread,
// before its circular buffer. Process() copies the frame into a buffer prepared when
// the series opened and hands it to the library without a copy (streamer_put_nocopy);
// the buffer returns to the pool when its file has an outcome. With no free buffer
// it waits up to QueueWaitMs (QueueFullPolicy=wait) or at once counts a dropped frame
// (drop). It never changes the frame and never fails the camera: MMCore ignores its
// return value. What it may not do: see docs/MICROMANAGER.md, "limits".
#include "DeviceBase.h"
#include "ModuleInterface.h"
#include "pyme_streaming.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

namespace {

const char* const kDeviceName = "PymeStreamer";

// Error codes of this adapter (their text is set just before they are returned).
const int ERR_BAD_VALUE = 30001;
const int ERR_STREAMING = 30002;
const int ERR_START = 30003;
const int ERR_CAMERA = 30004;
const int ERR_FRAMES_FAILED = 30005;

std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

double UnixNow() {
  using namespace std::chrono;
  return duration_cast<duration<double>>(system_clock::now().time_since_epoch()).count();
}

std::string DefaultSeriesName() {
  using namespace std::chrono;
  auto now = system_clock::now();
  std::time_t t = system_clock::to_time_t(now);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "micromanager/%Y_%m_%d/%H_%M_%S", &tm);
  long ms = static_cast<long>(duration_cast<milliseconds>(now.time_since_epoch()).count() % 1000);
  char out[80];
  std::snprintf(out, sizeof out, "%s_%03ld", buf, ms);
  return out;
}

struct Server {
  std::string host;
  unsigned port;
};

// Parses "host:port;host:port" (MMCore refuses commas in values). Empty: none.
bool ParseServers(const std::string& text, std::vector<Server>& out, std::string& why) {
  out.clear();
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ';')) {
    size_t a = item.find_first_not_of(" \t");
    if (a == std::string::npos) continue;
    item = item.substr(a, item.find_last_not_of(" \t") - a + 1);
    size_t colon = item.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == item.size()) {
      why = "'" + item + "' is not host:port";
      return false;
    }
    std::string host = item.substr(0, colon);
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    std::string port = item.substr(colon + 1);
    if (port.find_first_not_of("0123456789") != std::string::npos || port.size() > 5) {
      why = "'" + item + "': the port is not a number";
      return false;
    }
    unsigned long p = std::stoul(port);
    if (p < 1 || p > 65535) {
      why = "'" + item + "': the port is not in 1..65535";
      return false;
    }
    out.push_back(Server{host, static_cast<unsigned>(p)});
  }
  return true;
}

class StreamerDevice : public CImageProcessorBase<StreamerDevice> {
 public:
  StreamerDevice() {}
  ~StreamerDevice() override { StopSeries(nullptr); }

  int Initialize() override;
  int Shutdown() override {
    StopSeries(nullptr);
    return DEVICE_OK;
  }
  void GetName(char* name) const override { CDeviceUtils::CopyLimitedString(name, kDeviceName); }
  bool Busy() override { return false; }
  int Process(unsigned char* buffer, unsigned width, unsigned height, unsigned byteDepth) override;

 private:
  int Fail(int code, const std::string& text) {
    SetErrorText(code, text.c_str());
    LogMessage(text.c_str(), false);
    return code;
  }
  static void Release(void* user, const uint8_t* data, size_t) {
    StreamerDevice* self = static_cast<StreamerDevice*>(user);
    std::lock_guard<std::mutex> lock(self->mu_);
    self->free_.push_back(const_cast<uint8_t*>(data));
    self->cv_.notify_all();
  }
  int StartSeries();
  // Ends the series: no frame is taken any more, every outcome is waited for,
  // events.json is written. `failed` gets how many frames failed.
  int StopSeries(uint64_t* failed);
  int Options(PymeStreamerOptions** out, bool frames, std::string& why);
  std::string Metadata(const std::string& cameraLabel, MM::Camera* camera, double start);
  PymeStreamerStats Stats();

  int OnStreaming(MM::PropertyBase* prop, MM::ActionType act);
  int OnServers(MM::PropertyBase* prop, MM::ActionType act);
  int OnSetting(MM::PropertyBase* prop, MM::ActionType act);
  int OnCounter(MM::PropertyBase* prop, MM::ActionType act, long which);
  // "p50 p99 max" microseconds of Process() over the streamed frames of the
  // series (the last 65536), from its start to its end.
  int OnProcessTime(MM::PropertyBase* prop, MM::ActionType act) {
    if (act != MM::BeforeGet) return DEVICE_OK;
    std::vector<float> t;
    {
      std::lock_guard<std::mutex> lock(mu_);
      t = times_;
    }
    if (t.empty()) {
      prop->Set("");
      return DEVICE_OK;
    }
    std::sort(t.begin(), t.end());
    char buf[96];
    std::snprintf(buf, sizeof buf, "%.1f %.1f %.1f", t[t.size() / 2], t[t.size() * 99 / 100], t.back());
    prop->Set(buf);
    return DEVICE_OK;
  }
  int OnCurrentSeries(MM::PropertyBase* prop, MM::ActionType act) {
    if (act == MM::BeforeGet) prop->Set(series_.c_str());
    return DEVICE_OK;
  }

  // Settings (changed only while not streaming).
  std::string servers_, serverFilter_, seriesName_, compression_ = "huffman",
                                                 distribution_ = "round-robin",
                                                 policy_ = "wait", spillFolder_;
  long waitMs_ = 1000, bufferMb_ = 512;

  // The series. The handles are set and cleared by the device thread (under the
  // device lock) while accepting_ is false and no Process() runs.
  PymeStreamer* frames_ = nullptr;  // PZF filter: the frames
  PymeStreamer* side_ = nullptr;    // no filter: metadata.json, events.json
  std::string series_;
  unsigned width_ = 0, height_ = 0, bytes_ = 0;
  size_t frameBytes_ = 0;
  double startTime_ = 0;
  std::vector<std::unique_ptr<uint8_t[]>> pool_;

  std::mutex mu_;  // guards what follows
  std::condition_variable cv_;
  bool accepting_ = false;
  std::vector<uint8_t*> free_;
  int inProcess_ = 0;
  int64_t next_ = 0;           // the next frame number
  uint64_t dropped_ = 0;       // frames not streamed: no buffer, or a wrong size
  uint64_t waited_ = 0;        // frames that found no free buffer and waited for one
  uint64_t putFailed_ = 0;     // puts refused by the library
  PymeStreamerStats last_{};   // the counters of the last series, once it ended
  static const size_t kTimes = 65536;
  std::vector<float> times_;   // Process() times (us) of the series' frames streamed, the last kTimes
};


int StreamerDevice::Initialize() {
  CreateProperty("Servers", "", MM::String, false,
                 new CPropertyAction(this, &StreamerDevice::OnServers));
  CreateProperty("ServerFilter", "", MM::String, false,
                 new CPropertyAction(this, &StreamerDevice::OnSetting));
  CreateProperty("SeriesName", "", MM::String, false,
                 new CPropertyAction(this, &StreamerDevice::OnSetting));
  CreateProperty("Compression", "huffman", MM::String, false,
                 new CPropertyAction(this, &StreamerDevice::OnSetting));
  AddAllowedValue("Compression", "none");
  AddAllowedValue("Compression", "huffman");
  CreateProperty("Distribution", "round-robin", MM::String, false,
                 new CPropertyAction(this, &StreamerDevice::OnSetting));
  AddAllowedValue("Distribution", "round-robin");
  AddAllowedValue("Distribution", "least-loaded");
  CreateProperty("QueueFullPolicy", "wait", MM::String, false,
                 new CPropertyAction(this, &StreamerDevice::OnSetting));
  AddAllowedValue("QueueFullPolicy", "wait");
  AddAllowedValue("QueueFullPolicy", "drop");
  CreateProperty("QueueWaitMs", "1000", MM::Integer, false,
                 new CPropertyAction(this, &StreamerDevice::OnSetting));
  SetPropertyLimits("QueueWaitMs", 0, 60000);
  CreateProperty("BufferMB", "512", MM::Integer, false,
                 new CPropertyAction(this, &StreamerDevice::OnSetting));
  SetPropertyLimits("BufferMB", 16, 65536);
  CreateProperty("SpillFolder", "", MM::String, false,
                 new CPropertyAction(this, &StreamerDevice::OnSetting));
  CreateProperty("Streaming", "0", MM::Integer, false,
                 new CPropertyAction(this, &StreamerDevice::OnStreaming));
  AddAllowedValue("Streaming", "0");
  AddAllowedValue("Streaming", "1");
  const char* counters[] = {"FramesAcknowledged", "FramesFailed", "FramesInFlight", "FramesDropped",
                            "ServersUp", "FramesWaited"};
  for (long i = 0; i < 6; i++) {
    CreateProperty(counters[i], "0", MM::Integer, true,
                   new CPropertyActionEx(this, &StreamerDevice::OnCounter, i));
  }
  CreateProperty("ProcessTimeUs", "", MM::String, true,
                 new CPropertyAction(this, &StreamerDevice::OnProcessTime));
  CreateProperty("CurrentSeries", "", MM::String, true,
                 new CPropertyAction(this, &StreamerDevice::OnCurrentSeries));
  return DEVICE_OK;
}

int StreamerDevice::OnServers(MM::PropertyBase* prop, MM::ActionType act) {
  if (act == MM::BeforeGet) {
    prop->Set(servers_.c_str());
  } else if (act == MM::AfterSet) {
    std::string value, why;
    prop->Get(value);
    if (frames_ != nullptr) {
      prop->Set(servers_.c_str());
      return Fail(ERR_STREAMING, "PymeStreamer: set Streaming to 0 before changing Servers");
    }
    std::vector<Server> parsed;
    if (!ParseServers(value, parsed, why)) {
      prop->Set(servers_.c_str());
      return Fail(ERR_BAD_VALUE, "PymeStreamer: Servers: " + why +
                                     " (entries are host:port, separated by ';')");
    }
    servers_ = value;
  }
  return DEVICE_OK;
}

int StreamerDevice::OnSetting(MM::PropertyBase* prop, MM::ActionType act) {
  const std::string name = prop->GetName();
  std::string* text = nullptr;
  long* number = nullptr;
  if (name == "ServerFilter") text = &serverFilter_;
  else if (name == "SeriesName") text = &seriesName_;
  else if (name == "Compression") text = &compression_;
  else if (name == "Distribution") text = &distribution_;
  else if (name == "QueueFullPolicy") text = &policy_;
  else if (name == "SpillFolder") text = &spillFolder_;
  else if (name == "QueueWaitMs") number = &waitMs_;
  else if (name == "BufferMB") number = &bufferMb_;
  else return DEVICE_INVALID_PROPERTY;
  if (act == MM::BeforeGet) {
    if (text) prop->Set(text->c_str());
    else prop->Set(*number);
  } else if (act == MM::AfterSet) {
    if (frames_ != nullptr) {
      if (text) prop->Set(text->c_str());
      else prop->Set(*number);
      return Fail(ERR_STREAMING, "PymeStreamer: set Streaming to 0 before changing " + name);
    }
    if (text) prop->Get(*text);
    else prop->Get(*number);
  }
  return DEVICE_OK;
}

PymeStreamerStats StreamerDevice::Stats() {
  PymeStreamerStats stats{};
  if (frames_ != nullptr) streamer_stats(frames_, &stats, sizeof stats);
  else stats = last_;
  return stats;
}

int StreamerDevice::OnCounter(MM::PropertyBase* prop, MM::ActionType act, long which) {
  if (act != MM::BeforeGet) return DEVICE_OK;
  PymeStreamerStats s = Stats();
  uint64_t dropped, putFailed, waited;
  {
    std::lock_guard<std::mutex> lock(mu_);
    dropped = dropped_;
    putFailed = putFailed_;
    waited = waited_;
  }
  long value = 0;
  switch (which) {
    case 0: value = static_cast<long>(s.files_acknowledged); break;
    case 1: value = static_cast<long>(s.files_failed + putFailed); break;
    case 2: value = static_cast<long>(s.files_queued - s.files_acknowledged - s.files_failed); break;
    case 3: value = static_cast<long>(dropped); break;
    case 5: value = static_cast<long>(waited); break;
    case 4:
      if (frames_ != nullptr) {
        size_t n = streamer_n_servers(frames_);
        for (size_t i = 0; i < n; i++) {
          int32_t state = -1;
          if (streamer_server_state(frames_, i, &state) == STREAMER_OK && state == STREAMER_SERVER_UP) value++;
        }
      }
      break;
  }
  prop->Set(value);
  return DEVICE_OK;
}

int StreamerDevice::OnStreaming(MM::PropertyBase* prop, MM::ActionType act) {
  if (act == MM::BeforeGet) {
    prop->Set(frames_ != nullptr ? 1L : 0L);
    return DEVICE_OK;
  }
  if (act != MM::AfterSet) return DEVICE_OK;
  long on = 0;
  prop->Get(on);
  if (on == 1 && frames_ == nullptr) {
    int ret = StartSeries();
    if (ret != DEVICE_OK) prop->Set(0L);
    return ret;
  }
  if (on == 0 && frames_ != nullptr) {
    uint64_t failed = 0;
    int ret = StopSeries(&failed);
    if (ret != DEVICE_OK) return ret;
    if (failed > 0) {
      return Fail(ERR_FRAMES_FAILED, "PymeStreamer: the series " + series_ + " ended with " +
                                         std::to_string(failed) + " frames not stored (FramesFailed)");
    }
  }
  return DEVICE_OK;
}

int StreamerDevice::Options(PymeStreamerOptions** out, bool frames, std::string& why) {
  PymeStreamerOptions* o = nullptr;
  if (streamer_options_new(&o) != STREAMER_OK) {
    why = "out of memory";
    return STREAMER_ERR_PANIC;
  }
  std::vector<Server> servers;
  ParseServers(servers_, servers, why);
  int32_t rc = STREAMER_OK;
  for (const Server& s : servers) {
    if (rc == STREAMER_OK) rc = streamer_options_add_server(o, s.host.c_str(), static_cast<uint16_t>(s.port));
  }
  if (rc == STREAMER_OK && !serverFilter_.empty()) rc = streamer_options_set_serverfilter(o, serverFilter_.c_str());
  if (rc == STREAMER_OK && !spillFolder_.empty()) {
    std::string folder = spillFolder_ + (frames ? "/frames" : "/side");
    rc = streamer_options_set_spill_dir(o, folder.c_str());
  }
  if (rc == STREAMER_OK && frames) {
    int32_t format = bytes_ == 1 ? STREAMER_PZF_UINT8 : STREAMER_PZF_UINT16;
    int32_t compression = compression_ == "none" ? STREAMER_PZF_RAW : STREAMER_PZF_HUFFMAN;
    rc = streamer_options_set_filter_pzf_image(o, format, width_, height_, compression);
    if (rc == STREAMER_OK) {
      rc = streamer_options_set_distribution_kind(
          o, distribution_ == "least-loaded" ? STREAMER_DISTRIBUTION_LEAST_LOADED : STREAMER_DISTRIBUTION_ROUND_ROBIN);
    }
    // The pool bounds the frames in flight, and the library's limits leave them room
    // whatever else it holds: frames read back from the spill folder take at most a
    // quarter of a queue and of the memory budget (the library's SPILL_SHARE), so each
    // server's queue takes twice the pool and the budget four times the pool with a
    // PZF output (header and all) for each frame. A pool over the default budget
    // (1 GiB), or a draining spill folder, would otherwise have frames refused.
    const uint64_t slots = static_cast<uint64_t>(pool_.size()) + 1;
    if (rc == STREAMER_OK) {
      rc = streamer_options_set_queue_limits(o, 2 * slots, 2 * slots * frameBytes_);
    }
    if (rc == STREAMER_OK) {
      rc = streamer_options_set_memory_limit(o, 4 * slots * (frameBytes_ + 4096));
    }
    if (rc == STREAMER_OK) rc = streamer_options_set_put_timeout(o, 0);
  }
  if (rc != STREAMER_OK) {
    char buf[512] = {0};
    streamer_options_last_error(o, buf, sizeof buf, nullptr);
    why = buf;
    streamer_options_free(o);
    return rc;
  }
  *out = o;
  return STREAMER_OK;
}

std::string StreamerDevice::Metadata(const std::string& label, MM::Camera* camera, double start) {
  std::ostringstream m;
  m.precision(17);
  m << "{\"imageID\": " << JsonString(series_) << ", \"StartTime\": " << start
    << ", \"Camera.Name\": " << JsonString(label) << ", \"Camera.ImageWidth\": " << width_
    << ", \"Camera.ImageHeight\": " << height_ << ", \"Camera.BytesPerPixel\": " << bytes_
    << ", \"Camera.PixelType\": " << JsonString(bytes_ == 1 ? "GRAY8" : "GRAY16")
    << ", \"Camera.BitDepth\": " << camera->GetBitDepth() << ", \"Camera.Binning\": " << camera->GetBinning()
    << ", \"Camera.IntegrationTime\": " << camera->GetExposure() / 1000.0
    << ", \"PZF.DimOrder\": \"F\", \"PZF.Compression\": " << JsonString(compression_)
    << ", \"Acquisition.Software\": \"Micro-Manager (PymeStreaming adapter)\"";
  char value[MM::MaxStrLength + 1];
  char pname[MM::MaxStrLength + 1];
  for (unsigned i = 0; i < camera->GetNumberOfProperties(); i++) {
    if (!camera->GetPropertyName(i, pname)) continue;
    value[0] = 0;
    if (camera->GetProperty(pname, value) != DEVICE_OK) continue;
    m << ", " << JsonString("MicroManager." + label + "." + pname) << ": " << JsonString(value);
  }
  m << "}\n";
  return m.str();
}

int StreamerDevice::StartSeries() {
  if (servers_.empty() && serverFilter_.empty()) {
    return Fail(ERR_START, "PymeStreamer: set Servers (host:port;...) or ServerFilter before Streaming 1");
  }
  char label[MM::MaxStrLength + 1] = {0};
  MM::Core* core = GetCoreCallback();
  if (core == nullptr || core->GetDeviceProperty("Core", "Camera", label) != DEVICE_OK || label[0] == 0) {
    return Fail(ERR_CAMERA, "PymeStreamer: no camera is set (Core-Camera)");
  }
  MM::Device* device = core->GetDevice(this, label);
  if (device == nullptr || device->GetType() != MM::CameraDevice) {
    return Fail(ERR_CAMERA, std::string("PymeStreamer: the camera ") + label + " cannot be read");
  }
  MM::Camera* camera = static_cast<MM::Camera*>(device);
  width_ = camera->GetImageWidth();
  height_ = camera->GetImageHeight();
  bytes_ = camera->GetImageBytesPerPixel();
  if ((bytes_ != 1 && bytes_ != 2) || camera->GetNumberOfComponents() != 1) {
    return Fail(ERR_CAMERA, std::string("PymeStreamer: the camera ") + label +
                                " gives " + std::to_string(bytes_) +
                                "-byte pixels; only 8- and 16-bit grayscale frames are streamed");
  }
  frameBytes_ = static_cast<size_t>(width_) * height_ * bytes_;
  if (frameBytes_ == 0) return Fail(ERR_CAMERA, "PymeStreamer: the camera's image is empty");
  series_ = seriesName_.empty() ? DefaultSeriesName() : seriesName_;
  while (!series_.empty() && series_.back() == '/') series_.pop_back();

  // The prepared buffers: BufferMB worth of frames, 2 at least, 4096 at most.
  size_t count = static_cast<size_t>(bufferMb_) * 1024 * 1024 / frameBytes_;
  if (count < 2) count = 2;
  if (count > 4096) count = 4096;
  pool_.clear();
  try {
    for (size_t i = 0; i < count; i++) {
      pool_.emplace_back(new uint8_t[frameBytes_]);
      std::memset(pool_.back().get(), 0, frameBytes_);  // fault the pages in now
    }
  } catch (const std::bad_alloc&) {
    pool_.clear();
    return Fail(ERR_START, "PymeStreamer: not enough memory for BufferMB of frame buffers");
  }

  std::string why;
  PymeStreamerOptions* options = nullptr;
  int32_t rc = Options(&options, false, why);
  if (rc == STREAMER_OK) {
    rc = streamer_new(options, &side_);
    if (rc != STREAMER_OK) {
      char buf[512] = {0};
      streamer_options_last_error(options, buf, sizeof buf, nullptr);
      why = buf;
    }
    streamer_options_free(options);
  }
  if (rc == STREAMER_OK) {
    rc = Options(&options, true, why);
    if (rc == STREAMER_OK) {
      rc = streamer_new(options, &frames_);
      if (rc != STREAMER_OK) {
        char buf[512] = {0};
        streamer_options_last_error(options, buf, sizeof buf, nullptr);
        why = buf;
      }
      streamer_options_free(options);
    }
  }
  startTime_ = UnixNow();
  if (rc == STREAMER_OK) {
    std::string meta = Metadata(label, camera, startTime_);
    std::string name = series_ + "/metadata.json";
    rc = streamer_put(side_, name.c_str(), reinterpret_cast<const uint8_t*>(meta.data()), meta.size(), -1);
    if (rc != STREAMER_OK) {
      char buf[512] = {0};
      streamer_last_error(side_, buf, sizeof buf, nullptr);
      why = std::string("metadata.json: ") + buf;
    } else {
      rc = streamer_flush(side_, STREAMER_WAIT_FOREVER);
      PymeStreamerStats s{};
      streamer_stats(side_, &s, sizeof s);
      if (rc == STREAMER_OK && s.files_acknowledged != 1 && s.spilled == 0) {
        rc = STREAMER_ERR_FILES_FAILED;
        why = "metadata.json was not stored";
      }
    }
  }
  if (rc != STREAMER_OK) {
    if (frames_ != nullptr) streamer_close(frames_);
    if (side_ != nullptr) streamer_close(side_);
    frames_ = nullptr;
    side_ = nullptr;
    pool_.clear();
    return Fail(ERR_START, std::string("PymeStreamer: cannot open the series ") + series_ + ": " +
                               streamer_status_str(rc) + (why.empty() ? "" : ": " + why));
  }
  std::lock_guard<std::mutex> lock(mu_);
  free_.clear();
  for (auto& b : pool_) free_.push_back(b.get());
  next_ = 0;
  times_.clear();
  times_.reserve(kTimes);
  dropped_ = 0;
  waited_ = 0;
  putFailed_ = 0;
  accepting_ = true;
  return DEVICE_OK;
}

int StreamerDevice::StopSeries(uint64_t* failed) {
  if (frames_ == nullptr) return DEVICE_OK;
  int64_t frames;
  uint64_t putFailed;
  {
    std::unique_lock<std::mutex> lock(mu_);
    accepting_ = false;
    cv_.notify_all();
    cv_.wait(lock, [this] { return inProcess_ == 0; });
    frames = next_;
    putFailed = putFailed_;
  }
  PymeStreamerStats stats{};
  streamer_close_stats(frames_, &stats, sizeof stats);
  frames_ = nullptr;
  last_ = stats;
  double end = UnixNow();
  std::ostringstream events;
  events.precision(17);
  events << "[[\"StartAq\", \"0\", " << startTime_ << "], [\"StopAq\", \"" << frames << "\", " << end << "]]\n";
  std::ostringstream final_meta;
  final_meta.precision(17);
  final_meta << "{\"EndTime\": " << end << ", \"FramesStreamed\": " << frames
             << ", \"FramesAcknowledged\": " << stats.files_acknowledged << "}\n";
  std::string fm = final_meta.str(), ev = events.str();
  std::string fmName = series_ + "/final_metadata.json", evName = series_ + "/events.json";
  streamer_put(side_, fmName.c_str(), reinterpret_cast<const uint8_t*>(fm.data()), fm.size(), -1);
  streamer_put(side_, evName.c_str(), reinterpret_cast<const uint8_t*>(ev.data()), ev.size(), -1);
  PymeStreamerStats side{};
  streamer_close_stats(side_, &side, sizeof side);
  side_ = nullptr;
  pool_.clear();
  {
    std::lock_guard<std::mutex> lock(mu_);
    free_.clear();
  }
  if (failed != nullptr) *failed = stats.files_failed + putFailed;
  if (side.files_failed > 0) {
    return Fail(ERR_FRAMES_FAILED, "PymeStreamer: the series " + series_ +
                                       " ended, but events.json was not stored: PYME sees it incomplete");
  }
  return DEVICE_OK;
}

int StreamerDevice::Process(unsigned char* buffer, unsigned width, unsigned height, unsigned byteDepth) {
  auto t0 = std::chrono::steady_clock::now();
  std::unique_lock<std::mutex> lock(mu_);
  if (!accepting_) return DEVICE_OK;
  if (width != width_ || height != height_ || byteDepth != bytes_) {
    dropped_++;
    return DEVICE_OK;
  }
  if (free_.empty()) {
    if (policy_ == "wait") {
      waited_++;
      cv_.wait_for(lock, std::chrono::milliseconds(waitMs_), [this] { return !free_.empty() || !accepting_; });
    }
    if (free_.empty() || !accepting_) {
      dropped_++;
      return DEVICE_OK;
    }
  }
  uint8_t* frame = free_.back();
  free_.pop_back();
  int64_t index = next_++;
  inProcess_++;
  lock.unlock();

  std::memcpy(frame, buffer, frameBytes_);
  char name[1100];
  std::snprintf(name, sizeof name, "%s/frame%05lld.pzf", series_.c_str(), static_cast<long long>(index));
  // On failure the library gives the buffer back (Release) before it returns.
  int32_t rc = streamer_put_nocopy(frames_, name, frame, frameBytes_, index, &StreamerDevice::Release, this);

  lock.lock();
  if (rc != STREAMER_OK) putFailed_++;
  if (--inProcess_ == 0) cv_.notify_all();
  float us = std::chrono::duration<float, std::micro>(std::chrono::steady_clock::now() - t0).count();
  if (times_.size() < kTimes) times_.push_back(us);
  else times_[static_cast<size_t>(index) % kTimes] = us;
  return DEVICE_OK;
}

}  // namespace

MODULE_API void InitializeModuleData() {
  RegisterDevice(kDeviceName, MM::ImageProcessorDevice,
                 "Streams every frame of a sequence acquisition to PYME data servers");
}

MODULE_API MM::Device* CreateDevice(const char* name) {
  if (name != nullptr && std::string(name) == kDeviceName) return new StreamerDevice();
  return nullptr;
}

MODULE_API void DeleteDevice(MM::Device* device) { delete device; }
