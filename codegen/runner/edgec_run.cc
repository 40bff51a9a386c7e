// edgec-run: native runner for models compiled by edgec (part of the edgec toolchain).
//
// Loads a TVM Relax VM executable (.so exported by edgec), feeds it .npy inputs,
// times `main`, writes every output as DIR/output_<i>.npy and prints one line of
// JSON with latency statistics to stdout. Errors go to stderr as one line and
// exit with status 2.
//
//   edgec-run MODEL_SO --input in0.npy [--input in1.npy ...] --output-dir DIR
//             [--warmup W] [--repeat N] [--threads T] [--device cpu|cuda]
//
// The model is opened, fed and run through edgec's C API (codegen/capi/edgec_model.h), which
// this runner is compiled with: it has no model logic of its own.
//
// Builds against the tvm_ffi headers only and links libtvm_ffi.so and
// libtvm_runtime.so (the latter with --no-as-needed: nothing references it
// directly, but its static initialisers register the VM executable loader).
//
// Built with -DEDGEC_SYSTEM_LIB (edgec's static executables), the model is linked into the
// runner: its kernels and VM bytecode registered themselves in the global system library at
// start-up (edgec_model_open_system), so there is no MODEL_SO argument (one given is
// refused) and nothing is dlopen()ed.
//
// --device cuda: the VM runs on GPU 0 with the CPU as host. libtvm_runtime_cuda.so (beside
// the runner) is dlopen()ed, not linked: it needs the NVIDIA driver's libcuda.so.1, and a
// machine without one must get a one-line error, not a loader failure before main(). Inputs
// are copied to the GPU before timing; each timed call ends with a stream sync (inside
// edgec_model_invoke), since kernels launch asynchronously. Device memory is the drop in the
// GPU's free memory from before the model is loaded to after the runs (TVM's pooled allocator
// keeps what it allocated).
//
// x86-64 with glibc: the runner restarts itself once with glibc.malloc.hugetlb=1 added to
// GLIBC_TUNABLES (read only at start-up), so that malloc asks for transparent huge pages on
// its large blocks: the model's weights, activations and scratch. TLB misses otherwise cost
// 5-20% of an inference (docs/performance.md, "Huge pages"). A GLIBC_TUNABLES that already
// names the tunable is kept as it is, so glibc.malloc.hugetlb=0 turns this off.

#include <dlfcn.h>
#include <dlpack/dlpack.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <tvm/ffi/any.h>
#include <tvm/ffi/error.h>
#include <tvm/ffi/function.h>
#include <tvm/ffi/string.h>
#include <unistd.h>

#include "../capi/edgec_model.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace ffi = tvm::ffi;

