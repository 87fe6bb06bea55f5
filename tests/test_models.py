"""Safe model loading and image preprocessing against independent references: the saved
state dict itself, hashlib, torchvision's own transforms and a PIL-only recomputation."""

from __future__ import annotations

import hashlib
import os
import pickle
import sys
import textwrap
import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
import torchvision
from PIL import Image
from safetensors.torch import save_file

from convlens.errors import ParameterError
from convlens.models import (
    LoadedModel,
    RandomWeightsWarning,
    default_preprocess,
    load_image,
    load_model,
    read_weights,
)

ARCH = "squeezenet1_1"  # the smallest torchvision classifier to build


@pytest.fixture(scope="module")
def state():
    torch.manual_seed(0)
    return torchvision.models.get_model(ARCH, weights=None).state_dict()


def test_torchvision_with_pt_and_safetensors_weights(tmp_path, state):
    pt, st = tmp_path / "w.pt", tmp_path / "w.safetensors"
    torch.save(state, pt)
    save_file({k: v.contiguous() for k, v in state.items()}, st)
    for path in (pt, st):
        loaded = load_model(ARCH, weights=path)
        got = loaded.model.state_dict()
        assert set(got) == set(state)
        assert all(torch.equal(got[k], state[k]) for k in state)
        assert loaded.weights_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
        assert not loaded.model.training
        assert loaded.name == ARCH
        assert loaded.input_size == (224, 224)
        meta = torchvision.models.get_model_weights(ARCH).DEFAULT.meta
        assert loaded.class_names == tuple(meta["categories"])
        assert str(path) in loaded.source


def test_torchvision_preprocess_is_the_weights_transforms(tmp_path):
    with pytest.warns(RandomWeightsWarning, match="RANDOM weights"):
        loaded = load_model("alexnet", allow_random=True)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 260, 3), np.uint8))
    expected = torchvision.models.get_model_weights("alexnet").DEFAULT.transforms()(image)
    got = loaded.preprocess(image)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected)
    grey = image.convert("L")
    assert loaded.preprocess(grey).shape == (3, 224, 224)
    assert loaded.weights_sha256 is None
    assert "random" in loaded.source


def test_default_preprocess_against_pil_recomputation():
    rng = np.random.default_rng(1)
    image = Image.fromarray(rng.integers(0, 256, (40, 60, 3), np.uint8))
    got = default_preprocess(resize=32, crop=28)(image)
    resized = image.resize((48, 32), Image.BILINEAR)  # short side 40 -> 32, keeps aspect
    left, top = round((48 - 28) / 2), round((32 - 28) / 2)
    crop = np.asarray(resized.crop((left, top, left + 28, top + 28)), np.float64) / 255
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    expected = torch.from_numpy(((crop - mean) / std).transpose(2, 0, 1)).float()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_random_weights_need_allow_random():
    with pytest.raises(
        ParameterError,
        match=r"weights: expected a local weights file for "
        r"alexnet \(or allow_random=True for random weights\), received None",
    ):
        load_model("alexnet")


def test_mismatched_state_dict_names_keys_and_shapes(tmp_path, state):
    bad = dict(state)
    bad.pop("features.0.bias")
    bad["extra.weight"] = torch.zeros(1)
    bad["classifier.1.weight"] = torch.zeros(10, 512, 1, 1)
    path = tmp_path / "bad.pt"
    torch.save(bad, path)
    with pytest.raises(
        ParameterError,
        match=r"weights: expected a state dict that matches the "
        r"squeezenet1_1 architecture",
    ) as info:
        load_model(ARCH, weights=path)
    msg = str(info.value)
    assert "missing keys [features.0.bias]" in msg
    assert "unexpected keys [extra.weight]" in msg
    assert "classifier.1.weight: model (1000, 512, 1, 1), file (10, 512, 1, 1)" in msg


class NotWeights:
    def __init__(self):
        self.payload = [1, 2, 3]


class Evil:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


MARKER = os.path.join(os.path.dirname(__file__), "__never_created_by_convlens__")


