#include "trainer/evaluation.h"

#include "data/loader.h"
#include "models/encoder_decoder.h"
#include "trainer/accuracy.h"
#include "trainer/bleu.h"
#include "trainer/decoding.h"
#include "trainer/device_residency.h"

namespace tr {

namespace {

// A record's reference ids: tgt_out up to (not including) eos.
std::vector<std::int32_t> reference_ids(const Batch& batch, std::int64_t row, std::int32_t eos) {
  const std::int64_t T = batch.tgt_out.dim(1);
  const std::int32_t* ids = batch.tgt_out.data<std::int32_t>() + row * T;
  const std::int64_t n = batch.tgt_len.data<std::int32_t>()[row];
  std::vector<std::int32_t> out;
  for (std::int64_t t = 0; t < n && ids[t] != eos; ++t) out.push_back(ids[t]);
  return out;
}

}  // namespace

EvalResult evaluate(Model& model, const EvalOptions& options) {
  const ModelConfig& c = model.config();
  LoaderOptions lo;
  lo.path = options.path;
  lo.shuffle = false;
  lo.global_batch = lo.micro_batch = options.batch;
  lo.accumulation = 1;
  lo.prefetch = 1;
  lo.drop_last = false;
  if (options.dp) {
    lo.dp_rank = options.dp->rank();
    lo.dp_size = options.dp->size();
    lo.global_batch = options.batch * lo.dp_size;
  }
  lo.max_len = c.type == "encoder_decoder" ? c.max_len : 0;
  Loader loader(lo);

  const bool translation = c.type == "encoder_decoder";
  const bool want_bleu = translation && options.bleu;
  if (want_bleu && !options.tokenizer)
    throw UserError(options.path + ": BLEU needs a tokenizer (the dataset stores none)");
  DecodeOptions decode;
  decode.beam = options.beam;
  decode.bos_id = c.bos_id;
  decode.eos_id = c.eos_id;
  decode.pad_id = c.pad_id;

  EvalResult result;
  double loss_sum = 0;
  AccuracyCount accuracy;
  std::vector<std::string> hypotheses, references;
  StepBatches step;
  std::int64_t batches = 0;
  // On the model's device (a GPU-trained model evaluates there): each batch is uploaded; the
  // targets, the argmax indices and the decoded tokens come back.
  const Device device = model.device();
  Batch on_device;
  while ((options.max_batches <= 0 || batches < options.max_batches) && loader.next(step)) {
    for (const Batch& batch : step.micro_batches) {
      if (device != Device::cpu) upload_batch(on_device, batch, device);
      loss_sum += model.forward(device == Device::cpu ? batch : on_device, ForwardContext{});
      result.targets += model.counted_targets();
      result.records += batch.size();
      // Images: top-1 accuracy. Translation: teacher-forced next-token accuracy over
      // non-pad targets (meaningful without a tokenizer, e.g. on synthetic copy tasks).
      const AccuracyCount a = translation ? count_correct(model.logits(), batch.tgt_out, c.pad_id)
                                          : count_correct(model.logits(), batch.labels, -1);
      accuracy.correct += a.correct;
      accuracy.counted += a.counted;
      if (want_bleu) {
        auto& seq2seq = static_cast<EncoderDecoder&>(model);
        const auto outputs = translate_batch(seq2seq, batch, decode);
        for (std::int64_t row = 0; row < batch.size(); ++row) {
          hypotheses.push_back(options.tokenizer->decode(outputs[row]));
          references.push_back(options.tokenizer->decode(reference_ids(batch, row, c.eos_id)));
        }
      }
    }
    ++batches;
  }
  BleuStats bleu = want_bleu ? corpus_bleu_stats(hypotheses, references) : BleuStats{};
  if (options.dp && options.dp->size() > 1) {
    // Sums in double are exact for these integer counts; the loss sum is rounded once.
    std::vector<double> sums = {loss_sum,
                                static_cast<double>(result.targets),
                                static_cast<double>(result.records),
                                static_cast<double>(accuracy.correct),
                                static_cast<double>(accuracy.counted),
                                static_cast<double>(bleu.sys_len),
                                static_cast<double>(bleu.ref_len)};
    for (std::size_t n = 0; n < bleu.correct.size(); ++n) {
      sums.push_back(static_cast<double>(bleu.correct[n]));
      sums.push_back(static_cast<double>(bleu.total[n]));
    }
    options.dp->all_reduce(sums.data(), static_cast<std::int64_t>(sums.size()), DType::f64,
                           ReduceOp::sum);
    loss_sum = sums[0];
    result.targets = static_cast<std::int64_t>(sums[1]);
    result.records = static_cast<std::int64_t>(sums[2]);
    accuracy.correct = static_cast<std::int64_t>(sums[3]);
    accuracy.counted = static_cast<std::int64_t>(sums[4]);
    bleu.sys_len = static_cast<std::int64_t>(sums[5]);
    bleu.ref_len = static_cast<std::int64_t>(sums[6]);
    for (std::size_t n = 0; n < bleu.correct.size(); ++n) {
      bleu.correct[n] = static_cast<std::int64_t>(sums[7 + 2 * n]);
      bleu.total[n] = static_cast<std::int64_t>(sums[8 + 2 * n]);
    }
  }
  result.loss = result.targets > 0 ? loss_sum / static_cast<double>(result.targets) : 0;
  result.accuracy = accuracy.rate();
  if (want_bleu) result.bleu = bleu_from_stats(bleu).score;
  if (options.hypotheses) *options.hypotheses = std::move(hypotheses);
  return result;
}

}  // namespace tr
