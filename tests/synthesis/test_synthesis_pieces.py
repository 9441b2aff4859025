"""Overlapping synthesis pieces (synthesis/sampling.py) and their use in a run.

doppler_windows itself is tested in test_shards.py (steps, piece ends away from strong lines).
"""

import numpy as np
import pytest

from specutils_cinn.synthesis.runner import GridConfig, _star_pieces
from specutils_cinn.synthesis.sampling import doppler_windows, join_pieces, padded_pieces


def _pieces(labels):
    return doppler_windows(labels, 3690.0, 9510.0, 0.03, 0.5)


def _fake(windows):
    waves = [np.arange(lo, hi + s / 2, s) for lo, hi, s in windows]
    return waves, [np.sin(w) for w in waves]


def test_padded_pieces_synthesize_on_the_pieces_own_samples():
    pieces = _pieces({"teff": 4500.0, "vmic": 1.0})
    padded = padded_pieces(pieces, 10.0)
    assert padded[0][0] == pieces[0][0] and padded[-1][1] == pieces[-1][1]   # bounds kept
    for (lo, hi, s), (plo, phi, ps) in zip(pieces, padded, strict=True):
        assert ps == s and plo <= lo and phi >= hi
        assert lo - plo <= 10.0 + 1e-9 and phi - hi <= 10.0 + 1e-9
        assert (lo - plo) / s == pytest.approx(round((lo - plo) / s), abs=1e-6)
    assert all(lo - plo > 9.9 for (lo, _, _), (plo, _, _) in zip(pieces[1:], padded[1:],
                                                                 strict=True))
    wave, flux = join_pieces(pieces, *_fake(padded))
    ref_wave, ref_flux = join_pieces(pieces, *_fake(pieces))
    np.testing.assert_allclose(wave, ref_wave, atol=1e-9)
    np.testing.assert_allclose(flux, ref_flux, atol=1e-9)
    assert padded_pieces(pieces, 0.0) == pieces
    with pytest.raises(ValueError, match="overlap"):
        padded_pieces(pieces, -1.0)


def test_join_pieces_refuses_what_does_not_fit():
    pieces = [(5000.0, 5010.0, 0.5), (5010.5, 5020.0, 0.5)]
    waves, fluxes = _fake(pieces)
    with pytest.raises(ValueError, match="2 pieces but 1"):
        join_pieces(pieces, waves[:1], fluxes)
    with pytest.raises(ValueError, match="does not cover"):
        join_pieces(pieces, [waves[0][:-4], waves[1]], [fluxes[0][:-4], fluxes[1]])
    # a window's last piece ends at the window's end, which Turbospectrum's last sample may
    # miss by up to a step
    last = 5000.0 + 0.4 * np.arange(25)
    wave, _ = join_pieces([(5000.0, 5010.0, 0.4)], [last], [np.ones(25)])
    assert wave[-1] == pytest.approx(5009.6)


def _config(tmp_path, **kw):
    doc = {"grid": {"output": "work/g.h5", "n_stars": 2, "shards": "grid/x"},
           "window": [{"name": "full", "start": 3690.0, "stop": 9510.0, "step": 0.03}],
           "synthesis": {"line_lists": "ges", "sampling_fraction": 0.5, **kw}}
    return GridConfig.from_dict(doc, base=tmp_path)


def test_grid_config_reads_and_checks_the_overlap(tmp_path):
    cfg = _config(tmp_path, piece_overlap=10)
    assert cfg.piece_overlap == 10.0
    assert cfg.to_dict()["piece_overlap"] == 10.0
    assert "piece_overlap" not in _config(tmp_path).to_dict()    # provenance as before
    with pytest.raises(ValueError, match="piece_overlap"):
        _config(tmp_path, piece_overlap=-1)


def test_star_pieces_follow_the_options(tmp_path):
    from specutils_cinn.synthesis.runner import _run_options

    windows = [("full", 3690.0, 9510.0, 0.03)]
    labels = {"teff": 4500.0, "vmic": 1.0}
    pieces, padded = _star_pieces(labels, windows, _run_options(_config(tmp_path,
                                                                        piece_overlap=10)))
    assert pieces == _pieces(labels)
    assert padded == padded_pieces(pieces, 10.0, (3690.0, 9510.0))
    pieces0, padded0 = _star_pieces(labels, windows, _run_options(_config(tmp_path)))
    assert pieces0 == padded0 == pieces


def test_padded_run_stores_the_unpadded_samples(tmp_path):
    """A sharded run with overlapping pieces stores the same spectrum as one without."""
    from specutils_cinn.synthesis.runner import _raw_star, _run_options

    def fake(labels, windows, options):
        class R:
            pass
        r = R()
        r.wavelength, r.flux = _fake(windows)
        return r

    windows = [("full", 3690.0, 9510.0, 0.03)]
    labels = {"teff": 4500.0, "vmic": 1.0}
    w10, f10, info10 = _raw_star(0, labels, windows, _run_options(_config(tmp_path,
                                 piece_overlap=10)), tmp_path, fake)
    w0, f0, info0 = _raw_star(0, labels, windows, _run_options(_config(tmp_path)), tmp_path,
                              fake)
    np.testing.assert_allclose(w10, w0, atol=1e-9)
    np.testing.assert_allclose(f10, f0, atol=1e-9)
    assert info10["piece_overlap"] == 10.0 and info0["piece_overlap"] == 0.0
    assert info10["sampling"] == [list(p) for p in _pieces(labels)]
