// Seeded parameter initialisation.
//
// Each parameter is filled according to its InitRule (set by the module that owns it) with
// values from the counter-based RNG keyed by (seed, hash of the canonical name), element i at
// counter i. Values therefore depend on neither construction order nor the parallel layout:
// a TP shard can initialise exactly its slice of the full tensor.
#pragma once

#include <cstdint>

#include "layers/parameter.h"

namespace tr {

std::uint64_t name_hash(const std::string& name);  // FNV-1a 64
void initialize_parameters(const ParameterList& params, std::uint64_t seed);

}  // namespace tr
