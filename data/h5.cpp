#include "data/h5.h"

#include <algorithm>
#include <filesystem>
#include <utility>

namespace tr::h5 {

namespace {

// "/a/b" and "a/b" name the same object; "" and "/" the root.
std::string strip(const std::string& object) {
  std::size_t begin = 0;
  while (begin < object.size() && object[begin] == '/') ++begin;
  return object.substr(begin);
}

// Built by appending: `"/" + std::string&&` trips GCC 12's false -Wrestrict warning.
std::string full_path(const std::string& object) {
  std::string path = "/";
  path += strip(object);
  return path;
}

std::vector<std::string> components(const std::string& object) {
  std::vector<std::string> parts;
  std::string part;
  for (char c : object) {
    if (c == '/') {
      if (!part.empty()) parts.push_back(part);
      part.clear();
    } else {
      part += c;
    }
  }
  if (!part.empty()) parts.push_back(part);
  return parts;
}

std::string parent_of(const std::string& object) {
  const std::string s = strip(object);
  const std::size_t slash = s.rfind('/');
  return slash == std::string::npos ? std::string() : s.substr(0, slash);
}

// The most specific message on HDF5's error stack (for example "Permission denied" or "No
// space left on device" deep inside a failed write), so that write failures say why. Must be
// called right after the failing call: the next API call clears the stack.
herr_t walk_error(unsigned n, const H5E_error2_t* err, void* client) {
  if (n == 0 && err->desc) *static_cast<std::string*>(client) = err->desc;
  return 0;
}

std::string hdf5_reason() {
  std::string desc;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, walk_error, &desc);
  // File-system failures carry the system's message amid driver details; keep only that.
  const std::string marker = "error message = '";
  const std::size_t at = desc.find(marker);
  if (at != std::string::npos) {
    const std::size_t begin = at + marker.size();
    desc = desc.substr(begin, desc.find('\'', begin) - begin);
  }
  return desc.empty() ? std::string() : " (" + desc + ")";
}

// Standard little-endian file types, so that files read the same on every platform.
hid_t file_type(DType dtype) {
  switch (dtype) {
    case DType::f32: return H5T_IEEE_F32LE;
    case DType::f64: return H5T_IEEE_F64LE;
    case DType::i32: return H5T_STD_I32LE;
    case DType::i64: return H5T_STD_I64LE;
    case DType::u8: return H5T_STD_U8LE;
    case DType::bf16: break;
  }
  throw InternalError(std::string("h5: no HDF5 type for ") + dtype_name(dtype));
}

Handle vlen_string_type() {
  Handle type(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(type.get(), H5T_VARIABLE);
  H5Tset_cset(type.get(), H5T_CSET_UTF8);
  return type;
}

// Datasets and groups without modification times: writing the same data twice gives the same
// bytes, so checksums of checkpoint and weights files are reproducible.
Handle untimed_dataset_plist() {
  Handle plist(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  H5Pset_obj_track_times(plist.get(), false);
  return plist;
}

Handle untimed_group_plist() {
  Handle plist(H5Pcreate(H5P_GROUP_CREATE), H5Pclose);
  H5Pset_obj_track_times(plist.get(), false);
  return plist;
}

Handle file_access_plist() {
  Handle plist(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  // Closing the file closes everything in it, so after close() the data is on disk and the
  // file may be renamed (weights and checkpoints are written to a temporary name first).
  H5Pset_fclose_degree(plist.get(), H5F_CLOSE_STRONG);
#if H5_VERSION_GE(1, 10, 7)
  // Keep HDF5's file locks, but do not fail on file systems without lock support (common for
  // NFS and Lustre on clusters).
  H5Pset_file_locking(plist.get(), true, true);
#endif
  return plist;
}

}  // namespace

// ---- Handle --------------------------------------------------------------------------------

Handle::Handle(Handle&& other) noexcept
    : id_(std::exchange(other.id_, H5I_INVALID_HID)), closer_(other.closer_) {}

Handle& Handle::operator=(Handle&& other) noexcept {
  if (this != &other) {
    reset();
    id_ = std::exchange(other.id_, H5I_INVALID_HID);
    closer_ = other.closer_;
  }
  return *this;
}

void Handle::reset() {
  close();
}

bool Handle::close() {
  if (id_ < 0) return true;
  const herr_t status = closer_ ? closer_(id_) : 0;
  id_ = H5I_INVALID_HID;
  return status >= 0;
}

void silence_errors() {
  // A file whose close failed (a full disk: the final flush cannot be written) stays in
  // HDF5's table of open files half torn down, and the library's cleanup at exit then crashes
  // on it (SIGSEGV in H5F__close_cb; HDF5 before 1.14.1, h5py issue 914), turning a clean
  // "disk full" error into a crash. Every file is closed explicitly here, so that cleanup has
  // nothing to do: skip it. Must precede HDF5's initialisation; this is the first call.
  static const bool no_cleanup_at_exit = (H5dont_atexit(), true);
  (void)no_cleanup_at_exit;
  // In a thread-safe HDF5 build each thread has its own error stack and printing setting, so
  // a loader's prefetch thread needs this as much as the main thread.
  thread_local bool silenced = false;
  if (!silenced) {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    silenced = true;
  }
}

hid_t native_type(DType dtype) {
  switch (dtype) {
    case DType::f32: return H5T_NATIVE_FLOAT;
    case DType::f64: return H5T_NATIVE_DOUBLE;
    case DType::i32: return H5T_NATIVE_INT32;
    case DType::i64: return H5T_NATIVE_INT64;
    case DType::u8: return H5T_NATIVE_UINT8;
    case DType::bf16: break;
  }
  throw InternalError(std::string("h5: no HDF5 type for ") + dtype_name(dtype));
}

// ---- File: opening and closing ----------------------------------------------------------------

File File::open(const std::string& path) {
  silence_errors();
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) throw UserError(path + ": no such file");
  if (std::filesystem::is_directory(path, ec))
    throw UserError(path + ": is a directory, not an HDF5 file");
  const htri_t is_hdf5 = H5Fis_hdf5(path.c_str());
  if (is_hdf5 == 0) throw UserError(path + ": not an HDF5 file");
  if (is_hdf5 < 0) throw UserError(path + ": cannot open" + hdf5_reason());
  Handle fapl = file_access_plist();
  Handle file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.get()), H5Fclose);
  if (!file.valid()) throw UserError(path + ": cannot open" + hdf5_reason());
  return File(path, std::move(file));
}

