// A small RAII wrapper over the HDF5 C API, used by every reader and writer of the project
// (weights files, checkpoints, datasets, golden data).
//
// - Failures become tr::UserError with one line naming the file and the object, e.g.
//   "weights.h5: dataset 'encoder.norm.weight' is missing". HDF5's own error-stack printing is
//   switched off, so nothing else reaches stderr.
// - Object paths are relative to the root ("batch/src", "encoder.norm.weight"); a leading '/'
//   is accepted. Dots are ordinary characters in HDF5 names, so canonical parameter names are
//   dataset names as they are.
// - Element types convert on the fly (HDF5 converts between the stored and the requested
//   type), so a float32 dataset reads into double memory and vice versa.
// - Host (CPU) memory only; device tensors are copied by the caller.
// - Thread safety: Debian's libhdf5 is built thread-safe (one global lock inside the library),
//   so a prefetch thread may read while the main thread writes. With a non-thread-safe build
//   the callers must serialise all use.
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "layers/tensor.h"

namespace tr::h5 {

// Owns one HDF5 identifier (file, group, dataset, attribute, dataspace, datatype, property
// list) and closes it with the matching H5?close function.
class Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  Handle() = default;
  Handle(hid_t id, Closer closer) : id_(id), closer_(closer) {}
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  Handle(Handle&& other) noexcept;
  Handle& operator=(Handle&& other) noexcept;
  ~Handle() { reset(); }

  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }
  void reset();
  // Closes now and reports whether HDF5 succeeded (a file's close flushes its data).
  bool close();

 private:
  hid_t id_ = H5I_INVALID_HID;
  Closer closer_ = nullptr;
};

// Switches off HDF5's automatic error-stack printing for the calling thread (in a thread-safe
// HDF5 build the setting is per thread). Every File operation calls it; idempotent and cheap.
void silence_errors();

// Element type of a stored dataset, mapped to the nearest tr::DType. Integers of other widths
// or signedness are reported as the type that holds them without loss when there is one.
struct StoredType {
  DType dtype = DType::f32;
  bool is_float = false;
  bool is_integer = false;
  bool is_string = false;
  std::size_t bytes = 0;  // size of one element in the file
};

struct WriteOptions {
  // > 0: chunked layout with chunks of this many rows along axis 0 (datasets read in row
  // ranges, such as image or token arrays). 0: contiguous layout. No compression filter:
  // readers stay fast and files are readable by any HDF5 build.
  std::int64_t chunk_rows = 0;
};

class File {
 public:
  // Opens an existing file read-only. Errors: "x.h5: no such file", "x.h5: not an HDF5 file".
  static File open(const std::string& path);
  // Creates a file for writing, truncating any existing one.
  static File create(const std::string& path);

  File(File&&) noexcept = default;
  File& operator=(File&&) noexcept = default;

  const std::string& path() const { return path_; }
  // Flushes and closes; throws UserError when HDF5 cannot complete the write. The destructor
  // closes quietly, so writers call this to learn that their data reached the file.
  void close();

  // ---- structure ---------------------------------------------------------------------------
  // True when every component of `object` exists (a group, dataset or other object).
  bool exists(const std::string& object) const;
  bool is_dataset(const std::string& object) const;
  bool is_group(const std::string& object) const;
  // Names (not paths) of the datasets / groups directly inside `group`, in name order.
  std::vector<std::string> datasets(const std::string& group = "/") const;
  std::vector<std::string> groups(const std::string& group = "/") const;
  // Creates the group and any missing parent groups; an existing group is left as it is.
  void create_group(const std::string& group);

  // ---- attributes (on any group or dataset; "/" is the root) -------------------------------
  bool has_attr(const std::string& object, const std::string& name) const;
  // Fixed- or variable-length strings.
  std::string read_attr_string(const std::string& object, const std::string& name) const;
  std::vector<std::string> read_attr_strings(const std::string& object,
                                             const std::string& name) const;
  // All elements of a numeric attribute (a scalar gives one), converted to T.
  template <typename T>
  std::vector<T> read_attr(const std::string& object, const std::string& name) const;
  // A numeric attribute that must hold exactly one element.
  template <typename T>
  T read_attr_scalar(const std::string& object, const std::string& name) const;

  // Writers replace an attribute that already exists. Strings are stored as variable-length
  // UTF-8, as h5py writes them (so Python reads them back as str).
  void write_attr(const std::string& object, const std::string& name, const std::string& value);
  void write_attr(const std::string& object, const std::string& name, const char* value) {
    write_attr(object, name, std::string(value));
  }
  void write_attr(const std::string& object, const std::string& name,
                  const std::vector<std::string>& values);
  template <typename T>
  void write_attr_scalar(const std::string& object, const std::string& name, T value);
  template <typename T>
  void write_attr(const std::string& object, const std::string& name, const std::vector<T>& values);

  // ---- reading datasets --------------------------------------------------------------------
  Shape shape(const std::string& dataset) const;  // [] for a scalar dataset
  StoredType stored_type(const std::string& dataset) const;

  // Whole dataset, converted to T (for small datasets: weights, attributes-like arrays).
  template <typename T>
  std::vector<T> read(const std::string& dataset) const;
  // Rows [start, start + count) along axis 0, every other axis whole.
  template <typename T>
  std::vector<T> read_rows(const std::string& dataset, std::int64_t start,
                           std::int64_t count) const;
  // Whole dataset into a new host tensor of the given dtype (and the stored shape).
  Tensor read_tensor(const std::string& dataset, DType dtype) const;
  // Whole dataset into an existing host tensor, which must have the stored shape exactly;
  // the values convert to the tensor's dtype.
  void read_into(const std::string& dataset, Tensor& out) const;
  // Rows [start, start + out.dim(0)) into `out` (shape [count, rest of stored shape]).
  // Loaders reuse `out` from batch to batch, so reading allocates nothing.
  void read_rows_into(const std::string& dataset, std::int64_t start, Tensor& out) const;

