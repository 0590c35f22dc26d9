"""ClickNet: built from its config without downloads, its input channels, and the focus crop rule."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from click_helpers import TINY  # noqa: E402

from defectspectrum.click.clicks import Click, click_maps  # noqa: E402
from defectspectrum.click.focus import focus_box, grow_box, keep_clicked_parts, merge, target_box  # noqa: E402
from defectspectrum.click.model import ClickModelConfig, build_click_model, click_input, state_size  # noqa: E402
from defectspectrum.click.predictor import ClickPredictor  # noqa: E402
from defectspectrum.errors import InputError  # noqa: E402


def test_builds_offline_with_logits_at_input_size(offline: None) -> None:
    model = build_click_model(TINY).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 6, 40, 56))
    assert out.shape == (2, 1, 40, 56)


def test_default_model_fits_the_package_limit(offline: None) -> None:
    params, size = state_size(build_click_model(ClickModelConfig()))
    assert 3_000_000 < params < 5_000_000 and size <= 20_000_000


def test_config_round_trip_and_errors() -> None:
    assert ClickModelConfig.from_json(TINY.to_json(), "x") == TINY
    with pytest.raises(InputError, match="not a Defect-Click model config"):
        ClickModelConfig.from_json({"colour": 1}, "x")
    with pytest.raises(InputError, match="--encoder nope"):
        build_click_model(ClickModelConfig("nope"))


def test_click_maps_enter_the_input_and_change_the_output() -> None:
    torch.manual_seed(0)
    model = build_click_model(TINY).eval()
    image = torch.zeros(1, 3, 32, 32)
    pos, neg = (torch.from_numpy(m)[None] for m in click_maps((32, 32), [Click(10, 12, True)]))
    prev = torch.zeros(1, 32, 32)
    x = click_input(image, pos, neg, prev)
    assert x.shape == (1, 6, 32, 32) and x[0, 3, 10, 12] == 1 and x[0, 3].sum() == pos.sum() and x[0, 4].sum() == 0
    empty = click_input(image, torch.zeros_like(pos), neg, prev)
    with torch.no_grad():
        assert not torch.allclose(model(x), model(empty))


def test_focus_box_holds_the_changed_region_and_the_click() -> None:
    previous = np.zeros((200, 300), bool)
    new = previous.copy()
    new[50:60, 100:140] = True  # changed: rows 50..59, cols 100..139 (40 px long side)
    box = focus_box(previous, new, Click(70, 150, True), margin=0.25, focus_min=8)
    # bbox of change + click: rows 50..70, cols 100..150 (51 px), grown by round(0.25 * 51) = 13
    assert box == (37, 84, 87, 164)
    y0, y1, x0, x1 = box
    assert new[y0:y1, x0:x1].sum() == new.sum() and y0 <= 70 < y1 and x0 <= 150 < x1


def test_focus_box_minimum_size_and_image_border() -> None:
    previous = np.zeros((100, 120), bool)
    assert focus_box(previous, previous, Click(2, 118, False), margin=0.4, focus_min=64) == (0, 64, 56, 120)
    assert grow_box((50, 40), (0, 50, 0, 40), 0.4, 64) == (0, 50, 0, 40)  # never outside the image
    prev = np.zeros((100, 100), bool)
    prev[40:50, 40:50] = True
    assert target_box(prev, [Click(45, 80, True)], margin=0.0, focus_min=40) == (25, 65, 40, 81)


def test_merge_keeps_the_previous_mask_outside_the_box() -> None:
    previous = np.zeros((20, 20), bool)
    previous[0:3, 0:3] = True
    refined = np.ones((20, 20), bool)
    out = merge(previous, refined, (5, 10, 5, 12))
    assert out[5:10, 5:12].all() and out.sum() == 9 + 35
    assert merge(previous, np.ones((5, 7), bool), (5, 10, 5, 12)).sum() == 9 + 35  # a box-sized mask too
    assert previous.sum() == 9  # the input is not changed


def test_target_box_leaves_out_mask_parts_far_from_the_clicks() -> None:
    previous = np.zeros((400, 400), bool)
    previous[20:40, 20:40] = True  # the defect being fixed
    previous[300:350, 300:380] = True  # another defect of the same imported mask
    box = target_box(previous, [Click(45, 30, False)], focus_min=32)
    assert box[1] < 300 and box[3] < 300  # the far defect is not looked at
    assert box[0] <= 20 and box[1] >= 40 and box[2] <= 20 and box[3] >= 40  # the near one is
    far = target_box(previous, [Click(200, 200, True)], focus_min=32)
    assert far[1] - far[0] <= 40 and far[0] <= 200 < far[1]  # a click away from every part: the click alone


def test_keep_clicked_parts_drops_new_parts_no_positive_click_reaches() -> None:
    mask = np.zeros((60, 60), bool)
    mask[10:20, 10:20] = True  # the clicked defect
    mask[40:50, 40:50] = True  # a look-alike spot elsewhere, new with this click
    mask[5:8, 50:58] = True  # part of the previous (imported) mask: stays
    previous = np.zeros_like(mask)
    previous[5:8, 50:55] = True
    out = keep_clicked_parts(mask, previous, [Click(15, 15, True), Click(45, 45, False)])
    assert out[10:20, 10:20].all() and out[5:8, 50:58].all() and not out[40:50, 40:50].any()
    assert keep_clicked_parts(mask, previous, [Click(21, 21, True)])[10:20, 10:20].all()  # 3 px reach
    # no positive click, or none reaching a part: the mask as it is
    np.testing.assert_array_equal(keep_clicked_parts(mask, previous, [Click(45, 45, False)]), mask)
    np.testing.assert_array_equal(keep_clicked_parts(mask, previous, [Click(30, 30, True)]), mask)


class BrightParts(torch.nn.Module):
    """A stand-in ClickNet that segments every bright pixel, whatever the clicks."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x[:, :1] > 0).float() * 20 - 10


def test_predictor_adds_only_the_clicked_part_of_the_first_pass() -> None:
    image = np.zeros((80, 80, 3), np.uint8)
    image[10:25, 10:25] = 255
    image[50:70, 45:70] = 255
    only = ClickPredictor(BrightParts(), TINY, coarse_side=80, focus_side=80, focus_min=16)
    mask = only.predict(image, [Click(15, 15, True)], np.zeros((80, 80), bool))
    assert mask[12:23, 12:23].all() and not mask[50:70, 45:70].any()
    every = ClickPredictor(BrightParts(), TINY, coarse_side=80, focus_side=80, focus_min=16, clicked_parts_only=False)
    assert every.predict(image, [Click(15, 15, True)], np.zeros((80, 80), bool))[52:68, 47:68].all()
