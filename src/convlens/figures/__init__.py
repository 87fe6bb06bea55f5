"""Pictures of convolution arithmetic, drawn for any 2-D configuration on demand:
the kernel sliding over the padded input, the transposed convolution as scatter and as a
fractionally strided conv, and the conv matrix C as a coloured pattern or as connections
(Dumoulin & Visin, arXiv:1603.07285). What each frame shows is computed by the pure functions
of :mod:`convlens.figures.frames`; :mod:`convlens.figures.draw` only paints it.

>>> from convlens.figures import conv_frames
>>> conv_frames(5, 3, stride=2, padding=1).n_frames
9
"""

from convlens.figures.draw import (
    EXTENSIONS,
    MAX_FPS,
    MAX_FRAMES,
    MIN_FPS,
    ConnectionScene,
    ConvScene,
    FractionalScene,
    MatrixScene,
    ScatterScene,
    Scene,
    connection_scene,
    conv_scene,
    fractional_scene,
    matrix_scene,
    save_scene,
    scatter_scene,
)
from convlens.figures.frames import (
    MAX_CELLS,
    MAX_MATRIX_CELLS,
    ConvFrames,
    FractionalFrames,
    ScatterFrames,
    connections,
    conv_frames,
    fractional_frames,
    kernel_colours,
    matrix_colours,
    matrix_entries,
    transpose_output_size,
    transpose_scatter_frames,
)

__all__ = [
    "EXTENSIONS",
    "MAX_CELLS",
    "MAX_FPS",
    "MAX_FRAMES",
    "MAX_MATRIX_CELLS",
    "MIN_FPS",
    "ConnectionScene",
    "ConvFrames",
    "ConvScene",
    "FractionalFrames",
    "FractionalScene",
    "MatrixScene",
    "ScatterFrames",
    "ScatterScene",
    "Scene",
    "connection_scene",
    "connections",
    "conv_frames",
    "conv_scene",
    "fractional_frames",
    "fractional_scene",
    "kernel_colours",
    "matrix_colours",
    "matrix_entries",
    "matrix_scene",
    "save_scene",
    "scatter_scene",
    "transpose_output_size",
    "transpose_scatter_frames",
]
