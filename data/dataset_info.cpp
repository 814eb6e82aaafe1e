#include "data/dataset_info.h"

#include "data/dataset_schema.h"
#include "data/h5.h"
#include "data/image_dataset.h"
#include "data/translation_dataset.h"

namespace tr {

DatasetInfo read_dataset_info(const std::string& path) {
  const h5::File file = h5::File::open(path);
  // Labels and offsets are index-sized (a value or two per record, no pixels or tokens):
  // cheap enough to check here, so that a broken file is reported before any work starts.
  if (schema::dataset_kind(file) == "images") {
    DatasetInfo info = ImageDataset::read_info(file);
    ImageDataset::read_labels(file, info);
    return info;
  }
  DatasetInfo info = TranslationDataset::read_info(file);
  TranslationDataset::read_offsets(file, "src");
  TranslationDataset::read_offsets(file, "tgt");
  return info;
}

}  // namespace tr
