"""dqnrun.optim against torch.optim: bitwise the same parameters and state, step after step."""

import copy
import math

import pytest
import torch

from dqnrun.networks import NetworkSpec, QNetwork
from dqnrun.optim import OPTIMIZERS as OURS
from dqnrun.optim import SMALLEST_NORMAL, denormal_floor_is_exact

TORCH = {
    "rmsprop": lambda params: torch.optim.RMSprop(params, lr=1e-3, foreach=True),
    "adam": lambda params: torch.optim.Adam(params, lr=1e-3, foreach=True),
}


def network(dueling=False):
    torch.manual_seed(3)
    return QNetwork(NetworkSpec(4, 2, (64, 32), dueling))


def loss_of(net, step):
    g = torch.Generator().manual_seed(step)
    x = torch.randn(16, 4, generator=g)
    y = torch.randn(16, 2, generator=g)
    # Dead units give zero gradients for some rows, as in a real run; some steps large ones.
    return ((net(x) - y * (1 + 10 * (step % 7 == 0))) ** 2).mean()


def train(net, opt, steps, start=0):
    for step in range(start, start + steps):
        opt.zero_grad()
        loss_of(net, step).backward()
        opt.step()


def assert_bitwise(a, b):
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name


def assert_same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa["param_groups"] == sb["param_groups"]
    assert sa["state"].keys() == sb["state"].keys()
    for i in sa["state"]:
        assert sa["state"][i].keys() == sb["state"][i].keys()
        for k in sa["state"][i]:
            assert torch.equal(sa["state"][i][k], sb["state"][i][k]), (i, k)


@pytest.mark.parametrize("kind", ["rmsprop", "adam"])
@pytest.mark.parametrize("dueling", [False, True])
def test_fast_step_is_bitwise_torchs_over_many_steps(kind, dueling):
    reference = network(dueling)
    fast = copy.deepcopy(reference)
    torch_opt = TORCH[kind](reference.parameters())
    fast_opt = OURS[kind](fast.parameters(), lr=1e-3)
    train(reference, torch_opt, 60)
    train(fast, fast_opt, 60)
    assert_bitwise(reference, fast)
    assert_same_state(torch_opt, fast_opt)
    assert int(fast_opt.state_dict()["state"][0]["step"]) == 60


@pytest.mark.parametrize("kind", ["rmsprop", "adam"])
def test_state_dicts_load_across_both_ways_and_continue_exactly(kind):
    reference = network()
    torch_opt = TORCH[kind](reference.parameters())
    train(reference, torch_opt, 20)

    # torch's checkpoint into ours, then ours back into torch.
    fast = copy.deepcopy(reference)
    fast_opt = OURS[kind](fast.parameters(), lr=1e-3)
    fast_opt.load_state_dict(copy.deepcopy(torch_opt.state_dict()))
    train(reference, torch_opt, 15, start=20)
    train(fast, fast_opt, 15, start=20)
    assert_bitwise(reference, fast)

    back = copy.deepcopy(fast)
    back_opt = TORCH[kind](back.parameters())
    back_opt.load_state_dict(copy.deepcopy(fast_opt.state_dict()))
    train(reference, torch_opt, 15, start=35)
    train(back, back_opt, 15, start=35)
    assert_bitwise(reference, back)
    # Loading into ours again mid-run replaces the state it had cached.
    fast_opt.load_state_dict(copy.deepcopy(back_opt.state_dict()))
    fast.load_state_dict(back.state_dict())
    train(reference, torch_opt, 5, start=50)
    train(fast, fast_opt, 5, start=50)
    assert_bitwise(reference, fast)
    assert_same_state(torch_opt, fast_opt)


@pytest.mark.parametrize("kind", ["rmsprop", "adam"])
def test_a_parameter_without_gradient_falls_back_to_torchs_step(kind):
    reference = network()
    fast = copy.deepcopy(reference)
    torch_opt = TORCH[kind](reference.parameters())
    fast_opt = OURS[kind](fast.parameters(), lr=1e-3)
    for net, opt in ((reference, torch_opt), (fast, fast_opt)):
        train(net, opt, 3)
        last = list(net.parameters())[-1]
        opt.zero_grad()
        loss_of(net, 3).backward()
        last.grad = None  # torch skips it: no update, its step count stays
        opt.step()
        train(net, opt, 3, start=4)
    assert_bitwise(reference, fast)
    assert_same_state(torch_opt, fast_opt)


