# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # ConvTranspose2d and Conv2d, step by step
#
# This notebook follows the blog post that convlens grew from, *"[PyTorch] ConvTranspose2d 와
# Conv2d 의 관계"* (the relation between `ConvTranspose2d` and `Conv2d`, 2019), and checks each of
# its steps with convlens: a 4×4 input and a 3×3 kernel, the matrix **C** as the Jacobian of the
# convolution, `vec(x) · C` as the convolution, `vec(y) · Cᵀ` as the transposed convolution, the
# two pictures of the transposed convolution, and then the deconvnet of Zeiler & Fergus,
# *Visualizing and Understanding Convolutional Networks* (arXiv:1311.2901), on the demo CNN that
# ships with convlens.
#
# Every claim below is a cell that shows it **and** asserts it against an independent reference
# (plain sympy, `torch.nn.functional`, autograd, a deconvnet written out by hand), so this page
# cannot silently go wrong: the test suite executes it. A Korean version sits beside it.

# %%
import numpy as np
import sympy as sp
import torch
import torch.nn.functional as F
from IPython.display import Math, display
from PIL import Image
from torch.utils.data import Subset

import convlens
from convlens import figures
from convlens.deconvnet import to_image
from convlens.scan import layer_grid
from convlens.symbolic import render

torch.manual_seed(0)
print("convlens", convlens.__version__, "· torch", torch.__version__, "· sympy", sp.__version__)

# %% [markdown]
# ## 1. A 4×4 input and a 3×3 kernel
#
# The post takes an N×N = 4×4 input, a K×K = 3×3 filter, padding P = 0 and stride S = 1, so the
# output is ((N + 2P − K)/S + 1)² = 2×2. convlens's `LayerSpec` computes output sizes exactly as
# PyTorch does; here it agrees with the post's formula and with `F.conv2d` itself.

# %%
N, K, P, S = 4, 3, 0, 1
spec = convlens.LayerSpec.conv(K, stride=S, padding=P)
by_formula = (N + 2 * P - K) // S + 1
by_torch = tuple(F.conv2d(torch.zeros(1, 1, N, N), torch.zeros(1, 1, K, K)).shape[-2:])
print("LayerSpec:", spec.output_size(N), "· the post:", (by_formula,) * 2, "· F.conv2d:", by_torch)
assert spec.output_size(N) == (by_formula, by_formula) == by_torch == (2, 2)

# %% [markdown]
# `convlens.symbolic_conv` holds the whole derivation with sympy symbols named as in the post:
# the input X⁽ˡ⁾, the filter W and the output X⁽ˡ⁺¹⁾. Each output is the sum of nine products
# of a weight and an input pixel. We check the first one against the sum written out by hand.

# %%
sc = convlens.symbolic_conv(N, K)
X = sp.Matrix(sc.x[0])  # x^{(l)}_{ij}
W = sp.Matrix(sc.w[0, 0])  # w_{ij}
Y = sp.Matrix(sc.y[0])  # x^{(l+1)}_{ij}
forward = sc.forward()[0]
display(Math(r"X^{(l+1)} = X^{(l)} * W = " + sp.latex(forward)))
by_hand = sum(W[i, j] * X[i, j] for i in range(3) for j in range(3))
assert sp.expand(forward[0, 0] - by_hand) == 0

# %% [markdown]
# ## 2. C is the Jacobian of the convolution
#
# The post differentiates the flattened output with respect to the flattened input and gets a
# 16×4 matrix C (row layout: one row per input pixel, one column per output pixel). Here is the
# post's own code, modernised only where sympy changed (`Matrix.diff(Matrix)` returns an array on
# sympy ≥ 1.13, so we use `jacobian`), next to convlens's C, which is built straight from the
# index arithmetic without differentiating anything.


# %%
def convolution(x, w, K, N):  # the post's function, unchanged
    res = []
    for i in range(N - K + 1):
        for j in range(N - K + 1):
            a = sum(x[i : (K + i), j : (K + j)].multiply_elementwise(w))
            res.append(a)
    return sp.Matrix(res).reshape(N - K + 1, N - K + 1)


