// The TP x DP process grid (Megatron-LM layout): world = TP x DP, the TP ranks of a model
// replica adjacent (world ranks dp*TP .. dp*TP + TP - 1), so a replica sits on one node.
#pragma once

namespace tr {

struct ProcessGrid {
  int world_size = 1, world_rank = 0;
  int tp_size = 1, tp_rank = 0;  // tensor-parallel group: shards of one model replica
  int dp_size = 1, dp_rank = 0;  // data-parallel group: the same shard in every replica

  // UserError naming parallel.tensor / parallel.data when tensor x data != world_size.
  static ProcessGrid make(int world_size, int world_rank, int tensor, int data);
};

}  // namespace tr
