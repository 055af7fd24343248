"""Progress of training, one tick per epoch from the C library's callback.

Outside Jupyter (a terminal, a script) the bar is tqdm's text bar on stderr.
In a Jupyter kernel it is tqdm.auto's: a widget with ipywidgets 7 or newer,
the text bar (after tqdm's own hint to install ipywidgets) without it.

The exception is ipywidgets 6, which Debian 12 ships: tqdm's notebook bar
fails there with an AttributeError (its progress widget has no `style`), so
a small widget of our own, built only from what ipywidgets 6 has
(IntProgress, HTML, HBox), takes its place.
"""
import re
import time
from contextlib import contextmanager

# Widget updates cross the kernel's message channel; a few per second are plenty.
_WIDGET_REFRESH_SECONDS = 0.1


def _in_jupyter_kernel():
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


class _Ipywidgets6Bar:
    def __init__(self, total, description):
        import ipywidgets
        from IPython.display import display

        self.total = total
        self.progress = ipywidgets.IntProgress(min=0, max=total, value=0, description=description)
        self.label = ipywidgets.HTML(value=f"0/{total}")
        self.last_refresh = 0.0
        self.epoch, self.loss = 0, None
        display(ipywidgets.HBox([self.progress, self.label]))

    def update(self, epoch, loss):
        self.epoch, self.loss = epoch, loss
        now = time.monotonic()
        if now - self.last_refresh >= _WIDGET_REFRESH_SECONDS or epoch == self.total:
            self._refresh()
            self.last_refresh = now

    def _refresh(self):
        self.progress.value = self.epoch
        loss = "" if self.loss is None else f", loss {self.loss:.4g}"
        self.label.value = f"{self.epoch}/{self.total} epochs{loss}"

    def close(self):
        self._refresh()
        # A bar stopped early (callback, Ctrl-C) keeps its last position, shown in the label.
        if self.epoch < self.total:
            self.progress.bar_style = "warning"


class _TqdmBar:
    def __init__(self, total, description, in_jupyter):
        if in_jupyter:
            from tqdm.auto import tqdm
        else:
            from tqdm.std import tqdm

        self.bar = tqdm(total=total, desc=description, unit="epoch")

    def update(self, epoch, loss):
        self.bar.set_postfix(loss=f"{loss:.4g}", refresh=False)
        self.bar.update(epoch - self.bar.n)

    def close(self):
        self.bar.close()


def _ipywidgets_major_version():
    """The installed ipywidgets' major version, or None without ipywidgets."""
    try:
        import ipywidgets
    except ImportError:
        return None
    return int(re.match(r"\d+", ipywidgets.__version__).group())


def _new_bar(total, description):
    in_jupyter = _in_jupyter_kernel()
    if in_jupyter:
        ipywidgets_major = _ipywidgets_major_version()
        if ipywidgets_major is not None and ipywidgets_major < 7:
            return _Ipywidgets6Bar(total, description)
    return _TqdmBar(total, description, in_jupyter)


@contextmanager
def epoch_progress(total, description):
    """A listener(epoch, loss) that advances a progress bar, closed when the block ends."""
    bar = _new_bar(total, description)
    try:
        yield bar.update
    finally:
        bar.close()
