// PymeTestCamera: a minimal Micro-Manager camera for the tests of the PymeStreaming
// adapter (never installed). Its frames have known content, pixel (x, y) of frame n
// being (7 * x + 131 * y + 1009 * n) modulo 2^bits, so a test can recompute every
// stored frame; x runs along a line of Width pixels, y over Height lines. Its sequence
// thread inserts frames into MMCore (CoreCallback::InsertImage), which runs the
// current image processor on each, and stops at the first error. Not a model camera:
// no ROI, binning 1 only, exposure only stored.
#include "DeviceBase.h"
#include "ModuleInterface.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <climits>
#include <cstdint>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

const char* const kName = "PymeTestCamera";

class PymeTestCamera : public CCameraBase<PymeTestCamera> {
 public:
  PymeTestCamera() {}
  ~PymeTestCamera() override { StopSequenceAcquisition(); }

  int Initialize() override {
    CreateProperty("PixelType", "16bit", MM::String, false,
                   new CPropertyAction(this, &PymeTestCamera::OnPixelType));
    AddAllowedValue("PixelType", "8bit");
    AddAllowedValue("PixelType", "16bit");
    CreateProperty("Width", "96", MM::Integer, false,
                   new CPropertyAction(this, &PymeTestCamera::OnWidth));
    CreateProperty("Height", "64", MM::Integer, false,
                   new CPropertyAction(this, &PymeTestCamera::OnHeight));
    CreateProperty("FrameIntervalUs", "0", MM::Integer, false,
                   new CPropertyAction(this, &PymeTestCamera::OnInterval));
    CreateProperty(MM::g_Keyword_Binning, "1", MM::Integer, false);
    // For the benchmark: "p50 p99 max" microseconds of InsertImage (which runs the
    // image processor) over the last sequence.
    CreateProperty("InsertTimesUs", "", MM::String, true,
                   new CPropertyAction(this, &PymeTestCamera::OnInsertTimes));
    AddAllowedValue(MM::g_Keyword_Binning, "1");
    Resize();
    return DEVICE_OK;
  }
  int Shutdown() override { return StopSequenceAcquisition(); }
  void GetName(char* name) const override { CDeviceUtils::CopyLimitedString(name, kName); }
  bool Busy() override { return false; }

  int SnapImage() override {
    Fill(snap_, 0);
    return DEVICE_OK;
  }
  const unsigned char* GetImageBuffer() override { return snap_.data(); }
  unsigned GetImageWidth() const override { return width_; }
  unsigned GetImageHeight() const override { return height_; }
  unsigned GetImageBytesPerPixel() const override { return bytes_; }
  unsigned GetBitDepth() const override { return 8 * bytes_; }
  long GetImageBufferSize() const override { return static_cast<long>(snap_.size()); }
  double GetExposure() const override { return exposure_; }
  void SetExposure(double ms) override { exposure_ = ms; }
  int SetROI(unsigned, unsigned, unsigned, unsigned) override { return DEVICE_UNSUPPORTED_COMMAND; }
  int GetROI(unsigned& x, unsigned& y, unsigned& w, unsigned& h) override {
    x = 0; y = 0; w = width_; h = height_;
    return DEVICE_OK;
  }
  int ClearROI() override { return DEVICE_OK; }
  int GetBinning() const override { return 1; }
  int SetBinning(int bin) override { return bin == 1 ? DEVICE_OK : DEVICE_INVALID_PROPERTY_VALUE; }
  int IsExposureSequenceable(bool& seq) const override { seq = false; return DEVICE_OK; }

  int StartSequenceAcquisition(double interval) override {
    return StartSequenceAcquisition(LONG_MAX, interval, false);
  }
  int StartSequenceAcquisition(long count, double, bool) override {
    if (running_) return DEVICE_CAMERA_BUSY_ACQUIRING;
    if (thread_.joinable()) thread_.join();
    int ret = GetCoreCallback()->PrepareForAcq(this);
    if (ret != DEVICE_OK) return ret;
    stop_ = false;
    running_ = true;
    insertUs_.clear();
    thread_ = std::thread([this, count] { Run(count); });
    return DEVICE_OK;
  }
  int StopSequenceAcquisition() override {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    return DEVICE_OK;
  }
  bool IsCapturing() override { return running_; }

 private:
  void Resize() { snap_.assign(static_cast<size_t>(width_) * height_ * bytes_, 0); }

