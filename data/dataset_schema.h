// Checks shared by the dataset readers: each failure is one UserError line naming the file and
// the dataset or attribute, e.g. "train.h5: dataset 'images' holds float32 values, expected
// uint8".
#pragma once

#include <cstdint>
#include <string>

#include "data/h5.h"

namespace tr::schema {

// "images" or "translation", from the objects at the root; anything else is a UserError
// saying what a dataset file holds.
std::string dataset_kind(const h5::File& file);

// "uint8", "32-bit integer", "float32", "string", ...: how the file stores an element.
std::string describe(const h5::StoredType& type);

// The shape of `dataset`, which must exist and have `rank` axes; `layout` names them for the
// message ("[N,H,W,C]").
Shape require_shape(const h5::File& file, const std::string& dataset, int rank,
                    const std::string& layout);

// Element-type checks: uint8 exactly; integers that fit int32; any integer.
void require_uint8(const h5::File& file, const std::string& dataset);
void require_int32(const h5::File& file, const std::string& dataset);
void require_integer(const h5::File& file, const std::string& dataset);

// A root attribute holding one integer.
std::int64_t int_attr(const h5::File& file, const std::string& name);

// "train.h5: record 17: " + what.
[[noreturn]] void record_error(const std::string& path, std::int64_t record,
                               const std::string& what);

}  // namespace tr::schema
