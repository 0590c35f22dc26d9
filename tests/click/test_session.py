"""ClickPredictor's passes and ClickSession's add/undo/reset, with a tiny random ClickNet."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from click_helpers import TINY  # noqa: E402

from defectspectrum.click.clicks import Click  # noqa: E402
from defectspectrum.click.model import build_click_model  # noqa: E402
from defectspectrum.click.noc import run_object  # noqa: E402
from defectspectrum.click.predictor import ClickPredictor  # noqa: E402
from defectspectrum.click.session import ClickSession  # noqa: E402
from defectspectrum.errors import InputError  # noqa: E402


class Counting(ClickPredictor):
    """Counts the passes it runs."""

    calls: dict[str, int]

    def coarse(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.calls["coarse"] += 1
        return super().coarse(*args, **kwargs)

    def look(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.calls["look"] += 1
        return super().look(*args, **kwargs)

    def refine(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.calls["refine"] += 1
        return super().refine(*args, **kwargs)


@pytest.fixture(scope="module")
def predictor() -> Counting:
    torch.manual_seed(0)
    counting = Counting(build_click_model(TINY), TINY, coarse_side=64, focus_side=64, focus_min=32)
    counting.calls = {"coarse": 0, "look": 0, "refine": 0}
    return counting


def image(size: tuple[int, int] = (96, 128)) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (*size, 3), dtype=np.uint8)


def test_only_the_first_click_runs_the_coarse_pass(predictor: Counting) -> None:
    predictor.calls.update(coarse=0, look=0, refine=0)
    session = ClickSession(predictor, image())
    first = session.add_click(40, 30, True)
    assert first.shape == (96, 128) and first.dtype == bool
    assert predictor.calls["coarse"] == 1 and predictor.calls["look"] == 0
    session.add_click(100, 80, False)
    session.add_click(10, 10, True)
    assert predictor.calls["coarse"] == 1 and predictor.calls["look"] == 2
    assert predictor.calls["refine"] >= 1  # the 128 px image was shrunk to 64 for the coarse pass


def test_undo_returns_the_exact_earlier_mask_and_reset_clears(predictor: Counting) -> None:
    session = ClickSession(predictor, image())
    empty = session.mask
    one = session.add_click(40, 30, True)
    two = session.add_click(90, 70, False)
    assert session.clicks == (Click(30, 40, True), Click(70, 90, False))
    assert np.array_equal(session.mask, two)
    assert np.array_equal(session.undo(), one) and session.clicks == (Click(30, 40, True),)
    assert np.array_equal(session.undo(), empty) and session.clicks == ()
    assert np.array_equal(session.undo(), empty)  # nothing left to undo
    session.add_click(40, 30, True)
    assert not session.reset().any() and session.clicks == ()
    one_again = session.add_click(40, 30, True)
    assert np.array_equal(one_again, one)  # the same click gives the same mask
    one_again[:] = True
    assert np.array_equal(session.mask, one)  # callers get copies


def test_initial_mask_is_kept_until_a_click_and_clicks_stay_local(predictor: Counting) -> None:
    start = np.zeros((96, 128), bool)
    start[80:90, 100:120] = True
    predictor.calls.update(coarse=0, look=0, refine=0)
    session = ClickSession(predictor, image(), initial_mask=start)
    assert np.array_equal(session.mask, start)
    after = session.add_click(110, 85, False)
    assert predictor.calls["coarse"] == 0  # fixing a mask never reruns the whole image
    far = np.zeros_like(start)
    far[0:40, 0:40] = True  # outside the target box of the mask and the click (at least 32 px around them)
    assert np.array_equal(after[far], start[far])
    assert np.array_equal(session.reset(), start)
    with pytest.raises(InputError, match="initial mask is 10x10"):
        ClickSession(predictor, image(), initial_mask=np.zeros((10, 10), bool))
    with pytest.raises(InputError, match="outside the 128x96 image"):
        session.add_click(128, 0, True)


def test_predictor_is_a_segmenter_for_the_noc_loop(predictor: Counting) -> None:
    truth = np.zeros((96, 128), bool)
    truth[30:50, 40:70] = True
    run = run_object(predictor, image(), truth, max_clicks=3)
    assert len(run.ious) == 3 and all(0.0 <= v <= 1.0 for v in run.ious)


def test_a_grabcut_refinement_follows_every_click_and_undo_keeps_its_masks() -> None:
    """With refine="grabcut" each click's mask is GrabCut's refinement of what the model alone gives from the
    same previous mask; a session keeps the refined masks for undo."""
    from defectspectrum.click.baselines import grabcut_refiner

    torch.manual_seed(0)
    net = build_click_model(TINY)
    plain = ClickPredictor(net, TINY, coarse_side=64, focus_side=64, focus_min=32)
    refined = ClickPredictor(net, TINY, coarse_side=64, focus_side=64, focus_min=32, refine="grabcut")
    rng = np.random.default_rng(1)
    picture = np.clip(rng.normal(60, 10, (96, 128, 3)), 0, 255).astype(np.uint8)
    picture[30:60, 40:80] = 200
    session = ClickSession(refined, picture)
    features = plain.features(picture)
    clicks: list[Click] = []
    masks = [session.mask]
    for x, y, positive in ((60, 45, True), (5, 5, False), (75, 35, True)):
        clicks.append(Click(y, x, positive))
        expected = grabcut_refiner().predict(picture, clicks, plain.step(features, clicks, masks[-1]))
        masks.append(session.add_click(x, y, positive))
        assert np.array_equal(masks[-1], expected)
    assert masks[1].any() and not masks[1][5, 5]
    assert np.array_equal(session.undo(), masks[2])


def test_an_unknown_refinement_or_features_without_the_image_are_refused(predictor: Counting) -> None:
    with pytest.raises(InputError, match="unknown refinement 'crf'"):
        ClickPredictor(build_click_model(TINY), TINY, refine="crf")
    refined = ClickPredictor(predictor.model, TINY, coarse_side=64, focus_side=64, refine="grabcut")
    with pytest.raises(InputError, match="without the image a refinement needs"):
        refined.step(predictor.features(image()), [Click(30, 40, True)], np.zeros((96, 128), bool))
