"""MODIFY stage 1 and stage 2 in-process on a tiny configuration (64 px, narrow channels).

One stage-1 trainer and one stage-2 model are built per module and shared, so each
step cell compiles once. Checks: the schedule switches at the right step and trains
exactly the networks its phase names; the swap loss compares M(z) with E(y_z) of the
SAME z; a checkpoint restores everything (resumed losses equal the uninterrupted ones);
stage 2 freezes the teacher encoder, the decoder and M; test-time adaptation really
updates E' (fresh optimizer per photo) and lowers the objective; results for two photos
do not depend on their order; online writes one output per input in arrival order.
"""
import os

import numpy as np
import pytest
import mindspore as ms

from modify_ms.config import load_config
from modify_ms.train.config import Stage1Config, Stage2Config
from modify_ms.train.common import host_record, save_loss_nets
from modify_ms.train.stage1 import Stage1Trainer, phase_at
from modify_ms.train import stage2

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TINY = [
    "model.generator.style_dim=32", "model.generator.n_mlp=1", "model.generator.channel_max=16",
    "model.encoder.channels=[16, 16, 16, 16]", "model.remap.n_layers=1",
    "model.discriminator.channel_max=16", "model.loss_nets.identity_channels=[16, 16, 16, 16]",
    "data.num_workers=1", "data.multiprocessing=false", "data.max_images=12", "run.compile_cache=false",
    "weights.generator=", "weights.encoder=",  # random init: the packaged prior is the quickstart's width
    "phases=[{steps: 3, weights: {lpips: 0.8, adv_r: 0.1, l2: 0.8, id: 1.0}, train: [encoder, decoder]},"
    " {steps: 3, weights: {swap: 1.0, adv_z: 0.1}, train: [encoder, decoder, remap]}]",
]


def tiny_stage1_config(out_dir, extra=()):
    return load_config(os.path.join(REPO, "yaml", "quickstart.yaml"), Stage1Config,
                       TINY + [f"run.out_dir={out_dir}"] + list(extra))


def snapshot(cell):
    return {n: p.asnumpy().copy() for n, p in cell.parameters_and_names()}


def changed(before, cell):
    after = snapshot(cell)
    return any(not np.array_equal(before[n], after[n]) for n in before)


def batch_norm_stats(cell):
    """The BatchNorm running statistics (moving_mean / moving_variance) of a cell."""
    stats = {n: v for n, v in snapshot(cell).items() if n.endswith(("moving_mean", "moving_variance"))}
    assert stats, "no BatchNorm in the cell"
    return stats


def moved(before, after):
    return [n for n in before if not np.array_equal(before[n], after[n])]


@pytest.fixture(scope="module")
def stage1(tmp_path_factory):
    """A trainer after a full tiny schedule (3 + 3 steps), with per-phase change records."""
    run_dir = str(tmp_path_factory.mktemp("stage1"))
    cfg = tiny_stage1_config(run_dir)
    trainer = Stage1Trainer(cfg, run_dir, log=lambda _m: None)
    from modify_ms.data.dataset import build_dataset

    pipeline = build_dataset(cfg.data, log=lambda _m: None)
    batches = [pipeline.arrays(b) for b in pipeline.dataset.create_tuple_iterator(output_numpy=True, num_epochs=1)]
    nets = {"encoder": trainer.nets.encoder, "decoder": trainer.nets.decoder, "remap": trainer.nets.remap_net,
            "discriminator": trainer.nets.discriminator}
    encoder_stats, arcface = batch_norm_stats(trainer.nets.encoder), snapshot(trainer.loss_nets.identity)
    records, changes = [], []
    for i in range(6):
        before = {k: snapshot(v) for k, v in nets.items()}
        y, y_real = batches[i % len(batches)]
        records.append(host_record(trainer.train_step(y, y_real)))
        changes.append({k: changed(before[k], v) for k, v in nets.items()})
        if trainer.step == 3:
            ckpt3 = trainer.save()
    trainer.save()
    save_loss_nets(trainer.loss_nets, run_dir)  # what train_stage1 does at the start of a run
    with open(os.path.join(run_dir, "config.yaml"), "w") as fh:
        import yaml
        yaml.safe_dump(__import__("dataclasses").asdict(cfg), fh)
    bn = dict(encoder_before=encoder_stats, encoder_after=batch_norm_stats(trainer.nets.encoder),
              arcface_before=arcface, arcface_after=snapshot(trainer.loss_nets.identity))
    return dict(trainer=trainer, records=records, changes=changes, batches=batches, ckpt3=ckpt3, run_dir=run_dir,
                bn=bn, encoder_final=snapshot(trainer.nets.encoder))


