import pytest
import torch

from engine.model import ModelConfig, MotionTransformer, attention_mask
from engine import rotations as rot


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return MotionTransformer().eval()


def test_parameter_count_and_shapes(model):
    assert 2.0e6 < model.num_parameters() < 3.0e6
    out = model(torch.randn(2, 64, 25, 18))
    assert out.shape == (2, 64, 22, 6)
    assert model.receptive_field == 4 * 63 + 1


def test_untrained_model_outputs_the_prior_or_the_rest_pose(model):
    """Rotation slots are residuals: an untrained model outputs the geometric prior
    (engine.ik) or, without it, the rest pose."""
    from engine import ik
    x = torch.randn(1, 8, 25, 18)
    ident = torch.tensor([1.0, 0, 0, 0, 1, 0])
    prior = ik.apply_prior(ident.expand(1, 8, 21, 6), x[..., :3], model.cfg.prior_version)
    assert (model(x)[..., 1:, :] - prior).abs().max() < 0.2
    plain = MotionTransformer(ModelConfig(geometric_prior=False)).eval()
    assert (plain(x)[..., 1:, :] - ident).abs().max() < 0.2


def test_checkpoints_from_before_the_prior_load_without_it():
    assert ModelConfig.from_dict({"d_model": 256}).geometric_prior is False
    assert ModelConfig().geometric_prior is True


def test_causality(model):
    x = torch.randn(1, 64, 25, 18)
    valid = torch.ones(1, 64, dtype=torch.bool)
    with torch.no_grad():
        a = model(x, valid)
        x2 = x.clone()
        x2[:, 40:] = torch.randn(1, 24, 25, 18)
        b = model(x2, valid)
    assert torch.equal(a[:, :40], b[:, :40])
    assert not torch.allclose(a[:, 40:], b[:, 40:])


def test_invalid_frames_do_not_influence_others(model):
    x = torch.randn(1, 32, 25, 18)
    valid = torch.ones(1, 32, dtype=torch.bool)
    valid[0, 10:15] = False
    with torch.no_grad():
        a = model(x, valid)
        x2 = x.clone()
        x2[:, 10:15] = 1e3  # garbage in masked frames
        b = model(x2, valid)
    keep = torch.ones(32, dtype=torch.bool)
    keep[10:15] = False
    assert torch.allclose(a[:, keep], b[:, keep], atol=1e-6)


def test_banded_window_and_chunked_cache_equal_one_pass():
    torch.manual_seed(1)
    m = MotionTransformer(ModelConfig(d_model=32, n_layers=2, n_heads=2, d_ff=64, window=8)).eval()
    x = torch.randn(1, 50, 25, 18)
    valid = torch.rand(1, 50) > 0.2
    with torch.no_grad():
        full = m(x, valid)
        outs, past = [], None
        for s in range(0, 50, 7):
            o, past = m(x[:, s:s + 7], valid[:, s:s + 7], past=past, return_cache=True)
            outs.append(o)
    assert torch.allclose(torch.cat(outs, 1), full, atol=1e-5)
    mask = attention_mask(torch.ones(1, 20, dtype=torch.bool), torch.ones(1, 20, dtype=torch.bool), 8)
    assert mask[0, 0, 19].sum() == 8 and not mask[0, 0, 3, 4]


def test_overfits_one_tiny_batch():
    torch.manual_seed(0)
    m = MotionTransformer(ModelConfig(d_model=64, n_layers=2, n_heads=2, d_ff=128, dropout=0.0))
    x = torch.randn(4, 16, 25, 18)
    target = rot.matrix_to_rotation_6d(rot.axis_angle_to_matrix(torch.randn(4, 16, 21, 3)))
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    first = None
    for _ in range(150):
        loss = ((m(x)[..., 1:, :] - target) ** 2).mean()
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first / 10


