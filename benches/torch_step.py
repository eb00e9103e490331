#!/usr/bin/env python3
"""Our CPU training step against PyTorch's on the same network, batch and patch, in one run
(issue #16.2). Not a product dependency: `pip install torch` into any environment, then

    python3 benches/torch_step.py --websr target/release/websr [--threads 1,2]

For each thread count it runs `websr bench --no-forward`-like rows (the training rows of
`websr bench`, which time one Adam step of batch 16 on 64x64 HR patches, x4, median of --reps
after a warm-up) with RAYON_NUM_THREADS set, then the same step in PyTorch with
torch.set_num_threads: the same WaveLR (3x3 convolutions of width 48 at LR resolution, ReLU, a
tail predicting the 48 two-level Haar sub-bands, added to a bicubic base), L1 loss, Adam. The
bicubic base and the inverse Haar transform are PyTorch's own ops here (ours are equivalent
linear maps); they are a small share of the step.
"""
import argparse
import os
import re
import statistics
import subprocess
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def idwt(x):
    """One inverse Haar level: [N, 4C, H, W] -> [N, C, 2H, 2W] (LL, LH, HL, HH blocks)."""
    n, c4, h, w = x.shape
    c = c4 // 4
    ll, lh, hl, hh = x[:, :c], x[:, c:2 * c], x[:, 2 * c:3 * c], x[:, 3 * c:]
    a = (ll + lh + hl + hh) / 2
    b = (ll + lh - hl - hh) / 2
    cc = (ll - lh + hl - hh) / 2
    d = (ll - lh - hl + hh) / 2
    out = torch.stack([a, b, cc, d], dim=2).reshape(n, c, 2, 2, h, w)
    return out.permute(0, 1, 4, 2, 5, 3).reshape(n, c, 2 * h, 2 * w)


class WaveLR(nn.Module):
    def __init__(self, layers, features=48, levels=2):
        super().__init__()
        self.head = nn.Conv2d(3, features, 3, padding=1)
        self.body = nn.ModuleList(nn.Conv2d(features, features, 3, padding=1) for _ in range(layers))
        self.tail = nn.Conv2d(features, 3 * 4 ** levels, 3, padding=1)
        self.levels = levels

    def forward(self, lr):
        x = F.relu(self.head(lr))
        for conv in self.body:
            x = F.relu(conv(x))
        bands = self.tail(x)
        for _ in range(self.levels):
            bands = idwt(bands)
        base = F.interpolate(lr, scale_factor=2 ** self.levels, mode="bicubic", align_corners=False)
        return base + bands


def torch_step_ms(layers, threads, reps, batch=16, patch=64, scale=4):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = WaveLR(layers)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    lr = torch.rand(batch, 3, patch // scale, patch // scale)
    hr = torch.rand(batch, 3, patch, patch)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.l1_loss(model(lr), hr)
        loss.backward()
        opt.step()

    step()  # warm-up
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        step()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def websr_step_ms(websr, threads, reps):
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    out = subprocess.run([websr, "bench", "--size", "32", "--reps", str(reps)], env=env,
                         capture_output=True, text=True, check=True).stdout
    rows = {}
    for line in out.splitlines():
        m = re.match(r"\|\s*(wavelr(?: \((\d+) body layers\))?) x4 train step[^|]*\|\s*([\d.]+)", line)
        if m:
            rows[int(m.group(2) or 6)] = float(m.group(3))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--websr", required=True, help="the websr binary (release build)")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    print(f"torch {torch.__version__}; WaveLR x4, Adam step, batch 16, 64x64 HR patches; median of {args.reps}")
    print("| network | threads | websr (burn flex) ms | PyTorch ms | websr / PyTorch |")
    print("|---|---:|---:|---:|---:|")
    for threads in [int(t) for t in args.threads.split(",")]:
        ours = websr_step_ms(args.websr, threads, args.reps)
        for layers in sorted(ours):
            theirs = torch_step_ms(layers, threads, args.reps)
            print(f"| wavelr ({layers} body layers) | {threads} | {ours[layers]:.1f} | {theirs:.1f} | "
                  f"{ours[layers] / theirs:.2f} |", flush=True)


if __name__ == "__main__":
    main()