def test_pickles_that_are_not_plain_weights_are_refused(tmp_path):
    model_file = tmp_path / "model.pt"
    torch.save(nn.Linear(2, 2), model_file)  # a whole pickled model
    obj_file = tmp_path / "obj.pkl"
    with open(obj_file, "wb") as f:
        pickle.dump(NotWeights(), f)
    evil_file = tmp_path / "evil.pt"
    torch.save({"w": torch.zeros(1), "x": Evil()}, evil_file)
    for path in (model_file, obj_file, evil_file):
        with pytest.raises(
            ParameterError,
            match=r"weights: expected a file of plain weights "
            r"\(a state dict: tensors by name\).*never unpickled",
        ):
            read_weights(path)
    assert not os.path.exists(MARKER)
    numbers = tmp_path / "numbers.pt"
    torch.save({"epoch": 3, "w": torch.zeros(1)}, numbers)
    with pytest.raises(ParameterError, match=r"plain weights.*non-tensor entries \['epoch'\]"):
        read_weights(numbers)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a torch file")
    with pytest.raises(
        ParameterError, match=r"a PyTorch \(torch.save\) or safetensors weights file"
    ):
        read_weights(garbage)
    with pytest.raises(ParameterError, match="weights: expected an existing file"):
        read_weights(tmp_path / "missing.pt")


@pytest.fixture
def factory_module(tmp_path, monkeypatch):
    (tmp_path / "convlens_test_factory.py").write_text(
        textwrap.dedent(
            """
            import torch.nn as nn

            def make():
                return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())

            def not_a_model():
                return 42
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "convlens_test_factory"
    sys.modules.pop("convlens_test_factory", None)


def test_factory_spec(tmp_path, factory_module):
    loaded = load_model(f"{factory_module}:make")
    assert isinstance(loaded.model, nn.Sequential)
    assert not loaded.model.training
    assert loaded.weights_sha256 is None
    assert repr(loaded.preprocess) == repr(default_preprocess())
    torch.manual_seed(3)
    weights = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).state_dict()
    path = tmp_path / "f.pt"
    torch.save(weights, path)
    again = load_model(f"{factory_module}:make", weights=path)
    assert torch.equal(again.model[0].weight, weights["0.weight"])
    with pytest.raises(ParameterError, match=r"a factory returning an nn\.Module"):
        load_model(f"{factory_module}:not_a_model")
    with pytest.raises(ParameterError, match="model: expected an importable"):
        load_model(f"{factory_module}:missing")


def test_torchscript_file(tmp_path):
    torch.manual_seed(4)
    net = nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU())
    path = tmp_path / "net.ts"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(net).save(str(path))
    loaded = load_model(path)
    x = torch.randn(1, 3, 6, 6)
    torch.testing.assert_close(loaded.model(x), net(x))
    assert loaded.weights_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    not_script = tmp_path / "plain.bin"
    not_script.write_bytes(b"hello")
    with pytest.raises(ParameterError, match="the file is not TorchScript"):
        load_model(not_script)


def test_unknown_spec():
    with pytest.raises(
        ParameterError,
        match=r"model: expected a torchvision architecture name "
        r".*received 'vgg17'",
    ):
        load_model("vgg17")


def test_load_image_errors_name_the_file(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    with pytest.raises(
        ParameterError,
        match=r"image: expected a file Pillow can decode, "
        r"received '.*broken.png'",
    ):
        load_image(bad, default_preprocess())
    with pytest.raises(
        ParameterError,
        match=r"image: expected an existing image file, "
        r"received '.*nothing.png'",
    ):
        load_image(tmp_path / "nothing.png", default_preprocess())
    good = tmp_path / "ok.bmp"
    Image.new("L", (20, 10), 128).save(good)
    x = load_image(good, default_preprocess(10, 8))
    expected = (128 / 255 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor(
        [0.229, 0.224, 0.225]
    )
    torch.testing.assert_close(x[:, 4, 4], expected)


def test_demo_architecture_with_a_weights_file(tmp_path):
    import convlens.demo as demo

    torch.manual_seed(6)
    state = demo.build_demo_model().state_dict()
    path = tmp_path / "demo.pt"
    torch.save(state, path)
    loaded = load_model("demo", weights=path)
    got = loaded.model.state_dict()
    assert all(torch.equal(got[k], state[k]) for k in state)
    assert loaded.name == "demo"
    assert loaded.class_names == tuple(demo.FASHION_CLASSES)
    image = Image.new("L", (28, 28), 0)
    assert loaded.preprocess(image).shape == (1, 28, 28)
    assert loaded.weights_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_demo_without_weights_delegates_to_the_demo_package(monkeypatch):
    import convlens.demo as demo

    made = demo.build_demo_model().train()
    fake = LoadedModel(made, "demo", lambda im: torch.zeros(1, 28, 28), (28, 28), "ab", None, "x")
    monkeypatch.setattr(demo, "load_demo_model", lambda: fake)
    loaded = load_model("demo")
    assert loaded is fake
    assert not loaded.model.training
