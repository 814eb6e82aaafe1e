// Training-time image augmentation: random horizontal flips and random shifts, as torchvision's
// RandomHorizontalFlip and RandomCrop(size, padding) give them (zero padding).
//
// A record's transformation is a pure function of (run seed, epoch, record index), drawn from
// Philox: it does not depend on batch composition, DP layout, prefetching or resuming, so
// resumed and re-laid-out runs see exactly the same images.
#pragma once

#include <cstdint>

namespace tr {

struct ImageAugment {
  bool flip = false;       // mirror left-right with probability 1/2
  std::int64_t shift = 0;  // move by dx, dy uniform in [-shift, shift], zeros filling in
  std::uint64_t seed = 0;  // run.seed
  bool active() const { return flip || shift > 0; }
};

// out (H, W, C) = the augmented in (H, W, C) for `record` in `epoch`; in and out distinct.
void augment_image(const ImageAugment& augment, std::uint64_t epoch, std::int64_t record,
                   std::int64_t H, std::int64_t W, std::int64_t C, const std::uint8_t* in,
                   std::uint8_t* out);

}  // namespace tr
