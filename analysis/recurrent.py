"""An LSTM on the meta device, counted in a few ops instead of a few per time step.

The meta device has no LSTM kernel: ``torch.lstm`` decomposes (ATen's ``RNN.cpp``) into about eleven ops
per layer, direction and time step, each dispatched through Python; sequencer2d_s runs 36 LSTMs over 14-56
steps, about 22,000 ops, and its count took twice fvcore's. ``AllStepsLSTM`` (a ``TorchFunctionMode``)
replaces an unpacked, eval-mode ``torch.lstm`` on meta tensors by the same ops of one step, run once with
every step's rows stacked (``T * B`` rows instead of ``B``). Every count formula involved is linear in the
rows, so each op's total, and the module it is charged to, is the decomposition's exactly; the outputs
carry no values on the meta device, so only their shapes matter.

Per layer and direction, one step of ``RNN.cpp``'s ``LSTMCell`` (H hidden, P projected, I input size):

| op | shape | when |
|---|---|---|
| ``addmm`` / ``mm`` | (rows, P or H) x (P or H, 4H) | the hidden GEMM; ``mm`` without biases |
| ``addmm`` / ``mm`` | (rows, I) x (I, 4H) | the input GEMM |
| ``add_`` | (rows, 4H) | the two GEMMs' sum |
| ``sigmoid_`` x3, ``tanh_`` | (rows, H) | input, forget, output gates; cell candidate |
| ``mul`` x2, ``add_``, ``tanh``, ``mul`` | (rows, H) | c' = f*c + i*g; h' = o*tanh(c') |
| ``mm`` | (rows, H) x (H, P) | ``proj_size`` only |

Anything else (packed sequences, dropout between layers in training, real devices) runs torch's own path.
"""

from typing import Any, List, Sequence, Tuple

import torch
from torch.overrides import TorchFunctionMode

__all__ = ["AllStepsLSTM"]


class AllStepsLSTM(TorchFunctionMode):
    """Within the mode, an unpacked eval-mode ``torch.lstm`` on the meta device runs as its per-step ops once
    over all steps (see the module's table); every other call is untouched."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.lstm and not kwargs and _all_steps_applies(args):
            return _lstm_all_steps(*args)
        return func(*args, **kwargs)


def _all_steps_applies(args: Sequence[Any]) -> bool:
    """The unpacked overload (input, hx, params, has_biases, num_layers, dropout, train, bidirectional,
    batch_first) with a batched input on the meta device (``nn.LSTM`` adds the batch dimension to an unbatched
    one before the call), without dropout between layers."""
    if len(args) != 9 or not isinstance(args[0], torch.Tensor) or not isinstance(args[1], (list, tuple)):
        return False
    x, _, _, _, num_layers, dropout, train = args[:7]
    return x.device.type == "meta" and x.dim() == 3 and not (train and dropout > 0 and num_layers > 1)


def _lstm_all_steps(
    x: torch.Tensor,
    hx: Sequence[torch.Tensor],
    params: List[torch.Tensor],
    has_biases: bool,
    num_layers: int,
    dropout: float,
    train: bool,
    bidirectional: bool,
    batch_first: bool,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    directions = 2 if bidirectional else 1
    per_cell = len(params) // (num_layers * directions)
    has_proj = per_cell == (4 if has_biases else 2) + 1
    seq = x.transpose(0, 1) if batch_first else x  # (steps, batch, input)
    steps, batch = seq.shape[0], seq.shape[1]
    hidden = params[1].shape[1]  # w_hh: (4H, P or H)
    cell = params[1].shape[0] // 4
    layer_in = seq
    for layer in range(num_layers):
        for direction in range(directions):
            first = (layer * directions + direction) * per_cell
            _cell_ops(layer_in.reshape(steps * batch, -1), params[first : first + per_cell], has_biases, has_proj)
        layer_in = x.new_empty(steps, batch, directions * hidden)
    out = layer_in.transpose(0, 1) if batch_first else layer_in
    states = num_layers * directions
    return out, x.new_empty(states, batch, hidden), x.new_empty(states, batch, cell)


def _cell_ops(rows: torch.Tensor, cell_params: List[torch.Tensor], has_biases: bool, has_proj: bool) -> None:
    """One LSTMCell step's ops over ``rows`` (steps * batch of them); nothing is returned: only the counts
    of the ops matter (see the module's table)."""
    w_ih, w_hh = cell_params[0], cell_params[1]
    b_ih, b_hh = (cell_params[2], cell_params[3]) if has_biases else (None, None)
    h_prev = rows.new_empty(rows.shape[0], w_hh.shape[1])
    gates = torch.addmm(b_hh, h_prev, w_hh.t()) if b_hh is not None else torch.mm(h_prev, w_hh.t())
    gates_in = torch.addmm(b_ih, rows, w_ih.t()) if b_ih is not None else torch.mm(rows, w_ih.t())
    gates.add_(gates_in)
    in_gate, forget_gate, cell_gate, out_gate = gates.unsafe_split(gates.shape[1] // 4, 1)
    in_gate.sigmoid_()
    forget_gate.sigmoid_()
    cell_gate.tanh_()
    out_gate.sigmoid_()
    c_prev = rows.new_empty(rows.shape[0], w_hh.shape[0] // 4)
    c_next = (forget_gate * c_prev).add_(in_gate * cell_gate)
    h_next = out_gate * c_next.tanh()
    if has_proj:
        torch.mm(h_next, cell_params[-1].t())
