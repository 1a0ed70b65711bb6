"""Training curves for DVC plots, read back from a real (SQLite) MLflow run's metric history."""
from __future__ import annotations

import pytest
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from components.tracking.curves import write_train_curve


@pytest.fixture
def logged_run(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    run_id = client.create_run(client.create_experiment("curves")).info.run_id
    points = [("d_loss", 2, 1.5, 1000), ("d_loss", 4, 1.25, 1001), ("d_loss", 6, 1.0, 1002),
              ("d_loss", 4, 1.2, 2000), ("d_loss", 6, 0.9, 2001),  # a restart from step 2 trains 4 and 6 again
              ("g_loss", 2, 0.75, 1000), ("g_loss", 4, 0.7, 1001), ("g_loss", 6, 0.65, 2001),
              ("images_per_s", 6, 812.5, 2001), ("images_per_s", 2, 900.0, 1000),
              ("d_real", 2, 0.5, 1000), ("epoch", 2, 0.1, 1000), ("resumed_at_step", 2, 2.0, 1999),
              ("fid", 6, 52.8, 3000)]
    client.log_batch(run_id, metrics=[Metric(k, v, ts, step) for k, step, v, ts in points])
    return uri, run_id


def test_one_csv_per_loss_and_throughput_newest_point_per_step(tmp_path, logged_run):
    out = tmp_path / "reports" / "train_curves"
    out.mkdir(parents=True)
    (out / "loss.csv").write_text("step,loss\n1,2\n")  # from an earlier family's run: must not survive

    written = write_train_curve(*logged_run, out)

    assert written == {"d_loss": 3, "g_loss": 3, "images_per_s": 2}
    assert sorted(p.name for p in out.iterdir()) == ["d_loss.csv", "g_loss.csv", "images_per_s.csv"]
    assert (out / "d_loss.csv").read_text() == "step,d_loss\n2,1.5\n4,1.2\n6,0.9\n"
    assert (out / "g_loss.csv").read_text() == "step,g_loss\n2,0.75\n4,0.7\n6,0.65\n"
    assert (out / "images_per_s.csv").read_text() == "step,images_per_s\n2,900\n6,812.5\n"


def test_a_failed_read_leaves_the_previous_curves(tmp_path, logged_run):
    uri, _ = logged_run
    out = tmp_path / "train_curves"
    out.mkdir()
    (out / "d_loss.csv").write_text("step,d_loss\n1,2\n")
    with pytest.raises(Exception, match="nonexistent"):
        write_train_curve(uri, "nonexistent", out)
    assert sorted(p.name for p in out.parent.iterdir()) == ["mlflow.db", "train_curves"]  # no temp folder left
    assert (out / "d_loss.csv").read_text() == "step,d_loss\n1,2\n"
