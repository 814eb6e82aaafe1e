#!/usr/bin/env python3
"""PyTorch on one GPU for the GPU benchmark (bench/gpu_compare.py): the large reference models
of the GPU issue, the same modules as the CPU reference (torch_reference.py), trained eagerly
with bf16 autocast (fp32 master weights, the fused scaled-dot-product attention that
nn.MultiheadAttention calls) or in fp32, on synthetic batches.

    torch_gpu_reference.py vit|encdec [--precision bf16|fp32] [--steps S] [--warmup W]
                                      [--batch B] [--device cuda] [--activation gelu|gelu_tanh]

Shapes: ViT-B/16 (224 x 224 x 3, patch 16, d 768, 12 layers, 12 heads, d_ff 3072, 1000
classes); encoder-decoder d 1024, 16 heads, d_ff 4096, 6+6 layers, 256 tokens, vocabulary
32,000 (pre-LN, shared embeddings, dropout 0.1, label smoothing 0.1).

Prints one JSON line: model, throughput, unit, steps, seconds, loss, peak_gpu_mb, device.
"""
import argparse

import torch
import torch.nn.functional as F

from torch_reference import (EncoderDecoder, ViT, adamw_param_groups, print_result,
                             timed_steps, translation_batch)

VIT_B16 = dict(image=224, patch=16, channels=3, d=768, layers=12, heads=12, ff=3072,
               classes=1000, batch=128)
ENCDEC_LARGE = dict(d=1024, heads=16, ff=4096, layers=6, vocab=32000, batch=32, length=256)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model", choices=["vit", "encdec"])
    parser.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch", type=int, default=0, help="0 = the shape's default")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--activation", choices=["gelu", "gelu_tanh"], default="gelu",
                        help="the ViT's MLP: the exact GELU or its tanh approximation")
    args = parser.parse_args()
    dev = torch.device(args.device)
    torch.manual_seed(0)
    # fp32 means fp32: no TF32 in GEMMs or convolutions, as our fp32 path.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False

    if args.model == "vit":
        c = dict(VIT_B16)
        batch = args.batch or c["batch"]
        model = ViT(image=c["image"], patch=c["patch"], channels=c["channels"], d=c["d"],
                    layers=c["layers"], heads=c["heads"], ff=c["ff"], classes=c["classes"],
                    activation=args.activation)
        images = torch.randn(batch, c["channels"], c["image"], c["image"], device=dev)
        labels = torch.randint(0, c["classes"], (batch,), device=dev)

        def loss_fn():
            return F.cross_entropy(model(images), labels)

        per_step, unit = batch, "images/s"
    else:
        c = dict(ENCDEC_LARGE)
        batch = args.batch or c["batch"]
        model = EncoderDecoder(vocab=c["vocab"], d=c["d"], layers=c["layers"], heads=c["heads"],
                               ff=c["ff"], dropout=0.1, max_len=c["length"])
        src, tgt_in, tgt_out = (t.to(dev) for t in translation_batch(batch, c["length"],
                                                                     c["vocab"]))
        src_pad, tgt_pad = src == 0, tgt_in == 0
        tgt_pad[:, 0] = False

        def loss_fn():
            logits = model(src, tgt_in, src_pad, tgt_pad)
            return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                                   tgt_out.reshape(-1), ignore_index=0, label_smoothing=0.1)

        per_step, unit = int((tgt_out != 0).sum()), "target tokens/s"

    model.to(dev).train()
    groups = adamw_param_groups(model)
    try:  # the fused CUDA AdamW where this PyTorch has it (>= 2.0)
        opt = torch.optim.AdamW(groups, lr=1e-4, fused=True)
    except (TypeError, RuntimeError):
        opt = torch.optim.AdamW(groups, lr=1e-4)
    amp = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=args.precision == "bf16")

    def step():
        opt.zero_grad(set_to_none=True)
        with amp:
            loss = loss_fn()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss

    cuda = dev.type == "cuda"  # --device cpu: a quick check of this script without a GPU
    sync = (lambda: torch.cuda.synchronize(dev)) if cuda else (lambda: None)
    reset_peak = (lambda: torch.cuda.reset_peak_memory_stats(dev)) if cuda else (lambda: None)
    loss, seconds = timed_steps(step, args.steps, args.warmup, sync, reset_peak)
    print_result(args.model, per_step, unit, args.steps, seconds, loss, tokens_per_step=per_step,
                 peak_gpu_mb=torch.cuda.max_memory_allocated(dev) / 2**20 if cuda else 0.0,
                 device=torch.cuda.get_device_name(dev) if cuda else "cpu")


if __name__ == "__main__":
    main()
