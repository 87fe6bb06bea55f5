"""Start-up cost: what ``import convlens`` and each CLI command load, in a fresh interpreter.

The heavy dependencies (torch, sympy, matplotlib, torchvision, safetensors) must load only where a
command needs them: ``convlens --help`` and the ``arith`` calculators need none of them,
``convlens symbolic`` needs sympy only. Each check runs the command in a new ``python`` process
and reads its ``sys.modules`` after the command finished. The printed results are checked against
torch in this process (the independent reference), so a command that loads nothing because it
does nothing also fails.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import convlens
from convlens.cli import COMMANDS, load_command_module

HEAVY = ("torch", "sympy", "matplotlib", "torchvision", "safetensors")

# Runs the CLI in a fresh interpreter, then prints one JSON line: the exit status, the heavy
# top-level packages and the ``convlens.cli.*`` command modules that were imported.
_CLI_PROBE = """
import json, sys
from convlens.cli import main
try:
    main(sys.argv[1:])
    code = 0
except SystemExit as exc:
    code = exc.code
sys.stdout.flush()
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(HEAVY))
cli = sorted(m for m in sys.modules if m.startswith("convlens.cli."))
print("\\n@@probe " + json.dumps({"code": code, "heavy": heavy, "cli": cli}))
""".replace("HEAVY", repr(HEAVY))

_IMPORT_PROBE = """
import json, sys
STATEMENT
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(HEAVY))
print(json.dumps(heavy))
""".replace("HEAVY", repr(HEAVY))


def run_cli(*args: str) -> tuple[str, dict]:
    """Run ``convlens ARGS`` in a fresh interpreter: (its stdout, the probe's findings)."""
    proc = subprocess.run(
        [sys.executable, "-c", _CLI_PROBE, *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    out, sep, probe = proc.stdout.rpartition("\n@@probe ")
    assert sep, f"probe did not finish: rc={proc.returncode}\n{proc.stderr}"
    return out, json.loads(probe)


def heavy_after(statement: str) -> list[str]:
    """The heavy packages a fresh interpreter holds after running ``statement``."""
    proc = subprocess.run(
        [sys.executable, "-c", _IMPORT_PROBE.replace("STATEMENT", statement)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _output_size(text: str) -> int:
    match = re.search(r"^input \d+ -> output (\d+)$", text, re.MULTILINE)
    assert match, text
    return int(match.group(1))


# --- import convlens ------------------------------------------------------------------------------


def test_import_convlens_loads_no_heavy_dependency() -> None:
    assert heavy_after("import convlens") == []


def test_layerspec_loads_no_heavy_dependency() -> None:
    """The arithmetic core is torch-free: LayerSpec, sizes and inverses need only NumPy."""
    loaded = heavy_after(
        "import convlens\n"
        "spec = convlens.LayerSpec.conv(3, stride=2, padding=1)\n"
        "spec.output_size(12)\n"
        "convlens.invert_conv(spec, 12)"
    )
    assert loaded == []


def test_symbolic_loads_sympy_but_not_torch() -> None:
    loaded = heavy_after("from convlens import symbolic_conv\nsymbolic_conv(4, 3)")
    assert "sympy" in loaded
    assert not {"torch", "matplotlib", "torchvision"} & set(loaded)


def test_every_public_name_resolves_to_its_package_object() -> None:
    """``from convlens import X`` gives the very object its package defines, for all of __all__."""
    import importlib

    for name in convlens.__all__:
        value = getattr(convlens, name)
        if name in convlens._LAZY:
            package, attribute = convlens._LAZY[name]
            assert value is getattr(importlib.import_module(package), attribute), name
    assert set(convlens.__all__) <= set(dir(convlens))
    assert set(convlens._LAZY) <= set(convlens.__all__)
    namespace: dict[str, object] = {}
    exec("from convlens import *", namespace)
    assert set(convlens.__all__) <= set(namespace)
    assert namespace["scan_dataset"] is importlib.import_module("convlens.scan").scan


def test_subpackages_load_on_attribute_access() -> None:
    """``import convlens`` then ``convlens.deconvnet.X`` works as when every package was eager."""
    loaded = heavy_after(
        "import convlens\n"
        "assert convlens.arithmetic.LayerSpec is convlens.LayerSpec\n"
        "assert 'convlens.arithmetic' in sys.modules"
    )
    assert loaded == []
    loaded = heavy_after("import convlens\nassert convlens.deconvnet.Target is convlens.Target")
    assert "torch" in loaded


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = convlens.no_such_name  # type: ignore[attr-defined]
    assert not hasattr(convlens, "no_such_name")


# --- the lazy CLI group ---------------------------------------------------------------------------


def test_help_lists_every_command_without_importing_any() -> None:
    out, probe = run_cli("--help")
    assert probe["code"] == 0
    assert probe["heavy"] == []
    assert probe["cli"] == [], "convlens --help imported modules of convlens.cli"
    rows = re.findall(r"^  (\S+) +(.+)$", out.split("Commands:")[1], re.MULTILINE)
    assert [name for name, _ in rows] == sorted(COMMANDS)
    for name, text in rows:  # one line each: the table's help, shortened by click if long
        shown = text.removesuffix("...")
        assert shown, name
        assert COMMANDS[name][1].startswith(shown), (name, text)


def test_help_table_matches_each_commands_own_short_help() -> None:
    """The table's one-liner is the command's ``short_help`` or first docstring sentence."""
    by_module: dict[str, set[str]] = {}
    for name, (module, _) in COMMANDS.items():
        by_module.setdefault(module, set()).add(name)
    for module, names in by_module.items():
        commands = load_command_module(module)
        # every command the module registers is in the table, under this module
        assert set(commands) == names, module
        for name in names:
            assert COMMANDS[name][1] == commands[name].get_short_help_str(limit=10**6), name


def test_arith_conv_loads_nothing_heavy() -> None:
    out, probe = run_cli(
        "arith",
        "conv",
        "--dims",
        "1",
        "--input",
        "12",
        "--kernel",
        "3",
        "--stride",
        "2",
        "--padding",
        "1",
    )
    assert probe["code"] == 0
    expected = F.conv1d(torch.zeros(1, 1, 12), torch.zeros(1, 1, 3), stride=2, padding=1).shape[-1]
    assert _output_size(out) == expected
    assert not {"torch", "sympy", "matplotlib"} & set(probe["heavy"])
    command_modules = {f"convlens.cli.{module}" for module, _ in COMMANDS.values()}
    assert command_modules & set(probe["cli"]) == {"convlens.cli.arith"}, probe["cli"]


def test_arith_transpose_loads_nothing_heavy() -> None:
    args = (
        "--input",
        "6",
        "--kernel",
        "3",
        "--stride",
        "2",
        "--padding",
        "1",
        "--output-padding",
        "1",
    )
    out, probe = run_cli("arith", "transpose", "--dims", "1", *args)
    assert probe["code"] == 0
    expected = F.conv_transpose1d(
        torch.zeros(1, 1, 6), torch.zeros(1, 1, 3), stride=2, padding=1, output_padding=1
    ).shape[-1]
    assert _output_size(out) == expected
    assert not {"torch", "sympy", "matplotlib"} & set(probe["heavy"])


@pytest.mark.parametrize("avg", [False, True])
def test_arith_pool_loads_nothing_heavy(avg: bool) -> None:
    flags = ["--avg"] if avg else []
    out, probe = run_cli(
        "arith", "pool", "--dims", "1", "--input", "12", "--kernel", "3", "--stride", "2", *flags
    )
    assert probe["code"] == 0
    pool = F.avg_pool1d if avg else F.max_pool1d
    assert _output_size(out) == pool(torch.zeros(1, 1, 12), 3, stride=2).shape[-1]
    assert not {"torch", "sympy", "matplotlib"} & set(probe["heavy"])


def test_symbolic_command_loads_sympy_only() -> None:
    out, probe = run_cli(
        "symbolic", "--input", "4", "--kernel", "3", "--show", "C", "--format", "unicode"
    )
    assert probe["code"] == 0
    # C's shape in the row layout is (input pixels, output pixels); torch gives the output size.
    side = F.conv2d(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 3, 3)).shape[-1]
    assert f"(in, out) = ({4 * 4}, {side * side})" in out
    assert "sympy" in probe["heavy"]
    assert not {"torch", "matplotlib"} & set(probe["heavy"])


def test_cli_errors_stay_one_line_with_the_lazy_group() -> None:
    """A library error inside a lazily loaded command: one line on stderr, exit 2."""
    proc = subprocess.run(
        [sys.executable, "-m", "convlens", "arith", "conv", "--input", "2", "--kernel", "5"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("convlens: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    unknown = subprocess.run(
        [sys.executable, "-m", "convlens", "no-such-command"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert unknown.returncode == 2
    assert "No such command 'no-such-command'" in unknown.stderr


@pytest.mark.parametrize(
    "command", ["project", "scan", "report", "lint", "evolution", "invariance", "correspondence"]
)
def test_help_of_the_model_commands_loads_nothing_heavy(command: str) -> None:
    """``--help`` of a command that loads a model later answers without torch: its options
    (rules, engines, methods, seeds, the pixel limit) come from the torch-free
    :mod:`convlens.choices`, which the library checks against too."""
    import convlens.choices as choices
    from convlens.deconvnet.explicit import RULES
    from convlens.deconvnet.project import ENGINES, METHODS
    from convlens.deconvnet.target import SEEDS
    from convlens.models.images import MAX_PIXELS
    from convlens.scan.crop import METHODS as TOP_METHODS

    # one truth: the library's names are the choices' objects themselves
    assert RULES is choices.RULES
    assert ENGINES is choices.ENGINES
    assert SEEDS is choices.SEEDS
    assert METHODS is TOP_METHODS is choices.METHODS
    assert MAX_PIXELS == choices.MAX_PIXELS
    out, probe = run_cli(command, "--help")
    assert probe["code"] == 0
    assert probe["heavy"] == [], probe["heavy"]
    assert "--help" in out