  // ---- writing datasets --------------------------------------------------------------------
  // Creates a dataset (and missing parent groups) holding `stored` elements; fails if it exists.
  void create_dataset(const std::string& dataset, const Shape& shape, DType stored,
                      const WriteOptions& options = {});
  // Writes `values` (shape [count, rest of the stored shape]) at rows [start, start + count).
  void write_rows(const std::string& dataset, std::int64_t start, const Tensor& values);
  // Creates and fills a dataset in one go; `stored` may differ from the tensor's dtype (f64
  // parameters are stored as f32, for instance).
  void write(const std::string& dataset, const Tensor& values, DType stored,
             const WriteOptions& options = {});
  void write(const std::string& dataset, const Tensor& values) {
    write(dataset, values, values.dtype());
  }
  template <typename T>
  void write(const std::string& dataset, const Shape& shape, const std::vector<T>& values,
             const WriteOptions& options = {});

 private:
  File(std::string path, Handle file) : path_(std::move(path)), file_(std::move(file)) {}
  [[noreturn]] void fail(const std::string& what) const;
  // "root attribute 'x'" or "attribute 'x' of 'group/dataset'", for messages.
  static std::string attr_label(const std::string& object, const std::string& name);
  Handle open_dataset(const std::string& dataset) const;
  Handle open_attr(const std::string& object, const std::string& name) const;
  void require_object(const std::string& object) const;
  std::vector<std::string> children(const std::string& group, bool want_groups) const;
  // `whole`: the whole dataset; otherwise rows [start, start + count) along axis 0.
  void read_raw(const std::string& dataset, bool whole, std::int64_t start, std::int64_t count,
                hid_t memory_type, bool memory_is_integer, void* out, std::int64_t capacity) const;
  void write_raw(const std::string& dataset, bool whole, std::int64_t start, std::int64_t count,
                 hid_t memory_type, const void* values, std::int64_t numel);
  void write_attr_numeric(const std::string& object, const std::string& name, hid_t type,
                          const Shape& shape, const void* values);
  void read_attr_numeric(const std::string& object, const std::string& name, hid_t type,
                         bool is_integer, std::vector<char>& out, std::int64_t elem_bytes) const;

  std::string path_;
  Handle file_;
};

// The native HDF5 memory type for a tr::DType (bf16 has none: InternalError).
hid_t native_type(DType dtype);
constexpr bool is_integer_dtype(DType dtype) {
  return dtype == DType::i32 || dtype == DType::i64 || dtype == DType::u8;
}

// ---- template definitions ----------------------------------------------------------------

template <typename T>
std::vector<T> File::read(const std::string& dataset) const {
  const std::int64_t n = shape_numel(shape(dataset));
  std::vector<T> out(static_cast<std::size_t>(n));
  read_raw(dataset, true, 0, 0, native_type(dtype_of<T>()), is_integer_dtype(dtype_of<T>()),
           out.data(), n);
  return out;
}

template <typename T>
std::vector<T> File::read_rows(const std::string& dataset, std::int64_t start,
                               std::int64_t count) const {
  Shape s = shape(dataset);
  if (s.empty()) fail("dataset '" + dataset + "' is a scalar, it has no rows");
  s[0] = count < 0 ? 0 : count;
  const std::int64_t n = shape_numel(s);
  std::vector<T> out(static_cast<std::size_t>(n));
  read_raw(dataset, false, start, count, native_type(dtype_of<T>()),
           is_integer_dtype(dtype_of<T>()), out.data(), n);
  return out;
}

template <typename T>
std::vector<T> File::read_attr(const std::string& object, const std::string& name) const {
  std::vector<char> bytes;
  read_attr_numeric(object, name, native_type(dtype_of<T>()), is_integer_dtype(dtype_of<T>()),
                    bytes, sizeof(T));
  std::vector<T> out(bytes.size() / sizeof(T));
  if (!out.empty()) std::memcpy(out.data(), bytes.data(), bytes.size());
  return out;
}

template <typename T>
T File::read_attr_scalar(const std::string& object, const std::string& name) const {
  std::vector<T> values = read_attr<T>(object, name);
  if (values.size() != 1)
    fail(attr_label(object, name) + " holds " + std::to_string(values.size()) +
         " values, expected one");
  return values[0];
}

template <typename T>
void File::write_attr_scalar(const std::string& object, const std::string& name, T value) {
  write_attr_numeric(object, name, native_type(dtype_of<T>()), Shape{}, &value);
}

template <typename T>
void File::write_attr(const std::string& object, const std::string& name,
                      const std::vector<T>& values) {
  write_attr_numeric(object, name, native_type(dtype_of<T>()),
                     Shape{static_cast<std::int64_t>(values.size())}, values.data());
}

template <typename T>
void File::write(const std::string& dataset, const Shape& shape, const std::vector<T>& values,
                 const WriteOptions& options) {
  TR_CHECK(
      shape_numel(shape) == static_cast<std::int64_t>(values.size()),
      "h5 write: " + std::to_string(values.size()) + " values for shape " + shape_string(shape));
  create_dataset(dataset, shape, dtype_of<T>(), options);
  write_raw(dataset, true, 0, 0, native_type(dtype_of<T>()), values.data(),
            static_cast<std::int64_t>(values.size()));
}

}  // namespace tr::h5
