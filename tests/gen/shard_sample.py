"""Run by the sharded-sampling test under `torchrun --nproc_per_node 2`: both processes draw their
share of the samples into one DS folder."""

from __future__ import annotations

import sys
from pathlib import Path

from defectspectrum.gen.sample import load_generator, write_samples


def main() -> None:
    large, small, out = (Path(arg) for arg in sys.argv[1:4])
    write_samples(load_generator(large), load_generator(small), switch=5, num=5, out=out, seed=2, steps=8, batch=2,
                  keep_empty=True)


if __name__ == "__main__":
    main()
