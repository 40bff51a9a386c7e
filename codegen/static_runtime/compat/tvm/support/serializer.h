// edgec compat header (not TVM's): the byte layout TVM writes model executables and constants
// in, which the runtime must read back. Little-endian hosts and targets only (x86-64, aarch64):
// numbers are their native bytes; a sequence is its uint64 length, then its elements.
#ifndef EDGEC_COMPAT_TVM_SUPPORT_SERIALIZER_H_
#define EDGEC_COMPAT_TVM_SUPPORT_SERIALIZER_H_

#include <dlpack/dlpack.h>
#include <tvm/ffi/container/array.h>
#include <tvm/ffi/container/map.h>
#include <tvm/ffi/string.h>
#include <tvm/support/io.h>

#include <cstdint>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "edgec's static runtime is little-endian");

namespace tvm {
namespace support {

template <typename T>
struct Serializer<T, std::enable_if_t<std::is_arithmetic_v<T> || std::is_enum_v<T>>> {
  static constexpr bool enabled = true;
  static void Write(Stream* s, const T& v) { s->Write(&v, sizeof(T)); }
  static bool Read(Stream* s, T* v) { return s->Read(v, sizeof(T)) == sizeof(T); }
};

// A length, then each element.
template <typename Seq, typename T>
struct SequenceSerializer {
  static constexpr bool enabled = true;
  static void Write(Stream* s, const Seq& seq) {
    const uint64_t n = seq.size();
    s->Write(&n, sizeof(n));
    for (const auto& item : seq) Serializer<T>::Write(s, item);
  }
};

// Text: its length, then its bytes.
template <typename Text>
struct TextSerializer {
  static constexpr bool enabled = true;
  static void Write(Stream* s, const Text& text) {
    const uint64_t n = text.size();
    s->Write(&n, sizeof(n));
    s->Write(text.data(), n);
  }
};

template <>
struct Serializer<std::string> : TextSerializer<std::string> {
  static bool Read(Stream* s, std::string* v) {
    uint64_t n;
    if (s->Read(&n, sizeof(n)) != sizeof(n)) return false;
    v->resize(n);
    return n == 0 || s->Read(v->data(), n) == n;
  }
};

template <>
struct Serializer<ffi::String> : TextSerializer<ffi::String> {
  static bool Read(Stream* s, ffi::String* v) {
    std::string text;
    if (!Serializer<std::string>::Read(s, &text)) return false;
    *v = ffi::String(std::move(text));
    return true;
  }
};

template <typename T>
struct Serializer<std::vector<T>> : SequenceSerializer<std::vector<T>, T> {
  static bool Read(Stream* s, std::vector<T>* v) {
    uint64_t n;
    if (s->Read(&n, sizeof(n)) != sizeof(n)) return false;
    v->resize(n);
    for (auto& item : *v) {
      if (!Serializer<T>::Read(s, &item)) return false;
    }
    return true;
  }
};

template <typename T>
struct Serializer<ffi::Array<T>> : SequenceSerializer<ffi::Array<T>, T> {
  static bool Read(Stream* s, ffi::Array<T>* v) {
    uint64_t n;
    if (s->Read(&n, sizeof(n)) != sizeof(n)) return false;
    *v = ffi::Array<T>();
    for (uint64_t i = 0; i < n; ++i) {
      T item;
      if (!Serializer<T>::Read(s, &item)) return false;
      v->push_back(std::move(item));
    }
    return true;
  }
};

template <typename A, typename B>
struct Serializer<std::pair<A, B>> {
  static constexpr bool enabled = true;
  static void Write(Stream* s, const std::pair<A, B>& v) {
    Serializer<A>::Write(s, v.first);
    Serializer<B>::Write(s, v.second);
  }
  static bool Read(Stream* s, std::pair<A, B>* v) {
    return Serializer<A>::Read(s, &v->first) && Serializer<B>::Read(s, &v->second);
  }
};

// Maps: a count, then key and value pairs.
template <typename K, typename V>
struct Serializer<std::unordered_map<K, V>> {
  static constexpr bool enabled = true;
  static void Write(Stream* s, const std::unordered_map<K, V>& m) {
    Serializer<std::vector<std::pair<K, V>>>::Write(s, {m.begin(), m.end()});
  }
  static bool Read(Stream* s, std::unordered_map<K, V>* m) {
    std::vector<std::pair<K, V>> items;
    if (!Serializer<std::vector<std::pair<K, V>>>::Read(s, &items)) return false;
    m->clear();
    m->insert(items.begin(), items.end());
    return true;
  }
};

template <typename K, typename V>
struct Serializer<ffi::Map<K, V>> {
  static constexpr bool enabled = true;
  static void Write(Stream* s, const ffi::Map<K, V>& m) {
    const uint64_t n = m.size();
    s->Write(&n, sizeof(n));
    for (const auto& kv : m) {
      Serializer<K>::Write(s, kv.first);
      Serializer<V>::Write(s, kv.second);
    }
  }
  static bool Read(Stream* s, ffi::Map<K, V>* m) {
    uint64_t n;
    if (s->Read(&n, sizeof(n)) != sizeof(n)) return false;
    *m = ffi::Map<K, V>();
    for (uint64_t i = 0; i < n; ++i) {
      K key;
      V value;
      if (!Serializer<K>::Read(s, &key) || !Serializer<V>::Read(s, &value)) return false;
      m->Set(std::move(key), std::move(value));
    }
    return true;
  }
};

// DLDataType: code (u8), bits (u8), lanes (u16), i.e. its own 4 bytes on a little-endian host.
template <>
struct Serializer<DLDataType> {
  static constexpr bool enabled = true;
  static void Write(Stream* s, const DLDataType& v) {
    Serializer<uint8_t>::Write(s, v.code);
    Serializer<uint8_t>::Write(s, v.bits);
    Serializer<uint16_t>::Write(s, v.lanes);
  }
  static bool Read(Stream* s, DLDataType* v) {
    return Serializer<uint8_t>::Read(s, &v->code) && Serializer<uint8_t>::Read(s, &v->bits) &&
           Serializer<uint16_t>::Read(s, &v->lanes);
  }
};

// DLDevice: device type and id as two int32.
template <>
struct Serializer<DLDevice> {
  static constexpr bool enabled = true;
  static void Write(Stream* s, const DLDevice& v) {
    Serializer<int32_t>::Write(s, static_cast<int32_t>(v.device_type));
    Serializer<int32_t>::Write(s, v.device_id);
  }
  static bool Read(Stream* s, DLDevice* v) {
    int32_t type;
    if (!Serializer<int32_t>::Read(s, &type)) return false;
    v->device_type = static_cast<DLDeviceType>(type);
    return Serializer<int32_t>::Read(s, &v->device_id);
  }
};

}  // namespace support
}  // namespace tvm

#endif  // EDGEC_COMPAT_TVM_SUPPORT_SERIALIZER_H_
