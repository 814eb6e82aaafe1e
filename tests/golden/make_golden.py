#!/usr/bin/python3
"""Golden data for parity tests of the C++ models against PyTorch.

How to run (by hand, from anywhere; needs Debian's python3-torch and python3-h5py, so use the
system interpreter, not a pyenv/venv python3 that may be first on PATH):

    /usr/bin/python3 tests/golden/make_golden.py [FILE ...]

It rewrites the files next to this script (all four, or only those named) and prints a summary. The C++ tests read the files
and need no Python. Rerun only when the model definitions (DESIGN.md section 4) or the file
layout change; the output is deterministic (fixed seeds, no timestamps in the files).

Files
  encdec_pre.h5   encoder-decoder, norm pre, share_embeddings true, relu, sinusoidal positions
  encdec_post.h5  encoder-decoder, norm post, share_embeddings false, gelu, learned positions
  vit.h5          ViT, 8x8 images with 2 channels, patch 4 (4 patches + CLS), 5 classes
  vit_gelu_tanh.h5  the same ViT and batch with the tanh GELU (model.activation: gelu_tanh)

Layout of each file (docs/FORMATS.md, "Golden files")
  /<canonical name>          float32, one per parameter: the root is a weights file
  attrs model_type, config   "encoder_decoder" | "vit"; the model section as YAML
  /batch/...                 one batch (encdec: src, src_len, tgt_in, tgt_out, tgt_len;
                             vit: images, labels), int32 / float32
  /expected/loss             float64 scalar, loss of the batch at the initial weights
  /expected/logits           float64, encdec [B, T, V], vit [B, classes]
  /expected/grads/<name>     float64, d loss / d parameter
  /expected/adamw_losses     float64 [8], loss before each of 8 AdamW steps on the batch
  /expected/params_after/<name>  float64, parameters after the 8 steps
  attrs of /expected         label_smoothing, lr, beta1, beta2, eps, weight_decay, steps,
                             no_decay (names of the parameters without weight decay)

Everything is computed in float64 from the float32-rounded initial weights (and float32
images), so a C++ model that loads the float32 weights starts from identical values.

The models are written out below with plain tensor operations, formula by formula, as DESIGN.md
section 4 defines them; check_against_torch_modules() confirms them against torch.nn's
TransformerEncoderLayer / TransformerDecoderLayer and conv2d before anything is written.
"""

import math
import os
import sys

import h5py
import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
LN_EPS = 1e-5
ADAMW = dict(lr=1e-2, beta1=0.9, beta2=0.98, eps=1e-8, weight_decay=0.1, steps=8)

torch.set_default_dtype(torch.float64)


# ---- configurations ------------------------------------------------------------------------

ENCDEC_BASE = dict(type="encoder_decoder", d_model=16, heads=4, d_ff=24, encoder_layers=2,
                   decoder_layers=2, dropout=0.0, max_len=12, vocab_size=37, pad_id=0,
                   bos_id=1, eos_id=2)
ENCDEC_PRE = dict(ENCDEC_BASE, norm="pre", activation="relu", share_embeddings=True,
                  positional="sinusoidal")
ENCDEC_POST = dict(ENCDEC_BASE, norm="post", activation="gelu", share_embeddings=False,
                   positional="learned")
VIT = dict(type="vit", d_model=16, heads=2, d_ff=32, encoder_layers=2, image_size=8,
           patch_size=4, channels=2, num_classes=5, dropout=0.0)

ENCDEC_KEYS = ["type", "d_model", "heads", "d_ff", "encoder_layers", "decoder_layers",
               "dropout", "norm", "activation", "share_embeddings", "positional", "max_len",
               "vocab_size", "pad_id", "bos_id", "eos_id"]
VIT_KEYS = ["type", "d_model", "heads", "d_ff", "encoder_layers", "image_size", "patch_size",
            "channels", "num_classes", "dropout"]
VIT_GELU_TANH = dict(VIT, activation="gelu_tanh")
VIT_GELU_TANH_KEYS = VIT_KEYS + ["activation"]


