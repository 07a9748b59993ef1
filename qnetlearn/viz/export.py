"""Export a notebook with its players to one HTML file that needs no kernel and no network.

``export_html("lesson.ipynb")`` runs the notebook (nbclient keeps the widget state) and writes
``lesson.html`` with the ``qnetlearn`` nbconvert template (``nbconvert/qnetlearn``): the
players step in the page from the embedded widget state, and nothing is loaded from a CDN.
The same from a shell::

    jupyter nbconvert --to html --execute \\
        --TemplateExporter.extra_template_basedirs="$(python -m qnetlearn.viz.export --template-dir)" \\
        --template qnetlearn lesson.ipynb
"""
from __future__ import annotations

import sys
from pathlib import Path


def template_dir() -> Path:
    """The directory that holds the ``qnetlearn`` nbconvert template."""
    return Path(__file__).with_name("nbconvert")


def export_html(notebook: str | Path, out: str | Path | None = None, *, execute: bool = True,
                timeout: int = 600, kernel_name: str = "python3") -> Path:
    """Write ``notebook`` as standalone HTML (executed first unless ``execute=False``)."""
    import nbformat
    from nbconvert import HTMLExporter
    from nbconvert.preprocessors import ExecutePreprocessor

    src = Path(notebook)
    nb = nbformat.read(src, as_version=4)
    if execute:
        ExecutePreprocessor(timeout=timeout, kernel_name=kernel_name,
                            store_widget_state=True).preprocess(
            nb, {"metadata": {"path": str(src.parent)}})
    exporter = HTMLExporter(template_name="qnetlearn",
                            extra_template_basedirs=[str(template_dir())])
    body, _res = exporter.from_notebook_node(nb)
    dest = Path(out) if out is not None else src.with_suffix(".html")
    dest.write_text(body, encoding="utf-8")
    return dest


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["--template-dir"]:
        print(template_dir())
        return 0
    if not args:
        print("usage: python -m qnetlearn.viz.export NOTEBOOK [OUT.html] | --template-dir",
              file=sys.stderr)
        return 2
    print(export_html(args[0], args[1] if len(args) > 1 else None))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
