#!/usr/bin/python3
"""Golden runs for the end-to-end training parity test (tests/e2e/test_train_parity.cpp).

How to run (by hand, from anywhere; needs Debian's python3-torch and python3-h5py, so use the
system interpreter, not a pyenv/venv python3 that may be first on PATH):

    /usr/bin/python3 tests/golden/make_train_golden.py

It rewrites the files of tests/golden/train/ and prints the losses. The C++ test runs
`trainer train` on them and needs no Python. The output is deterministic (fixed seeds, no
timestamps in the HDF5 files).

For each of vit, encdec_pre and encdec_post (the model configurations of make_golden.py, whose
model code is imported, not copied):

  <name>_data.h5     training set in the dataset format of DESIGN.md section 5, exactly
                     STEPS x BATCH records of varied lengths (translation) or images
  <name>_weights.h5  weights file (DESIGN.md section 5): float32 tensors by canonical name,
                     root attributes model_type and config
  <name>.yaml        `trainer train` config: shuffle off, dropout 0, constant learning rate,
                     AdamW, global batch BATCH in micro-batches of BATCH / 2 (gradient
                     accumulation), gradient clipping, a metrics row every step; data.train and
                     model.init name the two files above relative to this folder, run.dir is
                     left to the caller (--set)
  expected.json      per model: the loss, the gradient norm (before clipping) and the learning
                     rate of each of the STEPS steps, computed in float64

The reference run is PyTorch in float64 from the float32-rounded weights, with the batches
formed exactly as the trainer forms them (DESIGN.md sections 4 and 5): step k trains on
records [k*BATCH, (k+1)*BATCH) in file order; translation: src = record + [eos],
tgt_in = [bos] + record, tgt_out = record + [eos], right-padded with pad_id; images:
uint8 [N,H,W,C] -> x / 255 -> (x - mean) / std per channel -> [B, C, H, W]. The step loss is
the sum over the global batch's non-pad target tokens / their count (images: the mean), the
same whatever the micro-batch split; torch.nn.utils.clip_grad_norm_ on the step's gradient,
then torch.optim.AdamW with two groups (weight decay only for the weights of Linear, Embedding
and PatchEmbedding).
"""

import json
import os
import sys

import h5py
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # no __pycache__ beside the golden files
sys.path.insert(0, HERE)
import make_golden as mg  # noqa: E402  (the model formulas; sets float64 as default dtype)

OUT = os.path.join(HERE, "train")
STEPS = 8
BATCH = 8         # global batch; the configs use micro-batches of BATCH // 2
OPT = dict(lr=1e-2, beta1=0.9, beta2=0.98, eps=1e-8, weight_decay=0.1)
PAD, BOS, EOS, UNK = 0, 1, 2, 3


# ---- datasets ------------------------------------------------------------------------------

def translation_records(cfg, seed):
    """STEPS * BATCH (src, tgt) records of 1 .. max_len - 1 tokens, no BOS/EOS, word ids only
    (above unk). Lengths vary within every batch, so every micro-batch pads differently."""
    g = torch.Generator().manual_seed(seed)
    V, longest = cfg["vocab_size"], cfg["max_len"] - 1
    records = []
    for _ in range(STEPS * BATCH):
        ls = int(torch.randint(1, longest + 1, (1,), generator=g))
        lt = int(torch.randint(1, longest + 1, (1,), generator=g))
        src = torch.randint(UNK + 1, V, (ls,), generator=g).tolist()
        tgt = torch.randint(UNK + 1, V, (lt,), generator=g).tolist()
        records.append((src, tgt))
    return records


def write_translation(path, cfg, records):
    with h5py.File(path, "w") as f:
        for side, idx in (("src", 0), ("tgt", 1)):
            g = mg.create_group(f, side)
            tokens = [t for r in records for t in r[idx]]
            offsets = np.cumsum([0] + [len(r[idx]) for r in records]).astype(np.int64)
            mg.put(g, "tokens", np.asarray(tokens, dtype=np.int32))
            mg.put(g, "offsets", offsets)
        for name, value in (("vocab_size", cfg["vocab_size"]), ("pad_id", PAD), ("bos_id", BOS),
                            ("eos_id", EOS), ("unk_id", UNK)):
            f.attrs[name] = np.int64(value)


