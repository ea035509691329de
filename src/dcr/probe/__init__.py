"""``dcr probe``: eNTK similarity between prompt groups, its tracking over checkpoints, layer separability and
MDS maps (paper 3.2, 4.2, 7.3, A.6, A.9).

The stage functions ``ntk``, ``ntk_track``, ``separability``, ``mds`` and ``confound`` shadow the submodules of the same
name as attributes of this package; import the math from the submodules explicitly, e.g.
``from dcr.probe.ntk import kernel_blocks``.
"""

from dcr.probe.config import ConfoundConfig, MdsConfig, NtkConfig, NtkTrackConfig, SeparabilityConfig
from dcr.probe.confound import confound
from dcr.probe.stage import mds, ntk, ntk_track, separability

__all__ = ["ConfoundConfig", "MdsConfig", "NtkConfig", "NtkTrackConfig", "SeparabilityConfig", "confound", "mds",
           "ntk", "ntk_track", "separability"]
