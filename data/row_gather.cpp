#include "data/row_gather.h"

namespace tr {

namespace {

// Chunk cache for compressed datasets, whose chunks must be decoded whole: shuffled batches
// touch many chunks, and this keeps a small dataset resident while bounding memory for a large
// one. Reads only, so chunks are never evicted for being fully written (w0 = 1).
constexpr std::size_t kChunkCacheBytes = std::size_t{32} << 20;
constexpr std::size_t kChunkCacheSlots = 12421;  // prime, about 100x the chunks that fit

}  // namespace

void append_run(std::vector<RowRun>& runs, std::int64_t start, std::int64_t count) {
  if (count <= 0) return;
  if (!runs.empty() && runs.back().start + runs.back().count == start) {
    runs.back().count += count;
  } else {
    runs.push_back(RowRun{start, count});
  }
}

RowGather::RowGather(const std::string& path, const std::string& dataset)
    : path_(path), dataset_(dataset) {
  h5::silence_errors();
  // The same close degree as h5::File: HDF5 refuses a second open of a file with another one.
  h5::Handle fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  H5Pset_fclose_degree(fapl.get(), H5F_CLOSE_STRONG);
#if H5_VERSION_GE(1, 10, 7)
  H5Pset_file_locking(fapl.get(), true, true);
#endif
  file_ = h5::Handle(H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.get()), H5Fclose);
  if (!file_.valid()) throw UserError(path + ": cannot open");
  bool filtered = false;
  {
    // Closed before the open below: HDF5 shares one chunk cache among the open handles of a
    // dataset, sized by the first open.
    h5::Handle probe(H5Dopen2(file_.get(), dataset.c_str(), H5P_DEFAULT), H5Dclose);
    if (!probe.valid()) throw UserError(path + ": cannot open dataset '" + dataset + "'");
    h5::Handle dcpl(H5Dget_create_plist(probe.get()), H5Pclose);
    filtered = dcpl.valid() && H5Pget_nfilters(dcpl.get()) > 0;
  }
  // Uncompressed chunks bypass a cache too small to hold them: HDF5 then reads just the
  // selected rows from the file. Compressed chunks must be decoded whole, so they get a cache.
  h5::Handle dapl(H5Pcreate(H5P_DATASET_ACCESS), H5Pclose);
  H5Pset_chunk_cache(dapl.get(), kChunkCacheSlots, filtered ? kChunkCacheBytes : 0, 1.0);
  dataset_handle_ = h5::Handle(H5Dopen2(file_.get(), dataset.c_str(), dapl.get()), H5Dclose);
  if (!dataset_handle_.valid()) throw UserError(path + ": cannot open dataset '" + dataset + "'");
  h5::Handle space(H5Dget_space(dataset_handle_.get()), H5Sclose);
  const int rank = space.valid() ? H5Sget_simple_extent_ndims(space.get()) : -1;
  if (rank < 1) throw UserError(path + ": dataset '" + dataset + "' has no rows");
  std::vector<hsize_t> dims(static_cast<std::size_t>(rank));
  H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  shape_.assign(dims.begin(), dims.end());
  for (std::size_t i = 1; i < shape_.size(); ++i) row_elements_ *= shape_[i];
}

void RowGather::read(const std::vector<RowRun>& runs, hid_t memory_type, void* out) const {
  // Each thread has its own HDF5 error settings; the prefetch thread reads through here.
  h5::silence_errors();
  std::int64_t rows = 0;
  for (const RowRun& run : runs) {
    TR_CHECK(run.count > 0 && run.start >= rows && run.start + run.count <= shape_[0],
             "RowGather: runs must be increasing, disjoint and within the dataset");
    rows = run.start + run.count;
  }
  // One read per run: a union of hyperslabs would be a single call, but HDF5 (1.10) maps an
  // irregular selection to chunks element by element, 20x slower than these reads.
  h5::Handle file_space(H5Dget_space(dataset_handle_.get()), H5Sclose);
  std::vector<hsize_t> offset(shape_.size(), 0), extent(shape_.begin(), shape_.end());
  auto* bytes = static_cast<char*>(out);
  const std::size_t row_bytes = H5Tget_size(memory_type) * static_cast<std::size_t>(row_elements_);
  for (const RowRun& run : runs) {
    offset[0] = static_cast<hsize_t>(run.start);
    extent[0] = static_cast<hsize_t>(run.count);
    h5::Handle memory_space(
        H5Screate_simple(static_cast<int>(extent.size()), extent.data(), nullptr), H5Sclose);
    const bool ok = H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, offset.data(), nullptr,
                                        extent.data(), nullptr) >= 0 &&
                    H5Dread(dataset_handle_.get(), memory_type, memory_space.get(),
                            file_space.get(), H5P_DEFAULT, bytes) >= 0;
    if (!ok)
      throw UserError(path_ + ": cannot read rows [" + std::to_string(run.start) + ", " +
                      std::to_string(run.start + run.count) + ") of dataset '" + dataset_ + "'");
    bytes += row_bytes * static_cast<std::size_t>(run.count);
  }
}

}  // namespace tr
