"""The named choices of convlens' options, in one torch-free place.

The library's functions check their arguments against these, and the command line offers
them as ``click.Choice`` s, so ``convlens project --help`` or ``convlens scan --help`` answer
without loading torch.

>>> RULES, ENGINES, METHODS, SEEDS
(('deconvnet', 'guided', 'gradient'), ('auto', 'explicit', 'rules'), ('auto', 'crop', 'cone', 'full'), ('value', 'one'))
"""

from __future__ import annotations

__all__ = ["ENGINES", "MAX_PIXELS", "METHODS", "RULES", "SEEDS"]

#: The ReLU rules on the way back (Springenberg et al., arXiv:1412.6806, Fig. 1).
RULES = ("deconvnet", "guided", "gradient")
#: The engines of :func:`convlens.deconvnet.project`.
ENGINES = ("auto", "explicit", "rules")
#: How unit targets are projected: on the receptive-field crop, on the cone, at full size, or
#: the cheapest that gives the same numbers (:mod:`convlens.deconvnet.project`,
#: :func:`convlens.scan.project_top`).
METHODS = ("auto", "crop", "cone", "full")
#: What the chosen activations are set to before the reversed pass: their own value (Zeiler &
#: Fergus, arXiv:1311.2901, §2.1) or 1 (the gradient's seed, as Captum, zennit and Grad-CAM
#: start). The reversed pass is linear in the seed only where every ReLU passes the signal
#: by the forward pass's signs ("gradient"); the deconvnet and guided rules rectify the signal
#: itself, so for a unit whose value is negative the two seeds differ by more than a scale, and
#: a unit of value 0 projects to zeros under ``"value"``.
SEEDS = ("value", "one")
#: The default limit on an image's pixels (Pillow's own decompression-bomb limit).
MAX_PIXELS = 1024 * 1024 * 1024 // 4 // 3
