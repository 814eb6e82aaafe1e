#include "data/temp_output.h"

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <system_error>

#include "layers/error.h"

namespace tr {

namespace {

// Renaming an unsynced file can, after a power loss, leave the new name pointing at empty
// blocks; syncing first keeps the rename atomic in effect and not only in name.
void sync_path(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return;  // best effort: the data has been written already
  ::fsync(fd);
  ::close(fd);
}

}  // namespace

TempOutput::TempOutput(std::string out) : out_(std::move(out)) {
  if (out_.empty()) throw UserError("no output file given");
  const std::filesystem::path parent = std::filesystem::path(out_).parent_path();
  std::error_code ec;
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  if (ec)
    throw UserError(out_ + ": cannot create directory " + parent.string() + " (" + ec.message() +
                    ")");
  if (std::filesystem::is_directory(out_, ec)) throw UserError(out_ + ": is a directory");
  temp_ = out_ + ".tmp." + std::to_string(::getpid());
}

TempOutput::~TempOutput() {
  if (committed_) return;
  std::error_code ignored;
  std::filesystem::remove(temp_, ignored);
}

void TempOutput::commit() {
  sync_path(temp_);
  std::error_code ec;
  std::filesystem::rename(temp_, out_, ec);
  if (ec) throw UserError(out_ + ": cannot rename " + temp_ + " into place (" + ec.message() + ")");
  committed_ = true;
  const std::string dir = std::filesystem::path(out_).parent_path().string();
  sync_path(dir.empty() ? "." : dir);
}

}  // namespace tr
