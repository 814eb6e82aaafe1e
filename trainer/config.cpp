// Loading, overriding, writing and documenting a RunConfig through the option table
// (trainer/config_schema.cpp). The checks live in trainer/config_checks.cpp.
#include "trainer/config.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "layers/error.h"
#include "trainer/config_schema.h"

namespace tr {

using config_schema::GivenMap;

namespace {

// The prefix of messages about `key`: where its value came from, else the config file.
auto origin_of(const GivenMap& given, const std::string& fallback) {
  return [&given, fallback](const std::string& key) {
    auto it = given.find(key);
    return it != given.end() ? it->second.origin : fallback;
  };
}

RunConfig resolve(const GivenMap& given, const std::string& fallback_origin) {
  RunConfig config;
  config_schema::apply_given(given, config);
  config_schema::validate(config, origin_of(given, fallback_origin));
  return config;
}

}  // namespace

RunConfig run_config_from_yaml_text(const std::string& text, const std::string& source,
                                    const std::vector<std::string>& overrides) {
  const std::string origin = source + ": ";
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    // yaml-cpp counts lines and columns from 0; editors from 1.
    if (e.mark.is_null()) throw UserError(origin + "invalid YAML: " + e.msg);
    throw UserError(source + ":" + std::to_string(e.mark.line + 1) + ":" +
                    std::to_string(e.mark.column + 1) + ": YAML syntax error: " + e.msg);
  }
  if (root.IsNull()) throw UserError(origin + "the config is empty");
  GivenMap given;
  config_schema::flatten(root, "", origin, given);
  for (const std::string& assignment : overrides) config_schema::merge_override(assignment, given);
  return resolve(given, origin);
}

RunConfig load_run_config(const std::string& path, const std::vector<std::string>& overrides) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    throw UserError(path + ": cannot read the config: is a directory");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UserError(path + ": cannot read the config: " + std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw UserError(path + ": cannot read the config: " + std::strerror(errno));
  return run_config_from_yaml_text(text.str(), path, overrides);
}

void apply_override(RunConfig& config, const std::string& assignment) {
  // Through the YAML form, so an override means the same here as on the command line.
  GivenMap given;
  config_schema::flatten(config_schema::to_yaml(config, ""), "", "", given);
  config_schema::merge_override(assignment, given);
  config = resolve(given, "");
}

void validate_run_config(const RunConfig& config) {
  config_schema::validate(config, [](const std::string&) { return std::string(); });
}

std::string run_config_to_yaml(const RunConfig& config) {
  YAML::Emitter out;
  out << config_schema::to_yaml(config, "");
  return "# Resolved run configuration: every key, defaults filled (trainer train "
         "--help-config)\n" +
         std::string(out.c_str()) + "\n";
}

void write_resolved_config(const RunConfig& config, const std::string& path) {
  const std::string text = run_config_to_yaml(config);
  const std::filesystem::path target(path);
  std::error_code ec;
  if (target.has_parent_path()) std::filesystem::create_directories(target.parent_path(), ec);
  if (ec) throw UserError(path + ": cannot create its directory: " + ec.message());
  // Written whole to a temporary file, synced, then renamed: readers never see half a file.
  const std::string tmp = path + ".tmp";
  std::FILE* file = std::fopen(tmp.c_str(), "wb");
  if (!file) throw UserError(tmp + ": cannot write: " + std::strerror(errno));
  const bool written = std::fwrite(text.data(), 1, text.size(), file) == text.size() &&
                       std::fflush(file) == 0 && ::fsync(::fileno(file)) == 0;
  const int saved_errno = errno;
  if (std::fclose(file) != 0 || !written) {
    std::remove(tmp.c_str());
    throw UserError(tmp + ": cannot write: " + std::strerror(written ? errno : saved_errno));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int rename_errno = errno;
    std::remove(tmp.c_str());
    throw UserError(path + ": cannot rename " + tmp +
                    " into place: " + std::strerror(rename_errno));
  }
}

std::string config_help() {
  const RunConfig defaults = [] {
    RunConfig c;
    c.run.dir.clear();  // shown as its rule (runs/<name>), not one resolved value
    return c;
  }();
  std::ostringstream out;
  out << "Run configuration: YAML sections run, model, data, train, parallel, checkpoint, eval,\n"
         "log. Any key can be overridden with --set key.path=value (value in YAML, e.g.\n"
         "--set train.optimizer.betas=[0.9,0.98]). Unknown keys are errors.\n";
  std::string section;
  for (const config_schema::Option& o : config_schema::options()) {
    const std::string this_section = o.key.substr(0, o.key.find('.'));
    if (this_section != section) {
      section = this_section;
      out << "\n" << section << ":\n";
    }
    std::string value = "(alias)";
    if (o.write) {
      const YAML::Node node = o.write(defaults);
      value = node.IsScalar() && node.Scalar().empty() ? "\"\"" : config_schema::describe(node);
    }
    out << "  " << o.key << ": " << value << "    " << o.expected;
    if (!o.model_type.empty()) out << " (" << o.model_type << " only)";
    // Help wrapped at 100 columns, indented under its key.
    std::string line;
    std::istringstream words(o.help);
    for (std::string word; words >> word;) {
      if (!line.empty() && 6 + line.size() + 1 + word.size() > 100) {
        out << "\n      " << line;
        line.clear();
      }
      line += (line.empty() ? "" : " ") + word;
    }
    out << "\n      " << line << "\n";
  }
  return out.str();
}

}  // namespace tr
