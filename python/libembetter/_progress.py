"""Progress of training, one tick per epoch from the C library's callback.

In a Jupyter kernel the bar is an ipywidgets widget; elsewhere (a terminal, a
script, or a kernel without ipywidgets) it is tqdm's text bar on stderr.

Why not tqdm.auto: its notebook bar needs ipywidgets 7 or newer and fails
with an AttributeError on the ipywidgets 6 that Debian 12 ships (and with an
ImportError when ipywidgets is missing). The widget here uses only what every
ipywidgets release has (IntProgress, HTML, HBox).
"""
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


class _WidgetBar:
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


class _TextBar:
    def __init__(self, total, description):
        from tqdm.std import tqdm

        self.bar = tqdm(total=total, desc=description, unit="epoch")

    def update(self, epoch, loss):
        self.bar.set_postfix(loss=f"{loss:.4g}", refresh=False)
        self.bar.update(epoch - self.bar.n)

    def close(self):
        self.bar.close()


def _bar_class():
    if _in_jupyter_kernel():
        try:
            import ipywidgets  # noqa: F401
        except ImportError:
            return _TextBar
        return _WidgetBar
    return _TextBar


@contextmanager
def epoch_progress(total, description):
    """A listener(epoch, loss) that advances a progress bar, closed when the block ends."""
    bar = _bar_class()(total, description)
    try:
        yield bar.update
    finally:
        bar.close()
