#include "data/prepare_images.h"

#include <algorithm>
#include <cmath>

#include "data/h5.h"
#include "data/idx_reader.h"
#include "data/temp_output.h"
#include "layers/error.h"
#include "layers/tensor.h"

namespace tr {

namespace {

// Statistics of a prepared file, taken over by a test set.
struct ReferenceStats {
  std::vector<float> mean, std;
  std::int64_t num_classes = 0;
  std::vector<std::string> class_names;
};

ReferenceStats read_reference(const std::string& path, std::int64_t height, std::int64_t width,
                              std::int64_t channels) {
  h5::File file = h5::File::open(path);
  if (!file.is_dataset("images"))
    throw UserError(path + ": not a prepared image dataset (dataset 'images' is missing)");
  const Shape shape = file.shape("images");
  const Shape expected = {height, width, channels};
  if (shape.size() != 4 || !std::equal(expected.begin(), expected.end(), shape.begin() + 1))
    throw UserError(path + ": images have shape " + shape_string(shape) + ", expected [N, " +
                    std::to_string(height) + ", " + std::to_string(width) + ", " +
                    std::to_string(channels) + "] to reuse its statistics");
  ReferenceStats stats;
  stats.mean = file.read_attr<float>("/", "mean");
  stats.std = file.read_attr<float>("/", "std");
  for (const auto* values : {&stats.mean, &stats.std})
    if (static_cast<std::int64_t>(values->size()) != channels)
      throw UserError(path + ": root attributes 'mean' and 'std' must hold " +
                      std::to_string(channels) + " values (one per channel)");
  stats.num_classes = file.read_attr_scalar<std::int64_t>("/", "num_classes");
  if (file.has_attr("/", "class_names"))
    stats.class_names = file.read_attr_strings("/", "class_names");
  return stats;
}

}  // namespace

const std::vector<std::string>& fashion_mnist_class_names() {
  static const std::vector<std::string> names = {"T-shirt/top", "Trouser",   "Pullover", "Dress",
                                                 "Coat",        "Sandal",    "Shirt",    "Sneaker",
                                                 "Bag",         "Ankle boot"};
  return names;
}

std::vector<std::string> parse_class_names(const std::string& spec) {
  if (spec == "fashion-mnist") return fashion_mnist_class_names();
  std::vector<std::string> names;
  std::string name;
  for (char c : spec) {
    if (c == ',') {
      names.push_back(name);
      name.clear();
    } else {
      name += c;
    }
  }
  names.push_back(name);
  for (const std::string& n : names)
    if (n.empty()) throw UserError("--class-names '" + spec + "': empty class name");
  return names;
}

PreparedImages prepare_images(const PrepareImagesOptions& options) {
  TR_CHECK(options.chunk_rows > 0, "prepare_images: chunk_rows must be positive");
  // Validate everything that can be checked from the headers before any output exists.
  IdxReader images(options.images, 3);
  IdxReader label_reader(options.labels, 1);
  if (images.records() != label_reader.records())
    throw UserError(options.images + " holds " + std::to_string(images.records()) + " images but " +
                    options.labels + " holds " + std::to_string(label_reader.records()) +
                    " labels");
  if (images.records() == 0) throw UserError(options.images + ": holds no images");

  PreparedImages result;
  result.records = images.records();
  result.height = images.dims()[1];
  result.width = images.dims()[2];
  result.channels = 1;  // IDX images are grey scale

  std::vector<std::uint8_t> labels(static_cast<std::size_t>(result.records));
  label_reader.read(result.records, labels.data());
  label_reader.expect_end();

  ReferenceStats reference;
  if (!options.stats_from.empty())
    reference = read_reference(options.stats_from, result.height, result.width, result.channels);

  const std::int64_t max_label = *std::max_element(labels.begin(), labels.end());
  if (options.num_classes > 0) {
    result.num_classes = options.num_classes;
  } else if (!options.stats_from.empty()) {
    result.num_classes = reference.num_classes;
  } else {
    result.num_classes = max_label + 1;
  }
  if (max_label >= result.num_classes) {
    const auto at = std::find(labels.begin(), labels.end(), max_label) - labels.begin();
    throw UserError(options.labels + ": label " + std::to_string(max_label) + " of record " +
                    std::to_string(at) + " is not below num_classes " +
                    std::to_string(result.num_classes));
  }
  std::vector<std::string> class_names = options.class_names;
  if (class_names.empty() && !options.stats_from.empty() &&
      reference.num_classes == result.num_classes)
    class_names = reference.class_names;
  if (!class_names.empty() && static_cast<std::int64_t>(class_names.size()) != result.num_classes)
    throw UserError("class names: " + std::to_string(class_names.size()) + " given for " +
                    std::to_string(result.num_classes) + " classes");

  TempOutput output(options.out);
  h5::File file = h5::File::create(output.temp_path());
  const std::int64_t hw = result.height * result.width;
  file.create_dataset("images", {result.records, result.height, result.width, result.channels},
                      DType::u8, h5::WriteOptions{options.chunk_rows});
  // Exact integer sums: the statistics then do not depend on the summation order or the chunk
  // size, and hold no rounding error even over billions of pixels.
  std::uint64_t sum = 0;
  unsigned __int128 sum_squares = 0;
  for (std::int64_t start = 0; start < result.records; start += options.chunk_rows) {
    const std::int64_t count = std::min(options.chunk_rows, result.records - start);
    Tensor chunk = Tensor::empty({count, result.height, result.width, result.channels}, DType::u8);
    std::uint8_t* pixels = chunk.data<std::uint8_t>();
    images.read(count, pixels);
    std::uint64_t chunk_squares = 0;  // holds the squares of 2.8e14 pixels without overflow
    for (std::int64_t i = 0; i < count * hw; ++i) {
      sum += pixels[i];
      chunk_squares += std::uint64_t{pixels[i]} * pixels[i];
    }
    sum_squares += chunk_squares;
    file.write_rows("images", start, chunk);
  }
  images.expect_end();

  std::vector<std::int64_t> labels64(labels.begin(), labels.end());
  file.write<std::int64_t>("labels", {result.records}, labels64);

  if (options.stats_from.empty()) {
    // x / 255 has mean s / (255 n) and variance (n q - s^2) / (255 n)^2 (population).
    const long double n = static_cast<long double>(result.records) * hw;
    const unsigned __int128 n_int = static_cast<unsigned __int128>(result.records) * hw;
    const unsigned __int128 s = sum;
    const long double spread = static_cast<long double>(n_int * sum_squares - s * s);
    const long double mean = static_cast<long double>(sum) / (255.0L * n);
    const long double std = std::sqrt(spread) / (255.0L * n);
    if (std == 0.0L)
      throw UserError(options.images + ": every pixel has the same value, so the standard " +
                      "deviation is 0; pass the statistics of other data (--stats-from)");
    result.mean = {static_cast<float>(mean)};
    result.std = {static_cast<float>(std)};
  } else {
    result.mean = reference.mean;
    result.std = reference.std;
    result.stats_reused = true;
  }
  file.write_attr_scalar<std::int64_t>("/", "num_classes", result.num_classes);
  file.write_attr("/", "mean", result.mean);
  file.write_attr("/", "std", result.std);
  if (!class_names.empty()) file.write_attr("/", "class_names", class_names);
  file.close();
  output.commit();
  return result;
}

}  // namespace tr
