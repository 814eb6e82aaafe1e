// Image classification dataset (DESIGN section 5): /images uint8 [N,H,W,C], /labels int64 [N],
// root attributes num_classes, mean float[C], std float[C], optional class_names.
// Labels (one per record) stay in memory, checked at open; pixels are read per batch.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/dataset_info.h"
#include "data/h5.h"
#include "data/image_augment.h"
#include "data/row_gather.h"
#include "models/model.h"

namespace tr {

class ImageDataset {
 public:
  // Validates the schema of an image dataset file and returns what it declares.
  static DatasetInfo read_info(const h5::File& file);
  // All labels (N values: an index-sized array, unlike the pixels), each checked against
  // [0, num_classes): a bad one is a UserError naming its record, before any training.
  static std::vector<std::int32_t> read_labels(const h5::File& file, const DatasetInfo& info);

  explicit ImageDataset(const std::string& path);
  const DatasetInfo& info() const { return info_; }

  // Fills batch.images [B, C, H, W] (dtype f32 or f64) with the pixels of `records` (distinct
  // indices, in batch order) as (x / 255 - mean) / std per channel, and batch.labels i32 [B].
  // With an active `augment`, each image is first transformed as drawn for (epoch, record).
  void read_batch(const std::vector<std::int64_t>& records, DType dtype, Batch& batch,
                  const ImageAugment& augment = {}, std::uint64_t epoch = 0) const;

 private:
  explicit ImageDataset(const h5::File& file);

  DatasetInfo info_;
  std::vector<std::int32_t> labels_;
  RowGather images_;
  std::vector<float> table_f32_;  // normalised value of each byte, per channel
  std::vector<double> table_f64_;
};

}  // namespace tr
