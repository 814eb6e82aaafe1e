// Sequential reading of input files that may be gzip-compressed (.gz) or plain: zlib's gzread
// reads both, so callers never look at the extension. Used by the `prepare` converters for IDX
// files and parallel text.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

struct gzFile_s;  // zlib's gzFile is a gzFile_s*; callers need not include zlib.h

namespace tr {

class GzReader {
 public:
  // Errors (UserError naming the file): "x.gz: no such file", "x.gz: cannot open (...)".
  explicit GzReader(const std::string& path);
  GzReader(const GzReader&) = delete;
  GzReader& operator=(const GzReader&) = delete;
  ~GzReader();

  const std::string& path() const { return path_; }
  // Whether the file starts with the gzip magic bytes (1f 8b).
  bool compressed() const { return compressed_; }

  // Reads up to `bytes` bytes; returns how many were read (fewer only at the end of the data).
  // A corrupt or truncated gzip stream is a UserError naming the file.
  std::int64_t read(void* out, std::int64_t bytes);

  // Reads the next line without its '\n' (and without a '\r' before it, so files written on
  // Windows read the same). Returns false at the end of the file. A last line without '\n'
  // still counts as a line.
  bool read_line(std::string& line);

  // Uncompressed bytes consumed so far (what read/read_line returned, plus newlines).
  std::int64_t position() const { return position_; }

 private:
  bool fill();  // refills buffer_; false at end of data

  std::string path_;
  gzFile_s* file_ = nullptr;
  bool compressed_ = false;
  std::vector<char> buffer_;
  std::size_t begin_ = 0, end_ = 0;  // unread bytes of buffer_
  std::int64_t position_ = 0;
};

}  // namespace tr