def test_schedule_switches_at_the_right_step(stage1):
    cfg = stage1["trainer"].cfg
    assert [phase_at(cfg.phases, s)[0] for s in range(6)] == [0, 0, 0, 1, 1, 1]
    assert [r["phase"] for r in stage1["records"]] == [0, 0, 0, 1, 1, 1]
    first, second = stage1["records"][0], stage1["records"][3]
    assert first["swap"] == 0.0 and first["adv_z"] == 0.0 and first["l2"] > 0 and first["id"] > 0
    assert second["l2"] == 0.0 and second["lpips"] == 0.0 and second["swap"] > 0 and second["adv_z"] > 0


def test_each_phase_trains_exactly_its_networks(stage1):
    for i, change in enumerate(stage1["changes"]):
        assert change["encoder"] and change["decoder"] and change["discriminator"], (i, change)
        # M gets no gradient in phase 0 (y_z is not even rendered); the swap loss trains it in phase 1
        assert change["remap"] == (i >= 3), (i, change)


def test_stage1_trains_the_encoder_in_training_mode(stage1):
    """pSp / the authors train E with batch statistics, updating its running statistics; ArcFace
    (the identity loss) stays in inference mode: every parameter and statistic bit-identical."""
    bn = stage1["bn"]
    assert len(moved(bn["encoder_before"], bn["encoder_after"])) == len(bn["encoder_before"])
    assert not moved(bn["arcface_before"], bn["arcface_after"])


def test_stage1_samples_render_in_inference_mode(stage1):
    """The sample grid uses E's running statistics: rendering moves none of them, and a row of the
    grid does not depend on the other images of its batch (batch statistics would mix them)."""
    trainer = stage1["trainer"]
    y, other = stage1["batches"][0][0], stage1["batches"][1][0]
    before = batch_norm_stats(trainer.nets.encoder)
    rows = trainer.sample_rows(y)
    mixed = trainer.sample_rows(np.concatenate([y[:1], other[1:]]))
    assert not moved(before, batch_norm_stats(trainer.nets.encoder))
    assert len(rows) == 3 and rows[0] is y
    for a, b in zip(rows[1:], mixed[1:]):
        np.testing.assert_allclose(a[:1], b[:1], rtol=1e-5, atol=1e-5)
    assert trainer.nets.encoder.training  # back in training mode for the next step


def test_swap_loss_uses_the_same_z_as_the_render(stage1):
    """Recompute L_swap from the building blocks with one z, and show another z gives another value."""
    trainer = stage1["trainer"]
    nets = trainer.nets
    g_step, _ = trainer.phase_cells(1)
    loss_cell = g_step.loss_cell
    rng = np.random.default_rng(5)
    y = ms.Tensor(stage1["batches"][0][0])
    z = ms.Tensor(rng.standard_normal((4, nets.remap_net.z_dim), dtype=np.float32))
    noise = nets.decoder.random_noise(4, rng)
    _, terms, _, y_z = loss_cell(y, z, noise, noise)
    w_z = nets.remap_net(z).asnumpy()
    offsets = nets.encoder(y).asnumpy()
    # the authors' latent space: fuse the offsets, then add the decoder's mean latent to every row
    fused = np.concatenate([offsets[:, :-w_z.shape[1]], w_z], axis=1) + nets.decoder.latent_avg.asnumpy()
    y_z_ref = nets.render(ms.Tensor(fused), noise).asnumpy()
    np.testing.assert_allclose(y_z.asnumpy(), y_z_ref, rtol=1e-5, atol=1e-5)
    re_encoded = nets.encoder(ms.Tensor(y_z_ref)).asnumpy()[:, -w_z.shape[1]:]
    swap_ref = float(((w_z - re_encoded) ** 2).mean())
    assert abs(float(terms[5].asnumpy()) - swap_ref) <= 1e-5 * max(1.0, swap_ref)
    z_other = ms.Tensor(rng.standard_normal((4, nets.remap_net.z_dim), dtype=np.float32))
    other = ((nets.remap_net(z_other).asnumpy() - re_encoded) ** 2).mean()
    assert abs(other - swap_ref) > 1e-4


