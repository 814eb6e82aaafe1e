// Reader of IDX files, the format of MNIST and Fashion-MNIST: a big-endian header (two zero
// bytes, an element-type byte, the number of dimensions, then each dimension as uint32) followed
// by the elements in row-major order. Only unsigned bytes (type 0x08) are supported, which is
// what image and label files hold: magic 0x00000803 for images [N, H, W], 0x00000801 for
// labels [N]. Files may be gzip-compressed or plain.
//
// Records are read in row ranges so that converting a large file needs little memory.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/gz_reader.h"

namespace tr {

class IdxReader {
 public:
  // Opens `path` and reads its header, which must declare uint8 elements in `expected_ndim`
  // dimensions (3: images, 1: labels). Errors name the file: "x.gz: bad IDX magic 0x00000801,
  // expected 0x00000803 (uint8 images [N, H, W])", "x.gz: truncated IDX header".
  IdxReader(const std::string& path, int expected_ndim);

  const std::string& path() const { return reader_.path(); }
  const std::vector<std::int64_t>& dims() const { return dims_; }
  std::int64_t records() const { return dims_[0]; }
  std::int64_t record_bytes() const { return record_bytes_; }
  std::int64_t records_read() const { return next_; }

  // Reads the next `count` records (count * record_bytes() bytes) into `out`. Fewer bytes than
  // the header declares is "x.gz: truncated: header declares 60000 records, data ends in record
  // 59321". Reading past the declared records is an internal error.
  void read(std::int64_t count, std::uint8_t* out);
  // After all records were read: data after them means the header does not describe the file.
  void expect_end();

 private:
  GzReader reader_;
  std::vector<std::int64_t> dims_;
  std::int64_t record_bytes_ = 1;
  std::int64_t next_ = 0;
};

// Reads a whole IDX file (uint8, `expected_ndim` dimensions) at once: for label files, which
// are small.
std::vector<std::uint8_t> read_idx(const std::string& path, int expected_ndim,
                                   std::vector<std::int64_t>* dims = nullptr);

}  // namespace tr
