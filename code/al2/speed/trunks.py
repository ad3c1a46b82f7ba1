"""Other kernels for the stacked trunk: the same function as StackedLeNet's own (one grouped
convolution on channels-last input), computed another way. Each is a wrapper that reads the
model's weights and returns what its `convolutions` returns, (N, R*50, 4, 4); `--trunk` (or, on
CUDA, the step probe) picks one, and tests/test_training.py trains with each against R plain
LeNets in float64.

Measured by `python code/bench/bench_train.py --trunks grouped,grouped-nchw,streams` on 2 CPU cores
(2026-12-05, torch.optim.SGD): 8 runs 7.81 / 8.30 / 8.36 s, 14 runs 15.71 / 16.50 / 13.86 s.
Neither variant is the CPU default: grouped-nchw is slower at both sizes, and streams, 1.13x
faster at 14 runs but 0.93x at 8, rounds differently in the last bits, so making it the
default would change every number a CPU run gives. On CUDA they are candidates the probe times
(code/bench/probe_step.py); none has been measured there yet.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F


def grouped_nchw(model):
    """The model's grouped convolutions on NCHW input (cuDNN's grouped kernels may prefer it)."""
    return lambda x: model.grouped_convolutions(x, channels_last=False)


class Streams:
    """Each run's trunk as ordinary convolutions. On CUDA run r's kernels go to stream r: R small
    convolutions run side by side where the grouped kernel runs them as one
    (pytorch/pytorch#73764: grouped convolutions can be slower than separate ones on streams),
    and autograd runs each backward op on its forward op's stream. Every stream waits for the
    current one before its first kernel and the current one for every stream before the stack
    (the fork and join a CUDA graph's capture needs). The weights are unbound on the current
    stream, so their gradients are stacked there, after the joins. On the CPU the runs go one
    after another."""

    def __init__(self, model):
        self.model = model
        self.streams = []  # made on first use, on the input's device

    def __call__(self, x):
        m = self.model
        streams = self.side_streams(x)
        w1, b1, w2, b2 = (p.unbind(0) for p in (m.conv1_w, m.conv1_b, m.conv2_w, m.conv2_b))
        bn_index = {r: b for b, r in enumerate(m.bn_runs)}
        outs = []
        for r in range(m.runs):
            xr = x if x.dim() == 4 else x[m.group_of_run[r]]                 # (N, 1, 28, 28)
            with (torch.cuda.stream(streams[r]) if streams else contextlib.nullcontext()):
                h = F.relu(F.max_pool2d(F.conv2d(xr, w1[r], b1[r]), 2))       # (N, 20, 12, 12)
                h = F.conv2d(h, w2[r], b2[r])                                # (N, 50, 8, 8)
                if r in bn_index:
                    h = m.batch_norm_of(h, bn_index[r])
                outs.append(F.relu(F.max_pool2d(h, 2)))                      # (N, 50, 4, 4)
        if m.training and bn_index:
            m.bn_batches += 1
        if streams:
            current = torch.cuda.current_stream(x.device)
            for s, out in zip(streams, outs):
                current.wait_stream(s)
                out.record_stream(current)  # allocated on s, read here: keep it until done
        return torch.cat(outs, 1)                                            # (N, R*50, 4, 4)

    def side_streams(self, x) -> list:
        """The R side streams on x's CUDA device, each made to wait for the current stream
        (x is ready); [] on the CPU."""
        if not x.is_cuda:
            return []
        if len(self.streams) != self.model.runs:
            self.streams = [torch.cuda.Stream(x.device) for _ in range(self.model.runs)]
        current = torch.cuda.current_stream(x.device)
        for s in self.streams:
            s.wait_stream(current)
            x.record_stream(s)
        return self.streams


VARIANTS = {"grouped-nchw": grouped_nchw, "streams": Streams}