namespace {

// Raised for every user-facing failure; main() turns it into the one-line error.
struct RunnerError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

[[noreturn]] void Fail(const std::string& msg) { throw RunnerError(msg); }

std::string OneLine(std::string s) {
  for (char& c : s) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  while (!s.empty() && s.back() == ' ') s.pop_back();
  return s;
}

// ---------------------------------------------------------------------------
// dtypes

struct DTypeInfo {
  const char* npy;  // npy descr without the byte-order character
  edgec_dtype dtype;
  size_t bytes;  // per element
};

const DTypeInfo kDTypes[] = {
    {"f2", EDGEC_FLOAT16, 2}, {"f4", EDGEC_FLOAT32, 4}, {"f8", EDGEC_FLOAT64, 8},
    {"i1", EDGEC_INT8, 1},    {"i2", EDGEC_INT16, 2},   {"i4", EDGEC_INT32, 4},
    {"i8", EDGEC_INT64, 8},   {"u1", EDGEC_UINT8, 1},   {"u2", EDGEC_UINT16, 2},
    {"u4", EDGEC_UINT32, 4},  {"u8", EDGEC_UINT64, 8},  {"b1", EDGEC_BOOL, 1},
};

const DTypeInfo* FindByNpy(const std::string& code) {
  for (const auto& d : kDTypes) {
    if (code == d.npy) return &d;
  }
  return nullptr;
}

const DTypeInfo& FindByDType(edgec_dtype dtype) {
  for (const auto& d : kDTypes) {
    if (d.dtype == dtype) return d;
  }
  Fail(std::string("the model uses dtype ") + edgec_dtype_name(dtype) + ", which .npy lacks");
}

constexpr size_t kAlign = 64;  // .npy headers are padded to this

// ---------------------------------------------------------------------------
// .npy reading and writing (https://numpy.org/neps/nep-0001-npy-format.html)

struct NpyArray {
  const DTypeInfo* dtype = nullptr;
  std::vector<int64_t> shape;
  std::string data;
};

// Returns the text after `'key':` in a header dict, or npos.
size_t FindKey(const std::string& header, const std::string& key) {
  size_t pos = header.find("'" + key + "'");
  if (pos == std::string::npos) return pos;
  pos = header.find(':', pos);
  return pos == std::string::npos ? pos : pos + 1;
}

NpyArray ReadNpy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) Fail("cannot open input '" + path + "': " + std::strerror(errno));
  std::string blob((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto bad = [&path](const std::string& why) { Fail("bad npy file '" + path + "': " + why); };

  if (blob.size() < 10 || blob.compare(0, 6, "\x93NUMPY") != 0) bad("missing NUMPY magic");
  const unsigned char major = static_cast<unsigned char>(blob[6]);
  size_t header_len = 0, header_start = 0;
  if (major == 1) {
    header_len = static_cast<unsigned char>(blob[8]) | (static_cast<unsigned char>(blob[9]) << 8);
    header_start = 10;
  } else if (major == 2 || major == 3) {
    if (blob.size() < 12) bad("truncated header");
    for (int i = 3; i >= 0; --i) header_len = (header_len << 8) | static_cast<unsigned char>(blob[8 + i]);
    header_start = 12;
  } else {
    bad("unsupported format version " + std::to_string(major));
  }
  if (blob.size() < header_start + header_len) bad("truncated header");
  const std::string header = blob.substr(header_start, header_len);

  NpyArray arr;
  size_t p = FindKey(header, "descr");
  if (p == std::string::npos) bad("no 'descr' in header");
  size_t q1 = header.find('\'', p), q2 = q1 == std::string::npos ? q1 : header.find('\'', q1 + 1);
  if (q2 == std::string::npos) bad("unparsable 'descr'");
  const std::string descr = header.substr(q1 + 1, q2 - q1 - 1);
  // '=' is native order; both supported targets (x86-64, aarch64) are little-endian.
  if (descr.size() != 3 || (descr[0] != '<' && descr[0] != '|' && descr[0] != '=')) {
    bad("unsupported dtype '" + descr + "' (need little-endian)");
  }
  arr.dtype = FindByNpy(descr.substr(1));
  if (arr.dtype == nullptr) bad("unsupported dtype '" + descr + "'");

  p = FindKey(header, "fortran_order");
  if (p == std::string::npos) bad("no 'fortran_order' in header");
  p = header.find_first_not_of(' ', p);
  if (header.compare(p, 4, "True") == 0) bad("Fortran-order arrays are not supported");

  p = FindKey(header, "shape");
  if (p == std::string::npos) bad("no 'shape' in header");
  size_t open = header.find('(', p), close = header.find(')', p);
  if (open == std::string::npos || close == std::string::npos || close < open) bad("unparsable 'shape'");
  std::string dims = header.substr(open + 1, close - open - 1);
  std::replace(dims.begin(), dims.end(), ',', ' ');
  std::istringstream ds(dims);
  for (std::string tok; ds >> tok;) {
    char* end = nullptr;
    long long v = std::strtoll(tok.c_str(), &end, 10);
    if (*end != '\0' && *end != 'L') bad("unparsable 'shape'");
    if (v < 0) bad("negative dimension");
    arr.shape.push_back(v);
  }

  size_t numel = 1;
  for (int64_t d : arr.shape) numel *= static_cast<size_t>(d);
  const size_t nbytes = numel * arr.dtype->bytes;
  const size_t data_start = header_start + header_len;
  if (blob.size() - data_start != nbytes) {
    bad("expected " + std::to_string(nbytes) + " data bytes, found " +
        std::to_string(blob.size() - data_start));
  }
  arr.data = blob.substr(data_start);
  return arr;
}

std::string ShapeTuple(const std::vector<int64_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  if (shape.size() == 1) s += ",";
  return s + ")";
}

void WriteNpy(const std::string& path, const DTypeInfo& dtype, const std::vector<int64_t>& shape,
              const void* data, size_t nbytes) {
  const char order = dtype.bytes == 1 ? '|' : '<';
  std::string header = std::string("{'descr': '") + order + dtype.npy +
                       "', 'fortran_order': False, 'shape': " + ShapeTuple(shape) + ", }";
  // Pad with spaces so that magic+version+len+header is a multiple of 64, ending in '\n'.
  const size_t total = 10 + header.size() + 1;
  header.append((kAlign - total % kAlign) % kAlign, ' ');
  header.push_back('\n');

  std::ofstream out(path, std::ios::binary);
  if (!out) Fail("cannot write '" + path + "': " + std::strerror(errno));
  const unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0,
                                 static_cast<unsigned char>(header.size() & 0xff),
                                 static_cast<unsigned char>(header.size() >> 8)};
  out.write(reinterpret_cast<const char*>(pre), sizeof(pre));
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(nbytes));
  if (!out) Fail("cannot write '" + path + "'");
}

