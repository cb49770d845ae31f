import math

import pytest
import torch

from dqnrun.networks import NetworkSpec, NoisyLinear, QNetwork, choose_trunk, dueling_q


def test_mlp_shape_and_layers():
    net = QNetwork(NetworkSpec(4, 3, (512, 128), False))
    assert net(torch.zeros(5, 4)).shape == (5, 3)
    sizes = [(m.in_features, m.out_features) for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert sizes == [(4, 512), (512, 128), (128, 3)]


def test_dueling_aggregation_is_v_plus_centred_advantages():
    v = torch.tensor([[2.0], [-1.0]])
    adv = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 3.0]])
    torch.testing.assert_close(dueling_q(v, adv), torch.tensor([[1.0, 2.0, 3.0], [-2.0, -2.0, 1.0]]))


def test_dueling_output_ignores_a_constant_added_to_the_advantages():
    net = QNetwork(NetworkSpec(4, 3, (16,), True))
    x = torch.randn(7, 4)
    q = net(x)
    with torch.no_grad():
        net.advantage_head.bias += 5.0
    torch.testing.assert_close(net(x), q)


def test_dueling_advantage_part_averages_to_zero_and_mean_q_is_v():
    net = QNetwork(NetworkSpec(4, 3, (16,), True))
    x = torch.randn(7, 4)
    with torch.no_grad():
        v = net.value_head(net.trunk(x))
        q = net(x)
    torch.testing.assert_close(q.mean(dim=1, keepdim=True), v)
    torch.testing.assert_close((q - v).mean(dim=1), torch.zeros(7), atol=1e-6, rtol=0)


def test_spec_round_trip():
    spec = NetworkSpec(8, 4, (64, 64), True)
    assert NetworkSpec.from_dict(spec.to_dict()) == spec


def image_net(shape, dtype="uint8", dueling=False, kind="auto", cnn="auto", seed=0):
    torch.manual_seed(seed)
    trunk = choose_trunk(kind, cnn, shape, "test")
    return QNetwork(NetworkSpec(math.prod(shape), 5, (512, 128), dueling, shape, dtype, trunk))


@pytest.mark.parametrize("shape, trunk, channels", [
    ((4, 84, 84), "nature", 4),  # AtariPreprocessing + FrameStackObservation: channel-first
    ((84, 84, 4), "nature", 4),  # channel-last frames
    ((84, 84), "nature", 1),  # one grayscale frame
    ((10, 10, 4), "minatar", 4),  # MinAtar's channel-last grid
    ((3, 10, 10), "minatar", 3),  # a channel-first grid
    ((2, 10, 10, 4), "minatar", 8),  # stacked MinAtar grids: stack x channels
])
@pytest.mark.parametrize("dueling", [False, True])
def test_cnn_forward_on_each_layout(shape, trunk, channels, dueling):
    net = image_net(shape, dueling=dueling)
    assert net.spec.trunk == trunk
    assert net.trunk[0].in_channels == channels
    assert net(torch.randint(0, 256, (3, *shape), dtype=torch.uint8)).shape == (3, 5)
    assert hasattr(net, "value_head") == dueling


def test_nature_stack_is_the_papers():
    net = image_net((4, 84, 84))
    convs = [(m.out_channels, m.kernel_size[0], m.stride[0]) for m in net.trunk if isinstance(m, torch.nn.Conv2d)]
    assert convs == [(32, 8, 4), (64, 4, 2), (64, 3, 1)]
    linear = [m for m in net.trunk if isinstance(m, torch.nn.Linear)][0]
    assert (linear.in_features, linear.out_features) == (64 * 7 * 7, 512)


def test_channel_first_and_last_see_the_same_image():
    last, first = image_net((10, 10, 4), seed=3), image_net((4, 10, 10), seed=3)
    first.load_state_dict(last.state_dict())
    x = torch.randint(0, 2, (2, 10, 10, 4), dtype=torch.uint8)
    torch.testing.assert_close(last(x), first(x.permute(0, 3, 1, 2)))


def test_uint8_frames_are_scaled_to_unit_range_inside_the_network():
    frames, floats = image_net((4, 84, 84), "uint8", seed=1), image_net((4, 84, 84), "float32", seed=1)
    x = torch.randint(0, 256, (2, 4, 84, 84), dtype=torch.uint8)
    torch.testing.assert_close(frames(x), floats(x.float() / 255))
    torch.testing.assert_close(frames(x.float()), frames(x))  # as the agent's float32 acting batch


