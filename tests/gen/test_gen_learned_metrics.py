"""FID, KID and IC-LPIPS from local weight files, on randomly initialised networks of the right
architecture (no real weights offline): known orderings, agreement with torchmetrics' LPIPS, clear
errors for wrong files, and no network access."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("torchvision")
pytest.importorskip("torchmetrics")
pytest.importorskip("torch_fidelity")

import cv2
import torch
import torchvision
from torch import nn

from conftest import ModuleTmp
from defectspectrum.errors import InputError
from defectspectrum.gen import learned_metrics as lm


def _random_inception() -> nn.Module:
    """torch-fidelity's InceptionV3, seeded random weights (its constructor would download: stopped)."""
    import torch_fidelity.feature_extractor_inceptionv3 as tf_inception

    torch.manual_seed(0)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tf_inception, "load_state_dict_from_url", lambda *args, **kwargs: {})
        patch.setattr(tf_inception.FeatureExtractorInceptionV3, "load_state_dict", lambda self, *a, **k: None)
        net = tf_inception.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    for module in net.modules():  # keep activations O(1) through the 40-odd layers
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    return net


@pytest.fixture(scope="module")
def weights(module_tmp: ModuleTmp) -> dict[str, Path]:
    folder = module_tmp("weights")
    files = {"inception": folder / "weights-inception-2015-12-05-6726825d.pth",
             "alexnet": folder / "alexnet-owt-7be5be79.pth"}
    torch.save(_random_inception().state_dict(), files["inception"])
    torch.manual_seed(1)
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), files["alexnet"])
    return files


def smooth_image(seed: int, side: int = 48) -> np.ndarray:
    """A smooth random colour field (some structure for the networks to see)."""
    coarse = (np.random.default_rng(seed).random((8, 8, 3)) * 255).astype(np.uint8)
    return cv2.resize(coarse, (side, side), interpolation=cv2.INTER_CUBIC)


def lightly_noised(images: list[np.ndarray], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.clip(image.astype(int) + rng.integers(-4, 5, image.shape), 0, 255).astype(np.uint8)
            for image in images]


