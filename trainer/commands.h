// The inference-side subcommands: eval, translate, predict, export (DESIGN section 6).
// Each reads a checkpoint directory (or a weights file, for eval) and builds the model it
// describes; problems with the inputs are UserErrors (exit 2, one line).
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

namespace tr {

struct EvalArgs {
  std::string config_path;
  std::vector<std::string> overrides;
  std::string checkpoint;  // a checkpoint or a run directory (its newest checkpoint)
  std::string weights;     // or a weights file
  std::string data;        // dataset to evaluate; "" = the config's data.valid
  int beam = 0;            // 0 = eval.beam of the config
};
// Runs on train.device of the config (cpu, cuda, or auto: the GPU where one is usable).
// Prints one JSON object: loss, records, and accuracy (ViT) or bleu (translation).
std::string run_eval_command(const EvalArgs& args);

struct TranslateArgs {
  std::string checkpoint;
  int beam = 4;
  std::int64_t batch = 32;
  double length_penalty = 1.0;
  // Lines are token ids separated by spaces (no bos/eos), in and out, instead of text: for
  // models trained on data without a tokenizer (`trainer prepare synthetic`) and for debugging.
  bool ids = false;
  std::string device = "auto";  // cpu | cuda | auto (the GPU where one is usable)
};
// Sentences from `in`, one per line; translations to `out`, one per line, in order. A line
// that is not a list of ids in [0, vocab_size) (with `ids`) is a UserError naming the line.
void run_translate_command(const TranslateArgs& args, std::istream& in, std::ostream& out);

struct PredictArgs {
  std::string checkpoint;
  std::string data;
  std::int64_t batch = 256;
  std::string device = "auto";  // cpu | cuda | auto
};
// Writes "index<TAB>class<TAB>name" per image to `out`; returns the accuracy against the
// file's labels.
double run_predict_command(const PredictArgs& args, std::ostream& out);

// Writes the checkpoint's model as a weights file (DESIGN section 5).
void run_export_command(const std::string& checkpoint, const std::string& out);

}  // namespace tr
