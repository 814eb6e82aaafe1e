// `trainer prepare images`: converts an IDX image/label pair (MNIST, Fashion-MNIST) into the
// image dataset of DESIGN section 5:
//   /images uint8 [N, H, W, C] (C = 1 for IDX; chunked by rows), /labels int64 [N],
//   root attributes num_classes (int64), mean float[C], std float[C], optional class_names.
// mean and std are those of x / 255 over every pixel of the data (population std), as the
// model normalises pixels with (x / 255 - mean) / std.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tr {

struct PrepareImagesOptions {
  std::string images;  // IDX images, uint8 [N, H, W] (magic 0x00000803), gzipped or plain
  std::string labels;  // IDX labels, uint8 [N] (magic 0x00000801), gzipped or plain
  std::string out;     // HDF5 file to write (parent directories are created)
  // A prepared image file whose mean/std are stored instead of this data's own: a test or
  // validation set must be normalised exactly as the training set the model learned from.
  // Its num_classes and class_names are taken over too unless given here; its image shape
  // [H, W, C] must match.
  std::string stats_from;
  // 0: stats_from's num_classes when given, else the largest label + 1. Every label must be
  // below it.
  std::int64_t num_classes = 0;
  // Stored as the class_names attribute when not empty; one name per class.
  std::vector<std::string> class_names;
  std::int64_t chunk_rows = 1024;  // HDF5 chunk of /images, in images
};

// What was written, for the command's report.
struct PreparedImages {
  std::int64_t records = 0;
  std::int64_t height = 0, width = 0, channels = 0;
  std::int64_t num_classes = 0;
  std::vector<float> mean, std;
  bool stats_reused = false;  // mean/std came from stats_from
};

// Writes options.out through a temporary file renamed into place at the end: on any error
// (UserError naming the input file: bad magic, truncated data, image and label counts that
// differ, a label out of range) nothing is left at the output path.
PreparedImages prepare_images(const PrepareImagesOptions& options);

// The ten Fashion-MNIST classes in label order: "T-shirt/top", "Trouser", ..., "Ankle boot".
const std::vector<std::string>& fashion_mnist_class_names();

// Parses a --class-names value: "fashion-mnist" gives fashion_mnist_class_names(); anything
// else is a comma-separated list of names ("cat,dog,bird").
std::vector<std::string> parse_class_names(const std::string& spec);

}  // namespace tr
