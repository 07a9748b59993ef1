"""Predict, then check: the student commits to an answer, then the recording gives its own.

``predict(question, choices, answer_fn)`` shows the question with one button per choice
and a "Check" button that stays disabled until a choice is made.  Pressing it calls
``answer_fn()`` *then*, on the recording the lesson made, and shows the value it computed
beside the student's choice.  Nothing is typed in: change the machine (a knob) and run the
lesson again, and the revealed answer follows.

Without a browser (tests, ``nbconvert``), ``Predict.answer()`` and ``Predict.check(choice)``
give the same result as the widget.  ipywidgets is imported only when a widget is shown.
"""
from __future__ import annotations

import html
from typing import Any, Callable, Sequence

__all__ = ["Predict", "predict"]


def _same(a: Any, b: Any) -> bool:
    """A choice matches the computed answer: equal, or equal as text."""
    if a == b:
        return True
    return str(a).strip().lower() == str(b).strip().lower()


class Predict:
    """One predict-then-check question (see the module docstring)."""

    def __init__(self, question: str, choices: Sequence[Any], answer_fn: Callable[[], Any],
                 explain: Callable[[Any], str] | str | None = None) -> None:
        if not callable(answer_fn):
            raise TypeError("answer_fn must be a function that computes the answer "
                            "from the recording, e.g. lambda: qn.course.caller_of(rec, 'virtio_notify')")
        self.question = question
        self.choices = list(choices)
        self.answer_fn = answer_fn
        self.explain = explain
        self.chosen: Any = None
        self._widget: Any = None

    # -- the logic (no widgets) ----------------------------------------------------------
    def answer(self) -> Any:
        """What the recording says, computed now (a whole float shown as an int)."""
        value = self.answer_fn()
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return value

    def matching_choice(self, value: Any = None) -> Any:
        """The choice equal to the computed answer, or None when no choice is."""
        value = self.answer() if value is None else value
        for c in self.choices:
            if _same(c, value):
                return c
        return None

    def check(self, choice: Any) -> tuple[bool, str]:
        """(right?, the text the widget reveals) for a student's ``choice``."""
        value = self.answer()
        right = _same(choice, value)
        lines = [f"You said: {choice}.", f"The recording says: {value}."]
        if right:
            lines.append("Right.")
        elif self.matching_choice(value) is None:
            lines.append("None of the choices: the machine you built behaves differently "
                         "from the one the question had in mind. Look at what you changed.")
        else:
            lines.append("Not this time: step through the players below to see why.")
        why = self.explain(value) if callable(self.explain) else self.explain
        if why:
            lines.append(str(why))
        return right, " ".join(lines)

    # -- the widget -------------------------------------------------------------------
    def widget(self) -> Any:
        if self._widget is not None:
            return self._widget
        import ipywidgets as w

        q = w.HTML(f"<b>Predict.</b> {html.escape(self.question)}")
        buttons = w.ToggleButtons(options=[(str(c), i) for i, c in enumerate(self.choices)],
                                  value=None, style={"button_width": "auto"})
        check = w.Button(description="Check", button_style="primary", disabled=True,
                         tooltip="Commit to a choice first")
        out = w.HTML("")

        def on_choice(change: dict) -> None:
            if change["new"] is not None:
                self.chosen = self.choices[change["new"]]
                check.disabled = False

        def on_check(_b: Any) -> None:
            if self.chosen is None:
                return
            try:
                right, text = self.check(self.chosen)
            except Exception as e:  # the lesson's recording is missing or broken
                out.value = (f"<span style='color:#b00'>Could not compute the answer: "
                             f"{html.escape(type(e).__name__)}: {html.escape(str(e))}. "
                             "Run the cells above first.</span>")
                return
            colour = "#1a7f37" if right else "#b35c00"
            out.value = f"<span style='color:{colour}'>{html.escape(text)}</span>"

        buttons.observe(on_choice, names="value")
        check.on_click(on_check)
        self._widget = w.VBox([q, buttons, w.HBox([check]), out],
                              layout=w.Layout(border="1px solid #ccc", padding="6px",
                                              margin="6px 0"))
        return self._widget

    def _ipython_display_(self) -> None:
        from IPython.display import display
        try:
            display(self.widget())
        except ImportError:     # no ipywidgets: plain text, check() by hand
            display(self)

    def __repr__(self) -> str:
        opts = " / ".join(str(c) for c in self.choices)
        return (f"Predict: {self.question}\n  choices: {opts}\n"
                "  (in JupyterLab: pick one, then press Check; here: .check(choice))")


def predict(question: str, choices: Sequence[Any], answer_fn: Callable[[], Any],
            explain: Callable[[Any], str] | str | None = None) -> Predict:
    """A predict-then-check question whose answer ``answer_fn()`` computes from a recording."""
    return Predict(question, choices, answer_fn, explain)
