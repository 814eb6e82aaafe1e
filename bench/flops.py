"""Model FLOPs per training step, shared by the CPU table (compare.py) and the GPU one
(torch_gpu_reference.py), so every implementation and device is scored by the same count.

3x the forward's matrix-multiply FLOPs (2 per multiply-add): every Linear, the attention scores
and their weighted sum, the output projection over all B x L target positions (ViT: the
classifier on the CLS token). Softmax, LayerNorm, GELU and the optimizer are not counted, as
in the MFU convention of PaLM / Megatron-LM. Padding counts: both sides run the same padded
batch.
"""


def vit_flops_per_image(c, cls_only_last_layer=False):
    """cls_only_last_layer: the FLOPs this project executes, whose last layer computes only the
    CLS row after its key/value projections (models/vit.cpp); the model count (the default)
    scores every implementation alike."""
    n = (c["image"] // c["patch"]) ** 2
    t = n + 1
    d, ff = c["d"], c["ff"]
    layer = 2 * t * (4 * d * d + 2 * d * ff) + 4 * t * t * d
    last = layer
    if cls_only_last_layer:
        last = 2 * t * 2 * d * d + 2 * (2 * d * d + 2 * d * ff) + 4 * t * d
    patch = 2 * n * c["channels"] * c["patch"] ** 2 * d
    return 3 * ((c["layers"] - 1) * layer + last + patch + 2 * d * c["classes"])


def encdec_flops_per_step(c):
    bl = c["batch"] * c["length"]
    d, ff, l = c["d"], c["ff"], c["length"]
    attn_scores = 4 * bl * l * d
    enc = 2 * bl * (4 * d * d + 2 * d * ff) + attn_scores
    dec = 2 * bl * (8 * d * d + 2 * d * ff) + 2 * attn_scores
    return 3 * (c["layers"] * (enc + dec) + 2 * bl * d * c["vocab"])
