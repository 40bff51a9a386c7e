// edgec compat header (not TVM's): the one helper of TVM's support/utils.h the runtime uses.
#ifndef EDGEC_COMPAT_SUPPORT_UTILS_H_
#define EDGEC_COMPAT_SUPPORT_UTILS_H_

#include <algorithm>
#include <cctype>
#include <string>

namespace tvm {
namespace support {

// Whether `s` is a non-empty run of decimal digits (thread_pool.cc parses CPU ids with it).
inline bool IsNumber(const std::string& s) {
  return !s.empty() &&
         std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c) != 0; });
}

}  // namespace support
}  // namespace tvm

#endif  // EDGEC_COMPAT_SUPPORT_UTILS_H_
