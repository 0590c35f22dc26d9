"""Sampling trained generators into a DS folder: valid, synthetic, captioned, regenerable, specks removed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "seg"))

from seg_helpers import split_synth  # noqa: E402

from defectspectrum.data.dsfolder import DSFolder  # noqa: E402
from defectspectrum.data.validate import validate  # noqa: E402
from defectspectrum.errors import InputError  # noqa: E402
from defectspectrum.gen.sample import (  # noqa: E402
    draw,
    load_generator,
    regenerate,
    remove_specks,
    write_samples,
)
from defectspectrum.gen.train import GenConfig, train_generator  # noqa: E402


@pytest.fixture(scope="module")
def runs(module_tmp) -> tuple[Path, Path, Path]:
    root = module_tmp("gensample")
    ds = split_synth(root / "ds", size=40, per_type=3, k=2).root
    common = {"data": str(ds), "object": "metal", "width": 8, "layers": 1, "size": 16, "steps": 4, "batch_size": 2,
              "checkpoint_every": 4, "ema_decay": 0.5}
    train_generator(GenConfig(preset="medium", **common), root / "large")
    train_generator(GenConfig(preset="small", **common), root / "small")
    return ds, root / "large", root / "small"


def test_samples_form_a_valid_synthetic_ds_folder(runs, tmp_path: Path) -> None:
    ds, large_run, small_run = runs
    large, small = load_generator(large_run), load_generator(small_run)
    folder, dropped = write_samples(large, small, switch=10, num=5, out=tmp_path / "gen", seed=3, steps=20,
                                    batch=2, keep_empty=True)
    assert validate(DSFolder.open(tmp_path / "gen")).ok and not dropped
    assert [s.name for s in folder] == [f"gen_{i:06d}" for i in range(5)]
    assert folder.objects["metal"] == DSFolder.open(ds).objects["metal"]
    assert all(s.synthetic and s.caption for s in folder)
    recipe = json.loads(folder.samples()[2].source)
    assert recipe["index"] == 2 and recipe["generator"]["switch"] == 10 and recipe["generator"]["seed"] == 3


def test_a_written_sample_is_regenerated_from_its_source(runs, tmp_path: Path) -> None:
    _, large_run, small_run = runs
    folder, _ = write_samples(load_generator(large_run), load_generator(small_run), switch=10, num=3,
                              out=tmp_path / "gen", seed=1, steps=20, batch=3, keep_empty=True)
    sample = folder.samples()[1]
    image, mask = regenerate(sample.source)
    written = folder.load_image(sample)
    assert np.abs(image.astype(int) - written.astype(int)).max() <= 1  # drawn alone instead of in a batch of 3
    assert np.array_equal(mask, folder.load_mask(sample))


def test_one_sample_does_not_depend_on_its_batch(runs) -> None:
    _, large_run, small_run = runs
    large, small = load_generator(large_run), load_generator(small_run)
    alone = draw(large, small, 10, [4], seed=0, steps=10)[0]
    together = draw(large, small, 10, [2, 3, 4], seed=0, steps=10)[2]
    assert np.abs(alone[0].astype(int) - together[0].astype(int)).max() <= 1
    other_seed = draw(large, small, 10, [4], seed=1, steps=10)[0]
    assert not np.array_equal(alone[0], other_seed[0])


def test_ema_and_raw_weights_differ(runs) -> None:
    _, large_run, _ = runs
    ema, raw = load_generator(large_run), load_generator(large_run, weights="raw")
    assert any(not torch.equal(a, b) for a, b in zip(ema.model.parameters(), raw.model.parameters()))
    with pytest.raises(InputError, match="choose ema or raw"):
        load_generator(large_run, weights="best")


def test_specks_are_removed_and_empty_samples_dropped(runs, tmp_path: Path) -> None:
    mask = np.zeros((10, 10), np.uint8)
    mask[0, 0] = 1
    mask[5:8, 5:8] = 2
    cleaned = remove_specks(mask, 4)
    assert cleaned[0, 0] == 0 and (cleaned[5:8, 5:8] == 2).all()
    _, large_run, small_run = runs
    folder, dropped = write_samples(load_generator(large_run), load_generator(small_run), switch=10, num=3,
                                    out=tmp_path / "gen", steps=5, min_area=10**6)
    assert len(folder) == 0 and [d.index for d in dropped] == [0, 1, 2]
    assert folder.meta["generator"]["dropped"][0]["reason"] == "no defect left after speck removal"


def test_mismatched_runs_and_bad_folders(runs, tmp_path: Path) -> None:
    ds, large_run, _ = runs
    other = tmp_path / "other"
    train_generator(GenConfig(data=str(ds), object="metal", preset="small", width=8, layers=1, size=20, steps=1,
                              batch_size=2), other)
    with pytest.raises(InputError, match="different objects, classes or sizes"):
        draw(load_generator(large_run), load_generator(other), 5, [0], 0, steps=2)
    with pytest.raises(InputError, match="no gen.json"):
        load_generator(tmp_path)


def test_two_processes_write_one_folder_of_unique_samples(runs, tmp_path: Path) -> None:
    import os
    import shutil
    import subprocess

    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if torchrun is None:
        pytest.skip("torchrun is not installed beside this Python")
    _, large_run, small_run = runs
    script = Path(__file__).with_name("shard_sample.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", str(script), str(large_run),
                           str(small_run), str(tmp_path / "sharded")], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    sharded = DSFolder.open(tmp_path / "sharded")
    assert [s.name for s in sharded] == [f"gen_{i:06d}" for i in range(5)]
    assert not list(tmp_path.glob(".*shards"))  # the shard folder is gone
    single, _ = write_samples(load_generator(large_run), load_generator(small_run), switch=5, num=5,
                              out=tmp_path / "single", seed=2, steps=8, batch=2, keep_empty=True)
    for a, b in zip(sharded, single):  # the same samples as one process draws
        assert np.abs(sharded.load_image(a).astype(int) - single.load_image(b).astype(int)).max() <= 1


@pytest.mark.parametrize(("changes", "message"), [
    ({"steps": -5}, "--steps -5: use 1 to 1000"), ({"steps": 100_000}, "--steps 100000"),
    ({"num": 0}, "--num 0"), ({"batch": 5000}, "batches of 1 to 1024"), ({"min_area": -3}, "--min-area -3"),
    ({"switch": 5000}, "switch step 5000")])
def test_absurd_sampling_settings_are_refused_and_nothing_is_written(runs, tmp_path: Path, changes, message) -> None:
    _, large_run, small_run = runs
    settings = {"switch": 10, "num": 2, "steps": 5, "batch": 2, "min_area": 0, **changes}
    switch, num = settings.pop("switch"), settings.pop("num")
    with pytest.raises(InputError, match=message):
        write_samples(load_generator(large_run), load_generator(small_run), switch, num, tmp_path / "gen", **settings)
    assert not (tmp_path / "gen").exists()