// ---------------------------------------------------------------------------
// Command line

struct Options {
  std::string model;
  std::vector<std::string> inputs;
  std::string output_dir;
  int warmup = 3;
  int repeat = 20;
  int threads = 0;  // 0: leave the runtime's default
  DLDeviceType device = kDLCPU;
};

#ifdef EDGEC_SYSTEM_LIB
const char kUsage[] =
    "usage: edgec-run --input IN.npy [--input IN.npy ...] --output-dir DIR  (model linked in)\n"
#else
const char kUsage[] =
    "usage: edgec-run MODEL_SO --input IN.npy [--input IN.npy ...] --output-dir DIR\n"
#endif
    "                 [--warmup W (default 3)] [--repeat N (default 20)] [--threads T]\n"
    "                 [--device cpu|cuda (default cpu)]\n";

int ParseInt(const std::string& flag, const std::string& value, int min) {
  char* end = nullptr;
  errno = 0;
  long v = std::strtol(value.c_str(), &end, 10);
  if (value.empty() || *end != '\0' || errno != 0 || v < min || v > 1000000000L) {
    Fail(flag + " expects an integer >= " + std::to_string(min) + ", got '" + value + "'");
  }
  return static_cast<int>(v);
}

Options ParseArgs(int argc, char** argv) {
  Options opt;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i], value;
    bool has_inline_value = false;
    if (arg.rfind("--", 0) == 0 && arg.find('=') != std::string::npos) {
      value = arg.substr(arg.find('=') + 1);
      arg = arg.substr(0, arg.find('='));
      has_inline_value = true;
    }
    auto next = [&]() -> std::string {
      if (has_inline_value) return value;
      if (i + 1 >= argc) Fail(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--input") {
      opt.inputs.push_back(next());
    } else if (arg == "--output-dir") {
      opt.output_dir = next();
    } else if (arg == "--warmup") {
      opt.warmup = ParseInt(arg, next(), 0);
    } else if (arg == "--repeat") {
      opt.repeat = ParseInt(arg, next(), 1);
    } else if (arg == "--threads") {
      opt.threads = ParseInt(arg, next(), 1);
    } else if (arg == "--device") {
      const std::string device = next();
      if (device == "cpu") {
        opt.device = kDLCPU;
      } else if (device == "cuda") {
        opt.device = kDLCUDA;
      } else {
        Fail("--device expects cpu or cuda, got '" + device + "'");
      }
    } else if (arg.size() > 1 && arg[0] == '-') {
      Fail("unknown option '" + arg + "'");
    } else if (opt.model.empty()) {
      opt.model = arg;
    } else {
      Fail("unexpected argument '" + arg + "'");
    }
  }
#ifdef EDGEC_SYSTEM_LIB
  if (!opt.model.empty()) Fail("this runner has its model linked in; give no MODEL_SO");
#else
  if (opt.model.empty()) Fail("missing MODEL_SO");
