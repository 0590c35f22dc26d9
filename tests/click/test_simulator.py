"""The simulated user (RITM's rule) on hand-built masks: where each next click lands."""

from __future__ import annotations

import numpy as np
import pytest

from defectspectrum.click.clicks import Click
from defectspectrum.click.simulator import error_depth, next_click
from defectspectrum.errors import InputError


def empty(h: int = 40, w: int = 50) -> np.ndarray:
    return np.zeros((h, w), bool)


def test_first_click_on_a_square_goes_to_its_centre() -> None:
    truth = empty()
    truth[10:19, 20:29] = True  # 9 x 9, centre (14, 24)
    assert next_click(truth, empty()) == Click(14, 24, True)


@pytest.mark.parametrize("thickness", [1, 2])
def test_a_thin_horizontal_scratch_is_clicked_on_the_scratch(thickness: int) -> None:
    truth = empty()
    truth[12 : 12 + thickness, 5:45] = True
    click = next_click(truth, empty())
    assert click is not None and click.positive and truth[click.y, click.x]


def test_a_one_pixel_diagonal_scratch_is_clicked_on_the_scratch() -> None:
    truth = empty()
    for i in range(30):
        truth[5 + i, 8 + i] = True  # 8-connected only
    click = next_click(truth, empty())
    assert click is not None and click.positive and truth[click.y, click.x]


def test_a_thin_scratch_that_is_half_found_gets_its_next_click_on_the_missing_part() -> None:
    truth, prediction = empty(), empty()
    truth[20, 5:45] = True
    prediction[20, 5:25] = True
    click = next_click(truth, prediction)
    assert click == Click(20, 25, True)  # the first missing pixel (row-major tie-break)


def test_the_image_border_counts_as_boundary_as_in_ritm() -> None:
    # a 7 x 7 square in the top-left corner: RITM pads the error map with zeros, so its click goes to the
    # square's own centre; OpenCV without the padding would treat the outside as object and click (0, 0)
    truth = empty(30, 30)
    truth[0:7, 0:7] = True
    assert next_click(truth, empty(30, 30)) == Click(3, 3, True)
    assert error_depth(truth)[3, 3] == pytest.approx(4.0)
    assert error_depth(truth)[0, 0] == pytest.approx(1.0)


def test_a_band_along_the_left_edge_is_clicked_inside_the_band_not_on_the_edge() -> None:
    truth = empty(41, 30)
    truth[:, 0:10] = True
    click = next_click(truth, empty(41, 30))
    assert click == Click(4, 4, True)  # depth 5 first reached in row 4, column 4 (row-major tie-break)


def test_false_positives_deeper_than_false_negatives_give_a_negative_click() -> None:
    truth, prediction = empty(), empty()
    truth[5:15, 5:15] = True
    prediction[5:15, 5:13] = True  # 2 columns missed: false negatives of depth 1
    prediction[20:31, 30:41] = True  # an 11 x 11 false positive, centre (25, 35)
    assert next_click(truth, prediction) == Click(25, 35, False)


def test_false_negatives_deeper_than_false_positives_give_a_positive_click() -> None:
    truth, prediction = empty(), empty()
    truth[5:16, 5:16] = True  # 11 x 11, all missed
    prediction[30, 30:40] = True  # a 1 px false positive line
    assert next_click(truth, prediction) == Click(10, 10, True)


def test_a_tie_goes_to_the_false_positives_as_in_ritm() -> None:
    truth, prediction = empty(), empty()
    truth[5, 5] = True
    prediction[20, 20] = True
    assert next_click(truth, prediction) == Click(20, 20, False)


def test_a_perfect_prediction_gets_no_click() -> None:
    truth = empty()
    truth[3:9, 4:12] = True
    assert next_click(truth, truth.copy()) is None
    assert next_click(empty(), empty()) is None


def test_pixels_clicked_before_are_skipped() -> None:
    truth = empty()
    truth[20, 10] = truth[20, 30] = True
    first = next_click(truth, empty())
    assert first == Click(20, 10, True)
    assert next_click(truth, empty(), [first]) == Click(20, 30, True)
    assert next_click(truth, empty(), [first, Click(20, 30, True)]) is None  # every error pixel clicked


def test_shapes_must_agree() -> None:
    with pytest.raises(InputError, match="same 2-D shape"):
        next_click(empty(4, 4), empty(4, 5))