def image_records(cfg, seed):
    """uint8 images [N, H, W, C], int64 labels, float32 per-channel mean and std of x / 255."""
    g = torch.Generator().manual_seed(seed)
    n, s, c = STEPS * BATCH, cfg["image_size"], cfg["channels"]
    images = torch.randint(0, 256, (n, s, s, c), generator=g, dtype=torch.int64)
    # Channels with different statistics, so a swapped mean/std or channel order shows.
    images[..., 1] = images[..., 1] // 2 + 64
    images = images.to(torch.uint8)
    labels = torch.randint(0, cfg["num_classes"], (n,), generator=g)
    x = images.to(torch.float64) / 255.0
    mean = x.mean(dim=(0, 1, 2)).to(torch.float32)
    std = x.std(dim=(0, 1, 2)).to(torch.float32)
    return images, labels, mean, std


def write_images(path, cfg, images, labels, mean, std):
    n, s, _, c = images.shape
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=images.numpy(), chunks=(BATCH, s, s, c),
                         track_times=False)
        mg.put(f, "labels", labels.numpy().astype(np.int64))
        f.attrs["num_classes"] = np.int64(cfg["num_classes"])
        f.attrs["mean"] = mean.numpy().astype(np.float32)
        f.attrs["std"] = std.numpy().astype(np.float32)


# ---- batches as the trainer forms them -----------------------------------------------------

def translation_batch(records):
    B = len(records)
    S = max(len(s) for s, _ in records) + 1
    T = max(len(t) for _, t in records) + 1
    src = torch.full((B, S), PAD, dtype=torch.int64)
    tgt_in = torch.full((B, T), PAD, dtype=torch.int64)
    tgt_out = torch.full((B, T), PAD, dtype=torch.int64)
    for b, (s, t) in enumerate(records):
        src[b, :len(s) + 1] = torch.tensor(s + [EOS])
        tgt_in[b, :len(t) + 1] = torch.tensor([BOS] + t)
        tgt_out[b, :len(t) + 1] = torch.tensor(t + [EOS])
    return {"src": src, "tgt_in": tgt_in, "tgt_out": tgt_out}


def image_batch(images, labels, mean, std):
    x = images.to(torch.float64) / 255.0                       # [B, H, W, C]
    x = (x - mean.to(torch.float64)) / std.to(torch.float64)  # per channel
    return {"images": x.permute(0, 3, 1, 2).contiguous(), "labels": labels}


def step_batches(kind, data):
    """The global batch of each step: records [k*BATCH, (k+1)*BATCH) in file order."""
    out = []
    for k in range(STEPS):
        lo, hi = k * BATCH, (k + 1) * BATCH
        if kind == "translation":
            out.append(translation_batch(data[lo:hi]))
        else:
            images, labels, mean, std = data
            out.append(image_batch(images[lo:hi], labels[lo:hi], mean, std))
    return out


# ---- the reference run ---------------------------------------------------------------------

def step_loss(cfg, params, batch, smoothing):
    loss, _ = mg.run_model(cfg, None, params, batch, smoothing)
    return loss


