"""The GPU fast path, checked on CPU: bf16 autocast, channels_last, compile wiring, device-resident
data, the auto rules, and the loop's host sync only at logging (and checkpoint) steps."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from components.config import ConfigError, Params
from components.training import checkpoint as ckpt
from components.training import fast, loop
from components.training.loop import NonFiniteLossError, Worker, train_model
from conftest import Recorder, tiny_params, train_in_process
from test_diffusion import ddpm_params


def _train(params, root) -> Recorder:
    return train_in_process(params, root)[0]


def _finite(rec: Recorder) -> bool:
    return bool(rec.logs) and all(torch.isfinite(torch.tensor(list(m.values()))).all() for _, m in rec.logs)


@pytest.fixture
def output_dtypes(monkeypatch):
    """dtypes of the outputs of each task network, by net name (forward hooks on the built task)."""
    seen: dict[str, set] = {}
    build = loop.build_task

    def spy(*args, **kwargs):
        task = build(*args, **kwargs)
        for name, net in task.nets.items():
            net.register_forward_hook(lambda m, i, out, name=name: seen.setdefault(name, set()).add(
                (out if torch.is_tensor(out) else out.sample).dtype))
        return task

    monkeypatch.setattr(loop, "build_task", spy)
    return seen


def test_bf16_gan_with_r1_and_gradient_penalty_trains_finite(run_root, output_dtypes):
    rec = _train(tiny_params(run_root, train={"precision": "bf16", "r1": 1.0, "gradient_penalty": 1.0}), run_root)
    assert _finite(rec) and all(m["d_penalty"] > 0 for _, m in rec.logs)
    assert torch.bfloat16 in output_dtypes["discriminator"] and torch.bfloat16 in output_dtypes["generator"]
    assert torch.float32 in output_dtypes["discriminator"]  # the gradient penalty's own forward, in fp32


def test_bf16_diffusion_trains_finite(run_root, output_dtypes):
    rec = _train(ddpm_params(run_root, precision="bf16"), run_root)
    assert _finite(rec) and output_dtypes["generator"] == {torch.bfloat16}


def test_channels_last_matches_default_and_exports_normal_keys(run_root, tmp_path):
    plain = _train(tiny_params(run_root), run_root).states[-1]
    nhwc = _train(tiny_params(run_root, train={"channels_last": True}), run_root).states[-1]
    convs = [(n, k) for n in ("generator", "discriminator") for k, v in plain[n].items() if v.dim() == 4]
    assert convs and any(nhwc[n][k].stride() != plain[n][k].stride() for n, k in convs)  # NHWC strides
    for net in ("generator", "discriminator"):
        assert plain[net].keys() == nhwc[net].keys()
        for k in plain[net]:
            torch.testing.assert_close(nhwc[net][k], plain[net][k], rtol=1e-4, atol=1e-5, msg=k)
    for name, state in (("plain", plain), ("nhwc", nhwc)):
        (tmp_path / name).mkdir()
        ckpt.write_generator(state, tmp_path / name)
    assert load_file(str(tmp_path / "nhwc" / ckpt.GENERATOR_WEIGHTS)).keys() == \
        load_file(str(tmp_path / "plain" / ckpt.GENERATOR_WEIGHTS)).keys()
    ckpt.load_generator(tmp_path / "nhwc")  # loads into a freshly built generator


def test_device_data_on_cpu_is_bit_identical(run_root):
    a = _train(tiny_params(run_root), run_root).states[-1]
    b = _train(tiny_params(run_root, train={"device_data": True}), run_root).states[-1]
    for net in ("generator", "discriminator"):
        for k in a[net]:
            assert torch.equal(a[net][k], b[net][k]), k


def test_compile_wiring_keeps_checkpoint_keys(run_root, monkeypatch):
    """Real torch.compile (dynamo) with the eager backend: the wiring without code generation, fast."""
    monkeypatch.setattr(fast, "COMPILE_BACKEND", "eager")
    compiled = []
    original = torch.compile

    def spy(module, *args, **kwargs):
        compiled.append(type(module).__name__)
        return original(module, *args, **kwargs)

    monkeypatch.setattr(torch, "compile", spy)
    eager = _train(tiny_params(run_root), run_root).states[-1]
    assert compiled == []  # auto: off on CPU
    done = _train(tiny_params(run_root, train={"compile": True}), run_root).states[-1]
    assert compiled == ["Generator", "Discriminator"]
    for net in ("generator", "discriminator", "opt_g", "opt_d"):
        assert done[net].keys() == eager[net].keys()
    assert not any("_orig_mod" in k for net in ("generator", "discriminator") for k in done[net])
    for k in eager["generator"]:
        torch.testing.assert_close(done["generator"][k], eager["generator"][k], rtol=1e-5, atol=1e-6, msg=k)
    compiled.clear()
    _train(tiny_params(run_root, train={"compile": True, "r1": 1.0, "max_steps": 2}), run_root)
    assert compiled == ["Generator"]  # R1 differentiates D's gradient: D stays eager


def test_nan_is_reported_at_the_next_logging_step_naming_its_window(run_root, nan_objective):
    name, nan = nan_objective(3)
    params = tiny_params(run_root, train={"objective": name, "log_every": 4, "checkpoint_every": 100})
    rec = Recorder()
    with pytest.raises(NonFiniteLossError, match="non-finite loss at step 3") as e:
        train_model(params, params.prepared_path(run_root), Worker(), rec)
    assert e.value.step == 3 and e.value.window == (1, 4) and "checking steps 1–4" in str(e.value)
    assert nan.calls == 4  # step 4 trained before the check
    assert rec.logs == [] and rec.states == []  # nothing logged or checkpointed from the bad window


class _Spy(torch.Tensor):
    """A stats tensor that records every way of reading it on the host, with the step it happened at."""
    step = 0
    reads: list[tuple[int, str]] = []
    HOST = {"cpu", "item", "tolist", "numpy", "__bool__", "__float__", "__int__", "__index__"}

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in cls.HOST or (name == "to" and "cpu" in map(str, [*args[1:], *(kwargs or {}).values()])):
            cls.reads.append((cls.step, name))
        return super().__torch_function__(func, types, args, kwargs or {})


def test_stats_reach_the_host_only_at_logging_and_checkpoint_steps(run_root, monkeypatch):
    build = loop.build_task

    def spy(*args, **kwargs):
        task = build(*args, **kwargs)
        step = task.step

        def spied(s, total, batch):
            _Spy.step = s + 1
            return step(s, total, batch).as_subclass(_Spy)

        task.step = spied
        return task

    monkeypatch.setattr(loop, "build_task", spy)
    _Spy.reads = []
    params = tiny_params(run_root, train={"max_steps": 8, "log_every": 4, "checkpoint_every": 6})
    rec = _train(params, run_root)
    assert {s for s, _ in _Spy.reads} == {4, 6, 8}, _Spy.reads
    assert [s for s, _ in rec.logs] == [4, 8] and _finite(rec)


def test_auto_rules_and_validation(monkeypatch):
    tc = Params().train
    assert fast.FastPath.resolve(tc, torch.device("cpu")) == fast.FastPath(torch.device("cpu"))
    monkeypatch.setattr(fast, "bf16_supported", lambda device: True)
    gpu = fast.FastPath.resolve(tc, torch.device("cuda", 0))
    assert (gpu.amp, gpu.channels_last, gpu.compile) == (True, True, True)
    assert fast.device_data(tc, torch.device("cuda", 0), 5 << 20)
    assert not fast.device_data(tc, torch.device("cuda", 0), 2 << 30)
    assert not fast.device_data(tc, torch.device("cpu"), 5 << 20)
    off = Params().with_overrides({"train.precision": "fp32", "train.channels_last": False, "train.compile": False})
    assert fast.FastPath.resolve(off.train, torch.device("cuda", 0)) == fast.FastPath(torch.device("cuda", 0))
    with pytest.raises(ConfigError, match="train.channels_last.*auto, true or false"):
        Params().with_overrides({"train.channels_last": "fast"})
    with pytest.raises(ConfigError, match="train.precision"):
        Params().with_overrides({"train.precision": "fp16"})
