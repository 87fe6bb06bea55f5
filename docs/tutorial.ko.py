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
# # ConvTranspose2d 와 Conv2d, 한 단계씩
#
# 이 노트북은 convlens 가 출발한 블로그 글 *"[PyTorch] ConvTranspose2d 와 Conv2d 의 관계"* (2019) 를
# 따라가며, 글의 각 단계를 convlens 로 확인한다: 4×4 입력과 3×3 커널, 합성곱의 미분(Jacobian)으로서의
# 행렬 **C**, 합성곱인 `vec(x) · C`, 전치 합성곱(transposed convolution)인 `vec(y) · Cᵀ`, 전치 합성곱의
# 두 가지 그림, 그리고 convlens 에 들어 있는 데모 CNN 위에서의 Zeiler & Fergus 의 deconvnet
# (*Visualizing and Understanding Convolutional Networks*, arXiv:1311.2901).
#
# 아래의 모든 주장은 그것을 **보여 주고** 독립적인 기준(순수 sympy, `torch.nn.functional`, autograd,
# 손으로 풀어 쓴 deconvnet)과 비교해 **assert 하는** 셀이다. 테스트가 이 노트북을 실행하므로 이 페이지는
# 모르는 사이에 틀려질 수 없다. 영어판이 옆에 있다.

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
# ## 1. 4×4 입력과 3×3 커널
#
# 글에서는 N×N = 4×4 입력, K×K = 3×3 필터, 패딩 P = 0, 스트라이드 S = 1 을 쓰므로 출력은
# ((N + 2P − K)/S + 1)² = 2×2 이다. convlens 의 `LayerSpec` 은 출력 크기를 PyTorch 와 똑같이 계산한다.
# 여기서는 글의 공식, 그리고 `F.conv2d` 자체와 일치한다.

# %%
N, K, P, S = 4, 3, 0, 1
spec = convlens.LayerSpec.conv(K, stride=S, padding=P)
by_formula = (N + 2 * P - K) // S + 1
by_torch = tuple(F.conv2d(torch.zeros(1, 1, N, N), torch.zeros(1, 1, K, K)).shape[-2:])
print("LayerSpec:", spec.output_size(N), "· the post:", (by_formula,) * 2, "· F.conv2d:", by_torch)
assert spec.output_size(N) == (by_formula, by_formula) == by_torch == (2, 2)

# %% [markdown]
# `convlens.symbolic_conv` 는 글과 같은 이름의 sympy 기호로 유도 전체를 담고 있다: 입력 X⁽ˡ⁾, 필터 W,
# 출력 X⁽ˡ⁺¹⁾. 각 출력은 가중치와 입력 픽셀의 곱 아홉 개의 합이다. 첫 번째 출력을 손으로 쓴 합과 비교한다.

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
# ## 2. C 는 합성곱의 Jacobian 이다
#
# 글은 한 줄로 편 출력을 한 줄로 편 입력으로 미분해서 16×4 행렬 C 를 얻는다(행 배치: 입력 픽셀마다 한 행,
# 출력 픽셀마다 한 열). 아래는 글의 코드 그대로이고, sympy 가 바뀐 부분만 고쳤다(sympy ≥ 1.13 에서는
# `Matrix.diff(Matrix)` 가 배열을 돌려주므로 `jacobian` 을 쓴다). 그 옆에 convlens 의 C 가 있는데, 이것은
# 아무것도 미분하지 않고 인덱스 계산만으로 바로 만든 것이다.


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
# 글에 인쇄된 바로 그 행렬이다. 아래에 글의 LaTeX 를 원소 하나하나 그대로 붙여 넣고 convlens 의 C 와
# 비교한다.

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
# ## 3. vec(x) · C 는 합성곱이다
#
# 입력을 1×16 행으로 펴고 C 를 곱한 뒤 1×4 결과를 다시 2×2 로 접으면 합성곱이 된다. 기호로는 위의 출력과
# 같고, 수치로는 무작위 float64 가중치와 입력에 대해 `convlens.conv_matrix` 가 C 를 (희소 또는 밀집)
# 텐서로 주며 그 곱은 `F.conv2d` 와 같다.

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
# ## 4. vec(y) · Cᵀ 는 전치 합성곱이다
#
# 거꾸로, 글은 한 줄로 편 2×2 출력에 Cᵀ 를 곱하고 결과를 4×4 로 접는다. PyTorch 가 `ConvTranspose2d`
# 라고 부르는 것, 즉 "입력에 대한 `Conv2d` 의 기울기(gradient)" 이다. 기호로는 글의 4×4 행렬이 나온다.
# (1, 2) 원소는 w₁₁x₁₂⁽ˡ⁺¹⁾ + w₁₂x₁₁⁽ˡ⁺¹⁾ 로, 입력 픽셀 x₁₂⁽ˡ⁾ 을 출력 x₁₁⁽ˡ⁺¹⁾, x₁₂⁽ˡ⁺¹⁾ 과 잇는 두
# 가중치이다.

