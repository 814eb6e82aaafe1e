#include "models/encoder_decoder.h"

#include <cmath>

#include "layers/device.h"
#include "layers/ops.h"

namespace tr {

namespace {
PositionalEncoding make_positions(const std::string& name, const ModelConfig& c, DType dtype) {
  return PositionalEncoding(name, parse_positional(c.positional), c.max_len, c.d_model, dtype);
}

// The vocabulary columns of this rank's logits (layers/cross_entropy.h).
VocabShard vocab_shard(const ModelConfig& c, TensorParallel* tp) {
  if (!tp) return {};
  const DimSplit s = split_dim(c.vocab_size, tp->rank(), tp->size());
  return {tp, c.vocab_size, s.offset, s.extent};
}
}  // namespace

EncoderDecoder::EncoderDecoder(const ModelConfig& c, DType dtype, double label_smoothing,
                               TensorParallel* tp)
    : Model(c),
      shared_(c.share_embeddings),
      pre_(c.norm == "pre"),
      tp_(active_tp(tp)),
      src_pos_(make_positions("src_pos", c, dtype)),
      tgt_pos_(make_positions("tgt_pos", c, dtype)),
      src_drop_(c.dropout, dropout_ids_.take()),
      tgt_drop_(c.dropout, dropout_ids_.take()),
      loss_(label_smoothing, c.pad_id, vocab_shard(c, tp_)) {
  if (shared_) {
    src_embed_ = std::make_unique<Embedding>("embed", c.vocab_size, c.d_model, dtype, tp_);
  } else {
    src_embed_ = std::make_unique<Embedding>("src_embed", c.vocab_size, c.d_model, dtype, tp_);
    tgt_embed_ = std::make_unique<Embedding>("tgt_embed", c.vocab_size, c.d_model, dtype, tp_);
    if (tp_)
      init_sharded_parameter(output_, "output.weight", {c.vocab_size, c.d_model}, 0, tp_->rank(),
                             tp_->size(), dtype, /*decay=*/true);
    else
      init_parameter(output_, "output.weight", {c.vocab_size, c.d_model}, dtype, /*decay=*/true);
    output_.init = {InitRule::Kind::normal, 1.0 / std::sqrt(static_cast<double>(c.d_model))};
  }
  for (std::int64_t i = 0; i < c.encoder_layers; ++i)
    encoder_.push_back(std::make_unique<EncoderLayer>("encoder.layers." + std::to_string(i), c,
                                                      dropout_ids_, dtype, tp_));
  for (std::int64_t i = 0; i < c.decoder_layers; ++i)
    decoder_.push_back(std::make_unique<DecoderLayer>("decoder.layers." + std::to_string(i), c,
                                                      dropout_ids_, dtype, tp_));
  if (pre_) {
    encoder_norm_ = std::make_unique<LayerNorm>("encoder.norm", c.d_model, dtype);
    decoder_norm_ = std::make_unique<LayerNorm>("decoder.norm", c.d_model, dtype);
  }

  src_embed_->collect_parameters(parameters_);
  if (!shared_) {
    tgt_embed_->collect_parameters(parameters_);
    parameters_.push_back(&output_);
  }
  src_pos_.collect_parameters(parameters_);
  tgt_pos_.collect_parameters(parameters_);
  for (auto& layer : encoder_) layer->collect_parameters(parameters_);
  if (pre_) encoder_norm_->collect_parameters(parameters_);
  for (auto& layer : decoder_) layer->collect_parameters(parameters_);
  if (pre_) decoder_norm_->collect_parameters(parameters_);
}

void EncoderDecoder::to_device(Device device) {
  Model::to_device(device);
  for (PositionalEncoding* pos : {&src_pos_, &tgt_pos_})
    pos->weight.value = tr::to_device(pos->weight.value, device);
}

Tensor EncoderDecoder::encode(const Tensor& src, const Tensor& src_len, const ForwardContext& ctx) {
  src_ids_ = src;
  src_embedding().forward(src_x_, src);
  src_pos_.forward_inplace(src_x_);
  Tensor x = src_drop_.forward(src_x_, ctx);
  for (auto& layer : encoder_) x = layer->forward(x, src_len, ctx);
  memory_ = pre_ ? encoder_norm_->forward(x) : x;
  return memory_;
}

void EncoderDecoder::decoder_states(const Tensor& tgt_in, const Tensor& tgt_len,
                                    const Tensor& memory, const Tensor& src_len,
                                    const ForwardContext& ctx) {
  tgt_ids_ = tgt_in;
  tgt_embedding().forward(tgt_x_, tgt_in);
  tgt_pos_.forward_inplace(tgt_x_);
  Tensor y = tgt_drop_.forward(tgt_x_, ctx);
  for (auto& layer : decoder_) y = layer->forward(y, tgt_len, memory, src_len, ctx);
  dec_out_ = pre_ ? decoder_norm_->forward(y) : y;
}

void EncoderDecoder::output_logits(Tensor& logits, const Tensor& h) const {
  const Tensor& weight = shared_ ? src_embed_->weight.value : output_.value;
  if (!tp_) {
    ops::linear_forward(logits, h, weight, Tensor());
    return;
  }
  ops::linear_forward(local_logits_, h, weight, Tensor());
  gather_vocab_columns(logits, gather_scratch_, local_logits_, *tp_, config_.vocab_size);
}

void EncoderDecoder::project_and_gather(const Tensor& h) {
  // Output projection tied to (or separate from) the embedding table, no bias.
  ops::linear_forward(logits_, h, output_weight().value, Tensor());
  gathered_ = tp_ != nullptr;
  if (tp_) gather_vocab_columns(full_logits_, gather_scratch_, logits_, *tp_, config_.vocab_size);
}

Tensor EncoderDecoder::decode(const Tensor& tgt_in, const Tensor& tgt_len, const Tensor& memory,
                              const Tensor& src_len, const ForwardContext& ctx) {
  decoder_states(tgt_in, tgt_len, memory, src_len, ctx);
  project_and_gather(dec_out_);
  return tp_ ? full_logits_ : logits_;
}

double EncoderDecoder::train_flops(const Batch& batch) const {
  const double B = static_cast<double>(batch.src.dim(0)), S = static_cast<double>(batch.src.dim(1)),
               T = static_cast<double>(batch.tgt_in.dim(1)),
               d = static_cast<double>(config_.d_model), ff = static_cast<double>(config_.d_ff);
  const double enc = 2 * B * S * (4 * d * d + 2 * d * ff) + 4 * B * S * S * d;
  const double dec = 2 * B * T * (4 * d * d + 2 * d * ff) + 4 * B * T * T * d  // self, FFN
                     + 2 * B * T * 2 * d * d + 2 * B * S * 2 * d * d           // cross q,o; k,v
                     + 4 * B * T * S * d;                                      // cross scores
  const double output =
      2 * static_cast<double>(counted_targets()) * d * static_cast<double>(config_.vocab_size);
  return 3 * (static_cast<double>(config_.encoder_layers) * enc +
              static_cast<double>(config_.decoder_layers) * dec + output);
}

double EncoderDecoder::forward(const Batch& batch, const ForwardContext& ctx) {
  src_len_ = batch.src_len;
  Tensor memory = encode(batch.src, batch.src_len, ctx);
  counted_rows_only_ = false;
  gathered_ = false;
  if (ctx.training) {
    // Training needs logits only where the loss counts them: the output projection (the
    // largest GEMM, d x vocabulary) and the cross entropy skip the pad targets. Their rows of
    // the full computation contribute exact zeros to every gradient, so nothing else changes.
    decoder_states(batch.tgt_in, batch.tgt_len, memory, batch.src_len, ctx);
    const std::int64_t n = batch.tgt_out.numel();
    // The counted rows are chosen on the host (a device batch's host copy of its targets, or
    // else the targets copied back: a few kilobytes) and their indices sent to the device.
    const Tensor host_targets = batch.tgt_out_host.defined()
                                    ? batch.tgt_out_host
                                    : tr::to_device(batch.tgt_out, Device::cpu);
    const std::int32_t* t = host_targets.data<std::int32_t>();
    std::int64_t counted = 0;
    for (std::int64_t i = 0; i < n; ++i) counted += t[i] != config_.pad_id;
    if (counted > 0 && counted < n) {
      ensure_shape(rows_, {counted}, DType::i32);
      ensure_shape(tgt_sel_, {counted}, DType::i32);
      std::int32_t* rows = rows_.data<std::int32_t>();
      std::int32_t* sel = tgt_sel_.data<std::int32_t>();
      for (std::int64_t i = 0, k = 0; i < n; ++i)
        if (t[i] != config_.pad_id) {
          rows[k] = static_cast<std::int32_t>(i);
          sel[k++] = t[i];
        }
      const Device device = dec_out_.device();
      if (device != Device::cpu) {
        ensure_shape(rows_device_, {counted}, DType::i32, device);
        ensure_shape(tgt_sel_device_, {counted}, DType::i32, device);
        rows_device_.copy_from(rows_);
        tgt_sel_device_.copy_from(tgt_sel_);
      }
      ops::embedding_forward(dec_sel_, selected_rows(), dec_out_.view({n, dec_out_.dim(-1)}), 1.0);
      ops::linear_forward(logits_, dec_sel_, output_weight().value, Tensor());
      counted_rows_only_ = true;
      return loss_.forward(logits_, device == Device::cpu ? tgt_sel_ : tgt_sel_device_, tgt_sel_);
    }
    ops::linear_forward(logits_, dec_out_, output_weight().value, Tensor());
    return loss_.forward(logits_, batch.tgt_out, batch.tgt_out_host);
  }
  decode(batch.tgt_in, batch.tgt_len, memory, batch.src_len, ctx);
  return loss_.forward(logits_, batch.tgt_out,
                       batch.tgt_out_host);  // this rank's columns under tensor parallelism
}

void EncoderDecoder::backward(double scale) {
  Tensor dlogits = loss_.backward(scale, /*overwrite_logits=*/true);
  if (counted_rows_only_) {
    // d(decoder output) is zero on pad rows; the counted rows' gradients go back in place.
    ops::linear_backward(&dsel_, output_weight().grad, nullptr, dlogits, dec_sel_,
                         output_weight().value);
    tp_all_reduce(tp_, dsel_);  // f: each rank's vocabulary columns give a part
    ensure_shape(ddec_, dec_out_.shape(), dec_out_.dtype(), dec_out_.device());
    ddec_.zero_();
    Tensor ddec_rows = ddec_.view({dec_out_.numel() / dec_out_.dim(-1), dec_out_.dim(-1)});
    ops::embedding_backward_accumulate(ddec_rows, selected_rows(), dsel_, 1.0);
  } else {
    ops::linear_backward(&ddec_, output_weight().grad, nullptr, dlogits, dec_out_,
                         output_weight().value);
    tp_all_reduce(tp_, ddec_);
  }
  if (!shared_) report_ready(&output_);
  Tensor dy = ddec_;
  if (pre_) {
    dy = decoder_norm_->backward(ddec_);
    report_ready(*decoder_norm_);
  }
  ensure_shape(dmemory_, memory_.shape(), memory_.dtype(), memory_.device());
  dmemory_.zero_();
  for (auto it = decoder_.rbegin(); it != decoder_.rend(); ++it) {
    dy = (*it)->backward(dy, dmemory_);
    report_ready(**it);
  }
  tp_all_reduce(tp_, dmemory_);  // the cross-attention key/value paths of every layer at once
  dy = tgt_drop_.backward(dy);
  tgt_pos_.backward_accumulate(dy);
  tgt_embedding().backward_accumulate(tgt_ids_, dy);
  report_ready(tgt_pos_);
  if (!shared_) report_ready(*tgt_embed_);

  Tensor dx = dmemory_;
  if (pre_) {
    dx = encoder_norm_->backward(dmemory_);
    report_ready(*encoder_norm_);
  }
  for (auto it = encoder_.rbegin(); it != encoder_.rend(); ++it) {
    dx = (*it)->backward(dx);
    report_ready(**it);
  }
  dx = src_drop_.backward(dx);
  src_pos_.backward_accumulate(dx);
  src_embedding().backward_accumulate(src_ids_, dx);
  report_remaining_ready();  // source (and shared) embedding and positions
}

}  // namespace tr
