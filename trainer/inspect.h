// `trainer inspect FILE`: a short human-readable summary of a dataset, a weights file or a
// checkpoint directory, printed to stdout.
#pragma once

#include <string>

namespace tr {

std::string inspect_path(const std::string& path);

}  // namespace tr
