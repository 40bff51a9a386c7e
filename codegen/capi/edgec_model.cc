// edgec_model: the C API of edgec_model.h over TVM's Relax VM (part of the edgec toolchain).
//
// A model is a Relax VM executable exported by edgec: a shared library (model.so) or a system
// library linked into the program. Its VM function `edgec_signature` (added by edgec at compile
// time, edgec/relax/signature.py) describes main's inputs and outputs, one per line:
//
//   in float32 1 3 32 32
//   out float32 1 10
//
// so that callers learn every size before the first run and pass their own buffers. The
// runner (codegen/runner/edgec_run.cc) is a user of this API; builds against the tvm_ffi
// headers only. Built with -DEDGEC_SYSTEM_LIB, nothing changes here: the caller picks
// edgec_model_open_system().

#include "edgec_model.h"

#include <dlpack/dlpack.h>
#include <sys/stat.h>
#include <tvm/ffi/any.h>
#include <tvm/ffi/container/array.h>
#include <tvm/ffi/container/shape.h>
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/error.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>
#include <tvm/ffi/string.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace ffi = tvm::ffi;

namespace {

// Raised for every failure the caller should read; the C functions turn it into their error.
struct ModelError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

[[noreturn]] void Fail(const std::string& msg) { throw ModelError(msg); }

thread_local std::string last_error;

std::string OneLine(std::string s) {
  for (char& c : s) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  while (!s.empty() && s.back() == ' ') s.pop_back();
  return s;
}

// ---------------------------------------------------------------------------
// dtypes, in edgec_dtype order

struct DType {
  const char* name;  // TVM's and numpy's name
  DLDataType dl;
};

const DType kDTypes[] = {
    {"float32", {kDLFloat, 32, 1}}, {"float16", {kDLFloat, 16, 1}}, {"float64", {kDLFloat, 64, 1}},
    {"int8", {kDLInt, 8, 1}},       {"int16", {kDLInt, 16, 1}},     {"int32", {kDLInt, 32, 1}},
    {"int64", {kDLInt, 64, 1}},     {"uint8", {kDLUInt, 8, 1}},     {"uint16", {kDLUInt, 16, 1}},
    {"uint32", {kDLUInt, 32, 1}},   {"uint64", {kDLUInt, 64, 1}},   {"bool", {kDLBool, 8, 1}},
};
constexpr int kNumDTypes = sizeof(kDTypes) / sizeof(kDTypes[0]);

bool Same(DLDataType a, DLDataType b) {
  return a.code == b.code && a.bits == b.bits && a.lanes == b.lanes;
}

std::string DLTypeToString(DLDataType t) {
  for (const DType& d : kDTypes) {
    if (Same(d.dl, t)) return d.name;
  }
  std::ostringstream os;
  os << "dltype(code=" << int(t.code) << ",bits=" << int(t.bits) << ",lanes=" << t.lanes << ")";
  return os.str();
}

// ---------------------------------------------------------------------------
// Tensors

// The generated kernels assume TVM's 64-byte allocation alignment.
constexpr size_t kAlign = 64;

struct AlignedCPUAlloc {
  void AllocData(DLTensor* t) {
    size_t bytes = ffi::GetDataSize(*t);
    bytes = (std::max<size_t>(bytes, 1) + kAlign - 1) / kAlign * kAlign;
    t->data = std::aligned_alloc(kAlign, bytes);
    if (t->data == nullptr) Fail("out of memory allocating an input tensor");
  }
  void FreeData(DLTensor* t) { std::free(t->data); }
};

ffi::Function Global(const char* name) {
  std::optional<ffi::Function> f = ffi::Function::GetGlobal(name);
  if (!f.has_value()) Fail(std::string("the TVM runtime lacks ") + name + "; rebuild the bundle");
  return *f;
}

ffi::Function GetFunc(const ffi::Module& mod, const char* name) {
  ffi::Optional<ffi::Function> f = mod->GetFunction(name, /*query_imports=*/true);
  if (!f.has_value()) Fail(std::string("model has no function '") + name + "'");
  return f.value();
}

// Flattens a (possibly nested) tuple result into tensors, depth first.
void Flatten(const ffi::Any& value, std::vector<ffi::Tensor>* out) {
  if (auto t = value.as<ffi::Tensor>()) {
    out->push_back(t.value());
  } else if (const ffi::ArrayObj* arr = value.as<ffi::ArrayObj>()) {
    for (size_t i = 0; i < arr->size(); ++i) Flatten((*arr)[i], out);
  } else {
    Fail("model returned a " + value.GetTypeKey() + ", expected tensors or tuples of tensors");
  }
}

// ---------------------------------------------------------------------------
// The signature

struct Info {
  edgec_dtype dtype;
  std::vector<int64_t> dims;
  edgec_tensor_info c;  // points into dims: set once the vector stops moving
};

Info ParseTensor(std::istringstream& line, const std::string& text) {
  std::string dtype;
  if (!(line >> dtype)) Fail("bad edgec_signature line '" + text + "'; rebuild the bundle");
  if (dtype == "unsupported") {
    Fail("model's main takes or returns a value that is no tensor of known rank (" + text +
         "): edgec_model runs tensors only");
  }
  Info info{};
  int code = 0;
  while (code < kNumDTypes && dtype != kDTypes[code].name) ++code;
  if (code == kNumDTypes) Fail("model uses dtype " + dtype + ", which edgec_model.h lacks");
  info.dtype = static_cast<edgec_dtype>(code);
  for (std::string dim; line >> dim;) {
    char* end = nullptr;
    const long long v = std::strtoll(dim.c_str(), &end, 10);
    if (*end != '\0' || v < 0) {
      Fail("model has a dynamic or bad dimension '" + dim + "' (" + text +
           "): edgec_model runs static shapes only");
    }
    info.dims.push_back(v);
  }
  return info;
}

void Parse(const std::string& signature, std::vector<Info>* inputs, std::vector<Info>* outputs) {
  std::istringstream lines(signature);
  for (std::string text; std::getline(lines, text);) {
    if (text.empty()) continue;
    std::istringstream line(text);
    std::string kind;
    line >> kind;
    if (kind == "in") {
      inputs->push_back(ParseTensor(line, text));
    } else if (kind == "out") {
      outputs->push_back(ParseTensor(line, text));
    } else {
      Fail("bad edgec_signature line '" + text + "'; rebuild the bundle");
    }
  }
  for (std::vector<Info>* infos : {inputs, outputs}) {
    for (Info& info : *infos) {
      size_t bytes = kDTypes[info.dtype].dl.bits / 8;
      for (int64_t d : info.dims) bytes *= static_cast<size_t>(d);
      info.c = edgec_tensor_info{info.dtype, static_cast<int>(info.dims.size()), info.dims.data(),
                                 bytes};
    }
  }
}

bool SameShape(const ffi::Tensor& t, const Info& info) {
  if (t.ndim() != static_cast<int>(info.dims.size())) return false;
  for (int i = 0; i < t.ndim(); ++i) {
    if (t.shape()[i] != info.dims[i]) return false;
  }
  return true;
}

std::string Describe(const Info& info) {
  std::string s = std::string(kDTypes[info.dtype].name) + " [";
  for (size_t i = 0; i < info.dims.size(); ++i) s += (i ? ", " : "") + std::to_string(info.dims[i]);
  return s + "]";
}

}  // namespace

