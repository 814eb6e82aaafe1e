// What a dataset file declares about itself (DESIGN section 5), read without loading records.
// The trainer checks the model config against it (vocabulary, image shape, classes).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tr {

struct DatasetInfo {
  std::string path;
  std::string kind;  // "images" | "translation"
  std::int64_t records = 0;
  // images
  std::int64_t height = 0, width = 0, channels = 0, num_classes = 0;
  std::vector<float> mean, std;  // per channel, for (x / 255 - mean) / std
  std::vector<std::string> class_names;
  // translation
  std::int64_t vocab_size = 0;
  std::int32_t pad_id = 0, bos_id = 1, eos_id = 2, unk_id = 3;
  bool has_tokenizer = false;
};

// Opens `path`, validates its schema (datasets, dtypes, shapes, attributes) and returns what it
// declares. Any deviation is a UserError naming the file and the dataset or attribute.
DatasetInfo read_dataset_info(const std::string& path);

}  // namespace tr