def test_a_step_copies_nothing_to_the_host_and_draws_only_what_its_phase_uses(stage1, monkeypatch):
    """On a GPU or Ascend card a host copy per step serialises the device: train_step returns device
    values (copied at log intervals), and a phase that never renders y_z draws no z or noise for it
    (its per-sample streams, train.distributed.sample_rngs, are never opened)."""
    from modify_ms.train import stage1 as stage1_module

    trainer = stage1["trainer"]
    y, y_real = stage1["batches"][0]
    trainer.step = 0  # phase 0 (the resume test below restores a real state)
    streams = []

    def recording(seed, stream, step, batch, world=None):
        streams.append(stream)
        return real_sample_rngs(seed, stream, step, batch, world)

    def refuse(self):
        raise AssertionError("a host copy inside train_step")
    real_sample_rngs = stage1_module.sample_rngs
    monkeypatch.setattr(stage1_module, "sample_rngs", recording)
    monkeypatch.setattr(ms.Tensor, "asnumpy", refuse)
    record = trainer.train_step(y, y_real)
    monkeypatch.undo()
    assert isinstance(record["loss"], ms.Tensor) and isinstance(record["d_loss"], ms.Tensor)
    assert sorted(streams) == sorted([stage1_module.NOISE_R, stage1_module.ALPHA])


def test_checkpoint_resume_gives_the_same_losses(stage1):
    """Restore the step-3 checkpoint into the trainer and replay steps 4-6: the same records.

    'The same' is up to CPU kernels' run-to-run float32 noise (multi-threaded reductions
    are not bit-reproducible): 1e-5 relative. Anything not restored (an Adam moment, the
    RNG, the phase) changes the losses by orders of magnitude more."""
    trainer = stage1["trainer"]
    # the end of the schedule (E is in training mode: tests that call it directly move its statistics)
    final = stage1["encoder_final"]
    trainer.resume(stage1["ckpt3"])
    assert trainer.step == 3
    replay = [host_record(trainer.train_step(*stage1["batches"][i % len(stage1["batches"])])) for i in range(3, 6)]
    for a, b in zip(replay, stage1["records"][3:]):
        assert a.keys() == b.keys() and a["step"] == b["step"] and a["phase"] == b["phase"]
        for key in a:
            if key != "sec":
                assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-7), key
    for name, value in snapshot(trainer.nets.encoder).items():
        np.testing.assert_allclose(value, final[name], rtol=1e-4, atol=1e-6, err_msg=name)


@pytest.fixture(scope="module")
def stage2_model(stage1, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("stage2"))
    cfg = load_config(os.path.join(REPO, "yaml", "ffhq_stylize.yaml"), Stage2Config,
                      [f"stage1={stage1['run_dir']}", "run.compile_cache=false", "optim.lr=0.001",
                       "test_time_steps=30"])
    return stage2.Stage2Model(cfg, out, log=lambda _m: None), out


def _photos(size):
    from modify_ms.data.align import Aligner
    from modify_ms.data.builtin import single_photo
    from modify_ms.data.prepare import to_model_array

    return [(n, to_model_array(Aligner(size, "none")(single_photo(n), n).image)[None])
            for n in ("builtin:astronaut", "builtin:grace_hopper")]


def _emitter(model, folder):
    """What tools/stylize.py hands the modes: plan each photo's output path, then write it."""
    from modify_ms.stylize import OutputPlan, OutputWriter, StylizeRequest

    request = StylizeRequest(input="-", output_dir=str(folder))
    plan = OutputPlan(request, [], [])
    writer = OutputWriter(model, plan, request, seed=0)

    planned = set()

    def emit(name, x):
        if name not in planned:  # as the tool: each input is planned once, however often it is written
            plan.add([name])
            planned.add(name)
        return writer(name, x)
    return emit