def split_loss(cfg, params, batch, smoothing):
    """The step loss summed over two micro-batches (what the trainer accumulates): each
    micro-batch's summed loss, over the global count. Must equal the whole-batch loss."""
    B = batch["labels"].shape[0] if "labels" in batch else batch["src"].shape[0]
    total, count = 0.0, 0
    for half in (slice(0, B // 2), slice(B // 2, B)):
        part = {k: v[half] for k, v in batch.items()}
        if cfg["type"] == "vit":
            n = part["labels"].shape[0]
        else:
            n = int((part["tgt_out"] != PAD).sum())
        total += step_loss(cfg, params, part, smoothing).item() * n
        count += n
    return total / count


def reference_run(cfg, specs, init, batches, smoothing, clip):
    params = {n: t.clone().requires_grad_(True) for n, t in init.items()}
    decay = [params[n] for n, _, _, dec in specs.items if dec]
    no_decay = [params[n] for n, _, _, dec in specs.items if not dec]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": OPT["weight_decay"]},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=OPT["lr"], betas=(OPT["beta1"], OPT["beta2"]), eps=OPT["eps"], foreach=False)
    ordered = [params[n] for n, _, _, _ in specs.items]
    losses, norms = [], []
    for k, batch in enumerate(batches):
        opt.zero_grad(set_to_none=True)
        loss = step_loss(cfg, params, batch, smoothing)
        if k == 0:
            with torch.no_grad():
                split = split_loss(cfg, params, batch, smoothing)
                assert abs(split - loss.item()) < 1e-12 * abs(loss.item()), (split, loss.item())
                _, logits = mg.run_model(cfg, None, params, batch, smoothing)
                mg.check_against_torch_modules(init, cfg, batch, logits)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(ordered, clip)
        losses.append(loss.item())
        norms.append(norm.item())
        opt.step()
    return losses, norms


# ---- configs -------------------------------------------------------------------------------

def number(v):
    """A YAML number that reads back as the same double (and as a float in YAML 1.1)."""
    s = repr(float(v))
    if "e" in s and "." not in s.split("e")[0]:
        s = s.replace("e", ".0e")
    return s


def run_yaml(name, cfg, keys, smoothing, clip):
    model = "".join("  " + line + "\n" for line in mg.config_yaml(cfg, keys).splitlines())
    return f"""\
# Written by tests/golden/make_train_golden.py: PyTorch parity run ({name}), 8 AdamW steps.
# data.train and model.init are relative to tests/golden/train/; the e2e test passes absolute
# paths and run.dir with --set. Expected losses: expected.json["{name}"].
run:
  name: parity_{name}
  seed: 7

model:
{model}  init: {name}_weights.h5

data:
  train: {name}_data.h5
  shuffle: false
  batching: sentences

train:
  steps: {STEPS}
  global_batch: {BATCH}
  micro_batch: {BATCH // 2}
  device: cpu
  precision: fp32
  label_smoothing: {number(smoothing)}
  grad_clip: {number(clip)}
  optimizer:
    type: adamw
    lr: {number(OPT["lr"])}
    betas: [{number(OPT["beta1"])}, {number(OPT["beta2"])}]
    eps: {number(OPT["eps"])}
    weight_decay: {number(OPT["weight_decay"])}
  schedule:
    type: constant
    warmup_steps: 0

checkpoint:
  every_steps: 0

eval:
  every_steps: 0

log:
  every_steps: 1
  progress: false
"""


def write_weights(path, cfg, keys, specs, init):
    with h5py.File(path, "w") as f:
        f.attrs["model_type"] = cfg["type"]
        f.attrs["config"] = mg.config_yaml(cfg, keys)
        for name, _, _, _ in specs.items:
            mg.put(f, name, init[name].numpy().astype(np.float32))


# ---- main ----------------------------------------------------------------------------------

# name, model config, YAML keys, spec builder, weights seed, data seed, label smoothing, and
# grad_clip: below the gradient norm of some steps and above that of the others (main checks),
# so that both branches of clipping run.
RUNS = [
    ("vit", mg.VIT, mg.VIT_KEYS, mg.vit_specs, 31, 41, 0.0, 4.5),
    ("encdec_pre", mg.ENCDEC_PRE, mg.ENCDEC_KEYS, mg.encdec_specs, 32, 42, 0.1, 1.1),
    ("encdec_post", mg.ENCDEC_POST, mg.ENCDEC_KEYS, mg.encdec_specs, 33, 43, 0.1, 1.5),
]


def main():
    os.makedirs(OUT, exist_ok=True)
    expected = {}
    for name, cfg, keys, make_specs, w_seed, d_seed, smoothing, clip in RUNS:
        specs = make_specs(cfg)
        init = mg.init_params(specs, seed=w_seed)
        data_path = os.path.join(OUT, f"{name}_data.h5")
        if cfg["type"] == "vit":
            data = image_records(cfg, d_seed)
            write_images(data_path, cfg, *data)
            batches = step_batches("images", data)
        else:
            data = translation_records(cfg, d_seed)
            write_translation(data_path, cfg, data)
            batches = step_batches("translation", data)
        write_weights(os.path.join(OUT, f"{name}_weights.h5"), cfg, keys, specs, init)
        with open(os.path.join(OUT, f"{name}.yaml"), "w") as f:
            f.write(run_yaml(name, cfg, keys, smoothing, clip))

        losses, norms = reference_run(cfg, specs, init, batches, smoothing, clip)
        clipped = sum(n > clip for n in norms)
        assert 0 < clipped < STEPS, f"{name}: clip {clip} should bind on some steps only: {norms}"
        expected[name] = {
            "losses": losses,
            "grad_norms": norms,
            "lr": OPT["lr"],
            "steps": STEPS,
            "global_batch": BATCH,
            "label_smoothing": smoothing,
            "grad_clip": clip,
        }
        print(f"{name}: {len(specs.items)} tensors; clipping on {clipped} of {STEPS} steps")
        print("  losses     " + " ".join(f"{v:.6f}" for v in losses))
        print("  grad norms " + " ".join(f"{v:.4f}" for v in norms))
        for suffix in ("_data.h5", "_weights.h5", ".yaml"):
            path = os.path.join(OUT, name + suffix)
            print(f"  {name + suffix}: {os.path.getsize(path) / 1024:.1f} KiB")

    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=2)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
