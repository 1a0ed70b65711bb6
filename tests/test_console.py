"""What a stage prints: progress as a bar on a terminal or a line every 10 % elsewhere, the console's share of
a log point, Ray Train's per-report log lines silenced, MLflow's download bars off."""
from __future__ import annotations

import inspect
import io
import logging
import os
import re

import pytest

from components.progress import Progress
from pipelines import cli
from pipelines.ray_worker import Callbacks, console_metrics, quiet_ray_reports

LINE = re.compile(r"^train: +(\d+)% (\d+)/(\d+) steps")


def _lines(out: io.StringIO) -> list[str]:
    return out.getvalue().splitlines()


def test_plain_mode_prints_one_line_at_each_tenth_and_none_in_between():
    out = io.StringIO()
    progress = Progress(100, "train", tty=False, out=out)
    for step in range(1, 101):
        progress.update(step, {"d_loss": 0.5, "g_loss": 1.25})
    lines = _lines(out)
    assert [LINE.match(line).groups() for line in lines] == [(str(p), str(p), "100") for p in range(10, 101, 10)]
    assert all("d_loss=0.5 g_loss=1.25 [" in line for line in lines)
    assert "left]" in lines[0] and "left]" not in lines[-1]  # an estimate while work remains
    assert progress.closed


def test_plain_mode_counts_from_a_resumed_step_and_between_log_points():
    out = io.StringIO()
    progress = Progress(3400, "train", start=1000, tty=False, out=out)  # resumed at 29 %
    for step in range(1025, 3401, 25):  # the loop reports every train.log_every (25) steps
        progress.update(step)
    done = [int(LINE.match(line).group(2)) for line in _lines(out)]
    assert done == [1025, 1375, 1700, 2050, 2400, 2725, 3075, 3400]  # first step past 30 %, 40 %, … 100 %


def test_terminal_mode_draws_a_bar_with_the_metrics_and_closes_it_at_the_end():
    out = io.StringIO()
    progress = Progress(50, "train", tty=True, out=out)
    for step in range(5, 51, 5):
        progress.update(step, {"loss": 0.125})
    text = out.getvalue()
    assert "train: 100%|" in text and "50/50" in text and "loss=0.125" in text
    assert not LINE.search(text)  # no plain lines on a terminal
    assert progress.closed and progress.bar.n == 50


def test_callbacks_show_losses_and_throughput_only():
    out = io.StringIO()
    logged = {"d_loss": 1.5, "g_loss": 0.75, "d_real": 0.5, "d_penalty": 0.0, "images_per_s": 900.0, "epoch": 1.0}
    assert console_metrics(logged) == {"d_loss": 1.5, "g_loss": 0.75, "images_per_s": 900.0}
    callbacks = Callbacks(None, None, Progress(10, "train", tty=False, out=out))
    callbacks.log(10, logged)
    (line,) = _lines(out)
    assert line.startswith("train: 100% 10/10 steps d_loss=1.5 g_loss=0.75 images_per_s=900 [")


def test_a_text_runs_line_shows_its_phases_loss_in_tokens_per_second():
    out = io.StringIO()
    callbacks = Callbacks(None, None, Progress(20, "train", tty=False, out=out))
    callbacks.log(10, {"mle_loss": 3.185, "tokens_per_s": 52310.4, "epoch": 0.5})  # MLE pre-training
    callbacks.log(20, {"d_loss": 1.432, "d_real": 0.5, "pg_loss": 1.24, "reward": 0.4, "tokens_per_s": 2028.3})
    first, last = _lines(out)
    assert first.startswith("train:  50% 10/20 steps mle_loss=3.185 tokens_per_s=52310 [")
    assert last.startswith("train: 100% 20/20 steps d_loss=1.432 pg_loss=1.24 tokens_per_s=2028 [")
    assert console_metrics({"loss": 0.1, "points_per_s": 8000.0, "epoch": 2.0}) == {"loss": 0.1, "points_per_s": 8000.0}


def test_callbacks_without_a_progress_print_each_log_point(capsys):
    Callbacks(None, None).log(4, {"loss": 0.25})
    assert capsys.readouterr().out == "step 4: loss=0.25\n"


def test_the_silenced_loggers_are_where_ray_train_logs_each_report_and_checkpoint():
    # Guards a Ray upgrade: the two per-checkpoint INFO lines must come from the loggers we silence.
    from ray.train.v2._internal.execution import context, storage

    saved = {m.logger: m.logger.level for m in (context, storage)}
    try:
        quieted = quiet_ray_reports()
        assert quieted == [context.logger, storage.logger]
        for module, message in ((context, "Reporting training result"), (storage, "Checkpoint successfully created")):
            # emitted at INFO through the module's own `logger`
            assert re.search(r'logger\.info\(\s*f"' + re.escape(message), inspect.getsource(module))
            assert module.logger.level == logging.WARNING
            assert not module.logger.isEnabledFor(logging.INFO) and module.logger.isEnabledFor(logging.WARNING)
    finally:
        for logger, level in saved.items():
            logger.setLevel(level)


@pytest.mark.parametrize("preset, expected", [(None, False), ("true", True)])
def test_cli_turns_mlflow_download_bars_off_unless_set(monkeypatch, tmp_path, preset, expected):
    from mlflow.environment_variables import MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR

    monkeypatch.delenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", raising=False)
    if preset is not None:
        monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", preset)
    assert cli.main(["prepare", "--params", str(tmp_path / "missing.yaml")]) == 2  # a config error, after the setup
    assert MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.get() is expected
    assert os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] == (preset or "false")
