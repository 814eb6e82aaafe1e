#include "data/gz_reader.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "layers/error.h"

namespace tr {

namespace {

constexpr std::size_t kBufferBytes = 1 << 18;

}  // namespace

GzReader::GzReader(const std::string& path) : path_(path), buffer_(kBufferBytes) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) throw UserError(path + ": no such file");
  if (std::filesystem::is_directory(path, ec)) throw UserError(path + ": is a directory");
  // gzopen reads plain files transparently; the magic is checked only to report it.
  if (std::FILE* f = std::fopen(path.c_str(), "rb")) {
    unsigned char magic[2] = {0, 0};
    compressed_ = std::fread(magic, 1, 2, f) == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
    std::fclose(f);
  }
  errno = 0;
  file_ = gzopen(path.c_str(), "rb");
  if (file_ == nullptr)
    throw UserError(path + ": cannot open (" + (errno ? std::strerror(errno) : "zlib") + ")");
  gzbuffer(file_, 1 << 17);
}

GzReader::~GzReader() {
  if (file_ != nullptr) gzclose(file_);
}

bool GzReader::fill() {
  const int n = gzread(file_, buffer_.data(), static_cast<unsigned>(buffer_.size()));
  if (n < 0) {
    int code = 0;
    const char* message = gzerror(file_, &code);
    throw UserError(path_ + ": cannot read (" +
                    (code == Z_ERRNO ? std::strerror(errno) : std::string(message)) + ")");
  }
  begin_ = 0;
  end_ = static_cast<std::size_t>(n);
  // gzread returns what it has before reporting a truncated stream; ask explicitly at the end.
  if (n == 0) {
    int code = 0;
    const char* message = gzerror(file_, &code);
    if (code != Z_OK) throw UserError(path_ + ": cannot read (" + std::string(message) + ")");
  }
  return n > 0;
}

std::int64_t GzReader::read(void* out, std::int64_t bytes) {
  char* dst = static_cast<char*>(out);
  std::int64_t done = 0;
  while (done < bytes) {
    if (begin_ == end_ && !fill()) break;
    const std::size_t take =
        std::min<std::size_t>(end_ - begin_, static_cast<std::size_t>(bytes - done));
    std::memcpy(dst + done, buffer_.data() + begin_, take);
    begin_ += take;
    done += static_cast<std::int64_t>(take);
  }
  position_ += done;
  return done;
}

bool GzReader::read_line(std::string& line) {
  line.clear();
  bool any = false;
  while (true) {
    if (begin_ == end_ && !fill()) break;
    any = true;
    const char* start = buffer_.data() + begin_;
    const void* newline = std::memchr(start, '\n', end_ - begin_);
    if (newline != nullptr) {
      const std::size_t n = static_cast<const char*>(newline) - start;
      line.append(start, n);
      begin_ += n + 1;
      position_ += static_cast<std::int64_t>(n + 1);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      return true;
    }
    line.append(start, end_ - begin_);
    position_ += static_cast<std::int64_t>(end_ - begin_);
    begin_ = end_;
  }
  if (!line.empty() && line.back() == '\r') line.pop_back();
  return any;
}

}  // namespace tr
