#include "trainer/synthetic_data.h"

#include <algorithm>
#include <vector>

#include "layers/cpu/philox.h"

namespace tr {

namespace {
constexpr std::uint64_t kImageStream = 0x1111, kCopyStream = 0x2222;
}

void synthetic_image_batch(Batch& batch, const ModelConfig& c, std::int64_t B, std::uint64_t seed,
                           std::int64_t index, DType dtype) {
  const std::int64_t S = c.image_size, C = c.channels, pixels = C * S * S;
  ensure_shape(batch.images, {B, C, S, S}, dtype);
  ensure_shape(batch.labels, {B}, DType::i32);
  std::vector<double> noise(static_cast<std::size_t>(pixels + 1));
  for (std::int64_t b = 0; b < B; ++b) {
    const auto sample = static_cast<std::uint64_t>(index + b);
    cpu::philox_uniform(noise.data(), pixels + 1, seed, kImageStream, sample * (pixels + 1));
    const auto label = static_cast<std::int32_t>(noise[pixels] * c.num_classes);
    batch.labels.data<std::int32_t>()[b] = label;
    const std::int64_t band_lo = label * S / c.num_classes,
                       band_hi = std::max(band_lo + 1, (label + 1) * S / c.num_classes);
    for (std::int64_t i = 0; i < pixels; ++i) {
      const std::int64_t row = (i / S) % S;
      const double value = (row >= band_lo && row < band_hi ? 1.0 : -0.5) + noise[i] - 0.5;
      if (dtype == DType::f64)
        batch.images.data<double>()[b * pixels + i] = value;
      else
        batch.images.data<float>()[b * pixels + i] = static_cast<float>(value);
    }
  }
}

void synthetic_copy_batch(Batch& batch, const ModelConfig& c, std::int64_t B,
                          std::int64_t max_tokens, std::uint64_t seed, std::int64_t index) {
  // Token ids start after the special ids; lengths vary in [2, max_tokens].
  const std::int32_t first = std::max({c.pad_id, c.bos_id, c.eos_id}) + 1;
  const std::int64_t L = max_tokens + 1;  // + eos / bos
  for (Tensor* t : {&batch.src, &batch.tgt_in, &batch.tgt_out})
    ensure_shape(*t, {B, L}, DType::i32);
  for (Tensor* t : {&batch.src_len, &batch.tgt_len}) ensure_shape(*t, {B}, DType::i32);
  std::vector<double> u(static_cast<std::size_t>(max_tokens + 1));
  for (std::int64_t b = 0; b < B; ++b) {
    cpu::philox_uniform(u.data(), max_tokens + 1, seed, kCopyStream,
                        static_cast<std::uint64_t>(index + b) * (max_tokens + 1));
    const auto n = static_cast<std::int32_t>(2 + u[max_tokens] * (max_tokens - 1));
    std::int32_t* src = batch.src.data<std::int32_t>() + b * L;
    std::int32_t* tin = batch.tgt_in.data<std::int32_t>() + b * L;
    std::int32_t* tout = batch.tgt_out.data<std::int32_t>() + b * L;
    std::fill(src, src + L, c.pad_id);
    std::fill(tin, tin + L, c.pad_id);
    std::fill(tout, tout + L, c.pad_id);
    tin[0] = c.bos_id;
    for (std::int32_t i = 0; i < n; ++i) {
      const auto token = static_cast<std::int32_t>(first + u[i] * (c.vocab_size - first));
      src[i] = token;
      tout[i] = token;
      tin[i + 1] = token;
    }
    src[n] = c.eos_id;
    tout[n] = c.eos_id;
    batch.src_len.data<std::int32_t>()[b] = n + 1;
    batch.tgt_len.data<std::int32_t>()[b] = n + 1;
  }
}

}  // namespace tr
