"""CMake options that build llama.cpp for this machine's CPU: what ``bash setup.sh --native`` passes
when it compiles xllamacpp from its source package instead of installing the portable wheel.

xllamacpp's PyPI wheel is built for AVX2, to run on any x86-64 CPU of the last decade, by GCC 10. A CPU
with AVX-512 runs llama.cpp faster with kernels built for it (``bench/text.py`` measures by how much), as
Debian's ``llama-server`` does by loading the backend that fits; and the same AVX2 kernels built by a
newer GCC evaluate prompts 9% faster than the wheel's on a Zen 3 (README: Speed). The options are
named one by one from the CPU's flags, never ``-march=native``: a native build picks up AMX where the
CPU has it, and AMX instructions die with SIGILL in the virtual machines that do not enable it.

Run it (``python -m aigc_studio.engines.cpu_build``) to print the options for this machine.
"""

from __future__ import annotations

import platform
import sys
from pathlib import Path

# ggml's CMake option -> the /proc/cpuinfo flags its compiler flags need (ggml-cpu/CMakeLists.txt).
X86_OPTIONS: list[tuple[str, tuple[str, ...]]] = [
    ("GGML_SSE42", ("sse4_2",)),
    ("GGML_AVX", ("avx",)),
    ("GGML_AVX2", ("avx2",)),
    ("GGML_FMA", ("fma",)),
    ("GGML_F16C", ("f16c",)),
    ("GGML_BMI2", ("bmi2",)),
    ("GGML_AVX_VNNI", ("avx_vnni",)),
    ("GGML_AVX512", ("avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw")),
    ("GGML_AVX512_VBMI", ("avx512f", "avx512vbmi")),
    ("GGML_AVX512_VNNI", ("avx512f", "avx512_vnni")),
    ("GGML_AVX512_BF16", ("avx512f", "avx512_bf16")),
]
# What every build gets: neither BoringSSL nor llguidance, which llama.cpp's build fetches from the
# internet (a git repository, Rust crates). The engine's server is loopback-only HTTP, and JSON schemas
# become GBNF grammars instead of llguidance's (json_grammar.one_space gives both the same whitespace).
COMMON = ["-DLLAMA_BUILD_BORINGSSL=OFF", "-DLLAMA_LLGUIDANCE=OFF"]


def cpu_flags(cpuinfo: str) -> set[str]:
    """The flags of the first processor in a /proc/cpuinfo text."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return set(value.split())
    return set()


def cmake_options(machine: str, flags: set[str]) -> list[str]:
    """CMake options for llama.cpp on this CPU: each x86 instruction set it has, by name, and none
    that it lacks; AMX never. Other architectures let ggml read the CPU (GGML_NATIVE)."""
    if machine not in ("x86_64", "AMD64"):
        return [*COMMON, "-DGGML_NATIVE=ON"]
    options = [*COMMON, "-DGGML_NATIVE=OFF"]
    for option, needs in X86_OPTIONS:
        options.append(f"-D{option}={'ON' if all(f in flags for f in needs) else 'OFF'}")
    options += ["-DGGML_AMX_TILE=OFF", "-DGGML_AMX_INT8=OFF", "-DGGML_AMX_BF16=OFF"]
    return options


def main() -> None:
    cpuinfo = Path("/proc/cpuinfo")
    flags = cpu_flags(cpuinfo.read_text()) if cpuinfo.exists() else set()
    sys.stdout.write(" ".join(cmake_options(platform.machine(), flags)) + "\n")


if __name__ == "__main__":
    main()
