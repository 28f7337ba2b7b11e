"""Time the shipped model's fused decoder as a whole and layer by layer, in float32.

    python scripts/profile_decoder.py [BATCH]

Prints the decoder's rate (stamps/s), each transposed convolution's time and GFLOP/s, the last
layer's (a 3x3 convolution to the four sub-pixel phases: ``useful`` counts the FLOPs of the
transposed convolution it replaces) and the pixel shuffle's, and the float32 matrix-multiply
rate of this machine (2048-square ``mm``) for scale. Run it alone on the machine.
"""

import sys
import time

import torch
import torch.nn.functional as F

from galsim_vae import get_model
from galsim_vae.model import tune_allocator


def timeit(f, n=30):
    f()
    f()
    t = time.perf_counter()
    for _ in range(n):
        f()
    return (time.perf_counter() - t) / n


def main():
    tune_allocator()
    batch = int(sys.argv[1]) if len(sys.argv) > 1 else 128
    m = get_model()
    m.decode(torch.zeros(2, m.latent_dim).numpy())  # builds the fused decoder
    d = m._decoder
    z = torch.randn(batch, m.latent_dim)
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    print(f"mm 2048: {2 * 2048**3 / timeit(lambda: a @ b, 10) / 1e9:.0f} GFLOP/s")
    with torch.inference_mode():
        total = timeit(lambda: d(z))
        print(f"batch {batch}: {total * 1e3:.2f} ms, {batch / total:.0f} stamps/s")
        h = F.leaky_relu_(F.linear(z, d.w_first, d.b_first), d.slope)
        h = h.view(batch, *d.first_shape).permute(0, 3, 1, 2)
        for w, bias in d.convs:
            t = timeit(lambda h=h, w=w, bias=bias: F.conv_transpose2d(h, w, bias, 2, 1))
            flops = 2 * h.shape[1] * w.shape[1] * 16 * h.shape[2] * h.shape[3] * batch
            print(
                f"transposed conv {tuple(h.shape)}: {t * 1e3:.2f} ms, {flops / t / 1e9:.0f} GFLOP/s"
            )
            h = F.leaky_relu_(F.conv_transpose2d(h, w, bias, 2, 1), d.slope)
        t = timeit(lambda: F.conv2d(h, d.w_last, d.b_last, 1, 1))
        flops = 2 * h.shape[1] * 16 * h.shape[2] * h.shape[3] * batch
        print(
            f"last layer {tuple(h.shape)}: {t * 1e3:.2f} ms, useful {flops / t / 1e9:.0f} GFLOP/s"
        )
        o = F.conv2d(h, d.w_last, d.b_last, 1, 1)
        t = timeit(lambda: F.pixel_shuffle(o, 2).float().contiguous())
        print(f"pixel shuffle: {t * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