output = convolution(X, W, K=3, N=4)
C_seed = output.reshape(4, 1).jacobian(X.reshape(16, 1)).T  # (16, 4), the post's layout
C = sp.Matrix(sc.C(layout="row"))

latex = render(sc, show="C", format="latex").split("\n", 1)[1]  # line 1: a comment
display(Math(latex))
print("shape", C.shape, "· equal to the seed's Jacobian:", C_seed == C)
assert C.shape == (16, 4)
assert C_seed == C

# %% [markdown]
# It is the very matrix the post prints. Its LaTeX is pasted below from the post, entry for
# entry, and compared with convlens's C.

# %%
post_C = r"""w_{11} & 0 & 0 & 0\\w_{12} & w_{11} & 0 & 0\\w_{13} & w_{12} & 0 & 0\\0 & w_{13} & 0 & 0\\
w_{21} & 0 & w_{11} & 0\\w_{22} & w_{21} & w_{12} & w_{11}\\w_{23} & w_{22} & w_{13} & w_{12}\\0 & w_{23} & 0 & w_{13}\\
w_{31} & 0 & w_{21} & 0\\w_{32} & w_{31} & w_{22} & w_{21}\\w_{33} & w_{32} & w_{23} & w_{22}\\0 & w_{33} & 0 & w_{23}\\
0 & 0 & w_{31} & 0\\0 & 0 & w_{32} & w_{31}\\0 & 0 & w_{33} & w_{32}\\0 & 0 & 0 & w_{33}"""


def entry(tex):
    tex = tex.strip()
    return sp.Integer(0) if tex == "0" else sp.Symbol(tex)


C_post = sp.Matrix(
    [[entry(e) for e in row.split("&")] for row in post_C.replace("\n", "").split(r"\\")]
)
print(render(sc, show="C", format="unicode"))
assert C_post == C

# %% [markdown]
# ## 3. vec(x) · C is the convolution
#
# Flatten the input to a 1×16 row, multiply by C and fold the 1×4 result back to 2×2: that is
# the convolution. Symbolically it is the output above; numerically, with random float64
# weights and input, `convlens.conv_matrix` gives C as a (sparse or dense) tensor and the
# product equals `F.conv2d`.

# %%
folded = (X.reshape(1, 16) @ C).reshape(2, 2)
display(Math(r"\left[\operatorname{vec}(X^{(l)})\, C\right]^{(2\times 2)} = " + sp.latex(folded)))
assert sp.expand(folded - forward) == sp.zeros(2, 2)
assert sp.expand(folded - output) == sp.zeros(2, 2)

# %%
w = torch.randn(1, 1, 3, 3, dtype=torch.float64)
x = torch.randn(1, 1, 4, 4, dtype=torch.float64)
C_num = convlens.conv_matrix(w, (4, 4), layout="row", format="dense")  # (16, 4)
conv = F.conv2d(x, w)
print("vec(x) @ C   =", (x.reshape(1, 16) @ C_num).reshape(2, 2).numpy().round(4).tolist())
print("F.conv2d     =", conv.reshape(2, 2).numpy().round(4).tolist())
assert torch.allclose(x.reshape(1, 16) @ C_num, conv.reshape(1, 4), rtol=1e-12, atol=1e-12)
# the symbolic C with these weights substituted is the same matrix
C_sub = np.array(C.xreplace(sc.values(weight=w)).tolist(), dtype=np.float64)
assert np.allclose(C_sub, C_num.numpy(), rtol=0, atol=0)

# %% [markdown]
# ## 4. vec(y) · Cᵀ is the transposed convolution
#
# Going back, the post multiplies the flattened 2×2 output by Cᵀ and folds the result to 4×4.
# This is what PyTorch calls `ConvTranspose2d`: "the gradient of `Conv2d` with respect to its
# input". Symbolically we get the post's 4×4 matrix; its entry (1, 2) is
# w₁₁x₁₂⁽ˡ⁺¹⁾ + w₁₂x₁₁⁽ˡ⁺¹⁾, the two weights that connect input pixel x₁₂⁽ˡ⁾ to outputs x₁₁⁽ˡ⁺¹⁾
# and x₁₂⁽ˡ⁺¹⁾.

