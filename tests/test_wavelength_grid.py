"""WavelengthGrid.pixels_within: the pixels of line windows on a segmented grid."""

import numpy as np
import pytest

from specutils_cinn.wavelength_grid import GridSegment, WavelengthGrid

GRID = WavelengthGrid((GridSegment("A", 5000.0, 5010.0, 0.5),
                       GridSegment("B", 6000.0, 6002.0, 1.0)))


def test_pixels_within_windows_across_segments():
    wl = GRID.wavelength.value
    got = GRID.pixels_within([5001.0, 6001.2, 5001.2], 0.6)
    assert got.dtype == np.int64 and list(got) == sorted(set(got))
    assert list(wl[got]) == [5000.5, 5001.0, 5001.5, 6001.0]
    assert GRID.pixels_within(7000.0, 1.0).size == 0       # a window off the grid adds nothing


@pytest.mark.parametrize(("centers", "half"), [([5001.0], 0.0), ([5001.0], -1.0),
                                                ([np.nan], 0.5)])
def test_pixels_within_refuses_bad_windows(centers, half):
    with pytest.raises(ValueError, match="half_width > 0"):
        GRID.pixels_within(centers, half)
