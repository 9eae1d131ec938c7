"""The one argument-check dialect (``minidiff._validation.checked``): what it promises."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import minidiff as md
from minidiff import _validation as v
from minidiff._validation import (
    Check,
    Flag,
    FloatTensor,
    Function,
    Int,
    Number,
    OneOf,
    Rng,
    Timesteps,
    checked,
    count_host_reads,
    skip_value_checks,
)

SCHED = md.linear_schedule(10, 1e-3, 0.2)


@checked(
    x=FloatTensor(finite=True),
    t=Timesteps(of="x"),
    schedule=md.NoiseSchedule,
    noise=FloatTensor(like="x", finite=True, optional=True),
    generator=Rng,
    scale=Number(low=0.0),
    n=Int(minimum=2),
    mode=OneOf(("a", "b")),
    fn=Function("(x) -> x"),
    tag=Check(lambda value, name: value.upper()),
)
def _kernel(
    x: torch.Tensor,
    t: torch.Tensor | int,
    schedule: md.NoiseSchedule,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    *,
    scale: float = 1.0,
    n: int = 2,
    mode: str = "a",
    fn: object = None,
    tag: str = "x",
) -> tuple[object, ...]:
    return (x, t, schedule, noise, generator, scale, n, mode, fn, tag)


def test_checked_passes_normalised_values_to_the_body() -> None:
    x = torch.randn(3, 2)
    out = _kernel(x, 4, SCHED, scale=2, tag="abc")
    t = out[1]
    assert isinstance(t, torch.Tensor) and t.dtype == torch.long and t.tolist() == [4, 4, 4]
    assert out[5] == 2.0 and isinstance(out[5], float)
    assert out[9] == "ABC"  # a Check's return value is what the body receives


def test_unchecked_is_the_bare_body_and_keeps_the_docstring() -> None:
    assert md.q_sample.unchecked.__name__ == "q_sample"  # type: ignore[attr-defined]
    assert md.q_sample.__doc__ and "q(x_t | x_0)" in md.q_sample.__doc__
    x = torch.randn(4, 2)
    t = torch.tensor([1, 2, 3, 4])
    noise = torch.randn(4, 2)
    a = md.q_sample(x, t, SCHED, noise=noise)
    b = md.q_sample.unchecked(x, t, SCHED, noise)  # type: ignore[attr-defined]
    assert torch.equal(a, b)
    bad = x.clone()
    bad[0, 0] = float("nan")
    with count_host_reads() as reads:
        md.q_sample.unchecked(bad, t, SCHED, noise)  # type: ignore[attr-defined]
    assert reads[0] == 0  # no check, no read


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"x": "x"}, TypeError, "x"),
        ({"x": torch.ones(3, 2, dtype=torch.long)}, TypeError, "x"),
        ({"x": torch.full((3, 2), float("nan"))}, ValueError, "x"),
        ({"t": 2.0}, TypeError, "t"),
        ({"t": 11}, ValueError, "t"),
        ({"t": torch.tensor([1, 2, 11])}, ValueError, "t"),
        ({"t": torch.tensor([1, 2])}, ValueError, "t"),
        ({"schedule": "linear"}, TypeError, "schedule"),
        ({"noise": torch.ones(3, 3)}, ValueError, "noise"),
        ({"noise": torch.full((3, 2), float("inf"))}, ValueError, "noise"),
        ({"generator": 0}, TypeError, "generator"),
        ({"scale": "1"}, TypeError, "scale"),
        ({"scale": -1.0}, ValueError, "scale"),
        ({"n": 2.0}, TypeError, "n"),
        ({"n": 1}, ValueError, "n"),
        ({"mode": 3}, TypeError, "mode"),
        ({"mode": "c"}, ValueError, "mode"),
        ({"fn": 3}, TypeError, "fn"),
    ],
)
def test_each_spec_raises_the_policys_type_and_names_the_argument(
    kwargs: dict[str, object], error: type[Exception], name: str
) -> None:
    call = {"x": torch.ones(3, 2), "t": 2, "schedule": SCHED, **kwargs}
    with pytest.raises(error) as info:
        _kernel(**call)  # type: ignore[arg-type]
    assert str(info.value).startswith(name), str(info.value)


@checked(on=Flag)
def _flagged(on: bool = False) -> object:
    return on


def test_a_flag_takes_numpy_bools_as_bools_and_names_what_it_refuses() -> None:
    """np.True_ (an array's element, a comparison of numpy scalars) worked before Flag and is a
    bool to the body; numbers, None, strings and tensors are refused, each described by its own
    type (numpy.bool_ was described as "bool" while refused)."""
    for value in (np.True_, np.False_, True, False):
        out = _flagged(on=value)
        assert type(out) is bool and out == bool(value)
    refused = [
        ("no", "str 'no'"),
        (None, "None"),
        (1, "int 1"),
        (np.int64(1), "int64 np.int64(1)"),
        (torch.tensor(True), "a torch.bool tensor of shape ()"),
        (np.array(True), "ndarray array(True)"),
        (np.array([True] * 40), "ndarray"),  # a container: its type, never its long repr
        (list(range(40)), "list"),
    ]
    for value, got in refused:
        with pytest.raises(TypeError, match=r"^on must be True or False, got ") as info:
            _flagged(on=value)
        assert str(info.value).endswith(f"got {got}"), str(info.value)
    assert md.TimeMLP(layer_norm=np.True_) is not None


def test_arguments_left_at_their_default_are_not_checked() -> None:
    @checked(n=Int(minimum=5))
    def f(n: int = 0) -> int:  # a default the spec would refuse: defaults are trusted
        return n

    assert f() == 0
    with pytest.raises(ValueError, match="n must be >= 5"):
        f(1)


def test_a_spec_reading_another_argument_runs_after_it_whatever_the_order() -> None:
    # t comes before x in the signature but needs x's batch size
    @checked(t=Timesteps(of="x"), x=FloatTensor(), schedule=md.NoiseSchedule)
    def f(t: torch.Tensor | int, x: torch.Tensor, schedule: md.NoiseSchedule) -> torch.Tensor:
        return t  # type: ignore[return-value]

    assert f(3, torch.ones(2, 1), SCHED).tolist() == [3, 3]
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        f(3, "x", SCHED)  # type: ignore[arg-type]


def test_a_missing_argument_gets_pythons_own_error() -> None:
    with pytest.raises(TypeError, match="missing"):
        md.q_sample(torch.ones(2, 2), 1)  # type: ignore[call-arg]


def test_declaring_an_argument_the_function_lacks_fails_at_import_time() -> None:
    with pytest.raises(TypeError, match="does not have"):

        @checked(y=FloatTensor())
        def f(x: torch.Tensor) -> torch.Tensor:
            return x


def test_broadcast_group_is_checked_together() -> None:
    @checked(a=FloatTensor(min_dim=0, broadcast=True), b=FloatTensor(min_dim=0, broadcast=True))
    def f(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b

    assert f(torch.ones(3, 1), torch.ones(1, 2)).shape == (3, 2)
    with pytest.raises(ValueError, match="b of shape"):
        f(torch.ones(3, 2), torch.ones(4, 2))


def test_a_finite_sum_is_not_required_only_finite_values() -> None:
    """The cheap test (a finite sum) falls back to the elementwise one when the sum overflows."""
    big = torch.full((4, 2), 3e38)  # every value finite, their float32 sum is inf
    out = md.q_sample(big, 1, SCHED, noise=torch.zeros(4, 2))
    assert bool(torch.isfinite(out).all())
    with pytest.raises(ValueError, match="x0"):
        md.q_sample(torch.tensor([[1.0, float("-inf")]]), 1, SCHED)


def test_skip_value_checks_skips_reads_but_not_kinds() -> None:
    x = torch.randn(4, 2)
    t = torch.tensor([1, 2, 3, 4])
    with skip_value_checks():
        with count_host_reads() as reads:
            md.q_sample(x, t, SCHED, noise=x)
        assert reads[0] == 0
        with pytest.raises(TypeError, match="x0"):
            md.q_sample(x.long(), t, SCHED)


def test_on_an_accelerator_all_value_checks_of_a_call_share_one_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On the CPU every read is free and checks read one by one; elsewhere each read is a device
    synchronisation, so the call's checks (finite x0, t in range, finite noise) are read at once.
    The flag runs that path on the CPU."""
    monkeypatch.setattr(v, "_DEFER_ON_CPU", True)
    x = torch.randn(4, 2)
    t = torch.tensor([1, 2, 3, 4])
    with count_host_reads() as reads:
        md.q_sample(x, t, SCHED, noise=x)
    assert reads[0] == 1
    for bad_x, bad_t, bad_noise, name in [
        (torch.full((4, 2), float("nan")), t, x, "x0"),
        (x, torch.tensor([1, 2, 3, 11]), x, "t"),
        (x, t, torch.full((4, 2), float("inf")), "noise"),
    ]:
        with pytest.raises(ValueError) as info:
            md.q_sample(bad_x, bad_t, SCHED, noise=bad_noise)
        assert str(info.value).startswith(name)
    big = torch.full((4, 2), 3e38)  # an overflowing sum is re-checked elementwise
    md.q_sample(big, t, SCHED, noise=torch.zeros(4, 2))


# --- "an int or an integer (B,) tensor", and continuous times: one helper each ------------------


def _integer_arguments() -> list[tuple[str, object]]:
    """(argument name, call(value)) for every argument that is an int or an integer (B,) tensor."""
    from minidiff.losses import dsm_loss
    from minidiff.samplers.ddim import ddim_step

    s = md.linear_schedule(10)
    x = torch.zeros(4, 2)
    score = lambda y, sig: torch.zeros_like(y)  # noqa: E731
    eps = torch.zeros(4, 2)
    return [
        ("y", lambda y: v.check_labels(y, 4, 3)),
        ("t", lambda t: md.q_sample(x, t, s, noise=eps)),
        ("t_prev", lambda tp: ddim_step(x, 5, tp, eps, s)),
        ("sigma_idx", lambda i: dsm_loss(score, x, torch.tensor([0.5, 1.0]), sigma_idx=i)),
    ]


@pytest.mark.parametrize(
    "bad",
    [True, np.bool_(True), 1.5, "2", torch.ones(4), torch.ones(4, dtype=torch.bool)],
    ids=["bool", "np_bool", "float", "str", "float_tensor", "bool_tensor"],
)
@pytest.mark.parametrize("name_call", _integer_arguments(), ids=lambda nc: nc[0])
def test_an_integer_argument_of_the_wrong_type_is_a_type_error_naming_it(
    name_call: tuple[str, object], bad: object
) -> None:
    name, call = name_call
    with pytest.raises(TypeError, match=rf"^{name} must be .*integer"):
        call(bad)  # type: ignore[operator]


@pytest.mark.parametrize(
    "name_call",
    [nc for nc in _integer_arguments() if nc[0] != "sigma_idx"],  # a tensor only: no int at all
    ids=lambda nc: nc[0],
)
@pytest.mark.parametrize("np_int", [np.int64, np.int32, np.uint8])
def test_a_numpy_integer_is_the_int_it_holds(name_call: tuple[str, object], np_int: type) -> None:
    _, call = name_call
    out, want = call(np_int(2)), call(2)  # type: ignore[operator]
    assert torch.equal(out, want) if isinstance(out, torch.Tensor) else out == want


def test_int_and_timesteps_take_numpy_integers_and_hand_the_body_python_ints() -> None:
    """Number takes NumPy floats; Int and Timesteps take NumPy integers (never np.bool_)."""
    x = torch.ones(3, 2)
    out = _kernel(x, np.int64(4), SCHED, n=np.int64(3))
    assert out[1].tolist() == [4, 4, 4] and out[6] == 3 and type(out[6]) is int
    assert type(v.check_positive_int(np.uint16(7), "k")) is int
    assert v.check_shape((np.int64(4), 2)) == (4, 2)
    assert all(type(d) is int for d in v.check_shape((np.int64(4), np.int32(2))))
    with pytest.raises(ValueError, match=r"t must lie in 1..10, got 0"):
        _kernel(x, np.int64(0), SCHED)
    with pytest.raises(ValueError, match="n must be >= 2, got 1"):
        _kernel(x, 2, SCHED, n=np.int64(1))
    with pytest.raises(TypeError, match="n must be an int >= 2"):
        _kernel(x, 2, SCHED, n=np.bool_(True))
    with pytest.raises(TypeError, match="t must be an int or an integer tensor"):
        _kernel(x, np.bool_(True), SCHED)
    # the public calls of a student who indexes a NumPy array
    n = np.array([10, 20])[0]
    assert md.toy_dataset("moons", n).shape == (10, 2)
    sched = md.linear_schedule(np.int64(50))
    assert sched.T == 50 and type(sched.T) is int
    x0, eps = torch.randn(4, 2), torch.randn(4, 2)
    assert torch.equal(md.q_sample(x0, np.int64(3), sched, eps), md.q_sample(x0, 3, sched, eps))
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    model = lambda x, t: 0.1 * x  # noqa: E731
    assert torch.equal(
        md.ddim_sample(model, sched, (4, 2), steps=np.int64(5), generator=g()),
        md.ddim_sample(model, sched, (4, 2), steps=5, generator=g()),
    )


@pytest.mark.parametrize(
    ("value", "got"),
    [
        (None, "got None"),
        (torch.full((4, 2), float("nan")), "got a torch.float32 tensor of shape (4, 2)"),
        ([1, 2], "got list"),
        ("5", "got str '5'"),
        (2.5, "got float 2.5"),
        (np.bool_(True), "got bool np.True_"),
    ],
)
def test_a_message_shows_a_scalar_value_once_and_never_a_tensor(value: object, got: str) -> None:
    for check, head in (
        (lambda: v.check_positive_int(value, "s", minimum=0), "s must be an int >= 0, "),
        (lambda: v.check_number(value, "w"), "w must be a real number, "),
    ):
        if isinstance(value, float):
            continue  # a float is a real number
        with pytest.raises(TypeError) as info:
            check()
        assert str(info.value) == head + got, str(info.value)
    if isinstance(value, float):
        with pytest.raises(TypeError, match=r"^s must be an int >= 0, got float 2\.5$"):
            v.check_positive_int(value, "s", minimum=0)


def test_a_long_string_is_cut_in_the_message() -> None:
    with pytest.raises(TypeError) as info:
        v.check_positive_int("x" * 500, "n")
    assert len(str(info.value)) < 120 and str(info.value).endswith("...")


@pytest.mark.parametrize("name_call", _integer_arguments(), ids=lambda nc: nc[0])
def test_an_integer_tensor_of_the_wrong_shape_is_a_value_error_naming_it(
    name_call: tuple[str, object],
) -> None:
    name, call = name_call
    with pytest.raises(ValueError, match=rf"^{name} must have shape \(4,\)"):
        call(torch.zeros(3, dtype=torch.long))  # type: ignore[operator]
    call(torch.ones(4, dtype=torch.long))  # type: ignore[operator]  # the right shape passes


def _time_arguments() -> list[tuple[str, object]]:
    """Calls that take a continuous time ``t ∈ [0, 1]`` (the ``Times`` spec)."""
    from minidiff.flow_matching import flow_matching_loss
    from minidiff.paths import RectifiedFlowPath
    from minidiff.sde import VPSDE

    x = torch.zeros(4, 2)
    velocity = lambda y, t: torch.zeros_like(y)  # noqa: E731
    return [
        ("VPSDE.beta", lambda t: VPSDE().beta(t)),
        ("VPSDE.marginal_sample", lambda t: VPSDE().marginal_sample(x, t, noise=x)),
        ("RectifiedFlowPath.coefficients", lambda t: RectifiedFlowPath().coefficients(t)),
        ("flow_matching_loss", lambda t: flow_matching_loss(velocity, x, t=t, noise=x)),
    ]


@pytest.mark.parametrize("what_call", _time_arguments(), ids=lambda wc: wc[0])
def test_continuous_times_share_one_policy(what_call: tuple[str, object]) -> None:
    _, call = what_call
    call(torch.full((4,), 0.5))  # type: ignore[operator]
    with pytest.raises(TypeError, match=r"^t must be a floating tensor of continuous times"):
        call(torch.ones(4, dtype=torch.long))  # type: ignore[operator]
    with pytest.raises(TypeError, match=r"^t must be a float"):
        call("0.5")  # type: ignore[operator]
    with pytest.raises(ValueError, match=r"^t must lie in \[0, 1\]"):
        call(torch.full((4,), 1.5))  # type: ignore[operator]


def test_a_batch_tuple_where_a_tensor_belongs_is_explained() -> None:
    """A TensorDataset's batch is a 1-tuple (x,): the TypeError says so and how to unpack it,
    e.g. for simple_loss called from a train() loss on TensorDataset(points)."""
    pts = torch.randn(8, 3)
    batch = next(iter(torch.utils.data.DataLoader(torch.utils.data.TensorDataset(pts), 4)))
    with pytest.raises(TypeError, match=r"^x0 must be a torch.Tensor, got list of 1 tensor: "):
        md.simple_loss(lambda x, t: x, batch, md.linear_schedule(10))
    with pytest.raises(TypeError, match=r"unpack the batch first, e.g. x0 = batch\[0\]"):
        md.simple_loss(lambda x, t: x, (pts,), md.linear_schedule(10))
    with pytest.raises(TypeError, match=r"got tuple of 2 tensors: "):
        v.check_tensor((pts, pts), "x")
    with pytest.raises(TypeError, match=r"^x must be a torch.Tensor, got list$"):
        v.check_tensor([1.0, 2.0], "x")  # a list of numbers gets no batch hint


def test_the_module_docstrings_example_runs_and_is_q_sample() -> None:
    """The example of the dialect in ``_validation``'s docstring is code that runs (names that
    exist) and computes what :func:`minidiff.q_sample` computes."""
    import textwrap

    doc = v.__doc__ or ""
    block = doc.split("::\n\n", 1)[1].split("\n\n", 1)
    example = block[0] + "\n\n" + block[1].split("\n\nHow to declare", 1)[0]
    code = textwrap.dedent(example).replace("from .", "from minidiff.")
    namespace: dict[str, object] = {}
    exec(compile(code, "<_validation example>", "exec"), namespace)
    q_sample = namespace["q_sample"]
    sched = md.linear_schedule(50)
    x0, eps, t = torch.randn(3, 2), torch.randn(3, 2), torch.tensor([1, 20, 50])
    assert torch.equal(q_sample(x0, t, sched, noise=eps), md.q_sample(x0, t, sched, noise=eps))  # type: ignore[operator]
    with pytest.raises(ValueError, match="t"):
        q_sample(x0, torch.tensor([0, 1, 2]), sched)  # type: ignore[operator]
