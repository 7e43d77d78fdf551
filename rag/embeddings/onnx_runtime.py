"""The embedder on ONNX Runtime: float32 (1.8x torch's float32, the same vectors) or dynamically quantized int8.

The ONNX files are made offline from the model folder's own weights, once per model (`make install`
does it for the bundled one; elsewhere the first use does, in about 15 s), and kept in the cache
folder (RAG_CACHE_DIR). Only what torch's sentence-transformers would compute is exported: the
transformer's last hidden state; the mean pooling and the normalisation run here in numpy, and the
tokenizer is the model's own tokenizer.json through the Rust tokenizers library, so querying needs
neither torch nor transformers.
"""

from __future__ import annotations

import fcntl
import hashlib
import inspect
import json
import os
import re
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from rag.config import default_cache_dir
from rag.embeddings import check_model_folder, embedder_id, embedder_name, resolve_precision
from rag.errors import ConfigError

EXPORT_VERSION = 1  # bump when the export or quantization below changes, so cached files are made again
FLOAT_FILE, INT8_FILE = "model.onnx", "model-int8.onnx"


class OnnxUnsupported(ConfigError):
    """The model folder is not one this module can run the way sentence-transformers does (another pooling, extra layers)."""


def check_layout(folder: Path) -> None:
    """Raise OnnxUnsupported unless the model is a transformer, mean pooling and (optionally) normalisation."""
    modules_file = folder / "modules.json"
    modules = json.loads(modules_file.read_text()) if modules_file.is_file() else []
    kinds = [m.get("type", "").rsplit(".", 1)[-1] for m in modules]
    if kinds and (kinds[0] != "Transformer" or modules[0].get("path", "") != "" or any(k not in ("Pooling", "Normalize") for k in kinds[1:])):
        raise OnnxUnsupported(f"{folder} has the modules {kinds}; ONNX Runtime runs Transformer, Pooling and Normalize only.")
    pooling = next((folder / m["path"] / "config.json" for m in modules if m.get("type", "").endswith("Pooling")), None)
    if pooling is not None and pooling.is_file():
        modes = [k for k, v in json.loads(pooling.read_text()).items() if k.startswith("pooling_mode") and v]
        if modes != ["pooling_mode_mean_tokens"]:
            raise OnnxUnsupported(f"{folder} pools with {modes}; ONNX Runtime here runs mean pooling only.")
    if not (folder / "tokenizer.json").is_file():
        raise OnnxUnsupported(f"{folder} has no tokenizer.json (a fast tokenizer), which ONNX Runtime here needs.")


