// edgec compat header (not TVM's): tensor.cc's JSON (de)serialization of tensors goes through
// base64 streams. A deployed model never converts tensors to JSON, so these refuse in one line
// instead of carrying an encoder.
#ifndef EDGEC_COMPAT_SUPPORT_BASE64_H_
#define EDGEC_COMPAT_SUPPORT_BASE64_H_

#include <tvm/ffi/error.h>
#include <tvm/support/io.h>

namespace tvm {
namespace support {

class Base64Refused : public Stream {
 public:
  using Stream::Read;
  using Stream::Write;
  size_t Read(void*, size_t) override { Refuse(); }
  size_t Write(const void*, size_t) override { Refuse(); }

 private:
  [[noreturn]] static void Refuse() {
    TVM_FFI_THROW(RuntimeError) << "edgec's static runtime has no tensor JSON (base64) support";
    __builtin_unreachable();
  }
};

class Base64InStream : public Base64Refused {
 public:
  explicit Base64InStream(Stream*) {}
  void InitPosition() {}
};

class Base64OutStream : public Base64Refused {
 public:
  explicit Base64OutStream(Stream*) {}
  void Finish() {}
};

}  // namespace support
}  // namespace tvm

#endif  // EDGEC_COMPAT_SUPPORT_BASE64_H_
