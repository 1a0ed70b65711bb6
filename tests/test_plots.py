"""Every declared DVC plot renders its columns: the plots of every stage and the top-level `plots:` of dvc.yaml
and benchmarks/dvc.yaml, as DVC itself resolves them (matrix stages, folders of CSVs). Each file is a
well-formed CSV (the header and every row have as many fields), has data, names the declared x and y, and
every column but x is drawn: a plot without a `y` list draws only the file's last column. Then
`dvc plots show --json` is asked for each plot's points: at least one per declared y."""
from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DVC = str(Path(sys.executable).with_name("dvc"))


def _study_sweep():
    """benchmarks/study_sweep.py, the studies' shared writer: a script folder, not a package on sys.path."""
    spec = importlib.util.spec_from_file_location("study_sweep", REPO / "benchmarks" / "study_sweep.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def declared_plots(repo: Path = REPO) -> dict[str, tuple[str, str | None, list[str] | None]]:
    """{plot id: (CSV path, x column or None (DVC counts rows), declared y columns or None)}, from DVC's own
    collection of the definitions: a stage's plot is its file (a folder: each file in it), a top-level one
    names its file in `y`."""
    from dvc.repo import Repo

    plots = {}
    with Repo(str(repo)) as dvc:
        for revision in dvc.plots.collect():
            for config in revision["workspace"]["definitions"]["data"].values():
                for plot_id, props in config["data"].items():
                    y, x = props.get("y"), props.get("x")
                    assert not isinstance(x, dict), f"{plot_id}: x from several files; extend this test to read each"
                    if isinstance(y, dict):
                        assert len(y) == 1, f"{plot_id}: y from several files; extend this test to read each"
                        (path, y), = y.items()
                    else:
                        path = plot_id
                    plots[plot_id] = (path, x, [y] if isinstance(y, str) else y)
    return plots


def problems(path: Path, x: str | None, ys: list[str] | None) -> list[str]:
    """What keeps the plot of `path` (x, ys) from drawing every column; [] when nothing does."""
    if not path.is_file():
        return [f"{path}: missing"]
    with open(path, newline="") as f:
        header, *rows = list(csv.reader(f)) or [[]]
    found = []
    for n, row in enumerate(rows, start=2):
        if len(row) != len(header):
            found.append(f"{path}:{n}: {len(row)} fields against {len(header)} in the header {header}")
    if not rows:
        found.append(f"{path}: a header and no data row")
    if x is not None and x not in header:
        found.append(f"{path}: x {x!r} is not a column of {header}")
    drawn = ys if ys is not None else header[-1:]  # DVC's default y: the last column
    for column in drawn:
        if column not in header:
            found.append(f"{path}: y {column!r} is not a column of {header}")
        elif not any(len(row) == len(header) and row[header.index(column)].strip() for row in rows):
            found.append(f"{path}: y {column!r} has no value")
    hidden = [c for c in header if c != x and c not in drawn]
    if hidden:
        found.append(f"{path}: columns {hidden} are not drawn: name them in the plot's `y` list")
    return found


def test_the_check_catches_a_header_with_unquoted_commas_and_undrawn_columns(tmp_path):
    bad = tmp_path / "fid.csv"
    bad.write_text("step,labels, EMA,no labels, plain\n1000,42.5,90.6\n")
    assert problems(bad, "step", ["labels, EMA", "no labels, plain"]) == [
        f"{bad}:2: 3 fields against 5 in the header ['step', 'labels', ' EMA', 'no labels', ' plain']",
        f"{bad}: y 'labels, EMA' is not a column of ['step', 'labels', ' EMA', 'no labels', ' plain']",
        f"{bad}: y 'no labels, plain' is not a column of ['step', 'labels', ' EMA', 'no labels', ' plain']",
        f"{bad}: columns ['labels', ' EMA', 'no labels', ' plain'] are not drawn: name them in the plot's `y` list"]
    wide = tmp_path / "budget.csv"
    wide.write_text("budget,hinge,kl\n1,0.9,\n")
    assert problems(wide, "budget", None) == [
        f"{wide}: y 'kl' has no value", f"{wide}: columns ['hinge'] are not drawn: name them in the plot's `y` list"]
    assert problems(tmp_path / "none.csv", "step", None) == [f"{tmp_path / 'none.csv'}: missing"]


def test_the_study_writer_quotes_names_and_leaves_missing_points_blank(tmp_path):
    text = _study_sweep().wide_csv("step", {"labels, EMA": {1000: 42.45408, 2000: 8.2529},
                                            "no labels, plain": {1000: 90.611}})
    assert text == 'step,"labels, EMA","no labels, plain"\n1000,42.4541,90.611\n2000,8.2529,\n'
    path = tmp_path / "fid.csv"
    path.write_text(text)
    assert problems(path, "step", ["labels, EMA", "no labels, plain"]) == []


PLOTS = declared_plots()


def test_both_pipelines_declare_their_plots():
    files = {path for path, _, _ in PLOTS.values()}
    assert {"reports/study/grid25/budget.csv", "reports/study/mnist5k/budget.csv",
            "reports/study/default/fid.csv", "reports/train_curves/g_loss.csv"} <= files


@pytest.mark.parametrize("plot_id", sorted(PLOTS))
def test_every_declared_plot_has_well_formed_data_for_its_columns(plot_id):
    path, x, ys = PLOTS[plot_id]
    assert problems(REPO / path, x, ys) == []


def test_dvc_draws_points_for_every_declared_column():
    out = subprocess.run([DVC, "plots", "show", "--json"], cwd=REPO, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "DVC_NO_ANALYTICS": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    shown = json.loads(out.stdout)
    assert not shown.get("errors"), shown["errors"]
    missing = {}
    for plot_id, (path, x, ys) in PLOTS.items():
        assert plot_id in shown["data"], f"{plot_id}: declared but not drawn by dvc plots show"
        points = shown["data"][plot_id][0]["content"]["data"]["values"]
        if ys is None or len(ys) == 1:  # one column: DVC keeps it under its own name
            column = ys[0] if ys else (REPO / path).read_text().splitlines()[0].split(",")[-1]
            counts = {column: sum(1 for p in points if str(p.get(column, "")).strip())}
        else:  # several: one point per (row, column), the column in "field"
            counts = {c: sum(1 for p in points if p.get("field") == c and str(p["dvc_inferred_y_value"]).strip())
                      for c in ys}
        missing.update({f"{plot_id}: {c}": n for c, n in counts.items() if n == 0})
    assert not missing, f"plots with a declared column and no point: {sorted(missing)}"
