"""Run by the two-process test under `torchrun --nproc_per_node 2`: train the tiny model, then
write each rank's final weights so the test can compare them."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from seg_helpers import register_tiny_model

from defectspectrum.seg.run import RunConfig
from defectspectrum.seg.train import train


def main() -> None:
    data, out, weights_dir = (Path(arg) for arg in sys.argv[1:4])
    config = RunConfig(data=str(data), model=register_tiny_model(), steps=4, val_every=2, crop_size=32,
                       batch_size=2, num_workers=0)
    result = train(config, out)
    from accelerate import PartialState

    state = PartialState()  # every rank saves the weights it holds in memory after training
    torch.save(result.model.state_dict(), weights_dir / f"rank{state.process_index}.pt")
    torch.save({"processes": state.num_processes}, weights_dir / f"world{state.process_index}.pt")


if __name__ == "__main__":
    main()