#endif
  if (opt.inputs.empty()) Fail("at least one --input is required");
  if (opt.output_dir.empty()) Fail("missing --output-dir");
  return opt;
}

// ---------------------------------------------------------------------------
// Model

// mkdir -p
void MakeDirs(const std::string& dir) {
  for (size_t pos = 0; pos != std::string::npos;) {
    pos = dir.find('/', pos + 1);  // +1 skips a leading '/' and the separator just handled
    const std::string prefix = dir.substr(0, pos);
    struct stat st;
    if (stat(prefix.c_str(), &st) == 0) {
      if (!S_ISDIR(st.st_mode)) Fail("output dir '" + dir + "': '" + prefix + "' is not a directory");
    } else if (mkdir(prefix.c_str(), 0777) != 0 && errno != EEXIST) {
      Fail("cannot create output dir '" + prefix + "': " + std::strerror(errno));
    }
  }
}

struct CloseModel {
  void operator()(edgec_model* m) const { edgec_model_close(m); }
};
using Model = std::unique_ptr<edgec_model, CloseModel>;

Model OpenModel(const Options& opt) {
#ifdef EDGEC_SYSTEM_LIB
  if (opt.device != kDLCPU) Fail("this runner's linked-in model runs on the CPU only");
  edgec_model* m = edgec_model_open_system();
#else
  const auto device = static_cast<edgec_device>(opt.device);  // DLPack's codes, as the enum's
  edgec_model* m = edgec_model_open_device(opt.model.c_str(), device);
#endif
  if (m == nullptr) Fail(edgec_last_error());
  return Model(m);
}

// Fails with the API's message when one of its calls did.
void Check(int status) {
  if (status != 0) Fail(edgec_last_error());
}

std::vector<int64_t> Dims(const edgec_tensor_info& info) {
  return std::vector<int64_t>(info.dims, info.dims + info.rank);
}

// ---------------------------------------------------------------------------
// GPU: TVM's device API through its registered global functions, so the runner needs no CUDA
// headers or libraries to build and runs unchanged where the device is another.

// TVM's DeviceAttrKind (tvm/runtime/device_api.h).
constexpr int kAttrExist = 0, kAttrComputeVersion = 4, kAttrDeviceName = 5;
constexpr int kAttrTotalMemory = 14, kAttrAvailableMemory = 15;

ffi::Function Global(const char* name) {
  std::optional<ffi::Function> f = ffi::Function::GetGlobal(name);
  if (!f.has_value()) Fail(std::string("the TVM runtime lacks ") + name + "; rebuild the bundle");
  return *f;
}

std::string RunnerDir() {
  char buf[4096];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return ".";
  std::string path(buf, static_cast<size_t>(n));
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

// Registers TVM's CUDA device API and module loader; says in one line why it cannot.
void LoadCudaRuntime() {
  const std::string lib = RunnerDir() + "/libtvm_runtime_cuda.so";
  if (dlopen(lib.c_str(), RTLD_NOW | RTLD_GLOBAL) != nullptr) return;
  const std::string why = dlerror();
  if (why.find("libcuda.so") != std::string::npos) {
    Fail("no NVIDIA driver on this machine (libcuda.so.1 not found): a cuda bundle runs on an "
         "NVIDIA GPU with its driver installed");
  }
  Fail("cannot load the CUDA runtime " + lib + ": " + why);
}

ffi::Any DeviceAttr(DLDevice dev, int kind) {
  return Global("runtime.GetDeviceAttr")(static_cast<int>(dev.device_type), dev.device_id, kind);
}

int64_t AvailableMemory(DLDevice dev) {
  ffi::Any v = DeviceAttr(dev, kAttrAvailableMemory);
  return v == nullptr ? -1 : v.cast<int64_t>();
}

struct GpuInfo {
  std::string name;
  std::string compute_version;
  int64_t total_bytes = -1;
};

GpuInfo OpenGpu(DLDevice dev) {
  LoadCudaRuntime();
  ffi::Any exist = DeviceAttr(dev, kAttrExist);
  if (exist == nullptr || exist.cast<int64_t>() == 0) {
    Fail("no CUDA device " + std::to_string(dev.device_id) +
         ": the NVIDIA driver reports no usable GPU (check nvidia-smi)");
  }
  GpuInfo info;
  ffi::Any name = DeviceAttr(dev, kAttrDeviceName);
  if (name != nullptr) info.name = name.cast<ffi::String>();
  ffi::Any version = DeviceAttr(dev, kAttrComputeVersion);
  if (version != nullptr) info.compute_version = version.cast<ffi::String>();
  ffi::Any total = DeviceAttr(dev, kAttrTotalMemory);
  if (total != nullptr) info.total_bytes = total.cast<int64_t>();
  return info;
}

double Percentile(const std::vector<double>& sorted, double p) {
  // Nearest rank: the smallest sample with at least p% of samples <= it.
  size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * sorted.size()));
  rank = std::min(std::max<size_t>(rank, 1), sorted.size());
  return sorted[rank - 1];
}

