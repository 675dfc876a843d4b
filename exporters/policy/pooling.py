"""Which window formulation an exit head's MESS policy is compiled with, per deployment target.

The two formulations of :mod:`.mess` give the same labels and decisions; they differ in cost.
``"shift"`` (Slice + Add/Max doubling, 111-159 nodes a head) is the fast one on ONNX Runtime's
CPU, whose pooling walks a (k,1) window column by column; ``"pool"`` (MaxPool/AveragePool,
29-30 nodes) is the cheap one on a GPU, where every node is a kernel launch of several us
(benchmarks/policy_pooling.py measures both on the CPU). A package exported, prepared or built
for a TensorRT target compiles ``pool`` where it is exact; without a target, ``shift``.

Exactness of ``pool``: the band's max is exact in any order, so only the median's count can
differ. ``shift`` adds 0/1 values, exact integers in float32. ``pool`` takes the mean of the
(k,1) column means: each mean c/k is rounded (relative error <= 2u, u = 2^-24, also where a
backend multiplies by 1/k), the k of them summed (absolute error <= (k-1)·u·k with each <= 1,
any order) and divided by k again. The fraction is then off by at most about (k+3)·u, and
it must not cross 0.5, from which the true count/k^2 is at least 1/(2k^2) away (k^2 is odd).
So ``pool`` is exact while k^2·(k+3) < 2^23: the median window k = 4·os+1 up to 201, stride 50.
Beyond it the chooser keeps ``shift`` (no reference model has such a stride). The bound is a
worst case: on ONNX Runtime's CPU the two forms also agreed at stride 64 on windows one pixel
from half, but a GPU backend may sum in another order, and only the bound holds for all.
"""

from __future__ import annotations

from mesc.errors import MescError
from mesc.policy import POOLINGS, kind_of, pooling_of

POOLING_CHOICES = ("auto",) + POOLINGS
# the largest output stride whose median window (4*os+1) keeps AveragePool's count exact
MAX_EXACT_POOL_STRIDE = 50


def pool_is_exact(stride: int) -> bool:
    """Whether ``pooling="pool"`` gives the same decisions as ``"shift"`` at output ``stride``."""
    k = 4 * stride + 1
    return k * k * (k + 3) < 2 ** 23


def has_windows(policy) -> bool:
    """Whether an exit's policy compiles windows at all (MESS with the edge band): without
    them both formulations are the same graph and the choice is moot."""
    return kind_of(policy).name == "mess" and bool(policy.get("edge", True))


def check_pooling_choice(choice: str, option: str = "--policy-pooling") -> str:
    if choice not in POOLING_CHOICES:
        raise MescError(f"{option} must be one of {', '.join(POOLING_CHOICES)}, got {choice!r}")
    return choice


def choose_pooling(policy, choice: str = "auto", target: str | None = None, where: str = "exit") -> str:
    """The formulation exit ``where`` (its manifest ``policy``) gets: ``choice`` ("shift",
    "pool", or "auto": the ``target``'s :attr:`~mesc.targets.Target.policy_pooling`; without a
    target the one ``policy`` records, "shift" where it records none, as in a new export)
    where "pool" is exact, else "shift". An explicit "pool" where it is not exact is refused."""
    from mesc.targets import get_target

    check_pooling_choice(choice)
    if not has_windows(policy):
        return "shift"
    stride = int(policy.get("stride", 8))
    if choice == "auto":
        wanted = get_target(target).policy_pooling if target is not None else pooling_of(policy)
        return wanted if pool_is_exact(stride) else "shift"
    if choice == "pool" and not pool_is_exact(stride):
        raise MescError(f"{where}: --policy-pooling pool is exact up to output stride {MAX_EXACT_POOL_STRIDE} "
                        f"(the AveragePool's float error on a {4 * stride + 1}-pixel window can flip a median), this "
                        f"exit's stride is {stride}; use --policy-pooling shift or auto")
    return choice


def with_pooling(policy: dict, pooling: str) -> dict:
    """A copy of the manifest ``policy`` that records ``pooling``: the key only for "pool", so
    a "shift" package stays what every mesc reads (absent means "shift")."""
    out = {k: v for k, v in policy.items() if k != "pooling"}
    if pooling != "shift":
        out["pooling"] = pooling
    return out


def package_poolings(pkg, choice: str = "auto", target: str | None = None) -> dict:
    """exit name -> the formulation :func:`choose_pooling` gives each exit of ``pkg`` whose head
    computes MESS windows."""
    from mesc.targets import get_target

    check_pooling_choice(choice)
    if target is not None:
        get_target(target)  # an unknown target is named even where no exit has windows
    return {ex.name: choose_pooling(ex.policy, choice, target, f"{pkg.root}: exit '{ex.name}'")
            for ex in pkg.exits if ex.in_graph and has_windows(ex.policy)}


class HeadRepooler:
    """Recompiles the heads of ``pkg`` whose windows differ from ``chosen`` (exit name ->
    formulation, :func:`package_poolings`): for graphs written beside the package's own (prepared
    precisions, the FP32 graphs an engine build reads), which keep theirs. The logits' sizes the recompile needs are read
    (one run of the package) only where a head changes."""

    def __init__(self, pkg, chosen: dict):
        self.pkg, self.chosen, self._dims = pkg, dict(chosen), None

    def changes(self, seg) -> list:
        return [ex for ex in self.pkg.exits if ex.segment == seg.name and ex.name in self.chosen
                and self.chosen[ex.name] != pooling_of(ex.policy)]

    def __call__(self, model, seg):
        """``model`` (segment ``seg``'s graph as the package has it), with every exit head in it
        compiled with the chosen formulation."""
        from mesc.exporters.policy.compile import policy_logits_dims, recompile_head

        for ex in self.changes(seg):
            if self._dims is None:
                self._dims = policy_logits_dims(self.pkg)
            model = recompile_head(model, ex, "mess", with_pooling(dict(ex.policy), self.chosen[ex.name]),
                                   self._dims[ex.name])
        return model


__all__ = ["HeadRepooler", "MAX_EXACT_POOL_STRIDE", "POOLING_CHOICES", "check_pooling_choice", "choose_pooling",
           "has_windows", "package_poolings", "pool_is_exact", "with_pooling"]