File File::create(const std::string& path) {
  silence_errors();
  Handle fapl = file_access_plist();
  Handle file(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()), H5Fclose);
  if (!file.valid()) throw UserError(path + ": cannot create file" + hdf5_reason());
  return File(path, std::move(file));
}

void File::close() {
  silence_errors();
  if (!file_.valid()) return;
  const bool flushed = H5Fflush(file_.get(), H5F_SCOPE_LOCAL) >= 0;
  const std::string reason = flushed ? std::string() : hdf5_reason();
  const bool closed = file_.close();
  if (!flushed) fail("cannot write the file" + reason);
  if (!closed) fail("cannot close the file");
}

void File::fail(const std::string& what) const {
  throw UserError(path_ + ": " + what);
}

std::string File::attr_label(const std::string& object, const std::string& name) {
  const std::string s = strip(object);
  if (s.empty()) return "root attribute '" + name + "'";
  return "attribute '" + name + "' of '" + s + "'";
}

// ---- File: structure ---------------------------------------------------------------------------

bool File::exists(const std::string& object) const {
  silence_errors();
  std::string partial;
  for (const std::string& part : components(object)) {
    partial += "/" + part;
    // H5Lexists checks only the last component; parents must exist (and be groups) first.
    if (H5Lexists(file_.get(), partial.c_str(), H5P_DEFAULT) <= 0) return false;
  }
  return true;
}

