"""Click encoding: disk maps for a model's input and the `x,y,+` text form."""

from __future__ import annotations

import numpy as np
import pytest

from defectspectrum.click.clicks import Click, click_maps, disk, parse_click, parse_clicks
from defectspectrum.errors import InputError


def test_disk_holds_the_pixels_within_the_radius() -> None:
    found = disk((21, 21), 10, 10, 5)
    assert found.sum() == 81  # the lattice points with dy² + dx² <= 25
    assert found[10, 15] and found[13, 14] and not found[14, 14] and not found[10, 16]
    assert disk((5, 5), 2, 2, 0).sum() == 1


def test_disk_is_cut_at_the_image_border() -> None:
    found = disk((10, 10), 0, 0, 2)
    assert found.sum() == 6  # the quarter of the radius-2 disk inside the image
    assert found[0, 2] and found[2, 0] and found[1, 1] and not found[2, 2]


def test_click_maps_put_each_kind_in_its_own_channel() -> None:
    positive, negative = click_maps((20, 30), [Click(5, 6, True), Click(12, 25, False), Click(5, 20, True)], radius=3)
    assert positive.dtype == np.float32 and negative.dtype == np.float32
    assert positive.shape == negative.shape == (20, 30)
    assert set(np.unique(positive)) == {0.0, 1.0}
    assert positive[5, 6] == 1 and positive[5, 20] == 1 and positive[12, 25] == 0
    assert negative[12, 25] == 1 and negative[5, 6] == 0
    assert positive.sum() == 2 * disk((20, 30), 5, 6, 3).sum()
    assert negative.sum() == disk((20, 30), 12, 25, 3).sum()


def test_click_maps_without_clicks_are_empty_and_a_negative_radius_is_refused() -> None:
    positive, negative = click_maps((4, 4), [])
    assert not positive.any() and not negative.any()
    with pytest.raises(InputError, match="radius"):
        click_maps((4, 4), [], radius=-1)


def test_parse_reads_x_then_y() -> None:
    assert parse_click("120,45,+") == Click(y=45, x=120, positive=True)
    assert parse_click(" 3, 7 ,-") == Click(7, 3, False)
    assert parse_click("0,0,neg") == Click(0, 0, False)
    assert parse_click("4,2,POS", shape=(3, 5)) == Click(2, 4, True)
    assert Click(45, 120, True).text() == "120,45,+"
    assert parse_clicks(["1,2,+", "3,4,-"]) == [Click(2, 1, True), Click(4, 3, False)]


@pytest.mark.parametrize("text", ["120,45", "120,45,*", "a,45,+", "-3,4,+", "1.5,2,+", "1,2,+,4", ""])
def test_parse_errors_are_one_line_with_an_example(text: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_click(text)
    message = str(caught.value)
    assert "\n" not in message and "x,y,+" in message and "e.g. 120,45,+" in message


def test_parse_refuses_a_click_outside_the_image() -> None:
    with pytest.raises(InputError, match="outside the 5x3 image"):
        parse_click("5,1,+", shape=(3, 5))  # x 5 in an image 5 wide
    with pytest.raises(InputError, match="y below 3"):
        parse_click("1,3,-", shape=(3, 5))
