"""Hugging Face Qwen2.5-VL checkpoint -> llama.cpp GGUF files (text model + `mmproj` vision projector).

Runs the llama.cpp converter vendored in `.llama.cpp/src` (built by `scripts/setup_llama_server.sh`) with
this venv's python (torch + transformers) and `PYTHONPATH=<src>/gguf-py`. Nothing vendored is edited: a
small wrapper imports the converter's `conversion` package and, only for a checkpoint marked as random
weights (`pipeline.hf.is_random_weights`, e.g. `pipeline.devtools.tiny_qwen`), answers "qwen2" for the
BPE pre-tokenizer, and a checkpoint without `tokenizer.model` skips the sentencepiece attempt (the
converter imports the optional `sentencepiece` package before looking for the file). The tiny model's hand-built tokenizer uses Qwen2's pre-tokenizer regex but its vocabulary
is new, so the converter's hash check (`get_vocab_base_pre`) would reject it ("BPE pre-tokenizer was not
recognized"). A real checkpoint goes through the unchanged check.

    python -m pipeline.devtools.gguf convert MODEL_DIR OUT_DIR [--outtype f16|f32|bf16|q8_0]
    python -m pipeline.devtools.gguf quantize IN.gguf OUT.gguf Q8_0|Q4_K_M|...
    python -m pipeline.devtools.gguf tiny OUT_DIR        tiny llama.cpp-compatible Qwen2.5-VL + its GGUFs
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SETUP_HINT = "run scripts/setup_llama_server.sh first (it builds llama.cpp into .llama.cpp/)"

# Run in the converter's process: patch the pre-tokenizer check for random-weight checkpoints, then run
# convert_hf_to_gguf.py as __main__ with the given arguments.
_WRAPPER = r"""
import os, runpy, sys
src = sys.argv[1]
sys.path.insert(0, src)
from conversion import base
_create_sp = base.TextModel._create_vocab_sentencepiece
def _create_vocab_sentencepiece(self):
    # without tokenizer.model (Qwen ships tokenizer.json) fall through to the GPT-2 BPE path even when the
    # optional sentencepiece package is not installed (the converter imports it before looking)
    if not (self.dir_model / "tokenizer.model").is_file():
        raise FileNotFoundError(self.dir_model / "tokenizer.model")
    return _create_sp(self)
base.TextModel._create_vocab_sentencepiece = _create_vocab_sentencepiece
if os.environ.get("VLMEMES_RANDOM_WEIGHTS_PRE"):
    pre = os.environ["VLMEMES_RANDOM_WEIGHTS_PRE"]
    base.TextModel.get_vocab_base_pre = lambda self, tokenizer: pre
sys.argv = [os.path.join(src, "convert_hf_to_gguf.py")] + sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def llama_cpp_dir() -> Path:
    """Where scripts/setup_llama_server.sh put llama.cpp (override: VLMEMES_LLAMA_CPP_DIR)."""
    return Path(os.environ.get("VLMEMES_LLAMA_CPP_DIR", REPO / ".llama.cpp"))


def llama_binary(name: str) -> Path:
    """A built llama.cpp program (llama-server, llama-quantize); FileNotFoundError says how to build it."""
    path = llama_cpp_dir() / "build" / "bin" / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: {SETUP_HINT}")
    return path


def vendored_source() -> Path:
    src = llama_cpp_dir() / "src"
    if not (src / "convert_hf_to_gguf.py").is_file():
        raise FileNotFoundError(f"{src}/convert_hf_to_gguf.py is missing: {SETUP_HINT}")
    return src


@dataclass(frozen=True)
class Converted:
    model: Path        # the text model GGUF
    mmproj: Path       # the vision projector GGUF (the converter's --mmproj mode)
    seconds: float     # both conversions together


