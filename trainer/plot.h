// `trainer plot RUN_DIR --out curves.png`: loss, evaluation metric, learning rate and
// throughput against step, from RUN_DIR/metrics.jsonl, drawn by gnuplot (Debian's
// gnuplot-nox) into a 2x2 PNG.
#pragma once

#include <string>

namespace tr {

void plot_run(const std::string& run_dir, const std::string& out_png);

}  // namespace tr
