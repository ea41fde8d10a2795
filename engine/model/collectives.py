"""The all-reduce behind every row-parallel projection, in the variants tensor parallelism can use.

Per decoder layer (and loop), o_proj and down_proj each end with a sum over ranks of a
[tokens, hidden] partial product: 56 sums per decode step of a 28-layer model. At batch 1
that is 10 KB each, so what costs is latency, not bandwidth, and the variants differ in
latency (all are captured in the decode CUDA graphs):

- `nccl`: `torch.distributed.all_reduce` on the process group (NCCL on GPUs, gloo on CPUs).
  NCCL's ring (LL protocol for small messages) takes some ten microseconds per call.
- `symm-one-shot`: PyTorch symmetric memory. The projection writes its partial product
  straight into a buffer every peer has mapped (NVLink peer-to-peer), and one kernel reads
  every peer's partial, sums them and writes the result: one launch, a barrier before (the
  partials are ready) and after (nobody still reads the buffer). For small messages.
- `symm-two-shot`: the same buffer, reduce-scatter then all-gather inside one kernel: each
  rank reads only its share of the peers' partials; for larger messages.
- `symm-fused`: `symm-one-shot`, except that a projection followed by the residual add and
  RMSNorm (every o_proj and down_proj of a decoder layer) ends in one kernel that reads the
  peers' partials, sums them, adds the residual and normalises (kernels/symm_norm.py): one
  launch per projection instead of two, and one barrier instead of two. o_proj and down_proj
  write their partials to two regions of the buffer (`RowParallelLinear.slot`), which they
  alternate in, so no barrier after the sum is needed (see symm_norm.py).
- `auto`: `symm-fused` where symmetric memory and the fused kernel work on this machine
  (checked once, with known sums), else `nccl`. On 2 x H200 at the 14B shape it made decode
  3-4% faster than `symm-one-shot` (docs/benchmarks.md).

Messages larger than the symmetric buffer (prefill chunks) always go through NCCL, whose ring
is bandwidth-optimal there. NVLink multicast (`multimem` operations) is never used.
"""

from __future__ import annotations

import warnings

import torch
import torch.distributed as dist
import torch.nn.functional as F

ALL_REDUCE_MODES = ("auto", "nccl", "symm-one-shot", "symm-two-shot", "symm-fused")
# Largest partial product (bytes) that goes through symmetric memory: a decode step of 64
# sequences of hidden 8192 in bf16; prefill chunks are bandwidth-bound and take NCCL.
SYMM_BYTES = 1 << 20
# Most rows the fused reduce+add+norm takes: each row's barrier uses `world` slots of a signal
# pad (2 KiB of 4-byte slots in PyTorch's symmetric memory); decode steps are far below this.
FUSED_SLOTS = 256


class AllReduceError(RuntimeError):
    """A variant that cannot run here (no CUDA, no symmetric memory, a failed check)."""


