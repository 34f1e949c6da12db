"""setup.sh --native: the CMake options that build llama.cpp for the machine's CPU, and the log line that
says which build a model runs on."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from aigc_studio.engines.cpu_build import cmake_options, cpu_flags

ROOT = Path(__file__).resolve().parents[1]
HASWELL = "sse4_2 avx avx2 fma f16c bmi2"
ZEN4 = HASWELL + " avx512f avx512cd avx512vl avx512dq avx512bw avx512vbmi avx512_vnni avx512_bf16"
SAPPHIRE_RAPIDS = ZEN4 + " avx_vnni amx_tile amx_int8 amx_bf16"


def options(flags: str, machine: str = "x86_64") -> dict[str, str]:
    out = {}
    for option in cmake_options(machine, set(flags.split())):
        name, _, value = option.removeprefix("-D").partition("=")
        out[name] = value
    return out


def test_cpuinfo_flags_are_read_from_the_first_processor():
    text = "processor\t: 0\nflags\t\t: fpu avx2 avx512f\n\nprocessor\t: 1\nflags\t\t: fpu sse2\n"
    assert cpu_flags(text) == {"fpu", "avx2", "avx512f"}
    assert cpu_flags("processor\t: 0\n") == set()


def test_each_instruction_set_is_on_only_where_the_cpu_has_it():
    haswell = options(HASWELL)
    assert haswell["GGML_NATIVE"] == "OFF" and haswell["GGML_AVX2"] == "ON" and haswell["GGML_FMA"] == "ON"
    assert haswell["GGML_AVX512"] == "OFF" and haswell["GGML_AVX512_VNNI"] == "OFF"
    zen4 = options(ZEN4)
    assert all(zen4[o] == "ON" for o in ("GGML_AVX512", "GGML_AVX512_VBMI", "GGML_AVX512_VNNI", "GGML_AVX512_BF16"))
    assert zen4["GGML_AVX_VNNI"] == "OFF"
    # AVX-512 kernels need the five base subsets together (ggml compiles them with all five).
    assert options(ZEN4.replace(" avx512bw", ""))["GGML_AVX512"] == "OFF"


def test_amx_is_never_compiled_in_even_where_the_cpu_reports_it():
    spr = options(SAPPHIRE_RAPIDS)
    assert spr["GGML_AVX512"] == "ON" and spr["GGML_AVX_VNNI"] == "ON"
    assert spr["GGML_AMX_TILE"] == spr["GGML_AMX_INT8"] == spr["GGML_AMX_BF16"] == "OFF"


def test_every_build_leaves_out_what_it_would_fetch_from_the_internet():
    for machine in ("x86_64", "aarch64"):
        built = options(ZEN4, machine)
        assert built["LLAMA_BUILD_BORINGSSL"] == "OFF" and built["LLAMA_LLGUIDANCE"] == "OFF"
    assert options("", "aarch64")["GGML_NATIVE"] == "ON"


def test_the_module_prints_this_machines_options():
    out = subprocess.run(
        [sys.executable, "-m", "aigc_studio.engines.cpu_build"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.startswith("-DLLAMA_BUILD_BORINGSSL=OFF -DLLAMA_LLGUIDANCE=OFF ")
    assert not re.search(r"AMX_\w+=ON", out)


def test_setup_refuses_an_option_it_does_not_know():
    run = subprocess.run(["bash", str(ROOT / "setup.sh"), "--nativ"], capture_output=True, text=True)
    assert run.returncode == 2 and "unknown option --nativ" in run.stderr


def test_the_build_a_model_runs_on_is_named_with_its_instruction_sets():
    import xllamacpp

    from aigc_studio.engines.llamacpp import llama_build

    build = llama_build()
    assert build.startswith(f"xllamacpp {xllamacpp.__version__} (CPU: ")
    assert re.search(r"\bAVX2\b", build)  # both the PyPI wheel and a native build of an x86-64 CPU have it
    assert build.endswith(f"; compiler: {xllamacpp.BUILD_INFO['compiler']})")  # e.g. "GNU 10.2.1", the wheel's