def config_yaml(cfg, keys):
    """The model section as YAML text, one `key: value` per line."""
    def fmt(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        return str(v)
    return "".join(f"{k}: {fmt(cfg[k])}\n" for k in keys)


# ---- parameters ----------------------------------------------------------------------------

class Specs:
    """Canonical parameter names and shapes, with their init kind and decay flag."""

    def __init__(self):
        self.items = []  # (name, shape, kind, decay)

    def add(self, name, shape, kind, decay):
        self.items.append((name, list(shape), kind, decay))

    def linear(self, prefix, n_out, n_in):
        self.add(prefix + ".weight", [n_out, n_in], "weight", True)
        self.add(prefix + ".bias", [n_out], "bias", False)

    def layer_norm(self, prefix, d):
        self.add(prefix + ".weight", [d], "ln_weight", False)
        self.add(prefix + ".bias", [d], "bias", False)

    def attention(self, prefix, d):
        for p in ("q", "k", "v", "o"):
            self.linear(f"{prefix}.{p}_proj", d, d)

    def ffn(self, prefix, d, d_ff):
        self.linear(prefix + ".fc1", d_ff, d)
        self.linear(prefix + ".fc2", d, d_ff)


def encdec_specs(cfg):
    d, ff, V = cfg["d_model"], cfg["d_ff"], cfg["vocab_size"]
    s = Specs()
    if cfg["share_embeddings"]:
        s.add("embed.weight", [V, d], "weight", True)
    else:
        s.add("src_embed.weight", [V, d], "weight", True)
        s.add("tgt_embed.weight", [V, d], "weight", True)
    if cfg["positional"] == "learned":
        # Position tables are not weights of an Embedding in the decay sense (like pos_embed).
        s.add("src_pos.weight", [cfg["max_len"], d], "weight", False)
        s.add("tgt_pos.weight", [cfg["max_len"], d], "weight", False)
    for i in range(cfg["encoder_layers"]):
        p = f"encoder.layers.{i}"
        s.attention(p + ".self_attn", d)
        s.layer_norm(p + ".norm1", d)
        s.ffn(p + ".ffn", d, ff)
        s.layer_norm(p + ".norm2", d)
    if cfg["norm"] == "pre":
        s.layer_norm("encoder.norm", d)
    for i in range(cfg["decoder_layers"]):
        p = f"decoder.layers.{i}"
        s.attention(p + ".self_attn", d)
        s.attention(p + ".cross_attn", d)
        s.layer_norm(p + ".norm1", d)
        s.layer_norm(p + ".norm2", d)
        s.layer_norm(p + ".norm3", d)
        s.ffn(p + ".ffn", d, ff)
    if cfg["norm"] == "pre":
        s.layer_norm("decoder.norm", d)
    if not cfg["share_embeddings"]:
        s.add("output.weight", [V, d], "weight", True)
    return s


def vit_specs(cfg):
    d, ff, C, P = cfg["d_model"], cfg["d_ff"], cfg["channels"], cfg["patch_size"]
    n_patches = (cfg["image_size"] // P) ** 2
    s = Specs()
    s.add("patch_embed.weight", [d, C * P * P], "weight", True)
    s.add("patch_embed.bias", [d], "bias", False)
    s.add("cls_token", [1, 1, d], "weight", False)
    s.add("pos_embed", [1, n_patches + 1, d], "weight", False)
    for i in range(cfg["encoder_layers"]):
        p = f"encoder.layers.{i}"
        s.attention(p + ".self_attn", d)
        s.layer_norm(p + ".norm1", d)
        s.ffn(p + ".ffn", d, ff)
        s.layer_norm(p + ".norm2", d)
    s.layer_norm("norm", d)
    s.linear("head", cfg["num_classes"], d)
    return s


def init_params(specs, seed):
    """Moderate random values (so that no formula is hidden by near-zero weights), drawn and
    rounded in float32, returned as float64: exactly what the C++ side loads."""
    torch.manual_seed(seed)
    params = {}
    for name, shape, kind, _ in specs.items:
        x = torch.randn(shape, dtype=torch.float32)
        if kind == "weight":
            x = 0.3 * x
        elif kind == "bias":
            x = 0.1 * x
        elif kind == "ln_weight":
            x = 1.0 + 0.1 * x
        params[name] = x.to(torch.float32).to(torch.float64)
    return params


# ---- building blocks -----------------------------------------------------------------------

def linear(p, prefix, x):
    return x @ p[prefix + ".weight"].T + p[prefix + ".bias"]


def layer_norm(p, prefix, x):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)  # biased variance, as torch LayerNorm
    return (x - mean) / torch.sqrt(var + LN_EPS) * p[prefix + ".weight"] + p[prefix + ".bias"]


def relu(x):
    return torch.clamp_min(x, 0.0)


def gelu(x):
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))  # exact erf form