def _cache_key(folder: Path) -> str:
    """Names the export of this model folder's weights by this onnxruntime; it changes when either does."""
    import onnxruntime

    digest = hashlib.sha256(f"{EXPORT_VERSION}|{onnxruntime.__version__}|{folder.resolve()}".encode())
    for name in sorted(os.listdir(folder)):
        if name.endswith((".json", ".safetensors", ".bin", ".txt")):
            stat = (folder / name).stat()
            digest.update(f"|{name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return f"{embedder_name(str(folder))}-{digest.hexdigest()[:16]}"


def onnx_files(path: str, cache_dir: Path | None = None) -> Path:
    """The folder holding model.onnx and model-int8.onnx for the model in `path`, made first if missing.

    Two processes starting at once make it once (a file lock); a half-made export is never seen
    (it is written aside and renamed into place).
    """
    folder = Path(path).expanduser()
    check_layout(folder)
    root = (cache_dir or default_cache_dir()) / "onnx"
    target = root / _cache_key(folder)
    if (target / INT8_FILE).is_file():
        return target
    try:
        root.mkdir(parents=True, exist_ok=True)
        with open(root / f"{target.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (target / INT8_FILE).is_file():
                aside = root / f"{target.name}.making-{os.getpid()}"
                shutil.rmtree(aside, ignore_errors=True)
                aside.mkdir()
                started = time.perf_counter()
                print(f"Preparing the ONNX Runtime embedder for {folder.name if folder.name != 'model' else folder.parent.name} "
                      f"once, in {root} (about 15 s)...", file=sys.stderr, flush=True)
                try:
                    export(folder, aside)
                except (ImportError, RuntimeError, ValueError) as exc:  # no onnx, or a model torch cannot trace
                    shutil.rmtree(aside, ignore_errors=True)
                    raise OnnxUnsupported(f"exporting {folder} to ONNX failed ({type(exc).__name__}: {exc})") from exc
                os.replace(aside, target)
                print(f"ONNX Runtime embedder ready ({time.perf_counter() - started:.0f} s).", file=sys.stderr, flush=True)
    except OSError as exc:
        raise ConfigError(f"Could not write the ONNX embedder files in {root} ({exc.strerror or exc}); "
                          "set RAG_CACHE_DIR to a writable folder, or RAG_EMBED_RUNTIME=torch.") from exc
    return target


def export(folder: Path, out: Path) -> None:
    """Write `out`/model.onnx (float32) and `out`/model-int8.onnx from the weights in `folder`, offline."""
    import warnings

    import torch
    from transformers import AutoModel
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    model = AutoModel.from_pretrained(str(folder), local_files_only=True, attn_implementation="eager").eval()
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if "token_type_ids" in inspect.signature(model.forward).parameters else [])

    class LastHiddenState(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            return self.inner(**dict(zip(names, inputs))).last_hidden_state

    ids = torch.ones(2, 16, dtype=torch.long)
    example = tuple(torch.zeros_like(ids) if n == "token_type_ids" else ids for n in names)
    axes = {n: {0: "batch", 1: "tokens"} for n in (*names, "last_hidden_state")}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice; it is what runs offline here
        torch.onnx.export(LastHiddenState(model), example, str(out / FLOAT_FILE), input_names=names,
                          output_names=["last_hidden_state"], dynamic_axes=axes, opset_version=17, dynamo=False)
    quantize(out / FLOAT_FILE, out / INT8_FILE)


def quantize(source: Path, target: Path) -> None:
    """Dynamic int8 (Jacob et al. 2018, arXiv:1712.05877) of the weight MatMuls, chosen by bench/precision.py.

    Weights per output channel in 7 bits (reduce_range: AVX2 without VNNI adds u8 x s8 pairs into
    saturating int16, which 8-bit weights overflow); activations in 8 bits per call. Left in float32:
    the attention products (two activations, no weight) and the feed-forward output projections of
    the first half of the layers, whose inputs have outliers that 8 bits flatten (cosine to float32
    0.987 -> 0.992 on corpus chunks).
    """
    import logging

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(source), load_external_data=False).graph
    weights = {i.name for i in graph.initializer}
    matmuls = [n for n in graph.node if n.op_type == "MatMul"]
    layers = sorted({int(m[1]) for n in matmuls if (m := re.search(r"layer\.(\d+)/output/dense", n.name))})
    early = {f"layer.{i}/output/dense" for i in layers[: (len(layers) + 1) // 2]}
    keep = [n.name for n in matmuls if not any(i in weights for i in n.input) or any(e in n.name for e in early)]
    quiet = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)  # its advice to run a pre-processing step first is not for dynamic int8
    try:
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True, reduce_range=True,
                         op_types_to_quantize=["MatMul"], nodes_to_exclude=keep)
    finally:
        logging.getLogger().setLevel(quiet)


class OnnxEmbedder:
    """The model in `path` on ONNX Runtime at float32 or int8, the same Embedder as the torch one."""

    runtime = "onnx"

    def __init__(self, path: str, batch_size: int = 32, precision: str = "float32", cache_dir: Path | None = None) -> None:
        folder = check_model_folder(path)
        self.precision = resolve_precision(precision)
        if self.precision not in ("float32", "int8"):
            raise ConfigError(f"ONNX Runtime embeds at float32 or int8, not {self.precision}.")
        files = onnx_files(path, cache_dir)
        import onnxruntime
        from tokenizers import Tokenizer

        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle worker threads sleep instead of spinning, so an answer being written beside an upload keeps its cores.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = onnxruntime.InferenceSession(str(files / (INT8_FILE if self.precision == "int8" else FLOAT_FILE)),
                                                     options, providers=["CPUExecutionProvider"])
        self._inputs = [i.name for i in self._session.get_inputs()]
        config = folder / "sentence_bert_config.json"
        self.max_tokens = int(json.loads(config.read_text()).get("max_seq_length", 256)) if config.is_file() else 256
        self.dim = int(self._session.get_outputs()[0].shape[-1])
        self.path, self.batch_size, self.cache_dir = path, batch_size, cache_dir
        self.model_name = embedder_name(path)
        self.name = embedder_id(self.model_name, self.precision)
        self._siblings: dict[str, object] = {}
        self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(self.max_tokens)
        self._counter = Tokenizer.from_file(str(folder / "tokenizer.json"))  # its own: counting runs in the parse thread
        self._counter.no_padding()
        self._counter.no_truncation()
        self._lock = threading.Lock()  # a Rust tokenizer used from two threads at once fails ("Already borrowed")

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        with self._lock:
            encoded = self._tokenizer.encode_batch(list(texts))
        order = np.argsort([-len(e.ids) for e in encoded], kind="stable")  # like sentence-transformers: little padding
        for start in range(0, len(order), self.batch_size):
            rows = order[start:start + self.batch_size]
            width = max(len(encoded[r].ids) for r in rows)
            feed = {name: np.zeros((len(rows), width), dtype=np.int64) for name in self._inputs}
            for k, r in enumerate(rows):
                e = encoded[r]
                feed["input_ids"][k, :len(e.ids)] = e.ids
                feed["attention_mask"][k, :len(e.ids)] = 1
                if "token_type_ids" in feed:
                    feed["token_type_ids"][k, :len(e.ids)] = e.type_ids
            hidden = self._session.run(None, feed)[0]
            mask = feed["attention_mask"][..., None].astype(np.float32)
            pooled = (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
            out[rows] = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return out

    def at_precision(self, precision: str):
        """This model at another precision (loaded once, then kept); itself when that is the one it has."""
        from rag.embeddings import sibling

        return sibling(self, precision)

    def count_tokens(self, text: str) -> int:
        """Tokens the model sees for `text`, special tokens included, without truncation."""
        return len(self._counter.encode(text, add_special_tokens=True).ids)


def main() -> None:
    """`python -m rag.embeddings.onnx_runtime [MODEL_DIR]`: make the ONNX files now (make install runs it)."""
    from rag.config import Settings

    settings = Settings.load({})
    path = sys.argv[1] if len(sys.argv) > 1 else settings.embedder_path
    print(onnx_files(path, settings.cache_dir))


if __name__ == "__main__":
    main()