# %%
back = (Y.reshape(1, 4) @ C.T).reshape(4, 4)
display(Math(r"\left[\operatorname{vec}(X^{(l+1)})\, C^T\right]^{(4\times 4)} = " + sp.latex(back)))
assert sp.expand(back - sc.transpose()[0]) == sp.zeros(4, 4)
# the post's entry (1, 2), typed from the post
w11, w12 = sp.Symbol("w_{11}"), sp.Symbol("w_{12}")
y11, y12 = sp.Symbol("x^{(l+1)}_{11}"), sp.Symbol("x^{(l+1)}_{12}")
assert sp.expand(back[0, 1] - (w11 * y12 + w12 * y11)) == 0

# %% [markdown]
# Numerically, three independent references agree with `vec(y) @ Cᵀ`: `nn.ConvTranspose2d`
# with the *same* weights, autograd's gradient of `F.conv2d` with respect to its input (for the
# output gradient y), and `F.conv_transpose2d`. So do convlens's four routes to the transposed
# convolution (matmul with Cᵀ, scatter, fractionally strided, autograd).

# %%
y = torch.randn(1, 1, 2, 2, dtype=torch.float64)
by_matrix = (y.reshape(1, 4) @ C_num.T).reshape(1, 1, 4, 4)

deconv = torch.nn.ConvTranspose2d(1, 1, 3, bias=False).double()
with torch.no_grad():
    deconv.weight.copy_(w)
    by_module = deconv(y)

x_leaf = torch.zeros(1, 1, 4, 4, dtype=torch.float64, requires_grad=True)
F.conv2d(x_leaf, w).backward(y)
by_autograd = x_leaf.grad

references = {
    "nn.ConvTranspose2d": by_module,
    "autograd input gradient": by_autograd,
    "F.conv_transpose2d": F.conv_transpose2d(y, w),
}
routes = {
    name: getattr(convlens, name)(y, w)
    for name in (
        "conv_transpose_matmul",
        "conv_transpose_scatter",
        "conv_transpose_fractional",
        "conv_transpose_autograd",
    )
}
for name, value in {**references, **routes}.items():
    diff = (value - by_matrix).abs().max().item()
    print(f"{name:28s} max |difference| from vec(y) @ C^T = {diff:.1e}")
    assert torch.allclose(value, by_matrix, rtol=1e-12, atol=1e-12)

# %% [markdown]
# ## 5. Two pictures of the transposed convolution
#
# First the convolution itself (the kernel sliding over the input) and C as a pattern: each
# colour is one kernel entry, and the same diagonal bands as in the printed C appear.


# %%
def stack(*frames):
    """Frames (H, W, 3) of one scene, one below the other."""
    return Image.fromarray(np.concatenate(frames, axis=0))