def gelu_tanh(x):
    # the tanh approximation, torch's F.gelu(approximate="tanh")
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


ACTIVATIONS = {"relu": relu, "gelu": gelu, "gelu_tanh": gelu_tanh}
# torch.nn's layers take "relu" and "gelu" by name, the tanh GELU as a function.
TORCH_ACTIVATIONS = {"relu": "relu", "gelu": "gelu",
                     "gelu_tanh": lambda x: F.gelu(x, approximate="tanh")}


def attention(p, prefix, x_q, x_kv, heads, key_pad=None, causal=False):
    """Multi-head attention. key_pad: bool [B, Tk], True where the key is padding."""
    B, Tq, d = x_q.shape
    Tk = x_kv.shape[1]
    dh = d // heads
    q = linear(p, prefix + ".q_proj", x_q).view(B, Tq, heads, dh).transpose(1, 2)
    k = linear(p, prefix + ".k_proj", x_kv).view(B, Tk, heads, dh).transpose(1, 2)
    v = linear(p, prefix + ".v_proj", x_kv).view(B, Tk, heads, dh).transpose(1, 2)
    scores = q @ k.transpose(-1, -2) / math.sqrt(dh)  # [B, heads, Tq, Tk]
    masked = torch.zeros(B, 1, Tq, Tk, dtype=torch.bool)
    if key_pad is not None:
        masked = masked | key_pad[:, None, None, :]
    if causal:
        masked = masked | torch.ones(Tq, Tk, dtype=torch.bool).triu(1)
    scores = scores.masked_fill(masked, float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    out = (probs @ v).transpose(1, 2).reshape(B, Tq, d)
    return linear(p, prefix + ".o_proj", out)


def ffn(p, prefix, x, act):
    return linear(p, prefix + ".fc2", ACTIVATIONS[act](linear(p, prefix + ".fc1", x)))


def sinusoidal_table(max_len, d):
    """PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d))."""
    pos = torch.arange(max_len, dtype=torch.float64)[:, None]
    two_i = torch.arange(0, d, 2, dtype=torch.float64)[None, :]
    angle = pos / torch.pow(10000.0, two_i / d)
    pe = torch.zeros(max_len, d)
    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle)
    return pe


# ---- encoder-decoder -----------------------------------------------------------------------

def encoder_layer(p, prefix, x, cfg, pad):
    h, act = cfg["heads"], cfg["activation"]
    if cfg["norm"] == "pre":
        y = layer_norm(p, prefix + ".norm1", x)
        x = x + attention(p, prefix + ".self_attn", y, y, h, key_pad=pad)
        x = x + ffn(p, prefix + ".ffn", layer_norm(p, prefix + ".norm2", x), act)
    else:  # post: the original "Add & Norm"
        x = layer_norm(p, prefix + ".norm1", x + attention(p, prefix + ".self_attn", x, x, h,
                                                           key_pad=pad))
        x = layer_norm(p, prefix + ".norm2", x + ffn(p, prefix + ".ffn", x, act))
    return x


def decoder_layer(p, prefix, y, memory, cfg, tgt_pad, src_pad):
    h, act = cfg["heads"], cfg["activation"]
    if cfg["norm"] == "pre":
        z = layer_norm(p, prefix + ".norm1", y)
        y = y + attention(p, prefix + ".self_attn", z, z, h, key_pad=tgt_pad, causal=True)
        z = layer_norm(p, prefix + ".norm2", y)
        y = y + attention(p, prefix + ".cross_attn", z, memory, h, key_pad=src_pad)
        y = y + ffn(p, prefix + ".ffn", layer_norm(p, prefix + ".norm3", y), act)
    else:
        y = layer_norm(p, prefix + ".norm1",
                       y + attention(p, prefix + ".self_attn", y, y, h, key_pad=tgt_pad,
                                     causal=True))
        y = layer_norm(p, prefix + ".norm2",
                       y + attention(p, prefix + ".cross_attn", y, memory, h, key_pad=src_pad))
        y = layer_norm(p, prefix + ".norm3", y + ffn(p, prefix + ".ffn", y, act))
    return y


