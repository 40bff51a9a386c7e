// edgec compat header (not TVM's): the binary stream interface the TVM runtime sources use.
// The apache-tvm wheel ships the runtime's .cc files but not this header; edgec provides the
// part of it that the runtime objects of a static bundle need.
#ifndef EDGEC_COMPAT_TVM_SUPPORT_IO_H_
#define EDGEC_COMPAT_TVM_SUPPORT_IO_H_

#include <cstddef>

namespace tvm {
namespace support {

// How a value of type T is written and read; serializer.h defines the cases.
template <typename T, typename = void>
struct Serializer {
  static constexpr bool enabled = false;
};

class Stream {
 public:
  virtual ~Stream() = default;
  virtual size_t Read(void* ptr, size_t size) = 0;
  virtual size_t Write(const void* ptr, size_t size) = 0;

  template <typename T>
  void Write(const T& value) {
    static_assert(Serializer<T>::enabled, "no Serializer for this type");
    Serializer<T>::Write(this, value);
  }
  template <typename T>
  bool Read(T* value) {
    static_assert(Serializer<T>::enabled, "no Serializer for this type");
    return Serializer<T>::Read(this, value);
  }
  template <typename T>
  void WriteArray(const T* values, size_t n) {
    for (size_t i = 0; i < n; ++i) Write<T>(values[i]);
  }
  template <typename T>
  bool ReadArray(T* values, size_t n) {
    for (size_t i = 0; i < n; ++i) {
      if (!Read<T>(values + i)) return false;
    }
    return true;
  }
};

}  // namespace support
}  // namespace tvm

#endif  // EDGEC_COMPAT_TVM_SUPPORT_IO_H_