slide = figures.conv_scene(4, 3)
display(stack(slide.rgb(0), slide.rgb(1)))
pattern = figures.matrix_scene(4, 3, layout="row")
display(Image.fromarray(pattern.rgb()))
# the picture's cells: kernel entry e = 1..9 (0: empty) of each cell of C, the post's w_ij
entries = figures.matrix_entries(4, 3, layout="row")
assert entries.shape == (16, 4)
for (r, c), e in np.ndenumerate(entries):
    assert C_post[r, c] == (W[(e - 1) // 3, (e - 1) % 3] if e else 0)

# %% [markdown]
# **Scatter.** The transposed convolution from the 2×2 map back to 4×4 stamps the kernel, scaled
# by each input pixel, onto the output and adds the overlaps: input pixel k writes the 3×3 block
# that received it in the forward direction. The reference is a one-hot input through
# `F.conv_transpose2d` with a kernel of ones.

# %%
scatter = figures.scatter_scene(2, 3)
display(stack(scatter.rgb(0), scatter.rgb(1)))
frames = figures.transpose_scatter_frames(2, 3)
for k in range(frames.n_frames):
    one_hot = torch.zeros(4, dtype=torch.float64)
    one_hot[k] = 1
    stamp = F.conv_transpose2d(
        one_hot.view(1, 1, 2, 2), torch.ones(1, 1, 3, 3, dtype=torch.float64)
    )
    written = {tuple(c) for c in torch.nonzero(stamp[0, 0]).tolist()}
    assert frames.writes(k) == written, k
print("every input pixel writes the block that F.conv_transpose2d writes")

# %% [markdown]
# **Fractionally strided.** The same result as an ordinary convolution: pad the 2×2 map with
# K − 1 = 2 zeros on each side (with stride S, S − 1 zeros would also go *between* pixels: the
# "fractional" stride), then slide the kernel flipped in both directions. Output pixel x₁₂⁽ˡ⁾
# reads y₁₁ and y₁₂ through w₁₂ and w₁₁, as the post says. We check it with `F.conv2d` on the
# padded map and the flipped kernel.

# %%
fractional = figures.fractional_scene(2, 3)
display(stack(fractional.rgb(0), fractional.rgb(1)))
f_frames = figures.fractional_frames(2, 3)
assert f_frames.canvas_size == (2 + 2 * (K - 1), 2 + 2 * (K - 1))
padded = F.pad(y, (K - 1,) * 4)
by_flipped_conv = F.conv2d(padded, w.flip(-1, -2))
print(
    "conv2d(padded y, flipped w) equals vec(y) @ C^T:", torch.allclose(by_flipped_conv, by_matrix)
)
assert torch.allclose(by_flipped_conv, by_matrix, rtol=1e-12, atol=1e-12)

# %% [markdown]
# ## 6. The deconvnet on a trained CNN
#
# Zeiler & Fergus project one activation of a trained network back to pixel space by running the
# network backwards, layer by layer:
#
# 1. **unpool with switches**: each max-pooling layer remembers where its maxima were (the
#    *switches*) and puts the signal back there, zero elsewhere;
# 2. **rectify**: the signal passes through a ReLU (the deconvnet applies `relu` to the signal
#    itself; guided backprop also masks by where the forward input was positive; the plain
#    gradient only masks);
# 3. **transposed filters**: each convolution is undone by the transposed convolution with the
#    *same* weights (section 4: Cᵀ).
#
# convlens ships a small ZF-style CNN trained on Fashion-MNIST (three conv–ReLU–max-pool blocks)
# and a bundled test sample. We project the strongest unit of two channels of its third conv
# layer (`features.6`) for four images, and compare `convlens.project` with the three steps
# written out by hand in plain `torch.nn.functional`.

# %%
loaded = convlens.load_model("demo")
model = loaded.model
print(model.features)
sample = convlens.load_demo_sample()
images = torch.stack([sample[i][0] for i in range(4)])
channels = (0, 5)


def deconvnet_by_hand(x, channel, rule):
    f = model.features
    # forward: keep the switches (pooling indices) and the ReLU inputs
    a0 = F.conv2d(x, f[0].weight, f[0].bias, padding=2)
    p2, switches2 = F.max_pool2d(F.relu(a0), 2, 2, return_indices=True)
    a3 = F.conv2d(p2, f[3].weight, f[3].bias, padding=1)
    p5, switches5 = F.max_pool2d(F.relu(a3), 2, 2, return_indices=True)
    a6 = F.conv2d(p5, f[6].weight, f[6].bias, padding=1)
    # the signal: the strongest unit of the channel keeps its value, everything else is zero
    fmap = a6[:, channel].flatten(1)
    signal = torch.zeros_like(a6)
    signal[:, channel] = (fmap * F.one_hot(fmap.argmax(1), fmap.shape[1])).view_as(a6[:, channel])

    def rectify(s, pre):
        return {"deconvnet": F.relu(s), "guided": F.relu(s) * (pre > 0), "gradient": s * (pre > 0)}[
            rule
        ]

    # backward: transposed filters, unpooling by switches, rectification
    s = F.conv_transpose2d(signal, f[6].weight, padding=1)
    s = rectify(F.max_unpool2d(s, switches5, 2, 2, output_size=a3.shape[-2:]), a3)
    s = F.conv_transpose2d(s, f[3].weight, padding=1)
    s = rectify(F.max_unpool2d(s, switches2, 2, 2, output_size=a0.shape[-2:]), a0)
    return F.conv_transpose2d(s, f[0].weight, padding=2)


targets = [convlens.Target("features.6", channel=c) for c in channels]
results = {}
with torch.no_grad():
    for rule in convlens.RULES:
        results[rule] = convlens.project(model, images, targets, rule=rule)
        for t, c in enumerate(channels):
            mine = deconvnet_by_hand(images, c, rule)
            diff = (results[rule].projections[:, t] - mine).abs().max().item()
            print(f"{rule:9s} channel {c}: max |convlens - by hand| = {diff:.1e}")
            assert torch.allclose(results[rule].projections[:, t], mine, rtol=1e-5, atol=1e-6)

# %% [markdown]
# The projections, zero at mid-grey (`convlens.deconvnet.to_image`): per image, the input and,
# for each channel, the deconvnet, guided backprop and gradient pictures. The deconvnet's
# rectification keeps only positive reconstructions at every layer, so its pictures are
# smoother than the gradient's.

# %%
rows = []
for n in range(len(images)):
    tiles = [to_image(images[n], scale=3)]
    for t in range(len(channels)):
        tiles += [to_image(results[rule].projections[n, t], scale=3) for rule in convlens.RULES]
    rows.append(
        np.concatenate(
            [
                np.pad(np.asarray(im.convert("RGB")), ((2, 2), (2, 2), (0, 0)), constant_values=255)
                for im in tiles
            ],
            axis=1,
        )
    )
display(Image.fromarray(np.concatenate(rows, axis=0)))
print(
    "columns: input | channel 0: deconvnet, guided, gradient | channel 5: deconvnet, guided, gradient"
)
assert not torch.equal(results["deconvnet"].projections, results["gradient"].projections)

# %% [markdown]
# ## 7. Figure 2: the top-9 images of a channel and their projections
#
# The paper's Figure 2 shows, for a feature map, the nine dataset images that excite it most,
# each with its projection cut to the unit's receptive field. `convlens.scan_dataset` keeps the
# top-9 per channel over a dataset (here the first 400 bundled images), `convlens.project_top`
# projects them, and `convlens.scan.layer_grid` lays them out: per channel, the projections
# on the left and the image patches on the right.

# %%
data = Subset(sample, range(400))
found = convlens.scan_dataset(model, data, ["features.3"], top=9, progress=False)
tops = convlens.project_top(model, data, found, channels=[0, 1, 2])
display(layer_grid(tops.layers["features.3"], tile=48))

# %% [markdown]
# The scan's choice checked by brute force: the feature-map maximum of every image, computed with
# `F.conv2d`, and its nine largest values per channel.

# %%
f = model.features
with torch.no_grad():
    batch = torch.stack([data[i][0] for i in range(len(data))])
    a3 = F.conv2d(
        F.max_pool2d(F.relu(F.conv2d(batch, f[0].weight, f[0].bias, padding=2)), 2),
        f[3].weight,
        f[3].bias,
        padding=1,
    )
maxima = a3.flatten(2).amax(2)  # (images, channels)
top_values = maxima.topk(9, dim=0).values.T  # (channels, 9)
layer = found.layers["features.3"]
print("channel 0, scan:       ", " ".join(f"{v:.3f}" for v in layer.values[0].tolist()))
print("channel 0, brute force:", " ".join(f"{v:.3f}" for v in top_values[0].tolist()))
assert torch.allclose(layer.values, top_values, rtol=1e-5, atol=1e-5)
chosen = maxima[layer.indices, torch.arange(maxima.shape[1])[:, None]]
assert torch.allclose(chosen, layer.values, rtol=1e-5, atol=1e-5)
patches = tops.layers["features.3"].patches
print(
    "projections and patches per channel:",
    tuple(patches.shape[1:]),
    "(top-9, input channel, receptive field)",
)
# receptive field of features.3 by hand: 5 (conv 5x5), +1 (pool 2, jump 1), +2*2 (conv 3x3, jump 2)
by_hand = 5 + (2 - 1) * 1 + (3 - 1) * 2
fields = {field.path: field for field in convlens.receptive_fields(model, 28)}
print("receptive field of features.3:", fields["features.3"].size, "by hand:", by_hand)
assert tuple(patches.shape[-2:]) == fields["features.3"].size == (by_hand, by_hand)
