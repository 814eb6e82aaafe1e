#include "data/dataset_schema.h"

namespace tr::schema {

std::string dataset_kind(const h5::File& file) {
  if (file.exists("images")) return "images";
  if (file.exists("src") || file.exists("tgt")) return "translation";
  throw UserError(file.path() +
                  ": not a dataset: expected 'images' and 'labels' (image dataset) or groups "
                  "'src' and 'tgt' (translation dataset)");
}

std::string describe(const h5::StoredType& type) {
  const std::string bits = std::to_string(type.bytes * 8);
  if (type.is_string) return "string";
  if (type.is_float) return "float" + bits;
  if (type.dtype == DType::u8) return "uint8";
  if (type.is_integer) return bits + "-bit integer";
  return "non-numeric";
}

Shape require_shape(const h5::File& file, const std::string& dataset, int rank,
                    const std::string& layout) {
  const Shape shape = file.shape(dataset);  // names a missing dataset itself
  if (static_cast<int>(shape.size()) != rank)
    throw UserError(file.path() + ": dataset '" + dataset + "' has shape " + shape_string(shape) +
                    ", expected " + layout + " (" + std::to_string(rank) + " axes)");
  return shape;
}

namespace {
[[noreturn]] void wrong_type(const h5::File& file, const std::string& dataset,
                             const h5::StoredType& type, const std::string& expected) {
  throw UserError(file.path() + ": dataset '" + dataset + "' holds " + describe(type) +
                  " values, expected " + expected);
}
}  // namespace

void require_uint8(const h5::File& file, const std::string& dataset) {
  const h5::StoredType type = file.stored_type(dataset);
  if (!type.is_integer || type.dtype != DType::u8) wrong_type(file, dataset, type, "uint8");
}

void require_int32(const h5::File& file, const std::string& dataset) {
  const h5::StoredType type = file.stored_type(dataset);
  // stored_type reports every integer type that int32 holds without loss as i32.
  if (!type.is_integer || type.dtype != DType::i32) wrong_type(file, dataset, type, "int32");
}

void require_integer(const h5::File& file, const std::string& dataset) {
  const h5::StoredType type = file.stored_type(dataset);
  if (!type.is_integer) wrong_type(file, dataset, type, "integers (int64)");
}

std::int64_t int_attr(const h5::File& file, const std::string& name) {
  return file.read_attr_scalar<std::int64_t>("/", name);
}

void record_error(const std::string& path, std::int64_t record, const std::string& what) {
  throw UserError(path + ": record " + std::to_string(record) + ": " + what);
}

}  // namespace tr::schema