def embed(p, cfg, tokens, side):
    """Token embedding times sqrt(d), plus positions (added after the scaling)."""
    d = cfg["d_model"]
    table = p["embed.weight"] if cfg["share_embeddings"] else p[side + "_embed.weight"]
    x = table[tokens] * math.sqrt(d)
    T = tokens.shape[1]
    if cfg["positional"] == "sinusoidal":
        x = x + sinusoidal_table(cfg["max_len"], d)[:T]
    else:
        x = x + p[side + "_pos.weight"][:T]
    return x


def encode(p, cfg, src, src_pad):
    x = embed(p, cfg, src, "src")
    for i in range(cfg["encoder_layers"]):
        x = encoder_layer(p, f"encoder.layers.{i}", x, cfg, src_pad)
    if cfg["norm"] == "pre":
        x = layer_norm(p, "encoder.norm", x)
    return x


def encdec_logits(p, cfg, batch):
    pad = cfg["pad_id"]
    src_pad = batch["src"] == pad
    tgt_pad = batch["tgt_in"] == pad
    memory = encode(p, cfg, batch["src"], src_pad)
    y = embed(p, cfg, batch["tgt_in"], "tgt")
    for i in range(cfg["decoder_layers"]):
        y = decoder_layer(p, f"decoder.layers.{i}", y, memory, cfg, tgt_pad, src_pad)
    if cfg["norm"] == "pre":
        y = layer_norm(p, "decoder.norm", y)
    out = p["embed.weight"] if cfg["share_embeddings"] else p["output.weight"]
    return y @ out.T  # no output bias


def smoothed_token_loss(logits, target, eps, ignore):
    """Sum over non-ignored tokens of (1-eps)*NLL + eps*mean_over_vocab(-log p), divided by
    their count: torch's cross_entropy(label_smoothing=eps) with a token-mean reduction."""
    logp = torch.log_softmax(logits, dim=-1)
    nll = -logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    smooth = -logp.mean(-1)
    per_token = (1.0 - eps) * nll + eps * smooth
    keep = target != ignore
    return (per_token * keep).sum() / keep.sum()


def make_encdec_batch(cfg, src_lengths, tgt_lengths, seed):
    """Records hold no BOS/EOS: src = record + [eos]; tgt_in = [bos] + record;
    tgt_out = record + [eos]; right-padded with pad_id."""
    g = torch.Generator().manual_seed(seed)
    V, pad, bos, eos = cfg["vocab_size"], cfg["pad_id"], cfg["bos_id"], cfg["eos_id"]
    first_word = max(pad, bos, eos) + 1
    B = len(src_lengths)
    S = max(src_lengths) + 1
    T = max(tgt_lengths) + 1
    assert S <= cfg["max_len"] and T <= cfg["max_len"]
    src = torch.full((B, S), pad, dtype=torch.int64)
    tgt_in = torch.full((B, T), pad, dtype=torch.int64)
    tgt_out = torch.full((B, T), pad, dtype=torch.int64)
    for b in range(B):
        s_rec = torch.randint(first_word, V, (src_lengths[b],), generator=g)
        t_rec = torch.randint(first_word, V, (tgt_lengths[b],), generator=g)
        src[b, :src_lengths[b]] = s_rec
        src[b, src_lengths[b]] = eos
        tgt_in[b, 0] = bos
        tgt_in[b, 1:tgt_lengths[b] + 1] = t_rec
        tgt_out[b, :tgt_lengths[b]] = t_rec
        tgt_out[b, tgt_lengths[b]] = eos
    return {
        "src": src,
        "src_len": torch.tensor([n + 1 for n in src_lengths]),
        "tgt_in": tgt_in,
        "tgt_out": tgt_out,
        "tgt_len": torch.tensor([n + 1 for n in tgt_lengths]),
    }


# ---- ViT -----------------------------------------------------------------------------------