std::string Num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.6f", v);
  return buf;
}

std::string JsonString(const std::string& s) {
  std::string r = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      r += '\\';
      r += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04x", c);
      r += buf;
    } else {
      r += c;
    }
  }
  return r + "\"";
}

// Peak resident set size of this process. VmHWM is reset by execve; getrusage's ru_maxrss is
// not, so a runner started from a large parent (Python with torch loaded) would report the
// parent's peak instead of its own.
long long PeakRssBytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::atoll(line.c_str() + 6) * 1024;  // in kB
  }
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<long long>(ru.ru_maxrss) * 1024;  // Linux reports KiB
}

// Anonymous memory of this process in transparent huge pages now (what WithHugePages got);
// 0 where the kernel does not say.
long long HugePageBytes() {
  std::ifstream rollup("/proc/self/smaps_rollup");
  std::string line;
  while (std::getline(rollup, line)) {
    if (line.rfind("AnonHugePages:", 0) == 0) return std::atoll(line.c_str() + 14) * 1024;
  }
  return 0;
}

int Run(const Options& opt) {
  // Must happen before the runtime's thread pool is first created (on first parallel launch).
  if (opt.threads > 0) setenv("TVM_NUM_THREADS", std::to_string(opt.threads).c_str(), 1);

  std::vector<NpyArray> arrays;
  for (const std::string& path : opt.inputs) arrays.push_back(ReadNpy(path));

  MakeDirs(opt.output_dir);

  const DLDevice device{opt.device, 0};
  const bool on_gpu = opt.device != kDLCPU;
  GpuInfo gpu;
  int64_t free_before = -1;
  if (on_gpu) {
    gpu = OpenGpu(device);  // fails in one line where there is no driver or no device
    free_before = AvailableMemory(device);  // after the context exists: its memory not counted
  }

  const Model model = OpenModel(opt);
  const int num_inputs = edgec_model_num_inputs(model.get());
  if (num_inputs != static_cast<int>(arrays.size())) {
    Fail("model's main takes " + std::to_string(num_inputs) + " inputs, got " +
         std::to_string(arrays.size()));
  }
  for (int i = 0; i < num_inputs; ++i) {
    const edgec_tensor_info& info = *edgec_model_input(model.get(), i);
    const NpyArray& arr = arrays[i];
    if (arr.dtype->dtype != info.dtype || arr.shape != Dims(info)) {
      Fail("input " + std::to_string(i) + " ('" + opt.inputs[i] + "') is " +
           edgec_dtype_name(arr.dtype->dtype) + " " + ShapeTuple(arr.shape) + "; the model takes " +
           edgec_dtype_name(info.dtype) + " " + ShapeTuple(Dims(info)));
    }
    // on the GPU too: copied there before any timing
    Check(edgec_model_set_input(model.get(), i, arr.data.data(), arr.data.size()));
  }

  std::vector<double> samples;
  samples.reserve(opt.repeat);
  for (int i = 0; i < opt.warmup + opt.repeat; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    const int status = edgec_model_invoke(model.get());  // GPU: ends with a stream sync
    auto t1 = std::chrono::steady_clock::now();
    Check(status);
    if (i >= opt.warmup) {
      samples.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    }
  }

  std::string outputs_json;
  for (int i = 0; i < edgec_model_num_outputs(model.get()); ++i) {
    const edgec_tensor_info& info = *edgec_model_output(model.get(), i);
    std::string data(info.bytes, '\0');
    Check(edgec_model_get_output(model.get(), i, data.data(), data.size()));
    const std::vector<int64_t> shape = Dims(info);
    const std::string file = "output_" + std::to_string(i) + ".npy";
    WriteNpy(opt.output_dir + "/" + file, FindByDType(info.dtype), shape, data.data(), data.size());

    std::string dims;
    for (size_t d = 0; d < shape.size(); ++d) dims += (d ? ", " : "") + std::to_string(shape[d]);
    outputs_json += std::string(i ? ", " : "") + "{\"file\": " + JsonString(file) +
                    ", \"shape\": [" + dims + "], \"dtype\": " +
                    JsonString(edgec_dtype_name(info.dtype)) + "}";
  }

  std::vector<double> sorted = samples;
  std::sort(sorted.begin(), sorted.end());
  double sum = 0;
  for (double s : sorted) sum += s;

  const long long peak_rss = PeakRssBytes();
  std::string device_json;
  if (on_gpu) {
    const int64_t free_after = AvailableMemory(device);
    const int64_t used = free_before < 0 || free_after < 0 ? -1 : std::max<int64_t>(0, free_before - free_after);
    device_json = ", \"device\": {\"kind\": \"cuda\", \"name\": " + JsonString(gpu.name) +
                  ", \"compute_version\": " + JsonString(gpu.compute_version) +
                  ", \"memory_bytes\": " + std::to_string(used) +
                  ", \"total_memory_bytes\": " + std::to_string(gpu.total_bytes) + "}";
  }

  std::string json = "{\"latency_ms\": {\"p50\": " + Num(Percentile(sorted, 50)) +
                     ", \"p90\": " + Num(Percentile(sorted, 90)) +
                     ", \"p99\": " + Num(Percentile(sorted, 99)) +
                     ", \"mean\": " + Num(sum / sorted.size()) + ", \"min\": " + Num(sorted.front()) +
                     ", \"max\": " + Num(sorted.back()) + "}, \"repeat\": " +
                     std::to_string(opt.repeat) + ", \"warmup\": " + std::to_string(opt.warmup) +
                     ", \"peak_rss_bytes\": " + std::to_string(peak_rss) +
                     ", \"huge_pages_bytes\": " + std::to_string(HugePageBytes()) + device_json +
                     ", \"outputs\": [" +
                     outputs_json + "]}\n";
  std::fputs(json.c_str(), stdout);
  std::fflush(stdout);
  return 0;
}

}  // namespace