def test_auto_picks_from_the_observation_space():
    assert choose_trunk("auto", "auto", (8,), "e") == "mlp"
    assert choose_trunk("auto", "auto", (84, 84), "e") == "nature"
    assert choose_trunk("auto", "auto", (10, 10, 6), "e") == "minatar"
    assert choose_trunk("cnn", "minatar", (4, 84, 84), "e") == "minatar"


def test_models_saved_before_images_still_load():
    old = {"obs_dim": 4, "n_actions": 2, "hidden": [16], "dueling": False}
    spec = NetworkSpec.from_dict(old)
    assert spec == NetworkSpec(4, 2, (16,), False) and spec.obs_shape == (4,) and spec.trunk == "mlp"
    state = {"trunk.0.weight": torch.zeros(16, 4), "trunk.0.bias": torch.zeros(16),
             "head.weight": torch.zeros(2, 16), "head.bias": torch.zeros(2)}
    QNetwork(spec).load_state_dict(state)


def test_noisy_linear_init_and_noise_shapes():
    torch.manual_seed(0)
    layer = NoisyLinear(16, 3, sigma0=0.5)
    bound = 1 / 16**0.5
    assert layer.weight_mu.shape == (3, 16) and layer.bias_mu.shape == (3,)
    assert layer.weight_mu.abs().max() <= bound and layer.bias_mu.abs().max() <= bound
    assert (layer.weight_sigma == 0.5 * bound).all() and (layer.bias_sigma == 0.5 * bound).all()
    layer.reset_noise(torch.Generator().manual_seed(4))
    assert layer.eps_in.shape == (16,) and layer.eps_out.shape == (3,)  # p + q draws, not p * q
    g = torch.randn(19, generator=torch.Generator().manual_seed(4))
    f = g.sign() * g.abs().sqrt()  # f(x) = sgn(x) sqrt(|x|)
    torch.testing.assert_close(layer.eps_in, f[:16], rtol=0, atol=0)
    torch.testing.assert_close(layer.eps_out, f[16:], rtol=0, atol=0)


def test_noisy_linear_output_against_the_factorised_formula():
    torch.manual_seed(1)
    layer = NoisyLinear(4, 3, sigma0=0.5)
    with torch.no_grad():
        layer.weight_sigma.uniform_(0, 1)  # make sigma matter in every entry
        layer.bias_sigma.uniform_(0, 1)
    layer.reset_noise(torch.Generator().manual_seed(2))
    x = torch.randn(5, 4)
    w = torch.empty(3, 4)
    b = torch.empty(3)
    for i in range(3):  # Fortunato et al. (2018), eqs. 10-11, one entry at a time
        b[i] = layer.bias_mu[i] + layer.bias_sigma[i] * layer.eps_out[i]
        for j in range(4):
            w[i, j] = layer.weight_mu[i, j] + layer.weight_sigma[i, j] * layer.eps_out[i] * layer.eps_in[j]
    with torch.no_grad():
        torch.testing.assert_close(layer(x, noise=True), x @ w.T + b)
        torch.testing.assert_close(layer(x), x @ layer.weight_mu.T + layer.bias_mu)  # noise off: the means


def test_noisy_distributional_dueling_network_shapes_and_saved_keys():
    spec = NetworkSpec(4, 3, (16, 8), True, noisy=True, atoms=7, v_min=-1.0, v_max=1.0)
    net = QNetwork(spec)
    net.reset_noise(torch.Generator().manual_seed(0))
    x = torch.randn(5, 4)
    assert net.head_output(x, noise=True).shape == (5, 3, 7)
    assert net(x).shape == net(x, noise=True).shape == (5, 3)
    assert not torch.equal(net(x), net(x, noise=True))
    # The noise is not part of a saved model: only the learned means and scales are.
    assert not any("eps" in k for k in net.state_dict())
    assert {k.split(".")[0] for k in net.state_dict()} == {"trunk", "value_head", "advantage_head"}


def test_old_model_specs_load_with_the_new_switches_off():
    spec = NetworkSpec.from_dict({"obs_dim": 4, "n_actions": 2, "hidden": [8], "dueling": False})
    assert not spec.noisy and not spec.distributional
    full = NetworkSpec(4, 2, (8,), True, noisy=True, noisy_sigma0=0.3, atoms=11, v_min=-2.0, v_max=2.0)
    assert NetworkSpec.from_dict(full.to_dict()) == full