def test_stage2_freezes_teacher_decoder_and_remap(stage2_model):
    model, _ = stage2_model
    frozen = {"teacher": snapshot(model.nets.encoder), "decoder": snapshot(model.nets.decoder),
              "remap": snapshot(model.nets.remap_net)}
    student = snapshot(model.student)
    name, x = _photos(64)[0]
    model.reset(seed_key=1)
    for _ in range(3):
        model.update(x)
    assert changed(student, model.student)
    for key, cell in (("teacher", model.nets.encoder), ("decoder", model.nets.decoder),
                      ("remap", model.nets.remap_net)):
        assert not changed(frozen[key], cell), f"{key} changed in stage 2"


def test_stage2_trains_the_student_in_training_mode_and_reset_restores_it(stage2_model):
    """E' trains with batch statistics (its running statistics move), the teacher E stays in inference
    mode (bit-identical, although it renders the discriminator's "real" every update), stylize()
    moves nothing, and reset() restores E''s running statistics exactly."""
    model, _ = stage2_model
    x = _photos(64)[0][1]
    model.reset(seed_key=2)
    initial, teacher = batch_norm_stats(model.student), snapshot(model.nets.encoder)
    for _ in range(2):
        model.update(x)
    trained = batch_norm_stats(model.student)
    assert len(moved(initial, trained)) == len(initial)
    assert not moved(teacher, snapshot(model.nets.encoder))
    model.stylize(x)
    model.objective(x)
    assert not moved(trained, batch_norm_stats(model.student))
    model.reset(seed_key=2)
    assert not moved(initial, batch_norm_stats(model.student))


def test_test_time_adapts_and_is_order_independent(stage2_model, tmp_path):
    model, _ = stage2_model
    photos = _photos(64)
    steps = model.cfg.test_time_steps
    out_a, out_b = tmp_path / "a", tmp_path / "b"
    out_a.mkdir(), out_b.mkdir()
    res_a = stage2.test_time(model, photos, _emitter(model, out_a), steps, log=lambda _m: None)
    # the optimizer is really re-created per photo: after reset its moments are zero again
    model.reset(seed_key=0)
    assert all(not np.any(p.asnumpy()) for n, p in model.student_opt.parameters_and_names() if "moment" in n)
    res_b = stage2.test_time(model, photos[::-1], _emitter(model, out_b), steps, log=lambda _m: None)
    for name, (before, after) in res_a.items():
        assert after < before, f"{name}: objective did not fall ({before} -> {after})"
        assert res_b[name] == (before, after)
    for f in os.listdir(out_a):
        assert (out_a / f).read_bytes() == (out_b / f).read_bytes(), f


def test_online_writes_one_output_per_input_in_arrival_order(stage2_model, tmp_path):
    model, _ = stage2_model
    photos = _photos(64)
    arrivals = [("third.png", photos[0][1]), ("first.png", photos[1][1]), ("second.png", photos[0][1])]
    model.reset(seed_key=0)
    lines = []
    done = stage2.online(model, iter(arrivals), _emitter(model, tmp_path), log=lines.append)
    assert done == ["third.png", "first.png", "second.png"]
    assert sorted(os.listdir(tmp_path)) == ["first.png", "second.png", "third.png"]
    assert [l.split("] ")[1].split(":")[0] for l in lines] == done
    assert model.updates == 3  # the model kept its state across the three images


def test_online_replays_a_finite_stream_for_n_updates(stage2_model, tmp_path):
    """The paper's online training: the stream is replayed until ``updates`` updates; every photo is
    written at its first arrival and rewritten by the final E' at the end."""
    model, _ = stage2_model
    photos = _photos(64)
    model.reset(seed_key=0)
    first_pass = tmp_path / "first"
    first_pass.mkdir()
    emit_final = _emitter(model, tmp_path)
    written = []

    def emit(name, x):
        written.append(name)
        return emit_final(name, x)
    lines = []
    done = stage2.online(model, iter(photos), emit, log=lines.append, updates=5)
    assert model.updates == 5 and done == [n for n, _ in photos]
    assert written == [n for n, _ in photos] * 2  # first arrivals, then the final rewrite
    for name, x in photos:  # the files hold the final E''s output
        again = _emitter(model, first_pass)(name, x)
        assert open(again, "rb").read() == open(os.path.join(tmp_path, os.path.basename(again)), "rb").read()
