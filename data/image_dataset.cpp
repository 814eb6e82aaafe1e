#include "data/image_dataset.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "data/dataset_schema.h"

namespace tr {

DatasetInfo ImageDataset::read_info(const h5::File& file) {
  const std::string& path = file.path();
  DatasetInfo info;
  info.path = path;
  info.kind = "images";
  const Shape images = schema::require_shape(file, "images", 4, "[N,H,W,C]");
  schema::require_uint8(file, "images");
  const Shape labels = schema::require_shape(file, "labels", 1, "[N]");
  schema::require_integer(file, "labels");
  info.records = images[0];
  info.height = images[1];
  info.width = images[2];
  info.channels = images[3];
  if (labels[0] != info.records)
    throw UserError(path + ": dataset 'labels' has " + std::to_string(labels[0]) +
                    " records, dataset 'images' has " + std::to_string(info.records));
  if (info.height < 1 || info.width < 1 || info.channels < 1)
    throw UserError(path + ": dataset 'images' has shape " + shape_string(images) +
                    ", expected images of at least 1x1 pixel and 1 channel");

  info.num_classes = schema::int_attr(file, "num_classes");
  if (info.num_classes < 1)
    throw UserError(path + ": root attribute 'num_classes' is " + std::to_string(info.num_classes) +
                    ", expected at least 1");
  info.mean = file.read_attr<float>("/", "mean");
  info.std = file.read_attr<float>("/", "std");
  const auto require_per_channel = [&](const std::vector<float>& values, const char* name) {
    if (static_cast<std::int64_t>(values.size()) != info.channels)
      throw UserError(path + ": root attribute '" + name + "' has " +
                      std::to_string(values.size()) + " values, expected one per channel (" +
                      std::to_string(info.channels) + ", the C of 'images' [N,H,W,C])");
  };
  require_per_channel(info.mean, "mean");
  require_per_channel(info.std, "std");
  for (std::size_t c = 0; c < info.std.size(); ++c) {
    if (!(info.std[c] > 0.0f) || !std::isfinite(info.std[c]) || !std::isfinite(info.mean[c]))
      throw UserError(path + ": root attributes 'mean'/'std' of channel " + std::to_string(c) +
                      " are " + std::to_string(info.mean[c]) + "/" + std::to_string(info.std[c]) +
                      ", expected finite values and std > 0");
  }
  if (file.has_attr("/", "class_names")) {
    info.class_names = file.read_attr_strings("/", "class_names");
    if (static_cast<std::int64_t>(info.class_names.size()) != info.num_classes)
      throw UserError(path + ": root attribute 'class_names' has " +
                      std::to_string(info.class_names.size()) + " names, expected num_classes " +
                      std::to_string(info.num_classes));
  }
  return info;
}

namespace {

// The 256 values a byte can take, per channel: exactly (x / 255 - mean) / std computed in T,
// as torchvision's ToTensor and Normalize compute them.
template <typename T>
std::vector<T> pixel_table(const DatasetInfo& info) {
  std::vector<T> table(static_cast<std::size_t>(256 * info.channels));
  for (std::int64_t c = 0; c < info.channels; ++c) {
    for (int x = 0; x < 256; ++x) {
      table[static_cast<std::size_t>(c * 256 + x)] =
          (static_cast<T>(x) / static_cast<T>(255) - static_cast<T>(info.mean[c])) /
          static_cast<T>(info.std[c]);
    }
  }
  return table;
}

// out (C, H, W) from pixels (H, W, C).
template <typename T>
void normalise(const std::vector<T>& table, std::int64_t C, std::int64_t HW,
               const std::uint8_t* pixels, T* out) {
  for (std::int64_t c = 0; c < C; ++c) {
    const T* lut = table.data() + c * 256;
    for (std::int64_t p = 0; p < HW; ++p) out[c * HW + p] = lut[pixels[p * C + c]];
  }
}

}  // namespace

std::vector<std::int32_t> ImageDataset::read_labels(const h5::File& file, const DatasetInfo& info) {
  const std::vector<std::int64_t> labels = file.read<std::int64_t>("labels");
  std::vector<std::int32_t> out(labels.size());
  for (std::size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] < 0 || labels[i] >= info.num_classes)
      schema::record_error(file.path(), static_cast<std::int64_t>(i),
                           "label " + std::to_string(labels[i]) + " is outside [0, num_classes " +
                               std::to_string(info.num_classes) + ")");
    out[i] = static_cast<std::int32_t>(labels[i]);
  }
  return out;
}

ImageDataset::ImageDataset(const std::string& path) : ImageDataset(h5::File::open(path)) {}

// Members initialise in declaration order: the schema is checked before the pixel reader opens.
ImageDataset::ImageDataset(const h5::File& file)
    : info_(read_info(file)),
      labels_(read_labels(file, info_)),
      images_(file.path(), "images"),
      table_f32_(pixel_table<float>(info_)),
      table_f64_(pixel_table<double>(info_)) {}

void ImageDataset::read_batch(const std::vector<std::int64_t>& records, DType dtype, Batch& batch,
                              const ImageAugment& augment, std::uint64_t epoch) const {
  TR_CHECK(dtype == DType::f32 || dtype == DType::f64, "image batches are f32 or f64");
  const auto B = static_cast<std::int64_t>(records.size());
  const std::int64_t C = info_.channels, H = info_.height, W = info_.width, pixels = C * H * W;

  // Read in file order (runs of adjacent records become one read), then place each record
  // at its position in the batch.
  std::vector<std::int64_t> by_file(records.size());
  std::iota(by_file.begin(), by_file.end(), std::int64_t{0});
  std::sort(by_file.begin(), by_file.end(),
            [&](std::int64_t a, std::int64_t b) { return records[a] < records[b]; });
  std::vector<RowRun> runs;
  for (std::int64_t i : by_file) {
    const std::int64_t record = records[static_cast<std::size_t>(i)];
    TR_CHECK(record >= 0 && record < info_.records, "image record out of range");
    TR_CHECK(runs.empty() || record >= runs.back().start + runs.back().count,
             "duplicate record in an image batch");
    append_run(runs, record, 1);
  }
  std::vector<std::uint8_t> raw(static_cast<std::size_t>(B * pixels));
  images_.read(runs, H5T_NATIVE_UINT8, raw.data());

  ensure_shape(batch.images, {B, C, H, W}, dtype);
  ensure_shape(batch.labels, {B}, DType::i32);
  std::int32_t* out_labels = batch.labels.data<std::int32_t>();
  std::vector<std::uint8_t> augmented(augment.active() ? static_cast<std::size_t>(pixels) : 0);
  for (std::int64_t k = 0; k < B; ++k) {
    const std::int64_t b = by_file[static_cast<std::size_t>(k)];
    const std::int64_t record = records[static_cast<std::size_t>(b)];
    out_labels[b] = labels_[static_cast<std::size_t>(record)];
    const std::uint8_t* source = raw.data() + k * pixels;
    if (augment.active()) {
      augment_image(augment, epoch, record, H, W, C, source, augmented.data());
      source = augmented.data();
    }
    if (dtype == DType::f64) {
      normalise(table_f64_, C, H * W, source, batch.images.data<double>() + b * pixels);
    } else {
      normalise(table_f32_, C, H * W, source, batch.images.data<float>() + b * pixels);
    }
  }
}

}  // namespace tr