namespace {
H5I_type_t object_kind(hid_t loc, const std::string& name) {
  Handle object(H5Oopen(loc, name.c_str(), H5P_DEFAULT), H5Oclose);
  return object.valid() ? H5Iget_type(object.get()) : H5I_BADID;
}
}  // namespace

bool File::is_dataset(const std::string& object) const {
  return !strip(object).empty() && exists(object) &&
         object_kind(file_.get(), full_path(object)) == H5I_DATASET;
}

bool File::is_group(const std::string& object) const {
  return exists(object) && object_kind(file_.get(), full_path(object)) == H5I_GROUP;
}

void File::require_object(const std::string& object) const {
  if (!exists(object)) fail("object '" + strip(object) + "' is missing");
}

std::vector<std::string> File::children(const std::string& group, bool want_groups) const {
  silence_errors();
  if (!is_group(group)) fail("group '" + strip(group) + "' is missing");
  Handle g(H5Gopen2(file_.get(), full_path(group).c_str(), H5P_DEFAULT), H5Gclose);
  H5G_info_t info;
  if (!g.valid() || H5Gget_info(g.get(), &info) < 0)
    fail("cannot list group '" + strip(group) + "'");
  std::vector<std::string> names;
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    const ssize_t size =
        H5Lget_name_by_idx(g.get(), ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT);
    if (size < 0) fail("cannot list group '" + strip(group) + "'");
    std::string name(static_cast<std::size_t>(size) + 1, '\0');
    H5Lget_name_by_idx(g.get(), ".", H5_INDEX_NAME, H5_ITER_INC, i, name.data(), name.size(),
                       H5P_DEFAULT);
    name.resize(static_cast<std::size_t>(size));
    // Dangling soft or external links open as nothing and are skipped.
    const H5I_type_t kind = object_kind(g.get(), name);
    if (kind == (want_groups ? H5I_GROUP : H5I_DATASET)) names.push_back(name);
  }
  return names;
}

std::vector<std::string> File::datasets(const std::string& group) const {
  return children(group, false);
}

std::vector<std::string> File::groups(const std::string& group) const {
  return children(group, true);
}

void File::create_group(const std::string& group) {
  silence_errors();
  std::string partial;
  for (const std::string& part : components(group)) {
    partial += "/" + part;
    if (H5Lexists(file_.get(), partial.c_str(), H5P_DEFAULT) > 0) {
      if (object_kind(file_.get(), partial) != H5I_GROUP)
        fail("'" + strip(partial) + "' exists and is not a group");
      continue;
    }
    Handle gcpl = untimed_group_plist();
    Handle g(H5Gcreate2(file_.get(), partial.c_str(), H5P_DEFAULT, gcpl.get(), H5P_DEFAULT),
             H5Gclose);
    if (!g.valid()) fail("cannot create group '" + strip(partial) + "'" + hdf5_reason());
  }
}

// ---- File: attributes --------------------------------------------------------------------------

bool File::has_attr(const std::string& object, const std::string& name) const {
  silence_errors();
  require_object(object);
  return H5Aexists_by_name(file_.get(), full_path(object).c_str(), name.c_str(), H5P_DEFAULT) > 0;
}

Handle File::open_attr(const std::string& object, const std::string& name) const {
  if (!has_attr(object, name)) fail(attr_label(object, name) + " is missing");
  Handle attr(H5Aopen_by_name(file_.get(), full_path(object).c_str(), name.c_str(), H5P_DEFAULT,
                              H5P_DEFAULT),
              H5Aclose);
  if (!attr.valid()) fail("cannot open " + attr_label(object, name));
  return attr;
}

