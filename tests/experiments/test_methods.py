"""The method contract and registry: every built-in method is one registered file, a toy
method from a file outside the package shows up in `dii search`, the results table and the
app with no other file changed, and DBM / PCA artifacts load and reapply."""

import textwrap
from pathlib import Path

import pytest
import torch

from experiments.search import methods as registry
from experiments.cli import main as dii
from experiments.runs import load_run
from experiments.search import AlignmentSearch
from interventions import MaskedBasisPatch, RotatedSubspace, Site, load_model

METHODS_DIR = Path(registry.__file__).parent
FIRST = "L0.block_output.vector"
TINY = dict(k=2, steps=40, n_train=400, n_test=200, batch_size=64, lr=1e-2, seed=0)

TOY = '''
"""A method from outside the package: patch the first k coordinates of the site."""
import torch
from experiments.search.methods import AlignmentMethod, register
from interventions import RotatedSubspace


class FirstCoordinates(AlignmentMethod):
    name, role, trains, per_variable = "first_coordinates", "control", False, True
    summary = "toy: DII on the site's first k standard coordinates"

    def fit(self, cell, variables):
        rows = torch.eye(cell.d)[: cell.config.k]
        return RotatedSubspace.from_rotation(rows).to(cell.split.model.device)

    k_of = lambda self, cell, module: module.k  # noqa: E731


register(FirstCoordinates)
'''


@pytest.fixture(scope="module")
def mlp(zoo_model):
    return load_model(str(zoo_model("hierarchical_equality")), device="cpu")


def test_every_builtin_method_is_one_registered_file():
    files = {p.stem for p in METHODS_DIR.glob("*.py")} - {"__init__", "base"}
    assert files == set(registry.REGISTRY) - {"first_coordinates"}
    for name, cls in registry.REGISTRY.items():
        assert cls.name == name and cls.summary and cls.role in ("featurizer", "control")
    assert {"das", "boundless", "dbm", "dbm_pca", "pca"} <= set(registry.method_names("featurizer"))
    assert {"random_rotation", "vanilla", "untrained_model", "disjoint_split", "probe"} <= set(
        registry.method_names("control"))


def test_a_plugin_method_appears_in_dii_search_the_table_and_the_app(tmp_path, monkeypatch, capsys, zoo_model):
    plugin = tmp_path / "toy_method.py"
    plugin.write_text(textwrap.dedent(TOY))
    config = tmp_path / "toy.toml"
    config.write_text(textwrap.dedent(f'''
        name = "toy"
        model = "{zoo_model('hierarchical_equality')}"
        task = "hierarchical_equality"
        layers = [0]
        k = 2
        steps = 30
        n_train = 400
        n_test = 200
        plugins = ["toy_method.py"]
        controls = ["first_coordinates", "random_rotation"]
    '''))
    assert dii(["search", str(config), "--runs-dir", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.lstrip().startswith("variable"))
    assert "first_coordinates" in header, out  # a column of the best-site table
    run = load_run("toy", tmp_path / "runs")
    rows = run.rows_for(method="first_coordinates")
    assert {r["variable"] for r in rows} == {"V1", "V2"} and all(0 <= r["iia"] <= 1 for r in rows)

    # `dii methods` and the app list it when $DII_PLUGINS names the file
    monkeypatch.setenv("DII_PLUGINS", str(plugin))
    assert dii(["methods"]) == 0
    assert "first_coordinates" in capsys.readouterr().out
    from streamlit.testing.v1 import AppTest

    app_dir = Path(__file__).resolve().parents[2] / "app"
    at = AppTest.from_file(str(app_dir / "main.py"), default_timeout=120).run()
    at.switch_page("views/alignment_search.py").run()
    assert not at.exception
    assert any(o.startswith("first_coordinates") for o in at.multiselect(key="s_controls").options)


def test_dbm_and_pca_artifacts_load_and_reapply(mlp, tmp_path):
    search = AlignmentSearch(mlp, "hierarchical_equality", layers=[0], method="dbm", controls=["pca", "dbm_pca"],
                             **TINY)
    res = search.run(run_dir=tmp_path / "run")
    run = load_run(tmp_path / "run")
    split = search.split("main")
    site = Site.parse(FIRST)
    for method in ("dbm", "pca", "dbm_pca"):
        for var in ("V1", "V2"):
            row = [r for r in res.rows_for(var, method) if r["site"] == FIRST][0]
            if method != "pca" and row["k"] == 0:
                continue  # an empty mask leaves no artifact
            sub = run.load_subspace(FIRST, var, model=mlp, method=method)  # each method saves its own
            assert sub.k == row["k"]
            assert torch.allclose(sub.rotation @ sub.rotation.T, torch.eye(sub.k), atol=1e-5)
            module = sub.to_module()
            test = split.rows_for_set(split.test_rows, [var])
            iia = int(split.correct(site, test, split.dii_fn(site, module, var)).sum()) / test.numel()
            assert iia == pytest.approx(row["iia"], abs=1e-6), (method, var)


def test_hard_dbm_mask_is_dii_on_the_kept_basis_rows():
    torch.manual_seed(0)
    d = 8
    basis = torch.linalg.qr(torch.randn(d, d))[0].T  # orthonormal rows
    for b in (None, basis):
        patch = MaskedBasisPatch(b, d=d)
        with torch.no_grad():
            patch.logits.copy_(torch.tensor([1.0, -1, 2, -3, 0.5, -0.1, -2, 4]))
        patch.eval()
        h_b, h_s = torch.randn(5, d), torch.randn(5, d)
        rows = patch.selected_rows()
        assert rows.shape == (4, d) and patch.k == 4
        expected = h_b + (h_s @ rows.T - h_b @ rows.T) @ rows  # DESIGN.md's DII formula
        assert torch.allclose(patch(h_b, h_s), expected, atol=1e-5)
        assert torch.allclose(patch(h_b, h_b), h_b, atol=1e-6)  # identity when source equals base
        assert torch.allclose(RotatedSubspace.from_rotation(rows)(h_b, h_s), expected, atol=1e-5)


def test_pca_basis_is_the_top_principal_directions(mlp):
    from sklearn.decomposition import PCA as SkPCA

    from experiments.search.methods.base import CellRun
    from experiments.search.methods.pca import pca_basis

    search = AlignmentSearch(mlp, "hierarchical_equality", layers=[0], method="pca", **TINY)
    split = search.split("main")
    cell = CellRun(search=search, split=split, cell_key="pca__" + FIRST, method="pca", site=Site.parse(FIRST),
                   generator=torch.Generator().manual_seed(0))
    rows = pca_basis(cell, 3)
    acts = split.site_acts(cell.site)[split.train_base_inputs()].double().numpy()
    ref = torch.tensor(SkPCA(n_components=3).fit(acts).components_, dtype=torch.float32)
    assert torch.allclose((rows @ ref.T).abs(), torch.eye(3), atol=1e-4)  # the same directions, up to sign


def test_a_broken_plugin_gives_one_clear_error(tmp_path):
    from causal.errors import WorkbenchError

    bad = tmp_path / "bad.py"
    bad.write_text("raise RuntimeError('oops')\n")
    with pytest.raises(WorkbenchError, match="bad.py.*failed to import.*oops"):
        registry.load_plugins([str(bad)])
    with pytest.raises(WorkbenchError, match="missing.py' does not exist"):
        registry.load_plugins([str(tmp_path / "missing.py")])
