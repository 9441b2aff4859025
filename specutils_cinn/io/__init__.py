"""specutils readers for 4MOST and ESO spectra, registered when specutils_cinn is imported.

After ``import specutils_cinn``, ``Spectrum.read(path)`` identifies these formats by content
(``format=`` names them explicitly):

``4MOST-L1``
    4MOST L1 single spectra (ESO Phase 3 ``PHASE3SPECTRUM`` table, ``INSTRUME='QMOST'``):
    the joined LRS ``LJ`` spectrum or one arm.
``4MOST-MEC``
    4MOST nightly multi-fiber containers (``SPECTAB`` + ``FIBMETATAB``): a 2-D
    `~specutils.Spectrum` (``Spectrum.read``), one spectrum per fiber (``SpectrumList.read``)
    or a `~specutils.SpectrumCollection`.
``ESO-SDP``
    Other ESO Phase 3 one-dimensional spectra (``PRODCATG='SCIENCE.SPECTRUM'``).
``wcs1d-fits-relaxed``, ``tabular-fits-relaxed``
    specutils' 1-D image and table layouts when the flux unit is missing or not one astropy
    can parse (e.g. ``BUNIT='Relative Flux'``), or when read with ``flux_unit=``.

Every reader takes ``flux_unit=`` (overrides the file's flux unit) and ``medium=``, and fills
the ``Spectrum.meta`` keys listed in `META_KEYS`. `group_arms` joins the separately delivered
4MOST HRS arms of an object into one spectrum, `read_spectra` reads files and folders and
groups; `identify_format` tells these formats apart with one opening of a file (specutils'
own identification opens it once per registered reader). `read_arms_direct` reads plain
4MOST L1 / ESO Phase 3 files, and joins an object's arms, as ``Spectrum.read`` and
`group_arms` do, several times faster (survey runs use it). See :ref:`readers`.
"""

from ._common import ARMS_HRS, ARMS_LRS, META_KEYS
from ._direct import read_arms_direct
from .fourmost_mec import (
    fourmost_mec_collection_loader,
    fourmost_mec_list_loader,
    fourmost_mec_loader,
)
from .generic import tabular_fits_relaxed_loader, wcs1d_fits_relaxed_loader
from .grouping import group_arms, join_arms
from .phase3 import eso_sdp_loader, fourmost_l1_loader
from .reading import identify_format, read_paths, read_spectra, spectra_medium

#: Names of the formats registered with specutils by this package.
FORMATS = (
    "4MOST-L1",
    "4MOST-MEC",
    "ESO-SDP",
    "wcs1d-fits-relaxed",
    "tabular-fits-relaxed",
)

__all__ = [
    "ARMS_HRS",
    "ARMS_LRS",
    "FORMATS",
    "META_KEYS",
    "eso_sdp_loader",
    "fourmost_l1_loader",
    "fourmost_mec_collection_loader",
    "fourmost_mec_list_loader",
    "fourmost_mec_loader",
    "group_arms",
    "identify_format",
    "join_arms",
    "read_arms_direct",
    "read_paths",
    "read_spectra",
    "spectra_medium",
    "tabular_fits_relaxed_loader",
    "wcs1d_fits_relaxed_loader",
]