// ---------------------------------------------------------------------------
// The model

struct edgec_model {
  edgec_model(ffi::Module lib, ffi::Module vm, ffi::Function main, DLDevice device)
      : lib(std::move(lib)), vm(std::move(vm)), main(std::move(main)), device(device) {}

  ffi::Module lib;  // keeps the kernels loaded as long as the VM lives
  ffi::Module vm;
  ffi::Function main;
  DLDevice device;
  std::vector<Info> inputs, outputs;
  std::vector<ffi::Tensor> input_tensors;  // on the device, set by edgec_model_set_input
  std::vector<ffi::AnyView> args;          // views of input_tensors, main's arguments
  std::vector<ffi::Tensor> results;        // the last run's outputs, on the device
  ffi::Function sync;                      // GPU: waits for the launched kernels
};

namespace {

ffi::Tensor Allocate(const Info& info, DLDevice device) {
  const ffi::ShapeView shape(info.dims.data(), info.dims.size());
  const DLDataType dtype = kDTypes[info.dtype].dl;
  if (device.device_type == kDLCPU) {
    return ffi::Tensor::FromNDAlloc(AlignedCPUAlloc(), shape, dtype, device);
  }
  return Global("runtime.TVMTensorAllocWithScope")(ffi::Shape(info.dims.begin(), info.dims.end()),
                                                   dtype, device, ffi::Optional<ffi::String>())
      .cast<ffi::Tensor>();
}

// Loads the VM from `lib` onto `device`, reads its signature and allocates its inputs.
edgec_model* Load(ffi::Module lib, DLDevice device) {
  // TVM pins its worker threads (and the calling thread) to one core each unless
  // TVM_BIND_THREADS=0, read when its thread pool starts (the first run). A parallel kernel
  // splits its loop statically and waits for every thread, so one other busy process on a
  // pinned core stalls every kernel: SqueezeNet 1.1, 2 threads on 2 cores beside one busy
  // process, 120-220 ms pinned against 6.3-6.7 ms unpinned (3.6 ms idle either way;
  // docs/performance.md, "Threads pinned to cores"). A value already set is kept.
  setenv("TVM_BIND_THREADS", "0", 0);
  ffi::Module vm = GetFunc(lib, "vm_load_executable")().cast<ffi::Module>();
  // Triples of (device_type, device_id, allocator_type); 2 = pooled allocator. The first
  // device holds the constants; a GPU model's host (shape math, the VM itself) comes last.
  // A CPU-only model needs no separate host device entry.
  const ffi::Function init = GetFunc(vm, "vm_initialization");
  if (device.device_type == kDLCPU) {
    init(static_cast<int>(kDLCPU), 0, 2);
  } else {
    init(static_cast<int>(device.device_type), device.device_id, 2, static_cast<int>(kDLCPU), 0, 2);
  }
  auto model = std::make_unique<edgec_model>(lib, vm, GetFunc(vm, "main"), device);
  ffi::Optional<ffi::Function> signature = vm->GetFunction("edgec_signature", false);
  if (!signature.has_value()) {
    Fail("model has no edgec_signature: it was built by an older edgec; rebuild the bundle");
  }
  Parse((*signature)().cast<ffi::String>(), &model->inputs, &model->outputs);
  // The VM only checks argument count, dtype and shape inside the call; check the count up
  // front for a clearer message.
  if (auto arity_fn = vm->GetFunction("get_function_arity", false)) {
    const int arity = (*arity_fn)(ffi::String("main")).cast<int>();
    if (arity != static_cast<int>(model->inputs.size())) {
      Fail("model's main takes " + std::to_string(arity) + " inputs, its signature lists " +
           std::to_string(model->inputs.size()) + "; rebuild the bundle");
    }
  }
  for (const Info& info : model->inputs) model->input_tensors.push_back(Allocate(info, device));
  model->args.assign(model->input_tensors.begin(), model->input_tensors.end());
  if (device.device_type != kDLCPU) model->sync = Global("runtime.Device_StreamSync");
  return model.release();
}

edgec_model* OpenFile(const std::string& path, DLDevice device) {
  std::string file = path;
  struct stat st;
  if (stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) file = path + "/model.so";
  // dlopen() searches the library path, not the working directory, for a bare
  // file name, so hand it an absolute path.
  char* resolved = realpath(file.c_str(), nullptr);
  if (resolved == nullptr) Fail("cannot open model '" + file + "': " + std::strerror(errno));
  const std::string abs_path = resolved;
  std::free(resolved);
  try {
    return Load(ffi::Module::LoadFromFile(abs_path), device);
  } catch (const ffi::Error& e) {
    Fail("cannot load model '" + file + "': " + e.kind() + ": " + e.message());
  }
}

// Runs `body`, turning any failure into last_error and `failed`.
template <typename T, typename Body>
T Guard(T failed, Body body) {
  try {
    return body();
  } catch (const ModelError& e) {
    last_error = OneLine(e.what());
  } catch (const ffi::Error& e) {
    last_error = OneLine(e.kind() + ": " + e.message());
  } catch (const std::exception& e) {
    last_error = OneLine(e.what());
  } catch (...) {
    last_error = "unknown error";
  }
  return failed;
}

const Info& At(const std::vector<Info>& infos, int i, const char* what) {
  if (i < 0 || static_cast<size_t>(i) >= infos.size()) {
    Fail(std::string(what) + " " + std::to_string(i) + " does not exist: the model has " +
         std::to_string(infos.size()));
  }
  return infos[i];
}

void CheckBuffer(const void* data, size_t bytes, const Info& info, const char* what, int i) {
  if (data == nullptr) Fail(std::string(what) + " " + std::to_string(i) + ": buffer is NULL");
  if (bytes != info.c.bytes) {
    Fail(std::string(what) + " " + std::to_string(i) + " is " + Describe(info) + ", " +
         std::to_string(info.c.bytes) + " bytes; got a buffer of " + std::to_string(bytes));
  }
}

}  // namespace

