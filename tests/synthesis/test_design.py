import numpy as np
import pytest

from specutils_cinn.synthesis.design import SOLAR_A_LI, KielRegion, LabelDesign


def test_draw_is_deterministic_and_extendable():
    d = LabelDesign(seed=3)
    a = d.draw(64)
    b = d.draw(32, start=32)
    for k in a:
        np.testing.assert_array_equal(a[k][32:], b[k])
    assert list(a["star_id"]) == list(range(64))
    c = LabelDesign(seed=4).draw(64)
    assert not np.allclose(a["teff"], c["teff"])


def test_labels_inside_region_and_ranges():
    d = LabelDesign()
    lab = d.draw(512)
    assert d.region.contains(lab["teff"], lab["logg"]).all()
    for name, (lo, hi) in d.ranges.items():
        assert lab[name].min() >= lo and lab[name].max() <= hi
        # space-filling: every quarter of each range is populated roughly equally
        counts = np.histogram(lab[name], bins=4, range=(lo, hi))[0]
        assert counts.min() > 0.8 * 512 / 4
    np.testing.assert_allclose(lab["li_fe"], lab["a_li"] - SOLAR_A_LI - lab["fe_h"])
    assert set(d.label_names) == set(lab) - {"star_id"}


def test_region_envelopes():
    r = KielRegion()
    # cool stars may be red giants (log g 1) or dwarfs (log g 5); hot stars only dwarfs/turn-off
    assert r.contains(4100, 1.2) and r.contains(4100, 4.9)
    assert not r.contains(6900, 2.0) and r.contains(6900, 4.0)
    assert not r.contains(3900, 4.5)
    with pytest.raises(ValueError, match="upper log g envelope"):
        KielRegion(upper=((4000.0, 0.5), (7000.0, 0.5)))


def test_alpha_trend_raises_alpha_at_low_metallicity():
    plain = LabelDesign().draw(512)
    trend = LabelDesign(alpha_trend=True).draw(512)
    poor = plain["fe_h"] < -1.5
    assert trend["mg_fe"][poor].mean() > plain["mg_fe"][poor].mean() + 0.2
    rich = plain["fe_h"] > 0
    np.testing.assert_allclose(trend["mg_fe"][rich], plain["mg_fe"][rich])


def test_bad_design():
    with pytest.raises(ValueError, match="increasing"):
        LabelDesign(ranges={"fe_h": (0.5, -2.5)})
    with pytest.raises(ValueError, match="fe_h"):
        LabelDesign(ranges={"vmic": (0.5, 2.5)})