def patchify(images, P):
    """[B, C, H, W] -> [B, N, C*P*P]: patches in row-major order over the patch grid, each
    flattened in (channel, row, col) order."""
    B, C, H, W = images.shape
    x = images.reshape(B, C, H // P, P, W // P, P)
    x = x.permute(0, 2, 4, 1, 3, 5)  # [B, H/P, W/P, C, P, P]
    return x.reshape(B, (H // P) * (W // P), C * P * P)


def vit_logits(p, cfg, batch):
    images = batch["images"]
    B = images.shape[0]
    d = cfg["d_model"]
    x = linear(p, "patch_embed", patchify(images, cfg["patch_size"]))
    x = torch.cat([p["cls_token"].expand(B, 1, d), x], dim=1) + p["pos_embed"]
    layer_cfg = dict(heads=cfg["heads"], activation=cfg.get("activation", "gelu"), norm="pre")
    for i in range(cfg["encoder_layers"]):
        x = encoder_layer(p, f"encoder.layers.{i}", x, layer_cfg, None)
    x = layer_norm(p, "norm", x)
    return linear(p, "head", x[:, 0])  # logits from the CLS token


def vit_loss(logits, labels):
    logp = torch.log_softmax(logits, dim=-1)
    return -logp.gather(-1, labels.unsqueeze(-1)).mean()


# ---- independent check against torch.nn -----------------------------------------------------

def to_torch_layer(p, prefix, layer, decoder):
    """Copies our canonical parameters into a torch.nn Transformer layer."""
    def set_mha(mha, name):
        mha.in_proj_weight.copy_(torch.cat([p[f"{name}.{x}_proj.weight"] for x in "qkv"]))
        mha.in_proj_bias.copy_(torch.cat([p[f"{name}.{x}_proj.bias"] for x in "qkv"]))
        mha.out_proj.weight.copy_(p[f"{name}.o_proj.weight"])
        mha.out_proj.bias.copy_(p[f"{name}.o_proj.bias"])

    def set_ln(ln, name):
        ln.weight.copy_(p[name + ".weight"])
        ln.bias.copy_(p[name + ".bias"])

    set_mha(layer.self_attn, prefix + ".self_attn")
    if decoder:
        set_mha(layer.multihead_attn, prefix + ".cross_attn")
    layer.linear1.weight.copy_(p[prefix + ".ffn.fc1.weight"])
    layer.linear1.bias.copy_(p[prefix + ".ffn.fc1.bias"])
    layer.linear2.weight.copy_(p[prefix + ".ffn.fc2.weight"])
    layer.linear2.bias.copy_(p[prefix + ".ffn.fc2.bias"])
    for k in (1, 2, 3) if decoder else (1, 2):
        set_ln(getattr(layer, f"norm{k}"), f"{prefix}.norm{k}")
    layer.train()  # training mode with dropout 0 keeps torch off its fused inference path
    return layer


def torch_layer_norm(p, name, x):
    return F.layer_norm(x, x.shape[-1:], p[name + ".weight"], p[name + ".bias"], LN_EPS)


@torch.no_grad()
def check_against_torch_modules(p, cfg, batch, logits):
    """Recomputes the logits with torch.nn layers; any difference means a formula above is
    not what torch (and the C++ side, which follows DESIGN.md) computes."""
    kwargs = dict(d_model=cfg["d_model"], nhead=cfg["heads"], dim_feedforward=cfg["d_ff"],
                  dropout=0.0, layer_norm_eps=LN_EPS, batch_first=True,
                  dtype=torch.float64)
    if cfg["type"] == "vit":
        d, P, C = cfg["d_model"], cfg["patch_size"], cfg["channels"]
        conv_w = p["patch_embed.weight"].view(d, C, P, P)
        x = F.conv2d(batch["images"], conv_w, p["patch_embed.bias"], stride=P)
        x = x.flatten(2).transpose(1, 2)
        B = x.shape[0]
        x = torch.cat([p["cls_token"].expand(B, 1, d), x], dim=1) + p["pos_embed"]
        for i in range(cfg["encoder_layers"]):
            layer = torch.nn.TransformerEncoderLayer(
                activation=TORCH_ACTIVATIONS[cfg.get("activation", "gelu")], norm_first=True,
                **kwargs)
            x = to_torch_layer(p, f"encoder.layers.{i}", layer, False)(x)
        x = torch_layer_norm(p, "norm", x)
        ref = F.linear(x[:, 0], p["head.weight"], p["head.bias"])
    else:
        pre = cfg["norm"] == "pre"
        pad = cfg["pad_id"]
        src_pad = batch["src"] == pad
        tgt_pad = batch["tgt_in"] == pad
        T = batch["tgt_in"].shape[1]
        causal = torch.ones(T, T, dtype=torch.bool).triu(1)
        x = embed(p, cfg, batch["src"], "src")
        for i in range(cfg["encoder_layers"]):
            layer = torch.nn.TransformerEncoderLayer(activation=cfg["activation"],
                                                     norm_first=pre, **kwargs)
            x = to_torch_layer(p, f"encoder.layers.{i}", layer, False)(
                x, src_key_padding_mask=src_pad)
        if pre:
            x = torch_layer_norm(p, "encoder.norm", x)
        y = embed(p, cfg, batch["tgt_in"], "tgt")
        for i in range(cfg["decoder_layers"]):
            layer = torch.nn.TransformerDecoderLayer(activation=cfg["activation"],
                                                     norm_first=pre, **kwargs)
            y = to_torch_layer(p, f"decoder.layers.{i}", layer, True)(
                y, x, tgt_mask=causal, tgt_key_padding_mask=tgt_pad,
                memory_key_padding_mask=src_pad)
        if pre:
            y = torch_layer_norm(p, "decoder.norm", y)
        out = p["embed.weight"] if cfg["share_embeddings"] else p["output.weight"]
        ref = F.linear(y, out)
    err = (logits - ref).abs().max().item()
    assert err < 1e-10, f"{cfg['type']}: own formulas differ from torch.nn by {err}"
    return err


# ---- gradients and AdamW -------------------------------------------------------------------

def run_model(cfg, specs, params, batch, label_smoothing):
    """Returns (loss, logits) for the given float64 parameters."""
    if cfg["type"] == "vit":
        logits = vit_logits(params, cfg, batch)
        return vit_loss(logits, batch["labels"]), logits
    logits = encdec_logits(params, cfg, batch)
    loss = smoothed_token_loss(logits, batch["tgt_out"], label_smoothing, cfg["pad_id"])
    return loss, logits


def compute_expected(cfg, specs, init, batch, label_smoothing):
    params = {n: t.clone().requires_grad_(True) for n, t in init.items()}
    loss, logits = run_model(cfg, specs, params, batch, label_smoothing)
    loss.backward()
    grads = {n: params[n].grad.detach().clone() for n in params}

    # Cross-checks of the loss against torch's own cross entropy.
    with torch.no_grad():
        if cfg["type"] == "vit":
            ref = F.cross_entropy(logits, batch["labels"])
        else:
            V = cfg["vocab_size"]
            target = batch["tgt_out"].reshape(-1)
            ref = F.cross_entropy(logits.reshape(-1, V), target, ignore_index=cfg["pad_id"],
                                  label_smoothing=label_smoothing, reduction="sum")
            ref = ref / (target != cfg["pad_id"]).sum()
        assert abs(ref.item() - loss.item()) < 1e-12, (ref.item(), loss.item())

    # AdamW as torch.optim.AdamW, decay only where the spec says so.
    train = {n: t.clone().requires_grad_(True) for n, t in init.items()}
    decay = [train[n] for n, _, _, dec in specs.items if dec]
    no_decay = [train[n] for n, _, _, dec in specs.items if not dec]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": ADAMW["weight_decay"]},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=ADAMW["lr"], betas=(ADAMW["beta1"], ADAMW["beta2"]), eps=ADAMW["eps"],
        foreach=False)
    losses = []
    for _ in range(ADAMW["steps"]):
        opt.zero_grad(set_to_none=True)
        step_loss, _ = run_model(cfg, specs, train, batch, label_smoothing)
        losses.append(step_loss.item())
        step_loss.backward()
        opt.step()
    assert losses[0] == loss.item()
    after = {n: t.detach().clone() for n, t in train.items()}
    return dict(loss=loss.item(), logits=logits.detach(), grads=grads,
                adamw_losses=torch.tensor(losses), params_after=after)


# ---- writing -------------------------------------------------------------------------------

def create_group(parent, name):
    """A group without modification times, so that identical content gives identical bytes."""
    gcpl = h5py.h5p.create(h5py.h5p.GROUP_CREATE)
    gcpl.set_obj_track_times(False)
    return h5py.Group(h5py.h5g.create(parent.id, name.encode(), gcpl=gcpl))


def put(group, name, array):
    group.create_dataset(name, data=array, track_times=False)


def write_golden(path, cfg, keys, specs, init, batch, expected, label_smoothing):
    with h5py.File(path, "w") as f:
        f.attrs["model_type"] = cfg["type"]
        f.attrs["config"] = config_yaml(cfg, keys)
        for name, _, _, _ in specs.items:
            put(f, name, init[name].numpy().astype(np.float32))

        g = create_group(f, "batch")
        for name, value in batch.items():
            dtype = np.float32 if value.is_floating_point() else np.int32
            put(g, name, value.numpy().astype(dtype))

        e = create_group(f, "expected")
        e.attrs["label_smoothing"] = float(label_smoothing)
        for k in ("lr", "beta1", "beta2", "eps", "weight_decay"):
            e.attrs[k] = float(ADAMW[k])
        e.attrs["steps"] = np.int64(ADAMW["steps"])
        e.attrs["no_decay"] = [n for n, _, _, dec in specs.items if not dec]
        put(e, "loss", np.float64(expected["loss"]))
        put(e, "logits", expected["logits"].numpy())
        put(e, "adamw_losses", expected["adamw_losses"].numpy())
        grads = create_group(e, "grads")
        after = create_group(e, "params_after")
        for name, _, _, _ in specs.items:
            put(grads, name, expected["grads"][name].numpy())
            put(after, name, expected["params_after"][name].numpy())


def build(filename, cfg, keys, specs, init, batch, label_smoothing):
    expected = compute_expected(cfg, specs, init, batch, label_smoothing)
    err = check_against_torch_modules(init, cfg, batch, expected["logits"])
    path = os.path.join(HERE, filename)
    write_golden(path, cfg, keys, specs, init, batch, expected, label_smoothing)
    n_params = sum(int(np.prod(s)) for _, s, _, _ in specs.items)
    losses = " ".join(f"{v:.4f}" for v in expected["adamw_losses"].tolist())
    print(f"{filename}: {len(specs.items)} tensors, {n_params} values, "
          f"{os.path.getsize(path) / 1024:.1f} KiB")
    print(f"  loss {expected['loss']:.10f}  (label smoothing {label_smoothing}); "
          f"torch.nn check max |diff| {err:.1e}")
    print(f"  adamw losses {losses}")
    print(f"  batch: " + ", ".join(f"{k} {list(v.shape)}" for k, v in batch.items()))


def main(only):
    def build_named(filename, *args):
        if not only or filename in only:
            build(filename, *args)

    # Three sequences with different source and target lengths, so every batch row is padded
    # differently (and one row is not padded at all on each side).
    encdec_batch = make_encdec_batch(ENCDEC_PRE, src_lengths=[6, 10, 3], tgt_lengths=[7, 4, 9],
                                     seed=11)
    build_named("encdec_pre.h5", ENCDEC_PRE, ENCDEC_KEYS, encdec_specs(ENCDEC_PRE),
          init_params(encdec_specs(ENCDEC_PRE), seed=1), encdec_batch, 0.1)
    build_named("encdec_post.h5", ENCDEC_POST, ENCDEC_KEYS, encdec_specs(ENCDEC_POST),
          init_params(encdec_specs(ENCDEC_POST), seed=2), encdec_batch, 0.1)

    g = torch.Generator().manual_seed(13)
    images = torch.randn(4, VIT["channels"], VIT["image_size"], VIT["image_size"],
                         generator=g, dtype=torch.float32).to(torch.float64)
    vit_batch = {"images": images, "labels": torch.tensor([3, 0, 4, 1])}
    build_named("vit.h5", VIT, VIT_KEYS, vit_specs(VIT), init_params(vit_specs(VIT), seed=3),
                vit_batch, 0.0)
    build_named("vit_gelu_tanh.h5", VIT_GELU_TANH, VIT_GELU_TANH_KEYS, vit_specs(VIT),
                init_params(vit_specs(VIT), seed=3), vit_batch, 0.0)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
