"""The explicit list of real data sources (no import-time registration).

Adding a data set: write ``sources/<name>.py`` exposing ``SOURCE`` (or ``SOURCES``, a tuple,
for a module with several sets, like :mod:`msd`) and add it here.
"""

from __future__ import annotations

from genseg_bench.data.sources import (
    SourceInfo,
    busi,
    covid_qu_ex,
    cvc_clinicdb,
    dermis,
    dermquest,
    etab,
    fetreg,
    fpd,
    fuseg,
    icfluid,
    isic2018,
    jsrt,
    kvasir,
    montgomery,
    msd,
    ph2,
    shenzhen,
)

_MODULES = (
    isic2018,
    ph2,
    dermis,
    dermquest,
    jsrt,
    montgomery,
    shenzhen,
    covid_qu_ex,
    fetreg,
    fpd,
    kvasir,
    cvc_clinicdb,
    busi,
    fuseg,
    icfluid,
    etab,
)

SOURCES: dict[str, SourceInfo] = {
    **{m.SOURCE.id: m.SOURCE for m in _MODULES},
    **{s.id: s for s in msd.SOURCES},
}
