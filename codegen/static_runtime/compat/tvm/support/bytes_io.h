// edgec compat header (not TVM's): streams over bytes in memory, for the runtime sources that
// include "../support/bytes_io.h" (found through -iquote; see edgec/static_runtime.py).
#ifndef EDGEC_COMPAT_SUPPORT_BYTES_IO_H_
#define EDGEC_COMPAT_SUPPORT_BYTES_IO_H_

#include <tvm/support/io.h>

#include <algorithm>
#include <cstring>
#include <string>

namespace tvm {
namespace support {

// Reads the bytes of `bytes` (a std::string or an ffi::Bytes) in place: they must outlive the
// stream. A template, so an ffi::Bytes is not converted to a temporary std::string first.
class BytesInStream : public Stream {
 public:
  template <typename Bytes>
  explicit BytesInStream(const Bytes& bytes) : data_(bytes.data()), size_(bytes.size()) {}
  using Stream::Read;
  using Stream::Write;
  size_t Read(void* ptr, size_t size) override {
    const size_t n = std::min(size, size_ - pos_);
    std::memcpy(ptr, data_ + pos_, n);
    pos_ += n;
    return n;
  }
  size_t Write(const void*, size_t) override { return 0; }  // read-only

 private:
  const char* data_;
  size_t size_;
  size_t pos_ = 0;
};

class BytesOutStream : public Stream {
 public:
  explicit BytesOutStream(std::string* out) : out_(out) {}
  using Stream::Read;
  using Stream::Write;
  size_t Read(void*, size_t) override { return 0; }  // write-only
  size_t Write(const void* ptr, size_t size) override {
    out_->append(static_cast<const char*>(ptr), size);
    return size;
  }

 private:
  std::string* out_;
};

}  // namespace support
}  // namespace tvm

#endif  // EDGEC_COMPAT_SUPPORT_BYTES_IO_H_