std::vector<std::string> File::read_attr_strings(const std::string& object,
                                                 const std::string& name) const {
  Handle attr = open_attr(object, name);
  Handle type(H5Aget_type(attr.get()), H5Tclose);
  if (H5Tget_class(type.get()) != H5T_STRING) fail(attr_label(object, name) + " is not a string");
  Handle space(H5Aget_space(attr.get()), H5Sclose);
  const hssize_t n = H5Sget_simple_extent_npoints(space.get());
  if (n < 0) fail("cannot read " + attr_label(object, name));
  std::vector<std::string> out;
  if (H5Tis_variable_str(type.get()) > 0) {
    Handle memory = vlen_string_type();
    H5Tset_cset(memory.get(), H5Tget_cset(type.get()));
    std::vector<char*> strings(static_cast<std::size_t>(n), nullptr);
    if (H5Aread(attr.get(), memory.get(), strings.data()) < 0)
      fail("cannot read " + attr_label(object, name));
    for (char* s : strings) {
      out.emplace_back(s ? s : "");
      if (s) H5free_memory(s);
    }
  } else {
    const std::size_t size = H5Tget_size(type.get());
    std::vector<char> bytes(static_cast<std::size_t>(n) * size + 1, '\0');
    if (H5Aread(attr.get(), type.get(), bytes.data()) < 0)
      fail("cannot read " + attr_label(object, name));
    const bool space_padded = H5Tget_strpad(type.get()) == H5T_STR_SPACEPAD;
    for (hssize_t i = 0; i < n; ++i) {
      std::string s(bytes.data() + static_cast<std::size_t>(i) * size, size);
      s.resize(s.find('\0') == std::string::npos ? s.size() : s.find('\0'));
      if (space_padded) s.erase(s.find_last_not_of(' ') + 1);
      out.push_back(std::move(s));
    }
  }
  return out;
}

std::string File::read_attr_string(const std::string& object, const std::string& name) const {
  std::vector<std::string> values = read_attr_strings(object, name);
  if (values.size() != 1)
    fail(attr_label(object, name) + " holds " + std::to_string(values.size()) +
         " strings, expected one");
  return values[0];
}

void File::read_attr_numeric(const std::string& object, const std::string& name, hid_t type,
                             bool is_integer, std::vector<char>& out,
                             std::int64_t elem_bytes) const {
  Handle attr = open_attr(object, name);
  Handle stored(H5Aget_type(attr.get()), H5Tclose);
  const H5T_class_t cls = H5Tget_class(stored.get());
  if (cls != H5T_INTEGER && cls != H5T_FLOAT) fail(attr_label(object, name) + " is not numeric");
  if (is_integer && cls == H5T_FLOAT)
    fail(attr_label(object, name) + " holds floating-point values, expected integers");
  Handle space(H5Aget_space(attr.get()), H5Sclose);
  const hssize_t n = H5Sget_simple_extent_npoints(space.get());
  if (n < 0) fail("cannot read " + attr_label(object, name));
  out.assign(static_cast<std::size_t>(n * elem_bytes), '\0');
  if (n > 0 && H5Aread(attr.get(), type, out.data()) < 0)
    fail("cannot read " + attr_label(object, name));
}

namespace {
// Attributes cannot be overwritten in place with another type or size: delete, then create.
void delete_attr_if_present(hid_t file, const std::string& object, const std::string& name) {
  if (H5Aexists_by_name(file, object.c_str(), name.c_str(), H5P_DEFAULT) > 0)
    H5Adelete_by_name(file, object.c_str(), name.c_str(), H5P_DEFAULT);
}
}  // namespace

