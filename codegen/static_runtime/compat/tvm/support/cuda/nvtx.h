// edgec compat header (not TVM's): NVTX profiler ranges are for CUDA builds; on a CPU they do
// nothing, which is what this scope does.
#ifndef EDGEC_COMPAT_TVM_SUPPORT_CUDA_NVTX_H_
#define EDGEC_COMPAT_TVM_SUPPORT_CUDA_NVTX_H_

#include <string>

namespace tvm {
namespace support {

class NVTXScopedRange {
 public:
  explicit NVTXScopedRange(const std::string&) {}
  explicit NVTXScopedRange(const char*) {}
};

}  // namespace support
}  // namespace tvm

#endif  // EDGEC_COMPAT_TVM_SUPPORT_CUDA_NVTX_H_
