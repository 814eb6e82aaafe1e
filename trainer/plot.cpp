#include "trainer/plot.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "layers/error.h"

namespace tr {

namespace fs = std::filesystem;

namespace {

// Columns written for gnuplot; a missing value is "?" (gnuplot skips it).
std::string column(const nlohmann::json& row, const char* key) {
  if (!row.contains(key) || !row[key].is_number()) return "?";
  return std::to_string(row[key].get<double>());
}

}  // namespace

void plot_run(const std::string& run_dir, const std::string& out_png) {
  const fs::path metrics = fs::path(run_dir) / "metrics.jsonl";
  std::ifstream in(metrics);
  if (!in)
    throw UserError(metrics.string() + ": no such file (is " + run_dir + " a run directory?)");

  const fs::path work = fs::temp_directory_path() / ("tr_plot_" + std::to_string(getpid()));
  fs::create_directories(work);
  std::ofstream train(work / "train.dat"), eval(work / "eval.dat");
  std::string line, eval_metric;
  int rows = 0, line_number = 0;
  while (std::getline(in, line)) {
    ++line_number;
    if (line.empty()) continue;
    nlohmann::json row;
    try {
      row = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception&) {
      throw UserError(metrics.string() + ": line " + std::to_string(line_number) + " is not JSON");
    }
    if (!row.contains("step")) continue;
    if (row.contains("eval_loss")) {
      if (row.contains("bleu"))
        eval_metric = "bleu";
      else if (row.contains("accuracy"))
        eval_metric = "accuracy";
      eval << column(row, "step") << " " << column(row, "eval_loss") << " "
           << (eval_metric.empty() ? "?" : column(row, eval_metric.c_str())) << "\n";
    } else {
      const char* throughput = row.contains("tokens_per_s") ? "tokens_per_s" : "samples_per_s";
      train << column(row, "step") << " " << column(row, "loss") << " " << column(row, "lr") << " "
            << column(row, throughput) << "\n";
      ++rows;
    }
  }
  train.close();
  eval.close();
  if (rows == 0) throw UserError(metrics.string() + ": no training rows to plot");

  const std::string metric_label = eval_metric.empty() ? "eval metric" : eval_metric;
  std::ofstream script(work / "plot.gp");
  script << "set terminal pngcairo size 1200,800 noenhanced\n"
         << "set output '" << out_png << "'\n"
         << "set multiplot layout 2,2 title '" << run_dir << "'\n"
         << "set xlabel 'step'\nset grid\n"
         << "set title 'loss'\nplot '" << (work / "train.dat").string()
         << "' using 1:2 with lines title 'train'"
         << (fs::file_size(work / "eval.dat") > 0 ? ", '" + (work / "eval.dat").string() +
                                                        "' using 1:2 with linespoints title 'eval'"
                                                  : std::string())
         << "\n"
         << "set title '" << metric_label << "'\n"
         << (fs::file_size(work / "eval.dat") > 0
                 ? "plot '" + (work / "eval.dat").string() +
                       "' using 1:3 with linespoints title '" + metric_label + "'\n"
                 : "unset xlabel\nset label 1 'no evaluation rows' at graph 0.4,0.5\nplot NaN "
                   "notitle\nunset label 1\nset xlabel 'step'\n")
         << "set title 'learning rate'\nplot '" << (work / "train.dat").string()
         << "' using 1:3 with lines title 'lr'\n"
         << "set title 'throughput'\nplot '" << (work / "train.dat").string()
         << "' using 1:4 with lines title 'per second'\n"
         << "unset multiplot\n";
  script.close();
  const std::string command = "gnuplot '" + (work / "plot.gp").string() + "' 2>&1";
  const int status = std::system(command.c_str());
  fs::remove_all(work);
  if (status != 0 || !fs::exists(out_png))
    throw UserError(out_png + ": gnuplot failed (is gnuplot installed? launch/install-deps)");
}

}  // namespace tr