void File::write_attr(const std::string& object, const std::string& name,
                      const std::string& value) {
  silence_errors();
  require_object(object);
  delete_attr_if_present(file_.get(), full_path(object), name);
  Handle type = vlen_string_type();
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  Handle attr(H5Acreate_by_name(file_.get(), full_path(object).c_str(), name.c_str(), type.get(),
                                space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
              H5Aclose);
  const char* data = value.c_str();
  if (!attr.valid() || H5Awrite(attr.get(), type.get(), &data) < 0)
    fail("cannot write " + attr_label(object, name) + hdf5_reason());
}

void File::write_attr(const std::string& object, const std::string& name,
                      const std::vector<std::string>& values) {
  silence_errors();
  require_object(object);
  delete_attr_if_present(file_.get(), full_path(object), name);
  Handle type = vlen_string_type();
  const hsize_t n = values.size();
  Handle space(H5Screate_simple(1, &n, nullptr), H5Sclose);
  Handle attr(H5Acreate_by_name(file_.get(), full_path(object).c_str(), name.c_str(), type.get(),
                                space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
              H5Aclose);
  std::vector<const char*> data;
  for (const std::string& v : values) data.push_back(v.c_str());
  if (!attr.valid() || (n > 0 && H5Awrite(attr.get(), type.get(), data.data()) < 0))
    fail("cannot write " + attr_label(object, name) + hdf5_reason());
}

void File::write_attr_numeric(const std::string& object, const std::string& name, hid_t type,
                              const Shape& shape, const void* values) {
  silence_errors();
  require_object(object);
  delete_attr_if_present(file_.get(), full_path(object), name);
  std::vector<hsize_t> dims(shape.begin(), shape.end());
  Handle space(shape.empty()
                   ? H5Screate(H5S_SCALAR)
                   : H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr),
               H5Sclose);
  Handle attr(H5Acreate_by_name(file_.get(), full_path(object).c_str(), name.c_str(), type,
                                space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
              H5Aclose);
  if (!attr.valid() || (shape_numel(shape) > 0 && H5Awrite(attr.get(), type, values) < 0))
    fail("cannot write " + attr_label(object, name) + hdf5_reason());
}

// ---- File: reading datasets --------------------------------------------------------------------

Handle File::open_dataset(const std::string& dataset) const {
  silence_errors();
  if (!is_dataset(dataset)) {
    if (exists(dataset)) fail("'" + strip(dataset) + "' is not a dataset");
    fail("dataset '" + strip(dataset) + "' is missing");
  }
  Handle ds(H5Dopen2(file_.get(), full_path(dataset).c_str(), H5P_DEFAULT), H5Dclose);
  if (!ds.valid()) fail("cannot open dataset '" + strip(dataset) + "'" + hdf5_reason());
  return ds;
}

namespace {
Shape space_shape(hid_t space) {
  const int rank = H5Sget_simple_extent_ndims(space);
  std::vector<hsize_t> dims(static_cast<std::size_t>(rank > 0 ? rank : 0));
  if (rank > 0) H5Sget_simple_extent_dims(space, dims.data(), nullptr);
  return Shape(dims.begin(), dims.end());
}
}  // namespace

Shape File::shape(const std::string& dataset) const {
  Handle ds = open_dataset(dataset);
  Handle space(H5Dget_space(ds.get()), H5Sclose);
  if (!space.valid()) fail("cannot read the shape of dataset '" + strip(dataset) + "'");
  return space_shape(space.get());
}

StoredType File::stored_type(const std::string& dataset) const {
  Handle ds = open_dataset(dataset);
  Handle type(H5Dget_type(ds.get()), H5Tclose);
  StoredType st;
  st.bytes = H5Tget_size(type.get());
  switch (H5Tget_class(type.get())) {
    case H5T_FLOAT:
      st.is_float = true;
      st.dtype = st.bytes > 4 ? DType::f64 : DType::f32;
      break;
    case H5T_INTEGER: {
      st.is_integer = true;
      const bool is_unsigned = H5Tget_sign(type.get()) == H5T_SGN_NONE;
      if (is_unsigned && st.bytes == 1) {
        st.dtype = DType::u8;
      } else if (st.bytes < 4 || (!is_unsigned && st.bytes == 4)) {
        st.dtype = DType::i32;
      } else {
        st.dtype = DType::i64;
      }
      break;
    }
    case H5T_STRING:
      st.is_string = true;
      st.dtype = DType::u8;
      break;
    default: fail("dataset '" + strip(dataset) + "' has an unsupported element type");
  }
  return st;
}

void File::read_raw(const std::string& dataset, bool whole, std::int64_t start, std::int64_t count,
                    hid_t memory_type, bool memory_is_integer, void* out,
                    std::int64_t capacity) const {
  const std::string name = strip(dataset);
  Handle ds = open_dataset(dataset);
  Handle type(H5Dget_type(ds.get()), H5Tclose);
  const H5T_class_t cls = H5Tget_class(type.get());
  if (cls != H5T_INTEGER && cls != H5T_FLOAT) fail("dataset '" + name + "' is not numeric");
  if (memory_is_integer && cls == H5T_FLOAT)
    fail("dataset '" + name + "' holds floating-point values, expected integers");
  Handle file_space(H5Dget_space(ds.get()), H5Sclose);
  const Shape dims = space_shape(file_space.get());

  herr_t status;
  if (whole) {
    const std::int64_t n = shape_numel(dims);
    TR_CHECK(n <= capacity, "h5 read: buffer too small for " + name);
    if (n == 0) return;
    status = H5Dread(ds.get(), memory_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out);
  } else {
    if (dims.empty()) fail("dataset '" + name + "' is a scalar, it has no rows");
    if (start < 0 || count < 0 || start + count > dims[0])
      fail("rows [" + std::to_string(start) + ", " + std::to_string(start + count) +
           ") are out of range for dataset '" + name + "' with " + std::to_string(dims[0]) +
           " rows");
    Shape selected = dims;
    selected[0] = count;
    const std::int64_t n = shape_numel(selected);
    TR_CHECK(n <= capacity, "h5 read: buffer too small for " + name);
    if (n == 0) return;
    std::vector<hsize_t> offset(dims.size(), 0), extent(selected.begin(), selected.end());
    offset[0] = static_cast<hsize_t>(start);
    H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, offset.data(), nullptr, extent.data(),
                        nullptr);
    Handle memory_space(H5Screate_simple(static_cast<int>(extent.size()), extent.data(), nullptr),
                        H5Sclose);
    status = H5Dread(ds.get(), memory_type, memory_space.get(), file_space.get(), H5P_DEFAULT, out);
  }
  if (status < 0) fail("cannot read dataset '" + name + "'" + hdf5_reason());
}

Tensor File::read_tensor(const std::string& dataset, DType dtype) const {
  Tensor t = Tensor::empty(shape(dataset), dtype);
  read_into(dataset, t);
  return t;
}

void File::read_into(const std::string& dataset, Tensor& out) const {
  TR_CHECK(out.device() == Device::cpu, "h5 reads into host tensors only");
  const Shape stored = shape(dataset);
  if (stored != out.shape())
    fail("dataset '" + strip(dataset) + "' has shape " + shape_string(stored) + ", expected " +
         shape_string(out.shape()));
  read_raw(dataset, true, 0, 0, native_type(out.dtype()), is_integer_dtype(out.dtype()), out.raw(),
           out.numel());
}

void File::read_rows_into(const std::string& dataset, std::int64_t start, Tensor& out) const {
  TR_CHECK(out.device() == Device::cpu, "h5 reads into host tensors only");
  TR_CHECK(out.ndim() >= 1, "read_rows_into needs a tensor with a row axis");
  const Shape stored = shape(dataset);
  if (stored.size() != out.shape().size() || !std::equal(stored.begin() + (stored.empty() ? 0 : 1),
                                                         stored.end(), out.shape().begin() + 1)) {
    Shape expected = out.shape();
    expected[0] = stored.empty() ? 0 : stored[0];
    fail("dataset '" + strip(dataset) + "' has shape " + shape_string(stored) + ", expected " +
         shape_string(expected));
  }
  read_raw(dataset, false, start, out.dim(0), native_type(out.dtype()),
           is_integer_dtype(out.dtype()), out.raw(), out.numel());
}

// ---- File: writing datasets --------------------------------------------------------------------

void File::create_dataset(const std::string& dataset, const Shape& shape, DType stored,
                          const WriteOptions& options) {
  silence_errors();
  const std::string name = strip(dataset);
  TR_CHECK(!name.empty(), "h5: a dataset needs a name");
  if (exists(name)) fail("dataset '" + name + "' already exists");
  create_group(parent_of(name));
  std::vector<hsize_t> dims(shape.begin(), shape.end());
  Handle space(shape.empty()
                   ? H5Screate(H5S_SCALAR)
                   : H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr),
               H5Sclose);
  Handle dcpl = untimed_dataset_plist();
  // Chunks may not exceed a fixed-size dataset's extent, and an empty axis has no chunk size:
  // such datasets stay contiguous.
  if (options.chunk_rows > 0 && !shape.empty() && shape_numel(shape) > 0) {
    std::vector<hsize_t> chunk = dims;
    chunk[0] = std::min<hsize_t>(dims[0], static_cast<hsize_t>(options.chunk_rows));
    H5Pset_chunk(dcpl.get(), static_cast<int>(chunk.size()), chunk.data());
  }
  Handle ds(H5Dcreate2(file_.get(), full_path(name).c_str(), file_type(stored), space.get(),
                       H5P_DEFAULT, dcpl.get(), H5P_DEFAULT),
            H5Dclose);
  if (!ds.valid()) fail("cannot create dataset '" + name + "'" + hdf5_reason());
}

