"""Quantization schemes shared by every backbone.

- "int8": PyTorch dynamic quantization (`torch.ao.quantization.quantize_dynamic`).
  nn.Linear weights are stored as int8 and activations are quantized on the fly.
  This is the fast CPU path: int8 matrix kernels (fbgemm / onednn) beat fp32 on CPU.
  Dynamic quantization does not cover convolutions; a model whose convolutions are a
  large share of its work (the embedded model's stem) also gets `static_int8_convolutions`:
  int8 convolutions with activation ranges calibrated once on sample inputs.
- "bnb-int8" / "bnb-nf4": bitsandbytes through `BitsAndBytesConfig` at load time,
  exactly as for a hub model (`from_pretrained(..., quantization_config=...)`).
  On CPU these run, but slower than fp32: their value is memory, not speed.

Layers a scheme can't handle stay in full precision and are reported.
"""

from __future__ import annotations

import functools
import io
import logging
import warnings

import torch


class _DropRepeatedCast(logging.Filter):
    """bitsandbytes int8 on CPU logs "inputs will be cast to float16" on every matmul of every call:
    expected, and it would flood the server log (and a benchmark's output) for every backbone."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("MatMul8bitLt: inputs will be cast")


class _DropMissingKernelsNotice(logging.Filter):
    """Importing bitsandbytes on a CPU with AVX512-BF16 logs that the optional `kernels` package is missing
    (it would fetch a fused nf4 kernel from the hub) and falls back to its own nf4 kernel. `availability`
    imports bitsandbytes on every start of the app and the CLI, so the notice would open every run."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Failed to load CPU gemm_4bit_forward from kernels-community")


logging.getLogger("bitsandbytes.autograd._functions").addFilter(_DropRepeatedCast())
logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(_DropMissingKernelsNotice())

SCHEMES: tuple[str | None, ...] = (None, "int8", "bnb-int8", "bnb-nf4")
SCHEME_LABELS = {None: "none (fp32)", "int8": "int8 (PyTorch)", "bnb-int8": "bitsandbytes int8", "bnb-nf4": "bitsandbytes nf4"}


def normalise_scheme(scheme: str | None) -> str | None:
    """Accept None / "none" / "fp32" as no quantization; reject unknown names clearly."""
    from vqa.errors import UnsupportedError

    if scheme in (None, "", "none", "fp32", "None"):
        return None
    if scheme not in SCHEMES:
        raise UnsupportedError(f"Unknown quantization {scheme!r}: choose none, int8, bnb-int8 or bnb-nf4.")
    return scheme


@functools.lru_cache(maxsize=None)
def availability() -> dict[str | None, tuple[bool, str]]:
    """Which schemes work on this machine, with the reason when one does not."""
    result: dict[str | None, tuple[bool, str]] = {None: (True, "full precision")}
    engines = torch.backends.quantized.supported_engines
    if any(e in engines for e in ("fbgemm", "x86", "onednn", "qnnpack")):
        result["int8"] = (True, f"dynamic int8 with the {torch.backends.quantized.engine} engine")
    else:
        result["int8"] = (False, "this PyTorch build has no quantized CPU engine")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import bitsandbytes  # noqa: F401
        note = "runs on CPU but slower than fp32 (saves memory, not time)" if not torch.cuda.is_available() else "GPU"
        result["bnb-int8"] = (True, note)
        result["bnb-nf4"] = (True, note)
    except Exception as exc:  # ImportError, or a broken native library
        reason = f"bitsandbytes is not usable here: {type(exc).__name__}: {exc}"
        result["bnb-int8"] = (False, reason)
        result["bnb-nf4"] = (False, reason)
    return result


def require_available(scheme: str | None) -> None:
    from vqa.errors import UnsupportedError

    ok, reason = availability()[scheme]
    if not ok:
        raise UnsupportedError(f"Quantization {scheme} is not available: {reason}.")


def dynamic_int8(model: torch.nn.Module) -> torch.nn.Module:
    """int8 weights for every nn.Linear (in a copy-free way: the model is modified in place)."""
    with warnings.catch_warnings():
        # torch.ao.quantization is marked for migration to torchao; the API still works and torchao has no CPU wheel here.
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)


def static_int8_convolutions(layers: torch.nn.Module, calibration_inputs: list[torch.Tensor]) -> torch.nn.Module:
    """An int8 copy of a convolutional block (e.g. a Sequential of conv / BatchNorm / activation).

    PyTorch FX post-training static quantization: BatchNorm is folded into the convolution
    before it, each convolution runs on int8 weights and activations, and operators without
    an int8 kernel (GELU) run in float between them. The activation ranges come from running
    `calibration_inputs` through the block once, so they must look like real inputs.
    """
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    engine = torch.backends.quantized.engine
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's migration notices, as above
        prepared = prepare_fx(layers.eval(), get_default_qconfig_mapping(engine), (calibration_inputs[0],))
        with torch.inference_mode():
            for batch in calibration_inputs:
                prepared(batch)
        return convert_fx(prepared)


def bnb_config(scheme: str, skip_modules: list[str] | None = None):
    """The `BitsAndBytesConfig` for a bitsandbytes scheme; `skip_modules` stay in full precision."""
    from transformers import BitsAndBytesConfig

    if scheme == "bnb-int8":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip_modules)
    if scheme == "bnb-nf4":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=torch.float32,
            llm_int8_skip_modules=skip_modules,
        )
    raise ValueError(scheme)


def model_bytes(model: torch.nn.Module) -> int:
    """Bytes of the model's state as it would be saved: works for dynamic-int8 packed weights too."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes
