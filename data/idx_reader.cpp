#include "data/idx_reader.h"

#include <algorithm>
#include <cstdio>

#include "layers/error.h"

namespace tr {

namespace {

std::string hex32(std::uint32_t value) {
  char text[16];
  std::snprintf(text, sizeof(text), "0x%08X", value);
  return text;
}

std::string describe(int ndim) {
  switch (ndim) {
    case 1: return "uint8 labels [N]";
    case 3: return "uint8 images [N, H, W]";
    default: return "uint8 array of " + std::to_string(ndim) + " dimensions";
  }
}

std::uint32_t big_endian32(const unsigned char* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
         std::uint32_t{p[3]};
}

}  // namespace

IdxReader::IdxReader(const std::string& path, int expected_ndim) : reader_(path) {
  TR_CHECK(expected_ndim >= 1 && expected_ndim <= 255, "IDX files have 1 to 255 dimensions");
  unsigned char magic[4];
  if (reader_.read(magic, 4) != 4) throw UserError(path + ": truncated IDX header");
  const std::uint32_t expected = 0x00000800u | static_cast<std::uint32_t>(expected_ndim);
  const std::uint32_t found = big_endian32(magic);
  if (found != expected)
    throw UserError(path + ": bad IDX magic " + hex32(found) + ", expected " + hex32(expected) +
                    " (" + describe(expected_ndim) + ")");
  std::vector<unsigned char> header(4 * static_cast<std::size_t>(expected_ndim));
  if (reader_.read(header.data(), static_cast<std::int64_t>(header.size())) !=
      static_cast<std::int64_t>(header.size()))
    throw UserError(path + ": truncated IDX header");
  for (int i = 0; i < expected_ndim; ++i) dims_.push_back(big_endian32(&header[4 * i]));
  for (int i = 1; i < expected_ndim; ++i) {
    if (dims_[i] == 0) throw UserError(path + ": IDX dimension " + std::to_string(i) + " is 0");
    if (record_bytes_ > (std::int64_t{1} << 40) / dims_[i])
      throw UserError(path + ": IDX records are implausibly large (corrupt header?)");
    record_bytes_ *= dims_[i];
  }
}

void IdxReader::read(std::int64_t count, std::uint8_t* out) {
  TR_CHECK(count >= 0 && next_ + count <= records(), "IDX read past the declared records");
  const std::int64_t want = count * record_bytes_;
  const std::int64_t got = reader_.read(out, want);
  if (got != want)
    throw UserError(path() + ": truncated: header declares " + std::to_string(records()) +
                    " records, data ends in record " + std::to_string(next_ + got / record_bytes_));
  next_ += count;
}

void IdxReader::expect_end() {
  unsigned char extra;
  if (reader_.read(&extra, 1) != 0)
    throw UserError(path() + ": more data than its IDX header declares (" +
                    std::to_string(records()) + " records of " + std::to_string(record_bytes_) +
                    " bytes)");
}

std::vector<std::uint8_t> read_idx(const std::string& path, int expected_ndim,
                                   std::vector<std::int64_t>* dims) {
  IdxReader reader(path, expected_ndim);
  // Grows block by block, so that a corrupt header declaring billions of records ends in a
  // truncation error rather than one huge allocation.
  std::vector<std::uint8_t> data;
  const std::int64_t block = std::max<std::int64_t>(1, (1 << 20) / reader.record_bytes());
  while (reader.records_read() < reader.records()) {
    const std::int64_t count = std::min(block, reader.records() - reader.records_read());
    const std::size_t at = data.size();
    data.resize(at + static_cast<std::size_t>(count * reader.record_bytes()));
    reader.read(count, data.data() + at);
  }
  reader.expect_end();
  if (dims != nullptr) *dims = reader.dims();
  return data;
}

}  // namespace tr