def _run_converter(model_dir: Path, args: list[str], log: Path) -> None:
    from pipeline.hf import is_random_weights

    src = vendored_source()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(src / "gguf-py"), str(src)]),
               HF_HUB_OFFLINE="1", NO_LOCAL_GGUF="1")
    env.pop("VLMEMES_RANDOM_WEIGHTS_PRE", None)
    if is_random_weights(str(model_dir)):
        env["VLMEMES_RANDOM_WEIGHTS_PRE"] = "qwen2"
    with open(log, "ab") as out:
        proc = subprocess.run([sys.executable, "-c", _WRAPPER, str(src), *args, str(model_dir)],
                              env=env, stdout=out, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
        raise RuntimeError(f"convert_hf_to_gguf.py failed (exit {proc.returncode}), log {log}:\n{tail}")


def convert_checkpoint(model_dir: str | Path, out_dir: str | Path, *, outtype: str = "f16",
                       name: str | None = None) -> Converted:
    """Convert a Qwen2.5-VL folder (save_pretrained) to `<name>-<outtype>.gguf` + `mmproj-<name>-<outtype>.gguf`."""
    model_dir, out = Path(model_dir), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = name or model_dir.name
    model_gguf = out / f"{name}-{outtype}.gguf"
    mmproj_gguf = out / f"mmproj-{name}-{outtype}.gguf"
    log = out / f"convert-{name}.log"
    log.write_text("")
    start = time.perf_counter()
    _run_converter(model_dir, ["--outtype", outtype, "--outfile", str(model_gguf)], log)
    _run_converter(model_dir, ["--mmproj", "--outtype", outtype, "--outfile", str(mmproj_gguf)], log)
    return Converted(model_gguf, mmproj_gguf, time.perf_counter() - start)


@dataclass(frozen=True)
class Quantized:
    path: Path
    seconds: float
    fallbacks: tuple[str, ...]   # llama-quantize's "using fallback quantization" lines (rows too short)


def quantize(gguf_in: str | Path, gguf_out: str | Path, qtype: str = "Q8_0", *, threads: int = 2) -> Quantized:
    """`llama-quantize IN OUT QTYPE` (Q8_0, Q4_K_M, ...). K-quants need rows that are a multiple of 256;
    llama-quantize then falls back to another type per tensor (listed in `fallbacks`)."""
    gguf_in, gguf_out = Path(gguf_in), Path(gguf_out)
    start = time.perf_counter()
    proc = subprocess.run([str(llama_binary("llama-quantize")), str(gguf_in), str(gguf_out), qtype, str(threads)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"llama-quantize {qtype} failed (exit {proc.returncode}):\n"
                           + "\n".join((proc.stdout + proc.stderr).splitlines()[-20:]))
    fallbacks = tuple(line.strip() for line in (proc.stdout + proc.stderr).splitlines()
                      if re.search(r"fallback", line, re.IGNORECASE))
    return Quantized(gguf_out, time.perf_counter() - start, fallbacks)


def build_tiny_gguf(out_dir: str | Path, *, outtype: str = "f16") -> Converted:
    """The tiny llama.cpp-compatible random Qwen2.5-VL checkpoint under out_dir/hf, converted into out_dir."""
    from pipeline.devtools.tiny_qwen_gguf import build_tiny_qwen_gguf

    out = Path(out_dir)
    hf = build_tiny_qwen_gguf(out / "tiny-random-qwen25vl-gguf")
    return convert_checkpoint(hf, out, outtype=outtype)


def main(argv: list[str]) -> int:
    if len(argv) >= 3 and argv[0] == "convert":
        outtype = argv[argv.index("--outtype") + 1] if "--outtype" in argv else "f16"
        done = convert_checkpoint(argv[1], argv[2], outtype=outtype)
        print(f"model:  {done.model}\nmmproj: {done.mmproj}\n({done.seconds:.1f} s)")
        return 0
    if len(argv) == 4 and argv[0] == "quantize":
        q = quantize(argv[1], argv[2], argv[3])
        print(f"{q.path} ({q.seconds:.1f} s)")
        for line in q.fallbacks:
            print(f"  {line}")
        return 0
    if len(argv) == 2 and argv[0] == "tiny":
        done = build_tiny_gguf(argv[1])
        print(f"model:  {done.model}\nmmproj: {done.mmproj}\n(conversion {done.seconds:.1f} s; random weights: "
              "smoke runs only, never results)")
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