  // Pixel (x, y) of frame n is (7x + 131y + 1009n) masked to the pixel size,
  // little-endian (tests/micromanager/driver.py: expected()).
  void Fill(std::vector<unsigned char>& out, long n) const {
    out.resize(static_cast<size_t>(width_) * height_ * bytes_);
    for (unsigned y = 0; y < height_; y++) {
      uint32_t base = 131u * y + 1009u * static_cast<uint32_t>(n);
      unsigned char* row = out.data() + static_cast<size_t>(y) * width_ * bytes_;
      if (bytes_ == 1) {
        for (unsigned x = 0; x < width_; x++) row[x] = static_cast<unsigned char>(7u * x + base);
      } else {
        for (unsigned x = 0; x < width_; x++) {
          uint16_t v = static_cast<uint16_t>(7u * x + base);
          row[2 * x] = static_cast<unsigned char>(v & 0xff);
          row[2 * x + 1] = static_cast<unsigned char>(v >> 8);
        }
      }
    }
  }

  // Frames come on a fixed schedule (FrameIntervalUs apart, as a camera's
  // hardware gives them), and the next frame's pixels are made right after
  // InsertImage, while the thread would wait for the hardware: a real camera's
  // thread wakes for a frame and inserts it, it does not compute it first.
  void Run(long count) {
    std::vector<unsigned char> frame;
    int status = DEVICE_OK;
    auto due = std::chrono::steady_clock::now();
    if (count > 0) Fill(frame, 0);
    for (long n = 0; n < count && !stop_; n++) {
      auto t0 = std::chrono::steady_clock::now();
      status = GetCoreCallback()->InsertImage(this, frame.data(), width_, height_, bytes_);
      insertUs_.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
      if (status != DEVICE_OK) break;
      if (n + 1 < count) Fill(frame, n + 1);
      if (intervalUs_ > 0) {
        due += std::chrono::microseconds(intervalUs_);
        std::this_thread::sleep_until(due);
      }
    }
    running_ = false;
    GetCoreCallback()->AcqFinished(this, status);
  }

  bool Idle() const { return !running_; }

  int OnPixelType(MM::PropertyBase* prop, MM::ActionType act) {
    if (act == MM::BeforeGet) {
      prop->Set(bytes_ == 1 ? "8bit" : "16bit");
    } else if (act == MM::AfterSet) {
      if (!Idle()) return DEVICE_CAMERA_BUSY_ACQUIRING;
      std::string v;
      prop->Get(v);
      bytes_ = v == "8bit" ? 1 : 2;
      Resize();
    }
    return DEVICE_OK;
  }
  int OnSize(MM::PropertyBase* prop, MM::ActionType act, unsigned& field) {
    if (act == MM::BeforeGet) {
      prop->Set(static_cast<long>(field));
    } else if (act == MM::AfterSet) {
      if (!Idle()) return DEVICE_CAMERA_BUSY_ACQUIRING;
      long v = 0;
      prop->Get(v);
      if (v < 1 || v > 8192) return DEVICE_INVALID_PROPERTY_VALUE;
      field = static_cast<unsigned>(v);
      Resize();
    }
    return DEVICE_OK;
  }
  int OnWidth(MM::PropertyBase* prop, MM::ActionType act) { return OnSize(prop, act, width_); }
  int OnHeight(MM::PropertyBase* prop, MM::ActionType act) { return OnSize(prop, act, height_); }
  int OnInterval(MM::PropertyBase* prop, MM::ActionType act) {
    if (act == MM::BeforeGet) {
      prop->Set(intervalUs_);
    } else if (act == MM::AfterSet) {
      prop->Get(intervalUs_);
    }
    return DEVICE_OK;
  }

  int OnInsertTimes(MM::PropertyBase* prop, MM::ActionType act) {
    if (act != MM::BeforeGet || running_) return DEVICE_OK;
    std::vector<double> t = insertUs_;
    if (t.empty()) return DEVICE_OK;
    std::sort(t.begin(), t.end());
    char buf[128];
    std::snprintf(buf, sizeof buf, "%.0f %.0f %.0f", t[t.size() / 2], t[t.size() * 99 / 100], t.back());
    prop->Set(buf);
    return DEVICE_OK;
  }

  std::vector<double> insertUs_;
  unsigned width_ = 96, height_ = 64, bytes_ = 2;
  long intervalUs_ = 0;
  double exposure_ = 10.0;
  std::vector<unsigned char> snap_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> running_{false};
};

}  // namespace

MODULE_API void InitializeModuleData() {
  RegisterDevice(kName, MM::CameraDevice, "A camera with known frames, for the PymeStreaming tests");
}

MODULE_API MM::Device* CreateDevice(const char* name) {
  if (name != nullptr && std::string(name) == kName) return new PymeTestCamera();
  return nullptr;
}

MODULE_API void DeleteDevice(MM::Device* device) { delete device; }
