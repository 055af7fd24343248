"""The fortunes corpus (Debian package 'fortunes'): every text of every category file."""
from pathlib import Path

FORTUNES_DIR = Path("/usr/share/games/fortunes")


def fortunes_texts():
    if not FORTUNES_DIR.is_dir():
        raise SystemExit(f"{FORTUNES_DIR} is missing; install Debian's 'fortunes' package")
    texts = []
    for path in sorted(FORTUNES_DIR.iterdir()):
        if path.is_symlink() or not path.is_file() or path.suffix in (".dat", ".u8"):
            continue
        current = []
        for line in path.read_text(encoding="utf-8").split("\n"):
            if line == "%":
                # Two '%' lines in a row delimit no fortune: not a text (the encoders refuse empty texts).
                if current:
                    texts.append("\n".join(current))
                current = []
            else:
                current.append(line)
        if any(current):
            texts.append("\n".join(current))
    return texts


def best_time(function, repeats):
    """Fastest of `repeats` runs of function(), in seconds, and its last result."""
    import time

    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result
