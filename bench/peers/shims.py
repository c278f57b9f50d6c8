"""Stand-ins for the peers' plotting-only imports, used only where the real package is absent.

pyvene imports matplotlib, networkx and seaborn at module level for its CausalModel plots,
and pyreft imports `datasets` for its data helpers; none of that code runs in the bench.
The GPU image has none of them and no network, so instead of carrying ~100 MB of wheels
(matplotlib, pyarrow) we register empty modules for what cannot be imported. Where the
real package is installed (bench/.venv-peers) nothing is replaced.
"""

import importlib
import importlib.machinery
import sys
import types


def _stub(name: str, **attrs) -> None:
    mod = types.ModuleType(name)
    # transformers probes packages with importlib.util.find_spec, which needs a spec.
    mod.__spec__ = importlib.machinery.ModuleSpec(name, loader=None)
    mod.__dict__.update(attrs)
    mod.__bench_stub__ = True
    sys.modules[name] = mod


def _missing(name: str) -> bool:
    try:
        importlib.import_module(name)
        return False
    except Exception:
        return True


def install() -> list[str]:
    """Registers stubs for whichever plotting/data packages cannot be imported; returns their names."""
    stubbed = []
    if _missing("matplotlib.pyplot"):
        _stub("matplotlib")
        _stub("matplotlib.pyplot")
        sys.modules["matplotlib"].pyplot = sys.modules["matplotlib.pyplot"]
        stubbed.append("matplotlib")
    if _missing("networkx"):
        _stub("networkx")
        stubbed.append("networkx")
    if _missing("seaborn"):
        _stub("seaborn")
        stubbed.append("seaborn")
    if _missing("datasets"):
        class Dataset:  # only named in pyreft's type hints and data helpers
            pass

        def load_dataset(*a, **k):
            raise RuntimeError("datasets is not installed here (bench stub)")

        _stub("datasets", Dataset=Dataset, load_dataset=load_dataset)
        stubbed.append("datasets")
    return stubbed
