"""The embedded default: model shapes, the shipped weights and sample, deterministic training,
the paper's first-layer renormalisation, and the train-demo command."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from torch import nn
from torchvision.datasets.mnist import read_sn3_pascalvincent_tensor

from convlens.arithmetic import LayerSpec
from convlens.cli import cli, main
from convlens.deconvnet import chain_of
from convlens.demo import (
    FASHION_CLASSES,
    SAMPLE_PATH,
    WEIGHTS_PATH,
    build_demo_model,
    demo_metrics,
    load_demo_model,
    load_demo_sample,
    load_demo_weights,
)
from convlens.demo.data import (
    DEFAULT_DATA_DIR,
    MEAN,
    STD,
    load_fashion_mnist,
    preprocess,
    read_idx,
)
from convlens.demo.train import renormalize_filters_, train_demo
from convlens.errors import ParameterError


def _rms(weight: torch.Tensor) -> np.ndarray:
    w = weight.detach().double().numpy()
    return np.array([np.sqrt(np.mean(w[i] ** 2)) for i in range(w.shape[0])])


def test_model_layout_and_shapes() -> None:
    model = build_demo_model()
    kinds = {type(m) for m in model.features}
    assert kinds == {nn.Conv2d, nn.ReLU, nn.MaxPool2d}
    x = torch.randn(3, 1, 28, 28)
    assert model(x).shape == (3, len(FASHION_CLASSES))
    # the feature map size predicted by convolution arithmetic is what the model produces
    size = (28, 28)
    for m in model.features:
        if isinstance(m, nn.Conv2d | nn.MaxPool2d):
            size = LayerSpec.from_module(m).output_size(size)
    assert model.features(x).shape == (3, 128, *size)
    assert [p for p, _ in chain_of(model)] == [f"features.{i}" for i in range(len(model.features))]
    assert len(FASHION_CLASSES) == 10 == len(set(FASHION_CLASSES))


def _debian(tmp_path: Path, name: str) -> torch.Tensor:
    """Decompress one of Debian's files and parse it with torchvision's own IDX reader."""
    out = tmp_path / name.removesuffix(".gz")
    with gzip.open(DEFAULT_DATA_DIR / name, "rb") as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return read_sn3_pascalvincent_tensor(str(out), strict=False)


def test_sample_matches_debian_dataset_at_recorded_indices(tmp_path: Path) -> None:
    sample = load_demo_sample()
    images = _debian(tmp_path, "t10k-images-idx3-ubyte.gz")
    labels = _debian(tmp_path, "t10k-labels-idx1-ubyte.gz").long()
    idx = sample.indices
    assert len(sample) == 2000
    assert torch.equal(sample.images, images[idx])
    assert torch.equal(sample.labels, labels[idx])
    assert len(set(idx.tolist())) == len(idx)
    assert torch.equal(torch.bincount(sample.labels, minlength=10), torch.full((10,), 200))
    assert sample.paths[5] == f"t10k[{int(idx[5]):05d}]"
    assert sample.class_names == FASHION_CLASSES
    # our IDX reader agrees with torchvision's on the full files
    ours, our_labels = load_fashion_mnist("test")
    assert torch.equal(ours, images)
    assert torch.equal(our_labels, labels)


def test_sample_items_are_the_preprocessed_images() -> None:
    sample = load_demo_sample()
    x, y = sample[17]
    assert x.shape == (1, 28, 28)
    assert x.dtype == torch.float32
    assert y == int(sample.labels[17])
    restored = (x * STD + MEAN) * 255
    assert torch.allclose(restored[0], sample.images[17].float(), atol=1e-3)
    via_pil = preprocess(Image.fromarray(sample.images[17].numpy(), mode="L"))
    assert torch.equal(via_pil, x)


def test_shipped_weights_reach_90_percent_on_the_sample() -> None:
    loaded = load_demo_model()
    sample = load_demo_sample()
    inputs = torch.stack([sample[i][0] for i in range(len(sample))])
    with torch.no_grad():
        predicted = loaded.model(inputs).argmax(1)
    accuracy = float((predicted == sample.labels).double().mean())
    assert accuracy >= 0.90
    assert loaded.class_names == FASHION_CLASSES
    assert not loaded.model.training
    digest = hashlib.sha256(WEIGHTS_PATH.read_bytes()).hexdigest()
    assert loaded.weights_sha256 == digest == demo_metrics()["weights_sha256"]


def test_weights_load_with_safetensors_and_reject_a_mismatch(tmp_path: Path) -> None:
    bad = tmp_path / "demo_cnn.safetensors"
    from safetensors.torch import save_file

    save_file({"features.0.weight": torch.zeros(3, 1, 5, 5)}, str(bad))
    with pytest.raises(ParameterError, match="weights: expected the demo CNN's weights"):
        load_demo_weights(bad)
    copied = tmp_path / "copy.safetensors"
    shutil.copy(WEIGHTS_PATH, copied)
    (tmp_path / "copy.json").write_text(json.dumps({"weights_sha256": "0" * 64}))
    with pytest.raises(ParameterError, match="weights: expected a file with sha256 0000"):
        load_demo_weights(copied)
    with pytest.raises(ParameterError, match="weights: expected a safetensors file"):
        load_demo_weights(tmp_path / "missing.safetensors")


_TINY = {"epochs": 1, "limit": 384, "eval_limit": 256, "progress": False}


def _same(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_tiny_training_is_bit_identical_for_a_seed() -> None:
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a, metrics_a = train_demo(seed=3, **_TINY)
    # the caller's RNG and determinism flag are left as they were
    assert torch.equal(torch.get_rng_state(), before)
    assert not torch.are_deterministic_algorithms_enabled()
    b, metrics_b = train_demo(seed=3, **_TINY)
    c, _ = train_demo(seed=4, **_TINY)
    assert _same(a, b)
    assert not _same(a, c)
    assert metrics_a["history"][0]["train_loss"] == metrics_b["history"][0]["train_loss"]
    # the reported accuracy and loss are the model's on the evaluated images
    images, labels = load_fashion_mnist("test")
    n = _TINY["eval_limit"]
    with torch.no_grad():
        logits = a(((images[:n].float() / 255 - MEAN) / STD).unsqueeze(1))
    accuracy = float((logits.argmax(1) == labels[:n]).double().mean())
    assert metrics_a["accuracy"] == pytest.approx(accuracy)
    loss = float(F.cross_entropy(logits, labels[:n]))
    assert metrics_a["test_loss"] == pytest.approx(loss, rel=1e-5)


def test_resume_gives_the_same_weights(tmp_path: Path) -> None:
    options = {"epochs": 2, "limit": 256, "eval_limit": 128, "progress": False}
    ckpt = tmp_path / "run.ckpt"
    _, partial = train_demo(checkpoint=ckpt, until_epoch=1, **options)
    assert partial["epochs_done"] == 1
    assert ckpt.is_file()
    resumed, metrics = train_demo(checkpoint=ckpt, resume=True, **options)
    straight, reference = train_demo(**options)
    assert _same(resumed, straight)
    assert metrics["epochs_done"] == 2
    assert [h["train_loss"] for h in metrics["history"]] == [
        h["train_loss"] for h in reference["history"]
    ]
    with pytest.raises(ParameterError, match="resume: expected a checkpoint made with"):
        train_demo(checkpoint=ckpt, resume=True, **{**options, "epochs": 3})


def test_renormalisation_caps_first_layer_rms() -> None:
    model, _ = train_demo(seed=1, renormalize_first_layer=True, **_TINY)
    rms = _rms(model.features[0].weight)
    assert rms.max() <= 0.1 * (1 + 1e-6)
    assert np.isclose(rms, 0.1, rtol=1e-5).any()  # Adam pushes some filters to the cap
    free, _ = train_demo(seed=1, renormalize_first_layer=False, **_TINY)
    assert _rms(free.features[0].weight).max() > 0.1


@settings(max_examples=30)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(1, 8),
    c=st.integers(1, 3),
    k=st.integers(1, 5),
    scale=st.floats(0.01, 1.0),
)
def test_renormalize_filters_against_direct_rms(
    seed: int, n: int, c: int, k: int, scale: float
) -> None:
    w = torch.randn(n, c, k, k, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    w *= scale
    before = w.clone()
    rms = _rms(before)
    renormalize_filters_(w, 0.1)
    after = _rms(w)
    for i in range(n):
        if rms[i] > 0.1:
            assert after[i] == pytest.approx(0.1, rel=1e-12)
            assert torch.allclose(w[i], before[i] * (0.1 / rms[i]), rtol=1e-12)
        else:
            assert torch.equal(w[i], before[i])


@given(
    shape=st.lists(st.integers(1, 5), min_size=1, max_size=3),
    dtype=st.sampled_from([np.uint8, np.int8, ">i2", ">i4", ">f4", ">f8"]),
    zipped=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_read_idx_round_trips(
    tmp_path_factory: pytest.TempPathFactory, shape: list[int], dtype: str, zipped: bool, seed: int
) -> None:
    codes = {"|u1": 0x08, "|i1": 0x09, ">i2": 0x0B, ">i4": 0x0C, ">f4": 0x0D, ">f8": 0x0E}
    rng = np.random.default_rng(seed)
    data = (rng.standard_normal(shape) * 100).astype(dtype)
    header = bytes([0, 0, codes[np.dtype(dtype).str], len(shape)])
    header += np.array(shape, dtype=">i4").tobytes()
    raw = header + data.tobytes()
    path = tmp_path_factory.mktemp("idx") / ("x.idx.gz" if zipped else "x.idx")
    path.write_bytes(gzip.compress(raw) if zipped else raw)
    out = read_idx(path)
    assert out.shape == tuple(shape)
    assert np.array_equal(out, data)


def test_missing_dataset_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match="data_dir: expected a folder holding Fashion-MNIST"):
        load_fashion_mnist("train", tmp_path)
    with pytest.raises(ParameterError, match="split: expected 'train' or 'test', received 'val'"):
        load_fashion_mnist("val")
    with pytest.raises(ParameterError, match="epochs: expected a positive int, received 0"):
        train_demo(epochs=0, progress=False)
    bad = tmp_path / "bad.idx"
    bad.write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ParameterError, match="path: expected an IDX file"):
        read_idx(bad)


def test_train_demo_command_writes_weights_and_metrics(tmp_path: Path) -> None:
    out = tmp_path / "w.safetensors"
    result = CliRunner().invoke(
        cli, ["train-demo", "--epochs", "1", "--limit", "256", "--out", str(out), "--quiet"]
    )
    assert result.exit_code == 0, result.output
    assert "test accuracy" in result.output
    info = json.loads(out.with_suffix(".json").read_text())
    assert info["weights_sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert info["epochs"] == 1
    assert info["train_images"] == 256
    assert info["test_images"] == 10000
    assert not (tmp_path / "w.safetensors.ckpt").exists()
    model, digest = load_demo_weights(out)
    assert digest == info["weights_sha256"]
    reference, _ = train_demo(epochs=1, limit=256, eval_limit=8, progress=False)
    assert _same(model, reference)
    assert SAMPLE_PATH.is_file()


def test_train_demo_command_reports_a_missing_dataset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["train-demo", "--data-dir", str(tmp_path), "--out", str(tmp_path / "w.safetensors")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "data_dir: expected a folder holding Fashion-MNIST" in err
    assert not list(tmp_path.iterdir())
