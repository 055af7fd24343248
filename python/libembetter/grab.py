"""Pipeline steps that pick one field out of tabular or dict-shaped input."""
from libembetter.base import EmbetterBase


class ColumnGrabber(EmbetterBase):
    """Select one column of a DataFrame (or anything indexable by name) as a plain list.

    Text and image encoders usually want a list of items rather than a pandas
    column, so this is typically the first step of a pipeline:
    make_pipeline(ColumnGrabber("text"), SomeEncoder(), ...).

    Parameters:
        colname: name of the column to take.
    """

    def __init__(self, colname):
        self.colname = colname

    def transform(self, X, y=None):
        if self.colname not in getattr(X, "columns", [self.colname]):
            raise KeyError(f"there is no column {self.colname!r}; the columns are {list(X.columns)!r}")
        return list(X[self.colname])


class KeyGrabber(EmbetterBase):
    """Like ColumnGrabber, for a single dict or a sequence / generator of dicts.

    Parameters:
        colname: the key to take from every dict.
    """

    def __init__(self, colname):
        self.colname = colname

    def transform(self, X, y=None):
        if isinstance(X, dict):
            return X[self.colname]
        grabbed = []
        for position, item in enumerate(X):
            try:
                grabbed.append(item[self.colname])
            except KeyError:
                raise KeyError(f"item {position} has no key {self.colname!r}") from None
        return grabbed