def shifted_blurred(images: list[np.ndarray]) -> list[np.ndarray]:
    return [cv2.GaussianBlur(np.roll(image, image.shape[1] // 4, axis=1), (0, 0), 4) for image in images]


def test_fid_and_kid_rank_a_copy_then_noise_then_blur(weights: dict[str, Path]) -> None:
    train = [smooth_image(i) for i in range(6)]
    net = lm.load_inception(weights["inception"])
    own = lm.inception_features(net, train)
    noised = lm.inception_features(net, lightly_noised(train))
    blurred = lm.inception_features(net, shifted_blurred(train)[:4])  # 4 generated: KID subset adapts
    same = lm.fid_kid_from_features(own, own)
    near = lm.fid_kid_from_features(noised, own)
    far = lm.fid_kid_from_features(blurred, own)
    assert abs(same["fid"]) < 1e-3
    assert near["fid"] < 0.1 * far["fid"] and far["fid"] > 1
    assert same["kid_mean"] < far["kid_mean"] and near["kid_mean"] < 0.1 * far["kid_mean"]
    assert abs(same["kid_mean"]) < 0.1 * far["kid_mean"]
    assert same["kid_subset_size"] == 6 and far["kid_subset_size"] == 4 and far["generated"] == 4
    assert same["kid_std"] < 1e-9 < far["kid_std"]  # subsets of 6 of 6 are all alike; 4 of the 6 training ones vary


def test_inception_features_do_not_depend_on_batching_or_sizes(weights: dict[str, Path]) -> None:
    net = lm.load_inception(weights["inception"])
    images = [smooth_image(0, 48), smooth_image(1, 64), smooth_image(2, 48)]
    together = lm.inception_features(net, images)
    alone = torch.cat([lm.inception_features(net, [image]) for image in images])
    assert torch.allclose(together, alone, atol=1e-5)
    assert not torch.allclose(together[0], together[2])


def test_ic_lpips_is_zero_for_copies_and_positive_for_variety(weights: dict[str, Path]) -> None:
    train = [smooth_image(i, 64) for i in range(3)]
    copies = [train[0].copy() for _ in range(4)]
    assert lm.ic_lpips(copies, train, weights["alexnet"], side=64) == pytest.approx(0.0, abs=1e-5)
    varied = lightly_noised([train[0]] * 4, seed=3) + [smooth_image(10 + i, 64) for i in range(4)]
    spread = lm.ic_lpips(varied, train, weights["alexnet"], side=64, batch=3)
    assert spread is not None and spread > 0.005
    assert lm.ic_lpips(train, train, weights["alexnet"], side=64) is None  # each its own cluster of one


def test_lpips_equals_torchmetrics_on_the_same_weights(weights: dict[str, Path],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import torchmetrics.functional.image.lpips as tm_lpips
    from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

    def local_alexnet(net: str, pretrained: bool = False) -> nn.Sequential:
        model = torchvision.models.alexnet(weights=None)
        model.load_state_dict(torch.load(weights["alexnet"], weights_only=True))
        return model.features

    # torchmetrics builds its backbone with this private helper (_get_net in older releases, e.g. 1.4): give it ours
    helper = next((name for name in ("_get_tv_model_features", "_get_net") if hasattr(tm_lpips, name)), None)
    if helper is None:
        pytest.skip("this torchmetrics builds its LPIPS backbone in another way")
    monkeypatch.setattr(tm_lpips, helper, local_alexnet)  # instead of a download
    reference = LearnedPerceptualImagePatchSimilarity(net_type="alex", normalize=True)
    rng = np.random.default_rng(0)
    a = [(rng.random((64, 64, 3)) * 255).astype(np.uint8) for _ in range(3)] + [smooth_image(5, 64)]
    b = [smooth_image(6, 64), lightly_noised([a[3]])[0]]
    mine = lm.lpips_matrix(a, b, weights["alexnet"], side=64)

    def as_input(image: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255

    theirs = np.array([[float(reference(as_input(x), as_input(y))) for y in b] for x in a])
    np.testing.assert_allclose(mine, theirs, atol=2e-6, rtol=1e-5)
    assert mine[3, 1] < mine[3, 0]  # the noised copy is nearer than another image


def test_lpips_resizes_images_of_any_size_to_the_side(weights: dict[str, Path]) -> None:
    images = [smooth_image(0, 40), smooth_image(1, 300)]
    distances = lm.lpips_matrix(images, images, weights["alexnet"])  # both compared at 256 x 256
    assert distances.shape == (2, 2) and np.abs(np.diag(distances)).max() < 1e-5 and distances[0, 1] > 0.005


@pytest.mark.parametrize("content", ["bytes", "hostile", "other_net", "missing"])
def test_a_wrong_weights_file_is_one_clear_error(weights: dict[str, Path], tmp_path: Path, content: str) -> None:
    marker = tmp_path / "code_ran"

    class Hostile:
        def __reduce__(self) -> tuple[object, tuple[str, str]]:
            return open, (str(marker), "w")

    cases = {"inception": (lm.load_inception, "weights-inception-2015-12-05-6726825d.pth", weights["alexnet"]),
             "alexnet": (lm.load_alexnet_features, "alexnet-owt-7be5be79.pth", weights["inception"])}
    for name, (load, expected_name, other_net) in cases.items():
        path = tmp_path / f"{name}.pth"
        if content == "bytes":
            path.write_bytes(np.random.default_rng(0).bytes(4096))
        elif content == "hostile":
            torch.save({"features.0.weight": Hostile()}, path)
        elif content == "other_net":
            path = other_net
        with pytest.raises(InputError) as error:
            load(path)
        message = str(error.value)
        assert str(path) in message and expected_name in message and "\n" not in message
    assert not marker.exists()


def test_an_inception_file_of_another_layout_is_refused(weights: dict[str, Path], tmp_path: Path) -> None:
    state = torch.load(weights["inception"], weights_only=True)
    state["Mixed_6b.branch7x7_1.conv.weight"] = torch.zeros(1)  # right names for the checked tensors, one wrong shape
    path = tmp_path / "damaged.pth"
    torch.save(state, path)
    with pytest.raises(InputError, match="not an Inception state dict"):
        lm.load_inception(path)


def test_nothing_touches_the_network(weights: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    import torch.hub
    import torch_fidelity.feature_extractor_inceptionv3 as tf_inception

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(tf_inception, "load_state_dict_from_url", refuse)
    train = [smooth_image(i) for i in range(3)]
    generated = [*lightly_noised(train), smooth_image(9)]
    result = lm.fid_kid(generated, train, weights["inception"])
    assert result["kid_subset_size"] == 3 and result["generated"] == 4 and np.isfinite(result["fid"])
    spread = lm.ic_lpips(generated, train, weights["alexnet"], side=48)
    assert spread is not None and spread > 0  # the extra image joins a noised copy's cluster


def test_too_few_images_or_wrong_arrays_are_refused(weights: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="at least 2"):
        lm.fid_kid([smooth_image(0)], [smooth_image(1), smooth_image(2)], weights["inception"])
    with pytest.raises(ValueError, match="uint8"):
        lm.ic_lpips([smooth_image(0).astype(np.float32)], [smooth_image(1)], weights["alexnet"])


def test_gen_eval_reports_the_learned_measures(weights: dict[str, Path], tmp_path: Path) -> None:
    import json
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "seg"))
    from seg_helpers import split_synth

    from cli_helpers import invoke, one_line_error

    train = split_synth(tmp_path / "train", size=40, per_type=2, k=2, seed=0).root
    made = split_synth(tmp_path / "made", size=40, per_type=1, k=1, seed=1).root  # stands in for generated pairs
    result = invoke("gen", "eval", made, "--train", train, "--inception-weights", weights["inception"],
                    "--lpips-weights", weights["alexnet"], "--json", tmp_path / "eval.json",
                    "--report", tmp_path / "eval.html")
    assert result.exit_code == 0, result.output
    learned = json.loads((tmp_path / "eval.json").read_text())["learned"]
    assert np.isfinite(learned["fid"]) and learned["fid"] > 0 and np.isfinite(learned["kid"])
    from defectspectrum.data.dsfolder import DSFolder

    train_pairs = [s for s in DSFolder.open(train).samples(split="train") if not s.is_good]
    assert learned["kid_subset_size"] == min(len(DSFolder.open(made)), len(train_pairs))  # few-shot: the smaller set
    assert learned["ic_lpips"] is None or learned["ic_lpips"] > 0
    assert "FID" in result.stdout and ">FID<" in (tmp_path / "eval.html").read_text()
    one_line_error(["gen", "eval", made, "--train", train, "--inception-weights", tmp_path / "none.pth"],
                   "none.pth: no such weights file")
    one_line_error(["gen", "eval", made, "--train", train, "--lpips-weights", weights["inception"]],
                   "alexnet-owt-7be5be79.pth")