def test_creating_and_stepping_imports_no_compiler_stack():
    """torch.optim's optimizers import torch._dynamo when created (most of a second)."""
    import subprocess
    import sys

    code = ("import sys, torch\n"
            "from dqnrun.optim import RMSprop\n"
            "p = torch.nn.Parameter(torch.ones(3)); o = RMSprop([p], lr=0.1)\n"
            "p.grad = torch.ones(3); o.step(); o.load_state_dict(o.state_dict())\n"
            "print('torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# The denormal floor: sqrt(max(v, 2^-126)) in place of sqrt(v), exact once eps is added.

EVERY_DENORMAL = torch.arange(0, 2**23, dtype=torch.int32).view(torch.float32)  # 0 and all 2^23 - 1 denormals
SMALLEST_EXACT_EPS = 2.0**-38  # 2^-62 <= 2^(e - 25) needs e >= -37: eps >= 0.5 * 2^-37


@pytest.mark.parametrize("eps", [1e-8, 1.5e-4, 0.01, SMALLEST_EXACT_EPS])
@pytest.mark.parametrize("scale", [1.0, (1 - 0.999) ** 0.5])  # RMSprop; Adam's first bias correction
def test_the_floor_leaves_every_denominator_bitwise_where_it_is_said_exact(eps, scale):
    assert denormal_floor_is_exact(eps, scale) == (scale == 1.0 or eps != SMALLEST_EXACT_EPS)
    if not denormal_floor_is_exact(eps, scale):
        return
    v = torch.cat([EVERY_DENORMAL, torch.tensor([SMALLEST_NORMAL, 1e-30, 1e-8, 1.0, 1e30])])
    plain = v.sqrt() / scale + eps
    floored = v.clamp_min(SMALLEST_NORMAL).sqrt() / scale + eps
    assert torch.equal(floored, plain)
    assert EVERY_DENORMAL[1] > 0 and EVERY_DENORMAL[-1] < SMALLEST_NORMAL
    assert not torch.equal(v.clamp_min(SMALLEST_NORMAL).sqrt(), v.sqrt())  # the roots alone do differ


def test_the_floor_is_refused_where_eps_could_not_absorb_it():
    assert not denormal_floor_is_exact(0.0)
    assert not denormal_floor_is_exact(math.nextafter(SMALLEST_EXACT_EPS, 0.0))
    assert not denormal_floor_is_exact(1e-30)
    # With so small an eps the floored root would show: 2^-63 is not absorbed by 1e-30.
    assert SMALLEST_NORMAL**0.5 + 1e-30 != 1e-30


@pytest.mark.parametrize("kind", ["rmsprop", "adam"])
@pytest.mark.parametrize("eps", [1e-8, 1e-30])  # the floored root, and the plain one
def test_steps_on_a_denormal_running_average_stay_bitwise_torchs(kind, eps):
    """Every denormal in the running average of squared gradients (dead units' weights), some
    gradients zero, some not: dqnrun's step stays torch's, parameters and state."""
    n = EVERY_DENORMAL.numel()
    g = torch.Generator().manual_seed(0)
    reference = torch.nn.Parameter(torch.randn(n, generator=g))
    make = {"rmsprop": torch.optim.RMSprop, "adam": torch.optim.Adam}[kind]
    torch_opt = make([reference], lr=1e-3, eps=eps, foreach=True)
    reference.grad = torch.randn(n, generator=g)
    torch_opt.step()
    average = "square_avg" if kind == "rmsprop" else "exp_avg_sq"
    torch_opt.state[reference][average].copy_(EVERY_DENORMAL[torch.randperm(n, generator=g)])
    fast = torch.nn.Parameter(reference.detach().clone())
    fast_opt = OURS[kind]([fast], lr=1e-3)
    fast_opt.load_state_dict(copy.deepcopy(torch_opt.state_dict()))
    assert fast_opt.param_groups[0]["eps"] == eps
    for _ in range(3):
        grad = torch.randn(n, generator=g) * (torch.rand(n, generator=g) < 0.5)  # half of them zero
        reference.grad, fast.grad = grad.clone(), grad.clone()
        torch_opt.step()
        fast_opt.step()
        assert torch.equal(reference, fast)
    assert_same_state(torch_opt, fast_opt)


# The optimizers' options: RMSprop's alpha, eps and centred variant (MinAtar's DQN), Adam's eps (Rainbow's).

OPTIONS = {
    "rmsprop": {"alpha": 0.95, "eps": 0.01, "centered": True},
    "adam": {"eps": 1.5e-4},
}


@pytest.mark.parametrize("kind", ["rmsprop", "adam"])
def test_options_give_torchs_step_bitwise_and_load_across(kind):
    reference = network(dueling=True)
    fast = copy.deepcopy(reference)
    make = {"rmsprop": torch.optim.RMSprop, "adam": torch.optim.Adam}[kind]
    torch_opt = make(reference.parameters(), lr=1e-3, foreach=True, **OPTIONS[kind])
    fast_opt = OURS[kind](fast.parameters(), lr=1e-3, **OPTIONS[kind])
    train(reference, torch_opt, 40)
    train(fast, fast_opt, 40)
    assert_bitwise(reference, fast)
    assert_same_state(torch_opt, fast_opt)  # centred: the gradient's average ("grad_avg") too
    if kind == "rmsprop":
        assert list(fast_opt.state_dict()["state"][0]) == ["step", "square_avg", "grad_avg"]
    # A checkpoint of ours continues in torch's optimizer, the same.
    back = copy.deepcopy(fast)
    back_opt = make(back.parameters(), lr=1e-3, foreach=True, **OPTIONS[kind])
    back_opt.load_state_dict(copy.deepcopy(fast_opt.state_dict()))
    train(reference, torch_opt, 10, start=40)
    train(back, back_opt, 10, start=40)
    assert_bitwise(reference, back)


def test_the_centred_denominator_is_the_gradients_running_variance():
    """One parameter, hand computation: v and m after two gradients, step = lr g / (sqrt(v - m^2) + eps)."""
    p = torch.nn.Parameter(torch.tensor([1.0]))
    opt = OURS["rmsprop"]([p], lr=0.1, alpha=0.5, eps=0.25, centered=True)
    for g in (2.0, 4.0):
        p.grad = torch.tensor([g])
        opt.step()
    # v = 0.5 * (0.5 * 4) + 0.5 * 16 = 9; m = 0.5 * (0.5 * 2) + 0.5 * 4 = 2.5; v - m^2 = 2.75
    state = opt.state[p]
    assert state["square_avg"].item() == 9.0 and state["grad_avg"].item() == 2.5
    first = 1.0 - 0.1 * 2.0 / (1.0 + 0.25)  # v = 2, m = 1: sqrt(1) + eps
    assert p.item() == pytest.approx(first - 0.1 * 4.0 / (2.75**0.5 + 0.25), abs=1e-7)


def test_an_unknown_option_is_refused():
    with pytest.raises(TypeError, match="betas"):
        OURS["rmsprop"](network().parameters(), lr=1e-3, betas=(0.9, 0.99))


def test_a_centred_checkpoint_loads_into_a_plain_optimizer_and_back_as_torchs_does():
    """torch's load_state_dict takes the loaded options, `centered` included: so does ours."""
    reference = network()
    torch_opt = torch.optim.RMSprop(reference.parameters(), lr=1e-3, foreach=True, **OPTIONS["rmsprop"])
    train(reference, torch_opt, 10)
    fast = copy.deepcopy(reference)
    fast_opt = OURS["rmsprop"](fast.parameters(), lr=1e-3)  # not centred until it loads
    fast_opt.load_state_dict(copy.deepcopy(torch_opt.state_dict()))
    train(reference, torch_opt, 10, start=10)
    train(fast, fast_opt, 10, start=10)
    assert_bitwise(reference, fast)
    assert_same_state(torch_opt, fast_opt)
    plain = OURS["rmsprop"](network().parameters(), lr=1e-3)
    train(network(), plain, 1)
    fast_opt.load_state_dict(copy.deepcopy(plain.state_dict()))  # and back to the plain variant
    assert fast_opt.param_groups[0]["centered"] is False and fast_opt.STATE == ("square_avg",)


def test_float64_parameters_take_the_plain_root():
    """The floor's argument is float32's: a float64 state keeps torch's step bitwise by taking the plain root."""
    g = torch.Generator().manual_seed(1)
    # Parameters as small as their steps, so that a changed denominator would show in them.
    reference = torch.nn.Parameter(torch.randn(1000, generator=g, dtype=torch.float64) * 1e-155)
    fast = torch.nn.Parameter(reference.detach().clone())
    torch_opt = torch.optim.Adam([reference], lr=1e-3, foreach=True)
    fast_opt = OURS["adam"]([fast], lr=1e-3)
    for step in range(5):
        grad = torch.randn(1000, generator=g, dtype=torch.float64) * 1e-160  # squares far below 2^-126
        reference.grad, fast.grad = grad.clone(), grad.clone()
        torch_opt.step()
        fast_opt.step()
    assert torch.equal(reference, fast)
