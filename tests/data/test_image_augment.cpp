// Training-time image augmentation (data/image_augment.h): each record's flip and shift are
// drawn from (seed, epoch, record) alone, and the output is exactly the shifted (mirrored)
// input with zeros filling in.
#include <gtest/gtest.h>

#include <vector>

#include "data/image_augment.h"

namespace tr {
namespace {

constexpr std::int64_t H = 5, W = 6, C = 2;

std::vector<std::uint8_t> test_image() {
  std::vector<std::uint8_t> in(H * W * C);
  for (std::size_t i = 0; i < in.size(); ++i) in[i] = static_cast<std::uint8_t>(1 + i);
  return in;
}

// The reference: in moved by (dx, dy), mirrored first when flip.
std::vector<std::uint8_t> moved(const std::vector<std::uint8_t>& in, bool flip, std::int64_t dx,
                                std::int64_t dy) {
  std::vector<std::uint8_t> out(in.size(), 0);
  for (std::int64_t y = 0; y < H; ++y)
    for (std::int64_t x = 0; x < W; ++x)
      for (std::int64_t c = 0; c < C; ++c) {
        const std::int64_t sy = y - dy, sx = (flip ? W - 1 - x : x) - dx;
        if (sy >= 0 && sy < H && sx >= 0 && sx < W)
          out[(y * W + x) * C + c] = in[(sy * W + sx) * C + c];
      }
  return out;
}

std::vector<std::uint8_t> augmented(const ImageAugment& a, std::uint64_t epoch,
                                    std::int64_t record) {
  const auto in = test_image();
  std::vector<std::uint8_t> out(in.size(), 77);
  augment_image(a, epoch, record, H, W, C, in.data(), out.data());
  return out;
}

TEST(ImageAugment, FlipsAboutHalfOfTheRecords) {
  const ImageAugment a{true, 0, 7};
  const auto in = test_image(), mirror = moved(in, true, 0, 0);
  int flipped = 0;
  for (std::int64_t r = 0; r < 400; ++r) {
    const auto out = augmented(a, 0, r);
    ASSERT_TRUE(out == in || out == mirror) << "record " << r;
    flipped += out == mirror;
  }
  EXPECT_GT(flipped, 150);
  EXPECT_LT(flipped, 250);
}

TEST(ImageAugment, ShiftsWithinRangeAndCoversIt) {
  const std::int64_t s = 2;
  const ImageAugment a{true, s, 3};
  const auto in = test_image();
  std::vector<int> seen((2 * s + 1) * (2 * s + 1) * 2, 0);
  for (std::int64_t r = 0; r < 600; ++r) {
    const auto out = augmented(a, 1, r);
    int matches = 0;
    for (int flip = 0; flip < 2; ++flip)
      for (std::int64_t dy = -s; dy <= s; ++dy)
        for (std::int64_t dx = -s; dx <= s; ++dx)
          if (out == moved(in, flip == 1, dx, dy)) {
            ++matches;
            ++seen[((dy + s) * (2 * s + 1) + (dx + s)) * 2 + flip];
          }
    ASSERT_GE(matches, 1) << "record " << r << " is no flip/shift of the input";
  }
  for (std::size_t i = 0; i < seen.size(); ++i) EXPECT_GT(seen[i], 0) << "combination " << i;
}

TEST(ImageAugment, DependsOnSeedEpochAndRecordOnly) {
  const ImageAugment a{true, 2, 11}, other_seed{true, 2, 12};
  int epoch_differs = 0, seed_differs = 0;
  for (std::int64_t r = 0; r < 50; ++r) {
    EXPECT_EQ(augmented(a, 4, r), augmented(a, 4, r));
    epoch_differs += augmented(a, 4, r) != augmented(a, 5, r);
    seed_differs += augmented(a, 4, r) != augmented(other_seed, 4, r);
  }
  EXPECT_GT(epoch_differs, 25);
  EXPECT_GT(seed_differs, 25);
}

TEST(ImageAugment, InactiveByDefault) {
  EXPECT_FALSE(ImageAugment{}.active());
}

}  // namespace
}  // namespace tr
