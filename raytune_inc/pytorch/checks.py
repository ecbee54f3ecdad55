"""What `tune` refuses before any work, each with the cause and the fix: a model it cannot take apart and lower,
calibration data the model rejects (or that static int8 needs and is not there), example inputs it rejects.
The messages name the model by its dtype ("the FP32 model", "the bf16 model")."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from .batches import run_batch
from .dtypes import MODEL_DTYPES, floating_dtype


def check_model(model: nn.Module) -> None:
    """Refuse a model that is not an `nn.Module` with values in float32, bfloat16 or float16 (TypeError / ValueError
    naming the cause and the fix). A model in bf16 or fp16 is tuned from its own dtype (see `dtypes.py`)."""
    if isinstance(model, torch.jit.ScriptModule):
        raise TypeError(
            f"model is a TorchScript module ({type(model).__name__}, from torch.jit.script or torch.jit.trace): its ops "
            "cannot be replaced one by one; pass the Python nn.Module it was made from"
        )
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    for name, tensor in (*model.named_parameters(), *model.named_buffers()):
        if tensor.device.type == "meta":
            raise ValueError(
                f"model has tensors on the meta device ({name!r}): they hold no values to evaluate; load the weights first "
                "(e.g. from_pretrained, or model.to_empty(device=...) then load_state_dict)"
            )
    for name, p in model.named_parameters():
        if p.is_floating_point() and p.dtype not in MODEL_DTYPES:
            raise ValueError(
                f"model has a {p.dtype} parameter ({name!r}): tune takes a model in float32, bfloat16 or float16 and finds "
                "what can go lower, so pass it in one of those (e.g. model.float())"
            )


def _named(model: nn.Module) -> str:
    """The model by its dtype, for messages: "FP32 model", "bf16 model", "fp16 model"."""
    dtype = floating_dtype(model)
    return "FP32 model" if dtype == torch.float32 else f"{MODEL_DTYPES.get(dtype, str(dtype))} model"


def rejected(model: nn.Module, batch, exc: Exception) -> ValueError:
    """The error for a calibration batch the model rejects with `exc`: batches that look like (input, label)
    pairs (two elements, the first of which the model runs on alone) are named as such, with the fix."""
    if isinstance(batch, tuple | list) and len(batch) == 2:
        try:
            with torch.no_grad():
                run_batch(model, batch[0])
        except Exception:
            pass
        else:
            return ValueError(
                f"calib_data holds model inputs only, but its batches look like (input, label) pairs: the {_named(model)} rejects "
                f"a batch of two ({type(exc).__name__}: {exc}) and runs on its first element alone; give the inputs alone, "
                "e.g. calib_data=[x for x, _ in loader]"
            )
    return ValueError(f"the {_named(model)} rejects the calibration data: {type(exc).__name__}: {exc}")


def no_calibration_data() -> ValueError:
    return ValueError(
        "int8 needs calibration data: calib_data is None (give a few input batches, --calib on the command line, "
        "or leave int8 out of precisions)"
    )


def empty_calibration_data() -> ValueError:
    return ValueError("the calibration data is empty: give at least one batch")


def check_calibration_data(model: nn.Module, calib_data: Iterable | None, needed: bool) -> object | None:
    """The first calibration batch (None where there is none). Where static int8 `needed` it, there must be one, and
    the model must run on it: else ValueError naming the cause and the fix."""
    first = None if calib_data is None else next(iter(calib_data), None)
    if not needed:
        return first
    if calib_data is None:
        raise no_calibration_data()
    if first is None:
        raise empty_calibration_data()
    was_training = model.training
    try:
        with torch.no_grad():
            run_batch(model.eval(), first)
    except Exception as exc:
        raise rejected(model, first, exc) from exc
    finally:
        model.train(was_training)
    return first


def check_example_inputs(model: nn.Module, example_inputs) -> None:
    """Refuse `example_inputs` the model cannot run, naming the cause, before any work."""
    try:
        with torch.no_grad():
            run_batch(model.eval(), example_inputs)
    except Exception as exc:
        raise ValueError(f"example_inputs: the {_named(model)} rejects them: {type(exc).__name__}: {exc}") from exc