def test_cpu_dropout_drops_p_keeps_the_mean_and_masks_the_gradient():
    """engine.model.dropout: the CPU mask (16 random bits per element) drops a fraction p,
    rescales the rest so the expectation is unchanged, and passes gradients only where kept."""
    from engine.model import dropout
    torch.manual_seed(0)
    x = torch.full((512, 1024), 2.0, requires_grad=True)
    y = dropout(x, 0.1, True)
    kept = y != 0
    assert abs(1 - kept.float().mean().item() - 0.1) < 0.002
    assert torch.allclose(y[kept], torch.tensor(2.0 / (1 - 6554 / 65536)))
    assert abs(y.mean().item() - 2.0) < 0.01
    y.sum().backward()
    assert torch.equal(x.grad != 0, kept)
    # masks differ between calls and follow the torch seed
    torch.manual_seed(1)
    a = dropout(torch.ones(4096), 0.5, True)
    torch.manual_seed(1)
    assert torch.equal(a, dropout(torch.ones(4096), 0.5, True))
    assert not torch.equal(a, dropout(torch.ones(4096), 0.5, True))
    # off in eval mode and for p = 0; an odd element count works
    z = torch.randn(3, 5, 7)
    assert dropout(z, 0.3, False) is z and dropout(z, 0.0, True) is z
    assert dropout(z, 0.3, True).shape == z.shape


def test_training_attention_path_equals_sdpa_without_dropout():
    """On the CPU a training forward computes attention by hand (to use the cheaper dropout
    mask); with a drop probability that rounds to zero it must equal the eval (SDPA) path."""
    torch.manual_seed(0)
    m = MotionTransformer(ModelConfig(d_model=64, n_layers=2, n_heads=2, d_ff=128, window=16,
                                      dropout=1e-9))
    x = torch.randn(2, 40, 25, 18)
    valid = torch.rand(2, 40) > 0.2
    ref = m.eval()(x, valid)
    out = m.train()(x, valid)
    assert torch.allclose(out, ref, atol=1e-5)


def test_domain_vectors_start_neutral_and_fold_into_the_input_bias():
    """A model with domain vectors equals the plain model at initialisation; once the
    vectors differ, domain 0 (real video) is what inference and the exported weights get."""
    torch.manual_seed(1)
    cfg = ModelConfig(d_model=32, n_layers=1, n_heads=2, d_ff=64, num_domains=3)
    m = MotionTransformer(cfg).eval()
    assert m.domain_embed.shape == (3, 32) and not m.domain_embed.any()
    x, valid = torch.randn(2, 10, 25, 18), torch.ones(2, 10, dtype=torch.bool)
    plain = m.fold_domain(0)
    assert plain.cfg.num_domains == 1 and not hasattr(plain, "domain_embed")
    torch.testing.assert_close(plain(x, valid), m(x, valid))
    with torch.no_grad():
        m.domain_embed.normal_()
    out0 = m(x, valid, domain=torch.tensor([0, 0]))
    out_mixed = m(x, valid, domain=torch.tensor([0, 1]))
    torch.testing.assert_close(out_mixed[0], out0[0])
    assert (out_mixed[1] - out0[1]).abs().max() > 1e-3       # the vector changes the output
    torch.testing.assert_close(m(x, valid), out0)             # default: real video
    torch.testing.assert_close(m.fold_domain(0)(x, valid), out0)
    torch.testing.assert_close(m.fold_domain(1)(x[1:], valid[1:]), out_mixed[1:])
    with pytest.raises(ValueError, match="domain must be"):
        m(x, valid, domain=torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="num_domains"):
        ModelConfig(num_domains=0)


def test_models_without_domain_vectors_are_unchanged():
    m = MotionTransformer(ModelConfig(d_model=32, n_layers=1, n_heads=2, d_ff=64))
    assert m.fold_domain(0) is m and "domain_embed" not in m.state_dict()
    assert ModelConfig.from_dict({"d_model": 32}).num_domains == 1