class AllReduce:
    """Sum of x @ weight.T over the ranks of `group`; one object serves every row-parallel
    layer of a model (they share its buffer: the calls run one after another on one stream)."""

    def __init__(self, group: dist.ProcessGroup | None = None, mode: str = "nccl") -> None:
        if mode not in ALL_REDUCE_MODES:
            raise AllReduceError(f"unknown all-reduce mode {mode!r}; choose one of {', '.join(ALL_REDUCE_MODES)}")
        self.group = group
        self.requested = mode
        self.mode = "nccl"  # what runs: set by `setup` for the symmetric-memory variants
        self._buffer: torch.Tensor | None = None
        self._group_name = ""
        # symm-fused: every rank's buffer and signal pad (int64 device addresses), and the kernel
        self._peers: tuple[torch.Tensor, torch.Tensor, int, int] | None = None
        self._fused = None
        self._region = 0  # elements of one region of the buffer

    def setup(self, device: torch.device, dtype: torch.dtype, capacity_bytes: int = SYMM_BYTES) -> str:
        """Prepare the requested variant on every rank (a collective call); returns the mode
        that runs. `auto` falls back to NCCL when symmetric memory fails here; an explicit
        symmetric-memory mode raises AllReduceError instead."""
        if self.requested == "nccl":
            self.mode = "nccl"
            return self.mode
        want = "symm-fused" if self.requested == "auto" else self.requested
        error = ""
        try:
            # symm-fused: the plain variant's region, then o_proj's and down_proj's.
            regions = 3 if want == "symm-fused" else 1
            self._buffer, handle = _symmetric_buffer(self.group, device, dtype, regions * capacity_bytes)
            self._region = capacity_bytes // dtype.itemsize
            self._group_name = _group_name(self.group)
            self.mode = want
            if want == "symm-fused":
                from loopls.kernels import symm_norm  # Triton: only on the GPU ranks that use it

                self._fused = symm_norm.reduce_add_rms_norm
                addresses = [handle.buffer_ptrs, handle.signal_pad_ptrs]
                ptrs, pads = (torch.tensor(a, dtype=torch.int64, device=device) for a in addresses)
                self._peers = (ptrs, pads, handle.rank, handle.world_size)
            _check_sum(self, device, dtype)
        except Exception as exc:  # noqa: BLE001 - Triton's compile errors (symm-fused) share no base class
            # Whatever fails here, every rank must learn it below and agree on a fallback.
            error = f"{type(exc).__name__}: {exc}"
        # Every rank must run the same variant, or their collectives would not match.
        ok = torch.tensor([0 if error else 1], device=device)
        dist.all_reduce(ok, op=dist.ReduceOp.MIN, group=self.group)
        if ok.item() == 1:
            return self.mode
        self._buffer, self.mode, self._peers, self._fused = None, "nccl", None, None
        if self.requested != "auto":
            raise AllReduceError(f"{want} all-reduce is not available here: {error or 'failed on another rank'}")
        return self.mode

    def linear(self, x: torch.Tensor, weight: torch.Tensor, gemm=None) -> torch.Tensor:
        """x [N, in] @ weight [out, in].T, summed over the ranks -> [N, out]. `gemm`: a
        kernels.decode_gemm.DecodeGemm that computes the local product (None: cuBLAS)."""
        buf = self._buffer
        rows, cols = x.shape[0], weight.shape[0]
        if buf is None or x.dim() != 2 or x.dtype != buf.dtype or rows * cols > self._region:
            out = F.linear(x, weight) if gemm is None else gemm.linear(x, weight)
            dist.all_reduce(out, group=self.group)
            return out
        # The partial product lands in the symmetric buffer directly: no copy before the sum.
        part = buf.narrow(0, 0, rows * cols).view(rows, cols)
        if gemm is None:
            torch.mm(x, weight.t(), out=part)
        else:
            gemm.linear(x, weight, out=part)
        return self.reduce_buffer(part)

    def linear_add_rms_norm(
        self, x: torch.Tensor, weight: torch.Tensor, residual: torch.Tensor, norm_weight: torch.Tensor,
        eps: float, gemm=None, slot: int = 0,
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """h = residual + (x @ weight.T summed over the ranks) -> (rms_norm(h) * norm_weight, h)
        in one kernel after the GEMM (symm-fused); None where this variant does not fuse it
        (then the caller runs `linear` and the add+norm). `slot` (0 or 1): the buffer region,
        which consecutive calls must alternate (o_proj 0, down_proj 1)."""
        buf, peers = self._buffer, self._peers
        rows, cols = x.shape[0], weight.shape[0]
        if (
            peers is None or x.dim() != 2 or x.dtype != buf.dtype or rows * cols > self._region
            or rows * peers[3] > FUSED_SLOTS or residual.shape != (rows, cols) or residual.dtype != buf.dtype
            or residual.stride(1) != 1 or norm_weight.dtype != buf.dtype
        ):
            return None
        offset = (1 + slot) * self._region
        part = buf.narrow(0, offset, rows * cols).view(rows, cols)
        if gemm is None:
            torch.mm(x, weight.t(), out=part)
        else:
            gemm.linear(x, weight, out=part)
        ptrs, pads, rank, world = peers
        return self._fused(ptrs, pads, rank, world, offset, rows, residual, norm_weight, eps)

    def all_reduce(self, t: torch.Tensor) -> torch.Tensor:
        """The sum of `t` over the ranks (a new tensor through symmetric memory, else `t` summed
        in place); the projections use `linear`, which saves the copy into the buffer."""
        buf = self._buffer
        if buf is None or t.dtype != buf.dtype or t.numel() > self._region:
            dist.all_reduce(t, group=self.group)
            return t
        part = buf.narrow(0, 0, t.numel()).view(t.shape)
        part.copy_(t)
        return self.reduce_buffer(part)

    def reduce_buffer(self, part: torch.Tensor) -> torch.Tensor:
        """Sum `part`, a view at the start of the symmetric buffer, into a new tensor."""
        out = torch.empty_like(part)
        if self.mode in ("symm-one-shot", "symm-fused"):
            torch.ops.symm_mem.one_shot_all_reduce_out(part, "sum", self._group_name, out)
        else:
            torch.ops.symm_mem.two_shot_all_reduce_out(part, "sum", self._group_name, out)
        return out


def _group_name(group: dist.ProcessGroup | None) -> str:
    return (group or dist.group.WORLD).group_name


def _symmetric_buffer(
    group: dist.ProcessGroup | None, device: torch.device, dtype: torch.dtype, capacity_bytes: int
):
    """A buffer of `capacity_bytes` that every rank of `group` maps, and its symmetric-memory
    handle (a collective call)."""
    if device.type != "cuda":
        raise AllReduceError("symmetric memory needs CUDA devices")
    if not hasattr(torch.ops.symm_mem, "one_shot_all_reduce_out"):
        raise AllReduceError(f"torch {torch.__version__} has no symmetric-memory all-reduce")
    import torch.distributed._symmetric_memory as symm_mem

    name = _group_name(group)
    try:
        # Plain CUDA peer-to-peer mappings: what the one- and two-shot kernels need, and no
        # multicast objects. Refused once anything was allocated: then the choice stands.
        symm_mem.set_backend("CUDA")
    except (RuntimeError, AttributeError):
        pass
    enable = getattr(symm_mem, "enable_symm_mem_for_group", None)
    if enable is not None:  # needed by older torch releases, deprecated (a no-op) in newer ones
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            enable(name)
    buf = symm_mem.empty(capacity_bytes // dtype.itemsize, dtype=dtype, device=device)
    return buf, symm_mem.rendezvous(buf, name)


def _check_sum(reduce: AllReduce, device: torch.device, dtype: torch.dtype) -> None:
    """Run the variant once on known values: rank r contributes r + 1 everywhere."""
    world = dist.get_world_size(reduce.group)
    rank = dist.get_rank(reduce.group)
    part = reduce._buffer.narrow(0, 0, 4 * 128).view(4, 128)
    part.fill_(rank + 1)
    got = reduce.reduce_buffer(part)
    expected = world * (world + 1) / 2
    if not bool((got == expected).all()):
        raise AllReduceError(f"{reduce.mode} summed to {got.float().mean().item()} instead of {expected}")
    if reduce._peers is not None:
        # The fused kernel: ones @ a weight of (r + 1) / 128 gives r + 1 everywhere on rank r;
        # the sum plus a residual of 1 is expected + 1, and a constant row normalises to 1.
        ones = torch.ones(4, 128, device=device, dtype=dtype)
        weight = torch.full((128, 128), (rank + 1) / 128, device=device, dtype=dtype)
        for slot in (0, 1):  # as a layer's o_proj and down_proj do
            normed, h = reduce.linear_add_rms_norm(ones, weight, ones, ones[0], 1e-6, slot=slot)
        if not (bool((h == expected + 1).all()) and bool(((normed.float() - 1).abs() < 1e-2).all())):
            raise AllReduceError(f"symm-fused gave a residual of {h.float().mean().item()} instead of {expected + 1}")


def set_all_reduce(model: torch.nn.Module, reduce: AllReduce) -> None:
    """Make every row-parallel layer of `model` use `reduce`."""
    for module in model.modules():
        if hasattr(module, "reduce") and isinstance(module.reduce, AllReduce):
            module.reduce = reduce


def model_all_reduce(model: torch.nn.Module) -> AllReduce | None:
    """The all-reduce the model's row-parallel layers use (None: not split)."""
    for module in model.modules():
        if isinstance(getattr(module, "reduce", None), AllReduce):
            return module.reduce
    return None
