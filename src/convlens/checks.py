"""Checks of a user's model against the tensors it is given, at the library's doors.

One place for what ``project``, ``scan`` and the pipeline refuse before any work: a model
whose weights are on the meta device, inputs on another device or of another dtype than the
weights, a batch without its batch dimension; and one wording for a torch error raised in a
user's forward pass (:func:`forward_error`), which names the model and the inputs instead of
showing torch's traceback. Torch is imported only inside the functions.

>>> import torch, torch.nn as nn
>>> try:
...     check_model_inputs(nn.Conv2d(3, 4, 3), torch.zeros(3, 8, 8))
... except ParameterError as exc:
...     print(exc.expected)
a batch (N, C, H, W) for a model of Conv2d layers, 4-D
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from convlens.errors import ParameterError, ParameterTypeError, verbatim

if TYPE_CHECKING:
    import torch.nn as nn
    from torch import Tensor

__all__ = [
    "check_input_dtype",
    "check_materialised",
    "check_model_inputs",
    "first_conv",
    "forward_error",
]

_SPATIAL = {1: "L", 2: "H, W", 3: "D, H, W"}


def check_materialised(model: nn.Module, param: str = "model") -> None:
    """Refuse a model with weights or buffers on the meta device (shapes without values: the
    explicit engine would read uninitialised memory).

    >>> import torch.nn as nn
    >>> check_materialised(nn.Linear(2, 2))
    >>> try:
    ...     check_materialised(nn.Linear(2, 2, device="meta"))
    ... except ParameterError as exc:
    ...     print(str(exc).split(" (")[0])
    model: expected a model whose weights hold values
    """
    meta = [n for n, t in (*model.named_parameters(), *model.named_buffers()) if t.is_meta]
    if meta:
        raise ParameterError(
            param,
            "a model whose weights hold values (not on the meta device)",
            verbatim(f"{len(meta)} tensor(s) on the meta device, first {meta[0]!r}"),
            hint="materialise it first: model.to_empty(device=...) then load_state_dict(...)",
        )


def check_input_dtype(net: nn.Module, inputs: Tensor, param: str = "dataset") -> None:
    """Floating-point inputs must have the floating dtype of the model's weights.

    >>> import torch, torch.nn as nn
    >>> check_input_dtype(nn.Linear(2, 2), torch.zeros(1, 2))
    """
    dtypes = sorted({str(p.dtype) for p in net.parameters() if p.is_floating_point()})
    if inputs.is_floating_point() and len(dtypes) == 1 and dtypes[0] != str(inputs.dtype):
        raise ParameterError(
            param,
            f"inputs of the model's dtype ({dtypes[0]})",
            verbatim(f"{inputs.dtype} inputs"),
            hint="convert the model (e.g. model.float()) or the inputs ("
            + ("inputs.to(dtype)" if param == "inputs" else "the preprocessing")
            + ")",
        )


def first_conv(net: nn.Module) -> tuple[str, Any] | None:
    """The first convolution of ``net`` in registration order, as ``(path, module)``.

    >>> import torch.nn as nn
    >>> first_conv(nn.Sequential(nn.ReLU(), nn.Conv1d(2, 3, 1)))[0]
    '1'
    """
    import torch.nn as nn

    for name, module in net.named_modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            return name, module
    return None


def _conv_dims(net: nn.Module) -> set[int]:
    import torch.nn as nn

    kinds: dict[type, int] = {nn.Conv1d: 1, nn.Conv2d: 2, nn.Conv3d: 3}
    kinds.update({nn.ConvTranspose1d: 1, nn.ConvTranspose2d: 2, nn.ConvTranspose3d: 3})
    return {d for m in net.modules() for k, d in kinds.items() if type(m) is k}


def check_model_inputs(
    model: nn.Module,
    inputs: Any,
    param: str = "inputs",
    *,
    channels: int | None = None,
) -> Tensor:
    """Refuse, before any work, inputs that ``model`` cannot take; returns ``inputs``.

    ``inputs`` must be a floating-point tensor (N, C, *spatial) with N >= 1 and values (not on
    the meta device), on the device and of the dtype of the model's weights, whose weights hold
    values too; a model whose convolutions are all ``d``-dimensional takes ``d + 2``-D
    batches (a missing batch dimension is named as such); ``channels``, where the caller knows
    the channels of the model's first layer (a chain's first convolution), must match C.
    Errors name ``param``.

    >>> import torch, torch.nn as nn
    >>> check_model_inputs(nn.Conv1d(1, 2, 3), torch.zeros(2, 1, 5)).shape
    torch.Size([2, 1, 5])
    """
    from torch import Tensor

    if not isinstance(inputs, Tensor):
        raise ParameterTypeError(param, "a tensor (N, C, *spatial)", inputs)
    if inputs.dim() < 2 or inputs.shape[0] < 1:
        raise ParameterError(param, "a batch (N, C, *spatial) with N >= 1", tuple(inputs.shape))
    if not inputs.is_floating_point():
        raise ParameterError(param, "a floating-point tensor", str(inputs.dtype))
    if inputs.is_meta:
        raise ParameterError(param, "a tensor holding values (not on the meta device)", "meta")
    check_materialised(model)
    devices = sorted({str(t.device) for t in (*model.parameters(), *model.buffers())})
    if devices and devices != [str(inputs.device)]:
        raise ParameterError(
            param,
            f"a tensor on the device of the model's weights ({', '.join(devices)})",
            str(inputs.device),
            hint=f"move the inputs with inputs.to({devices[0]!r})",
        )
    check_input_dtype(model, inputs, param)
    dims = _conv_dims(model)
    if len(dims) == 1:
        (d,) = dims
        if inputs.dim() != d + 2:
            hint = "add the batch dimension: inputs.unsqueeze(0)" if inputs.dim() == d + 1 else None
            raise ParameterError(
                param,
                f"a batch (N, C, {_SPATIAL[d]}) for a model of Conv{d}d layers, {d + 2}-D",
                verbatim(f"a {inputs.dim()}-D tensor of shape {tuple(inputs.shape)}"),
                hint=hint,
            )
    if channels is not None and int(inputs.shape[1]) != channels:
        raise ParameterError(
            param,
            f"{channels} channel(s) (dimension 1), as the model's first layer takes",
            verbatim(
                f"{int(inputs.shape[1])} channel(s) in a tensor of shape {tuple(inputs.shape)}"
            ),
        )
    return inputs


def forward_error(
    net: nn.Module, inputs: Tensor, exc: Exception, *, inputs_param: str = "dataset"
) -> ParameterError:
    """A torch error in the forward pass of a user's model on ``inputs``, as one line: inputs
    whose channels do not fit the model's first convolution are named as such
    (``inputs_param``: where they came from); anything else names the model, with the inputs'
    shape, dtype and device and torch's first line. ``inputs_param="inputs"`` means tensors a
    caller passed (no preprocessing to blame).

    >>> import torch, torch.nn as nn
    >>> str(forward_error(nn.Conv1d(2, 2, 1), torch.zeros(1, 3, 4), RuntimeError("x"))).split(",")[0]
    'dataset: expected inputs of 2 channel(s)'
    """
    first = first_conv(net)
    if first is not None and inputs.dim() >= 2:
        name, conv = first
        wanted = conv.in_channels if isinstance(conv.in_channels, int) else -1
        if wanted > 0 and wanted != int(inputs.shape[1]):
            where = f"the model's first convolution {name!r}" if name else "the model"
            tensors = inputs_param == "inputs"  # a caller's tensors, not preprocessed files
            source = "" if tensors else " from the preprocessing"
            return ParameterError(
                inputs_param,
                f"inputs of {conv.in_channels} channel(s), as {where} takes",
                verbatim(
                    f"{int(inputs.shape[1])} channel(s){source} (inputs of shape "
                    f"{tuple(inputs.shape)})"
                ),
                hint=None
                if tensors
                else "preprocess the images for this model (a factory can return a "
                "LoadedModel with its own preprocess)",
            )
    text = (str(exc).strip().splitlines() or [""])[0]
    return ParameterError(
        "model",
        "a forward pass that runs on its inputs",
        verbatim(
            f"an error on inputs of shape {tuple(inputs.shape)}, {inputs.dtype}, on {inputs.device}"
        ),
        hint=f"{type(exc).__name__}: {text}",
    )