extern "C" {

edgec_model* edgec_model_open(const char* path) {
  return edgec_model_open_device(path, EDGEC_DEVICE_CPU);
}

edgec_model* edgec_model_open_device(const char* path, edgec_device device) {
  return Guard<edgec_model*>(nullptr, [&] {
    if (path == nullptr) Fail("model path is NULL");
    if (device != EDGEC_DEVICE_CPU && device != EDGEC_DEVICE_CUDA) {
      Fail("unknown device " + std::to_string(static_cast<int>(device)));
    }
    return OpenFile(path, DLDevice{static_cast<DLDeviceType>(device), 0});
  });
}

edgec_model* edgec_model_open_system(void) {
  return Guard<edgec_model*>(nullptr, [&] {
    ffi::Module lib = Global("ffi.SystemLib")().cast<ffi::Module>();
    try {
      return Load(lib, DLDevice{kDLCPU, 0});
    } catch (const ffi::Error& e) {
      Fail("cannot load the linked-in model: " + e.kind() + ": " + e.message());
    }
  });
}

int edgec_model_num_inputs(const edgec_model* model) {
  return model == nullptr ? 0 : static_cast<int>(model->inputs.size());
}

int edgec_model_num_outputs(const edgec_model* model) {
  return model == nullptr ? 0 : static_cast<int>(model->outputs.size());
}

const edgec_tensor_info* edgec_model_input(const edgec_model* model, int i) {
  return Guard<const edgec_tensor_info*>(nullptr, [&] {
    if (model == nullptr) Fail("model is NULL");
    return &At(model->inputs, i, "input").c;
  });
}

const edgec_tensor_info* edgec_model_output(const edgec_model* model, int i) {
  return Guard<const edgec_tensor_info*>(nullptr, [&] {
    if (model == nullptr) Fail("model is NULL");
    return &At(model->outputs, i, "output").c;
  });
}

int edgec_model_set_input(edgec_model* model, int i, const void* data, size_t bytes) {
  return Guard(-1, [&] {
    if (model == nullptr) Fail("model is NULL");
    CheckBuffer(data, bytes, At(model->inputs, i, "input"), "input", i);
    ffi::Tensor& t = model->input_tensors[i];
    if (model->device.device_type == kDLCPU) {
      std::memcpy(t.data_ptr(), data, bytes);
    } else {
      Global("runtime.TVMTensorCopyFromBytes")(t, const_cast<void*>(data), bytes);
    }
    return 0;
  });
}

int edgec_model_invoke(edgec_model* model) {
  return Guard(-1, [&] {
    if (model == nullptr) Fail("model is NULL");
    model->results.clear();  // back to the pool: the run reuses their storage
    ffi::Any rv;
    try {
      model->main.CallPacked(model->args.data(), static_cast<int32_t>(model->args.size()), &rv);
      if (model->sync != nullptr) {
        model->sync(model->device, static_cast<int64_t>(0));  // the call returns before kernels end
      }
    } catch (const ffi::Error& e) {
      Fail("inference failed: " + e.kind() + ": " + e.message());
    }
    std::vector<ffi::Tensor> results;
    Flatten(rv, &results);
    if (results.size() != model->outputs.size()) {
      Fail("model returned " + std::to_string(results.size()) + " outputs, its signature lists " +
           std::to_string(model->outputs.size()));
    }
    for (size_t i = 0; i < results.size(); ++i) {
      const ffi::Tensor& t = results[i];
      const Info& info = model->outputs[i];
      const std::string name = "output " + std::to_string(i);
      if (t.device().device_type != model->device.device_type) {
        Fail(name + " is not on the " + (model->device.device_type == kDLCPU ? "CPU" : "GPU"));
      }
      if (!t.IsContiguous()) Fail(name + " is not contiguous");
      if (!Same(t.dtype(), kDTypes[info.dtype].dl) || !SameShape(t, info)) {
        Fail(name + " is " + DLTypeToString(t.dtype()) + " of rank " + std::to_string(t.ndim()) +
             ", its signature says " + Describe(info));
      }
    }
    model->results = std::move(results);
    return 0;
  });
}

int edgec_model_get_output(const edgec_model* model, int i, void* data, size_t bytes) {
  return Guard(-1, [&] {
    if (model == nullptr) Fail("model is NULL");
    CheckBuffer(data, bytes, At(model->outputs, i, "output"), "output", i);
    if (model->results.empty()) Fail("the model has not run yet");
    const ffi::Tensor& t = model->results[i];
    if (model->device.device_type == kDLCPU) {
      std::memcpy(data, static_cast<const char*>(t.data_ptr()) + t.byte_offset(), bytes);
    } else {
      Global("runtime.TVMTensorCopyToBytes")(t, data, bytes);
    }
    return 0;
  });
}

int edgec_model_run(edgec_model* model, const void* const* inputs, void* const* outputs) {
  if (model == nullptr || inputs == nullptr || outputs == nullptr) {
    last_error = "model, inputs and outputs must not be NULL";
    return -1;
  }
  for (size_t i = 0; i < model->inputs.size(); ++i) {
    const int n = static_cast<int>(i);
    if (edgec_model_set_input(model, n, inputs[i], model->inputs[i].c.bytes) != 0) return -1;
  }
  if (edgec_model_invoke(model) != 0) return -1;
  for (size_t i = 0; i < model->outputs.size(); ++i) {
    const int n = static_cast<int>(i);
    if (edgec_model_get_output(model, n, outputs[i], model->outputs[i].c.bytes) != 0) return -1;
  }
  return 0;
}

void edgec_model_close(edgec_model* model) {
  try {
    delete model;
  } catch (...) {
    // destructors of runtime objects do not throw; nothing to report from a void function
  }
}

const char* edgec_last_error(void) { return last_error.c_str(); }

const char* edgec_dtype_name(edgec_dtype dtype) {
  const int code = static_cast<int>(dtype);
  return code >= 0 && code < kNumDTypes ? kDTypes[code].name : "unknown";
}

}  // extern "C"
