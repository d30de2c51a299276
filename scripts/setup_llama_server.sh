#!/usr/bin/env bash
# Build llama.cpp's `llama-server` and `llama-quantize` (CPU, Release, static) from the llama.cpp sources
# vendored in the PyPI sdist llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION, into .llama.cpp/ (gitignored):
#   .llama.cpp/src/      the vendored llama.cpp (convert_hf_to_gguf.py and gguf-py/ are used by
#                        pipeline/devtools/gguf.py)
#   .llama.cpp/build/bin/llama-server, llama-quantize
# Needs only cmake, a C++17 compiler, ninja (or make) and pip (the .venv's, made by scripts/setup.sh). Safe to re-run: a stamp file
# (.llama.cpp/.built-<version>) skips everything once built. Set LLAMA_CPP_SDIST=/path/to.tar.gz to use a
# local copy of the sdist instead of downloading it; LLAMA_BUILD_JOBS (default 2) sets the parallelism.
set -euo pipefail
cd "$(dirname "$0")/.."

LLAMA_CPP_PYTHON_VERSION=0.3.36
ROOT=.llama.cpp
SRC=$ROOT/src
BUILD=$ROOT/build
STAMP=$ROOT/.built-$LLAMA_CPP_PYTHON_VERSION
JOBS=${LLAMA_BUILD_JOBS:-2}

if [[ -f "$STAMP" && -x "$BUILD/bin/llama-server" && -x "$BUILD/bin/llama-quantize" ]]; then
    echo "setup_llama_server: ready ($BUILD/bin/llama-server, llama.cpp from llama-cpp-python $LLAMA_CPP_PYTHON_VERSION)"
    exit 0
fi
mkdir -p "$ROOT"

if [[ ! -f "$SRC/convert_hf_to_gguf.py" ]]; then
    sdist=${LLAMA_CPP_SDIST:-}
    if [[ -z "$sdist" ]]; then
        dl=$ROOT/sdist
        sdist=$dl/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION.tar.gz
        if [[ ! -f "$sdist" ]]; then
            echo "setup_llama_server: downloading the llama-cpp-python $LLAMA_CPP_PYTHON_VERSION sdist"
            PY=python3; [[ -x .venv/bin/python ]] && PY=.venv/bin/python
            # --no-binary for this package only: with `--no-binary :all:` pip also builds the sdist's build
            # requirements from source to read its metadata (cmake itself: many minutes); as wheels: seconds
            "$PY" -m pip download -q --no-deps --no-binary llama-cpp-python "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION" -d "$dl"
        fi
    fi
    echo "setup_llama_server: unpacking vendor/llama.cpp from $sdist"
    tmp=$ROOT/unpack.tmp
    rm -rf "$tmp" "$SRC"
    mkdir -p "$tmp"
    tar -xzf "$sdist" -C "$tmp" "llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION/vendor/llama.cpp"
    mv "$tmp/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION/vendor/llama.cpp" "$SRC"
    rm -rf "$tmp" "$ROOT/sdist"
fi

GEN=(); command -v ninja >/dev/null && GEN=(-G Ninja)
start=$(date +%s)
# No curl/openssl (models are local files), no web UI (it would be fetched from Hugging Face), no tests,
# examples or unified app; static binaries so they run from anywhere.
nice -n 10 cmake -S "$SRC" -B "$BUILD" "${GEN[@]}" \
    -DCMAKE_BUILD_TYPE=Release \
    -DBUILD_SHARED_LIBS=OFF \
    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
    -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF \
    -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TOOLS=ON \
    -DGGML_NATIVE=ON -DGGML_OPENMP=OFF >"$ROOT/cmake-configure.log" 2>&1 \
    || { tail -40 "$ROOT/cmake-configure.log"; exit 1; }
nice -n 10 cmake --build "$BUILD" --config Release -j "$JOBS" --target llama-server llama-quantize \
    >"$ROOT/cmake-build.log" 2>&1 || { tail -60 "$ROOT/cmake-build.log"; exit 1; }
elapsed=$(( $(date +%s) - start ))
touch "$STAMP"
echo "setup_llama_server: built llama-server and llama-quantize in ${elapsed} s (-j$JOBS)"
ls -l "$BUILD/bin/llama-server" "$BUILD/bin/llama-quantize" | awk '{printf "setup_llama_server:   %s %.1f MiB\n", $NF, $5/1048576}'