void File::write_raw(const std::string& dataset, bool whole, std::int64_t start, std::int64_t count,
                     hid_t memory_type, const void* values, std::int64_t numel) {
  const std::string name = strip(dataset);
  Handle ds = open_dataset(dataset);
  Handle file_space(H5Dget_space(ds.get()), H5Sclose);
  const Shape dims = space_shape(file_space.get());
  herr_t status;
  if (whole) {
    TR_CHECK(numel == shape_numel(dims), "h5 write: " + std::to_string(numel) +
                                             " values for dataset '" + name + "' of shape " +
                                             shape_string(dims));
    if (numel == 0) return;
    status = H5Dwrite(ds.get(), memory_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, values);
  } else {
    TR_CHECK(!dims.empty(), "h5 write_rows on scalar dataset '" + name + "'");
    if (start < 0 || count < 0 || start + count > dims[0])
      fail("rows [" + std::to_string(start) + ", " + std::to_string(start + count) +
           ") are out of range for dataset '" + name + "' with " + std::to_string(dims[0]) +
           " rows");
    Shape selected = dims;
    selected[0] = count;
    TR_CHECK(numel == shape_numel(selected), "h5 write_rows: wrong number of values");
    if (numel == 0) return;
    std::vector<hsize_t> offset(dims.size(), 0), extent(selected.begin(), selected.end());
    offset[0] = static_cast<hsize_t>(start);
    H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, offset.data(), nullptr, extent.data(),
                        nullptr);
    Handle memory_space(H5Screate_simple(static_cast<int>(extent.size()), extent.data(), nullptr),
                        H5Sclose);
    status =
        H5Dwrite(ds.get(), memory_type, memory_space.get(), file_space.get(), H5P_DEFAULT, values);
  }
  if (status < 0) fail("cannot write dataset '" + name + "'" + hdf5_reason());
}

void File::write_rows(const std::string& dataset, std::int64_t start, const Tensor& values) {
  TR_CHECK(values.device() == Device::cpu, "h5 writes host tensors only");
  const Shape stored = shape(dataset);
  TR_CHECK(values.ndim() >= 1 && stored.size() == values.shape().size() &&
               std::equal(stored.begin() + 1, stored.end(), values.shape().begin() + 1),
           "h5 write_rows: " + shape_string(values.shape()) + " into dataset '" + strip(dataset) +
               "' of shape " + shape_string(stored));
  write_raw(dataset, false, start, values.dim(0), native_type(values.dtype()), values.raw(),
            values.numel());
}

void File::write(const std::string& dataset, const Tensor& values, DType stored,
                 const WriteOptions& options) {
  TR_CHECK(values.device() == Device::cpu, "h5 writes host tensors only");
  create_dataset(dataset, values.shape(), stored, options);
  write_raw(dataset, true, 0, 0, native_type(values.dtype()), values.raw(), values.numel());
}

}  // namespace tr::h5