def test_joint_head_starts_neutral_and_guides_the_bones():
    from engine.guide import SWUNG, SWUNG_CHILD
    from engine.kinematics import forward_kinematics, slots_to_rotations

    torch.manual_seed(1)
    cfg = ModelConfig(d_model=32, n_layers=1, n_heads=2, d_ff=64, joint_head=True)
    m = MotionTransformer(cfg).eval()
    plain = MotionTransformer(ModelConfig(d_model=32, n_layers=1, n_heads=2, d_ff=64)).eval()
    plain.load_state_dict({k: v for k, v in m.state_dict().items()
                           if not k.startswith("joint_head")})
    x = torch.randn(2, 10, 25, 18)
    with torch.no_grad():
        out, joints = m(x, return_joints=True)
        assert joints.shape == (2, 10, 21, 3) and joints.dtype == torch.float32
        assert (out - plain(x)).abs().max() < 0.02             # a near-zero residual at first
        torch.nn.init.normal_(m.joint_head[-1].weight, std=0.5)
        out, joints, cache = m(x, return_joints=True, return_cache=True)
        assert len(cache) == 1 and (out - plain(x)).abs().max() > 0.05
        _, glob = slots_to_rotations(out)
        p = forward_kinematics(glob)                           # the default body
        for j, c in zip(SWUNG, SWUNG_CHILD):
            a = p[..., c, :] - p[..., j, :]
            b = joints[..., c, :] - joints[..., j, :]
            cos = (a * b).sum(-1) / a.norm(dim=-1) / b.norm(dim=-1)
            assert torch.allclose(cos, torch.ones_like(cos), atol=1e-4)
        assert m(x, return_joints=False).shape == (2, 10, 22, 6)
    assert plain(x, return_joints=True)[1] is None
    assert ModelConfig.from_dict({"d_model": 32}).joint_head is False
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg


def test_frame_branch_is_mixed_in_at_inference_only_and_on_detected_frames():
    """The per-frame branch's joints guide the output in evaluation mode, by the share
    frame_mix, on frames with a detection; in training mode the head guides alone; the
    branch shares no parameter with the Transformer."""
    from dataclasses import replace

    from engine.model import FrameBranch

    torch.manual_seed(2)
    cfg = ModelConfig(d_model=32, n_layers=1, n_heads=2, d_ff=64, dropout=0.0, joint_head=True,
                      frame_branch=16, frame_mix=0.25)
    m = MotionTransformer(cfg)
    assert isinstance(m.frame_branch, FrameBranch)
    with torch.no_grad():
        torch.nn.init.normal_(m.joint_head[-1].weight, std=0.3)
        m.frame_branch.out.weight.mul_(0.2)
    without = MotionTransformer(replace(cfg, frame_mix=0.0))
    without.load_state_dict(m.state_dict())
    x = torch.randn(2, 10, 25, 18)
    valid = torch.ones(2, 10, dtype=torch.bool)
    valid[0, 4] = False
    with torch.no_grad():
        m.train()
        out_train, joints_train, frame = m(x, valid, return_joints=True, return_frame=True)
        m.eval()
        out, joints = m(x, valid, return_joints=True)
        ref, head = without.eval()(x, valid, return_joints=True)
    torch.testing.assert_close(out_train, ref)               # training: the head alone
    torch.testing.assert_close(joints_train, head)
    assert frame.shape == (2, 10, 20, 3)
    mixed = head[..., 1:, :] + 0.25 * (frame - head[..., 1:, :])
    torch.testing.assert_close(joints[1, :, 1:], mixed[1])    # inference: the mix ...
    torch.testing.assert_close(joints[0, 4], head[0, 4])      # ... not on an undetected frame
    torch.testing.assert_close(out[0, 4], ref[0, 4])
    assert (out[1] - ref[1]).abs().max() > 0.01
    # apart: the branch's joints depend on its own parameters only, the output on none of them
    m.train()
    out_train, _, frame = m(x, valid, return_joints=True, return_frame=True)
    branch = [p for n, p in m.named_parameters() if n.startswith("frame_branch.")]
    rest = [p for n, p in m.named_parameters() if not n.startswith("frame_branch.")]
    g_out = torch.autograd.grad(out_train.sum(), branch, allow_unused=True)
    g_frame = torch.autograd.grad(frame.sum(), rest, allow_unused=True)
    assert all(g is None for g in g_out) and all(g is None for g in g_frame)


@pytest.mark.parametrize("bad", [{"frame_branch": 16}, {"frame_branch": 16.0, "joint_head": True},
                                 {"frame_branch": True, "joint_head": True},
                                 {"frame_mix": 1.5}, {"frame_mix": float("nan")},
                                 {"frame_blocks": -1}])
def test_frame_branch_config_is_checked(bad):
    with pytest.raises(ValueError, match="frame_"):
        ModelConfig(**bad)
