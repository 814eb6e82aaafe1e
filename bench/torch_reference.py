#!/usr/bin/python3
"""PyTorch eager fp32 reference for bench/run: the two reference models of the CPU-speed
benchmark, trained with the same step as `bench/train_step` (zero_grad, forward, backward,
clip_grad_norm_ 1.0, AdamW) on the same kind of synthetic batch.

Written the way a PyTorch user would write these models: torch.nn layers (Linear, LayerNorm,
Embedding, MultiheadAttention via nn.TransformerEncoderLayer/DecoderLayer with norm_first),
F.cross_entropy with label smoothing and ignore_index, torch.optim.AdamW.

    torch_reference.py vit|encdec --threads N [--steps S] [--warmup W]

Prints one JSON line: {"model", "throughput", "unit", "steps", "seconds", "peak_rss_mb"}.
Uses Debian's python3-torch (run with /usr/bin/python3).
"""
import argparse
import json
import math
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class ViT(nn.Module):
    def __init__(self, image=28, patch=4, channels=1, d=192, layers=6, heads=3, ff=768,
                 classes=10, dropout=0.0, activation="gelu"):
        super().__init__()
        n = (image // patch) ** 2
        self.patch = patch
        self.patch_embed = nn.Linear(channels * patch * patch, d)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.randn(1, n + 1, d) * 0.02)
        self.drop = nn.Dropout(dropout)
        # "gelu_tanh": the tanh approximation (model.activation: gelu_tanh), as a function:
        # the layer takes only "relu" and "gelu" by name.
        act = (lambda x: F.gelu(x, approximate="tanh")) if activation == "gelu_tanh" else "gelu"
        layer = nn.TransformerEncoderLayer(d, heads, ff, dropout, activation=act,
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, classes)

    def forward(self, images):
        b, c, h, w = images.shape
        p = self.patch
        x = images.unfold(2, p, p).unfold(3, p, p)  # b c h/p w/p p p
        x = x.permute(0, 2, 3, 1, 4, 5).reshape(b, (h // p) * (w // p), c * p * p)
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(b, -1, -1), x], dim=1) + self.pos_embed
        x = self.encoder(self.drop(x))
        return self.head(self.norm(x[:, 0]))


def sinusoidal(max_len, d):
    pos = torch.arange(max_len, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))
    pe = torch.zeros(max_len, d)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)
    return pe


class EncoderDecoder(nn.Module):
    """Pre-LN Transformer with one embedding table shared by source, target and output."""

    def __init__(self, vocab=8000, d=256, layers=3, heads=4, ff=1024, dropout=0.1, max_len=64):
        super().__init__()
        self.d = d
        self.embed = nn.Embedding(vocab, d)
        self.register_buffer("pe", sinusoidal(max_len, d))
        self.drop = nn.Dropout(dropout)
        enc = nn.TransformerEncoderLayer(d, heads, ff, dropout, batch_first=True, norm_first=True)
        dec = nn.TransformerDecoderLayer(d, heads, ff, dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(enc, layers, norm=nn.LayerNorm(d),
                                             enable_nested_tensor=False)
        self.decoder = nn.TransformerDecoder(dec, layers, norm=nn.LayerNorm(d))

    def embed_tokens(self, ids):
        return self.drop(self.embed(ids) * math.sqrt(self.d) + self.pe[: ids.shape[1]])

    def forward(self, src, tgt_in, src_pad, tgt_pad):
        t = tgt_in.shape[1]
        causal = torch.triu(torch.full((t, t), float("-inf"), device=tgt_in.device), diagonal=1)
        memory = self.encoder(self.embed_tokens(src), src_key_padding_mask=src_pad)
        y = self.decoder(self.embed_tokens(tgt_in), memory, tgt_mask=causal,
                         tgt_key_padding_mask=tgt_pad, memory_key_padding_mask=src_pad)
        return y @ self.embed.weight.t()


class Lcg:
    """The same generator as bench/train_step.cpp, so batches have the same lengths."""

    def __init__(self, seed):
        self.s = seed

    def next(self):
        self.s = (self.s * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        return self.s >> 33


def translation_batch(batch, length, vocab, pad=0, bos=1):
    rng = Lcg(7)
    src = torch.full((batch, length), pad, dtype=torch.long)
    tgt_in = torch.full((batch, length), pad, dtype=torch.long)
    tgt_out = torch.full((batch, length), pad, dtype=torch.long)
    for s in range(batch):
        ls = length // 2 + rng.next() % (length // 2 + 1)
        lt = length // 2 + rng.next() % (length // 2 + 1)
        for t in range(length):
            tok = lambda: 3 + rng.next() % (vocab - 3)
            if t < ls:
                src[s, t] = tok()
            tgt_in[s, t] = bos if t == 0 else (tok() if t < lt else pad)
            if t < lt:
                tgt_out[s, t] = tok()
    return src, tgt_in, tgt_out


def adamw_param_groups(model):
    """Weight decay 0.05 on matrices, none on biases, norms, positions and the CLS token (as
    the project's AdamW)."""
    def decays(name, p):
        return p.dim() >= 2 and "pos" not in name and "cls" not in name
    named = list(model.named_parameters())
    return [{"params": [p for n, p in named if decays(n, p)], "weight_decay": 0.05},
            {"params": [p for n, p in named if not decays(n, p)], "weight_decay": 0.0}]


def timed_steps(step, steps, warmup, sync=lambda: None, after_warmup=lambda: None):
    """Runs `warmup` untimed steps, then `steps` timed ones; returns (last loss, seconds).
    `sync` waits for queued device work (CUDA) before each clock reading."""
    for _ in range(warmup):
        step()
    sync()
    after_warmup()
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = step()
    sync()
    return loss, time.perf_counter() - t0


def print_result(model, per_step, unit, steps, seconds, loss, **extra):
    """The one JSON line the comparison scripts read (throughput = units per second)."""
    print(json.dumps({"model": model, "throughput": per_step * steps / seconds, "unit": unit,
                      "steps": steps, "seconds": seconds, "loss": float(loss), **extra,
                      "torch": torch.__version__}))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model", choices=["vit", "encdec"])
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    if args.model == "vit":
        model = ViT()
        batch = 128
        images = torch.randn(batch, 1, 28, 28)
        labels = torch.randint(0, 10, (batch,))

        def loss_fn():
            return F.cross_entropy(model(images), labels)

        per_step, unit = batch, "images/s"
    else:
        model = EncoderDecoder()
        src, tgt_in, tgt_out = translation_batch(64, 32, 8000)
        src_pad, tgt_pad = src == 0, tgt_in == 0
        tgt_pad[:, 0] = False

        def loss_fn():
            logits = model(src, tgt_in, src_pad, tgt_pad)
            return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt_out.reshape(-1),
                                   ignore_index=0, label_smoothing=0.1)

        per_step, unit = int((tgt_out != 0).sum()), "target tokens/s"

    opt = torch.optim.AdamW(adamw_param_groups(model), lr=1e-4)
    model.train()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss

    loss, seconds = timed_steps(step, args.steps, args.warmup)
    print_result(args.model, per_step, unit, args.steps, seconds, loss,
                 peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)


if __name__ == "__main__":
    main()
