"""Executes every notebook against a fresh `veil demo`: each percent-format
`.py` file is converted with jupytext and run top to bottom by nbclient;
any cell error fails the run. Executed notebooks and their plots go to
target/notebooks/.

    python notebooks/run.py [NAME.py ...]
"""

import os
import sys
import time
from pathlib import Path

import jupytext
import nbclient

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))
import veil_demo  # noqa: E402

NOTEBOOKS = ["consumer.py", "modeler.py", "approver.py"]


def main(names: list[str]) -> int:
    out = ROOT / "target" / "notebooks"
    out.mkdir(parents=True, exist_ok=True)
    with veil_demo.running() as demo:
        os.environ["VEIL_URL"] = demo.url
        os.environ["VEIL_KEYS"] = str(demo.data_dir / "demo-keys.toml")
        os.environ["VEIL_PLOTS"] = str(out / "plots")
        for name in names or NOTEBOOKS:
            notebook = jupytext.read(HERE / name)
            started = time.monotonic()
            client = nbclient.NotebookClient(
                notebook,
                timeout=300,
                kernel_name="python3",
                resources={"metadata": {"path": str(HERE)}},
            )
            try:
                client.execute()
            finally:
                jupytext.write(notebook, out / name.replace(".py", ".ipynb"))
            print(f"{name}: {len(notebook.cells)} cells in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
