"""Survey runs: many spectrum files to one table, in bounded memory, resumable, optionally on Dask.

`run_survey` is what ``specutils-cinn predict`` runs. The inputs (files, folders or a table of
paths) are split into chunks of ``chunk_size`` inputs; each chunk is read, prepared and
inferred on its own and written as a part file ``part-NNNNNNN<suffix>`` into the folder
``<output>.parts/`` (written under a temporary name and renamed, so a part is either complete
or absent). When every chunk is done the parts are assembled, streaming, into the output
(under a temporary name, then renamed) and the folder is removed. A run that is killed leaves
its finished parts; running the same job again skips them. The job's settings are recorded in
``<output>.parts/manifest.json``: a different job (other inputs, model, seed, chunk size, ...)
refuses to reuse the folder.

Every input gives one row (a 4MOST container, one per fiber), in input order: ``filename``,
``source`` (the path as given; joined arm files separated by ``;``), ``source_index`` (the
row inside the source), ``status`` (``"ok"`` or the error that stopped it), the columns of
`~specutils_cinn.CINNParameterEstimator.predict`, and ``rv``/``rv_err``, the radial velocity
used and its uncertainty. See :ref:`survey`.

The subpackage holds one module per job: ``plan`` (inputs, lists and tables of paths, radial
velocity arguments), ``reading`` (reading a chunk's files, reading ahead), ``chunk`` (one
chunk's rows, `cached_estimator`), ``parts`` (the output check, the parts folder, its manifest
and lock, writing and assembling parts), ``run`` (`run_survey`) and ``dask`` (the Dask path).
"""

from .chunk import cached_estimator
from .parts import MANIFEST_VERSION, OUTPUT_FORMATS, check_output, parts_folder
from .plan import SEPARATOR, SurveyInput, parse_radial_velocity, plan_inputs
from .run import SurveySummary, run_survey

__all__ = [
    "MANIFEST_VERSION",
    "OUTPUT_FORMATS",
    "SEPARATOR",
    "SurveyInput",
    "SurveySummary",
    "cached_estimator",
    "check_output",
    "parse_radial_velocity",
    "parts_folder",
    "plan_inputs",
    "run_survey",
]