// Restarts this runner with glibc.malloc.hugetlb=1 (see the top of this file). Returns only
// where nothing is to be done or the restart failed: the run then goes on with small pages.
void WithHugePages(char** argv) {
#if defined(__GLIBC__) && defined(__x86_64__)
  constexpr const char* kTunable = "glibc.malloc.hugetlb";
  const char* now = std::getenv("GLIBC_TUNABLES");
  if (now != nullptr && std::strstr(now, kTunable) != nullptr) return;  // chosen, or restarted
  const std::string value = (now != nullptr && *now != '\0' ? std::string(now) + ":" : "") +
                            kTunable + "=1";
  if (setenv("GLIBC_TUNABLES", value.c_str(), 1) == 0) execv("/proc/self/exe", argv);
#else
  (void)argv;
#endif
}

int main(int argc, char** argv) {
  WithHugePages(argv);
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "-h") == 0 || std::strcmp(argv[i], "--help") == 0) {
      std::fputs(kUsage, stdout);
      return 0;
    }
  }
  try {
    return Run(ParseArgs(argc, argv));
  } catch (const RunnerError& e) {
    std::fprintf(stderr, "edgec-run: error: %s\n", OneLine(e.what()).c_str());
  } catch (const ffi::Error& e) {
    std::fprintf(stderr, "edgec-run: error: %s\n", OneLine(e.kind() + ": " + e.message()).c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "edgec-run: error: %s\n", OneLine(e.what()).c_str());
  }
  return 2;
}