# %%
back = (Y.reshape(1, 4) @ C.T).reshape(4, 4)
display(Math(r"\left[\operatorname{vec}(X^{(l+1)})\, C^T\right]^{(4\times 4)} = " + sp.latex(back)))
assert sp.expand(back - sc.transpose()[0]) == sp.zeros(4, 4)
# the post's entry (1, 2), typed from the post
w11, w12 = sp.Symbol("w_{11}"), sp.Symbol("w_{12}")
y11, y12 = sp.Symbol("x^{(l+1)}_{11}"), sp.Symbol("x^{(l+1)}_{12}")
assert sp.expand(back[0, 1] - (w11 * y12 + w12 * y11)) == 0

# %% [markdown]
# 수치로는 서로 독립인 세 기준이 `vec(y) @ Cᵀ` 와 일치한다: *같은* 가중치의 `nn.ConvTranspose2d`,
# (출력 기울기 y 에 대한) 입력에 대한 `F.conv2d` 의 autograd 기울기, 그리고 `F.conv_transpose2d`.
# convlens 의 전치 합성곱 네 경로(Cᵀ 와의 행렬곱, scatter, fractionally strided, autograd)도 마찬가지다.

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
# ## 5. 전치 합성곱의 두 그림
#
# 먼저 합성곱 자체(입력 위를 미끄러지는 커널)와 패턴으로서의 C: 색 하나가 커널 원소 하나이고, 인쇄된 C 와
# 같은 대각선 띠가 보인다.


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
# **Scatter.** 2×2 맵에서 4×4 로 돌아가는 전치 합성곱은 입력 픽셀마다 그 값을 곱한 커널을 출력 위에
# 찍고(stamp) 겹치는 곳을 더한다: 입력 픽셀 k 는 정방향에서 자신에게 값을 보냈던 3×3 블록에 쓴다. 기준은
# 원-핫(one-hot) 입력을 1 로 채운 커널과 함께 `F.conv_transpose2d` 에 통과시킨 결과이다.

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
# **Fractionally strided.** 같은 결과를 평범한 합성곱으로 얻는다: 2×2 맵의 사방에 K − 1 = 2 개의 0 을
# 채우고(스트라이드가 S 이면 픽셀 *사이에도* S − 1 개의 0 이 들어간다: "분수" 스트라이드), 상하좌우로
# 뒤집은 커널을 미끄러뜨린다. 글의 설명대로 출력 픽셀 x₁₂⁽ˡ⁾ 은 w₁₂ 와 w₁₁ 을 통해 y₁₁ 과 y₁₂ 를 읽는다.
# 0 을 채운 맵과 뒤집은 커널에 대한 `F.conv2d` 로 확인한다.

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
# ## 6. 학습된 CNN 위의 deconvnet
#
# Zeiler & Fergus 는 학습된 네트워크를 층마다 거꾸로 실행해서 활성화 하나를 픽셀 공간으로 투영한다:
#
# 1. **스위치로 unpooling**: 각 max-pooling 층은 최댓값의 위치(*스위치*)를 기억했다가 신호를 그
#    자리에 되돌려 놓고 나머지는 0 으로 둔다;
# 2. **정류(rectify)**: 신호가 ReLU 를 통과한다(deconvnet 은 신호 자체에 `relu` 를 적용하고, guided
#    backprop 은 여기에 정방향 입력이 양수였던 곳으로 마스크를 더하며, 일반 기울기는 마스크만 씌운다);
# 3. **전치 필터**: 각 합성곱은 *같은* 가중치의 전치 합성곱으로 되돌린다(4 절: Cᵀ).
#
# convlens 에는 Fashion-MNIST 로 학습한 작은 ZF 스타일 CNN(합성곱–ReLU–max-pool 블록 세 개)과 테스트
# 샘플이 들어 있다. 세 번째 합성곱 층(`features.6`)의 두 채널에서 가장 강한 유닛을 이미지 네 장에 대해
# 투영하고, `convlens.project` 를 순수 `torch.nn.functional` 로 손으로 쓴 세 단계와 비교한다.

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
# 투영 결과(0 이 중간 회색, `convlens.deconvnet.to_image`): 이미지마다 입력, 그리고 채널마다 deconvnet,
# guided backprop, 기울기 그림. deconvnet 은 모든 층에서 양의 재구성만 남기므로 기울기보다 그림이
# 매끄럽다.

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
# ## 7. Figure 2: 한 채널의 상위 9 개 이미지와 그 투영
#
# 논문의 Figure 2 는 특징 맵마다 그것을 가장 강하게 활성화하는 데이터셋 이미지 아홉 장을, 유닛의 수용
# 영역(receptive field)으로 잘라 낸 투영과 함께 보여 준다. `convlens.scan_dataset` 은 데이터셋(여기서는
# 번들 이미지 중 처음 400 장)에서 채널마다 상위 9 개를 고르고, `convlens.project_top` 이 그것들을 투영하며,
# `convlens.scan.layer_grid` 가 배치한다: 채널마다 왼쪽에 투영, 오른쪽에 이미지 조각.

# %%
data = Subset(sample, range(400))
found = convlens.scan_dataset(model, data, ["features.3"], top=9, progress=False)
tops = convlens.project_top(model, data, found, channels=[0, 1, 2])
display(layer_grid(tops.layers["features.3"], tile=48))

# %% [markdown]
# scan 의 선택을 전수 조사로 확인한다: 모든 이미지의 특징 맵 최댓값을 `F.conv2d` 로 계산하고 채널마다 가장
# 큰 아홉 개를 고른다.

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
