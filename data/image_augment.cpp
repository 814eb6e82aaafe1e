#include "data/image_augment.h"

#include <cstring>

#include "layers/cpu/philox.h"

namespace tr {

namespace {
// Philox stream of the augmentation draws (the counter's high words), apart from the streams
// of dropout and initialisation, which key on (step, layer) and parameter names.
constexpr std::uint32_t kAugmentStream = 0xA0675EEDu;
}  // namespace

void augment_image(const ImageAugment& augment, std::uint64_t epoch, std::int64_t record,
                   std::int64_t H, std::int64_t W, std::int64_t C, const std::uint8_t* in,
                   std::uint8_t* out) {
  const auto r = static_cast<std::uint64_t>(record);
  const cpu::Philox4 draw = cpu::philox4x32_10(
      static_cast<std::uint32_t>(r), static_cast<std::uint32_t>(r >> 32),
      static_cast<std::uint32_t>(epoch), kAugmentStream, static_cast<std::uint32_t>(augment.seed),
      static_cast<std::uint32_t>(augment.seed >> 32));
  const bool flip = augment.flip && (draw.v[0] & 1u) != 0;
  const std::int64_t span = 2 * augment.shift + 1;
  const std::int64_t dx =
      augment.shift > 0 ? static_cast<std::int64_t>(draw.v[1] % span) - augment.shift : 0;
  const std::int64_t dy =
      augment.shift > 0 ? static_cast<std::int64_t>(draw.v[2] % span) - augment.shift : 0;
  // out(y, x) = in(y - dy, x' - dx) with x' the (possibly mirrored) column; zero outside.
  std::memset(out, 0, static_cast<std::size_t>(H * W * C));
  for (std::int64_t y = 0; y < H; ++y) {
    const std::int64_t sy = y - dy;
    if (sy < 0 || sy >= H) continue;
    for (std::int64_t x = 0; x < W; ++x) {
      const std::int64_t mx = flip ? W - 1 - x : x;
      const std::int64_t sx = mx - dx;
      if (sx < 0 || sx >= W) continue;
      std::memcpy(out + (y * W + x) * C, in + (sy * W + sx) * C, static_cast<std::size_t>(C));
    }
  }
}

}  // namespace tr
