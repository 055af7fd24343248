"""Parity with PyPI's embetter 0.9.1, checked against the installed package (pip install embetter==0.9.1).

embetter.finetune imports torch when imported, so these tests never import it:
they parse the installed package's files with ast, find its public modules and
names the way Python would resolve them, and build inspect.Signature objects
from the function definitions. Defaults are evaluated as literals, or as names
the module imports from a module other than embetter (np.max -> numpy.max).
Every name both packages export from the same module (embetter.X and
libembetter.X) must take the same parameters, in the same order, with the same
defaults; libembetter may add keyword parameters with defaults at the end.
"""
import ast
import importlib
import importlib.metadata
import importlib.util
import inspect
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression

EMBETTER_VERSION = "0.9.1"


def installed_root():
    """The directory of the installed embetter package; a clear error when it is missing or another version."""
    try:
        version = importlib.metadata.version("embetter")
    except importlib.metadata.PackageNotFoundError:
        raise ImportError(
            f"the parity tests compare with PyPI's embetter {EMBETTER_VERSION}, which is not installed here: "
            f"pip install embetter=={EMBETTER_VERSION} (no extras: they pull PyTorch)"
        ) from None
    if version != EMBETTER_VERSION:
        raise ImportError(f"embetter {version} is installed; the parity tests need {EMBETTER_VERSION}")
    spec = importlib.util.find_spec("embetter")
    return Path(list(spec.submodule_search_locations)[0])


class Module:
    """One embetter module: its parsed source and the names bound at its top level."""

    def __init__(self, root, dotted):
        self.dotted = dotted
        parts = dotted.split(".")[1:]
        package_init = root.joinpath(*parts, "__init__.py")
        self.path = package_init if package_init.exists() else root.joinpath(*parts[:-1], parts[-1] + ".py")
        self.is_package = package_init.exists()
        self.tree = ast.parse(self.path.read_text(encoding="utf-8"), filename=str(self.path))
        self.definitions = {}  # name -> ast node defined here
        self.imports = {}  # name -> (module, attribute or None)
        self.all = None
        for node in self._top_level(self.tree.body):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                self.definitions[node.name] = node
            elif isinstance(node, ast.ImportFrom):
                source = self._absolute(node)
                for alias in node.names:
                    self.imports[alias.asname or alias.name] = (source, alias.name)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        self.imports[alias.asname] = (alias.name, None)
                    else:
                        top = alias.name.split(".")[0]
                        self.imports[top] = (top, None)
            elif isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
                self.all = list(ast.literal_eval(node.value))

    def _top_level(self, body):
        """Statements at module level, including those inside try/except and if blocks (first binding wins)."""
        for node in body:
            if isinstance(node, ast.Try):
                yield from self._top_level(node.body)
            elif isinstance(node, ast.If):
                yield from self._top_level(node.body)
            else:
                yield node

    def _absolute(self, node):
        if node.level == 0:
            return node.module
        package = self.dotted if self.is_package else self.dotted.rsplit(".", 1)[0]
        for _ in range(node.level - 1):
            package = package.rsplit(".", 1)[0]
        return f"{package}.{node.module}" if node.module else package

    def public_names(self):
        """__all__ when the module has one, else what it defines or re-exports from embetter's private modules."""
        if self.all is not None:
            return set(self.all)
        names = {name for name in self.definitions if not name.startswith("_")}
        names |= {
            name for name, (source, _) in self.imports.items()
            if not name.startswith("_") and source.startswith("embetter.") and "._" in source
        }
        return names


class Reference:
    """Resolves embetter's public modules and names from the installed files."""

    def __init__(self):
        self.root = installed_root()
        self._modules = {}

    def module(self, dotted):
        if dotted not in self._modules:
            self._modules[dotted] = Module(self.root, dotted)
        return self._modules[dotted]

    def public_modules(self):
        """embetter and its modules and subpackages whose names do not start with an underscore."""
        found = ["embetter"]
        for path in sorted(self.root.rglob("*.py")):
            relative = path.relative_to(self.root).with_suffix("")
            parts = list(relative.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            if not parts or any(part.startswith("_") for part in parts):
                continue
            found.append(".".join(["embetter", *parts]))
        return found

    def resolve(self, dotted, name):
        """(Module, ast node) where name of module dotted is defined, or None when it is not a def or class."""
        module = self.module(dotted)
        if name in module.definitions:
            return module, module.definitions[name]
        if name in module.imports:
            source, attribute = module.imports[name]
            if source.startswith("embetter") and attribute is not None:
                return self.resolve(source, attribute)
        return None

    def signature(self, dotted, name):
        """inspect.Signature of a function, or of a class's constructor (following bases inside embetter)."""
        module, node = self.resolve(dotted, name)
        if isinstance(node, ast.FunctionDef):
            return _signature(module, node, drop_first=False)
        init = self.constructor(module, node)
        if init is None:
            return inspect.Signature([])  # object.__init__ or a scikit-learn base without parameters
        return _signature(*init, drop_first=True)

    def constructor(self, module, class_node):
        for item in class_node.body:
            if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                return module, item
        for base in class_node.bases:
            if isinstance(base, ast.Name) and base.id in module.imports:
                source, attribute = module.imports[base.id]
                if source.startswith("embetter"):
                    resolved = self.resolve(source, attribute)
                    return self.constructor(*resolved) if resolved else None
            elif isinstance(base, ast.Name) and base.id in module.definitions:
                return self.constructor(module, module.definitions[base.id])
        return None

    def methods(self, dotted, name):
        """{method name: inspect.Signature} of the public methods a class defines in its own body."""
        module, node = self.resolve(dotted, name)
        if not isinstance(node, ast.ClassDef):
            return {}
        return {
            item.name: _signature(module, item, drop_first=True)
            for item in node.body
            if isinstance(item, ast.FunctionDef) and not item.name.startswith("_")
        }


def _default(module, expression):
    try:
        return ast.literal_eval(expression)
    except ValueError:
        pass
    chain = []
    while isinstance(expression, ast.Attribute):
        chain.insert(0, expression.attr)
        expression = expression.value
    if isinstance(expression, ast.Name) and expression.id in module.imports:
        source, attribute = module.imports[expression.id]
        if not source.startswith("embetter"):
            value = importlib.import_module(source)
            for part in ([attribute] if attribute else []) + chain:
                value = getattr(value, part)
            return value
    raise AssertionError(
        f"{module.path}: cannot evaluate the default {ast.unparse(expression)!r}; teach embetter_reference about it"
    )


def _signature(module, node, drop_first):
    args = node.args
    positional = args.posonlyargs + args.args
    defaults = [inspect.Parameter.empty] * (len(positional) - len(args.defaults))
    defaults += [_default(module, d) for d in args.defaults]
    kinds = [inspect.Parameter.POSITIONAL_ONLY] * len(args.posonlyargs)
    kinds += [inspect.Parameter.POSITIONAL_OR_KEYWORD] * len(args.args)
    parameters = [inspect.Parameter(a.arg, k, default=d) for a, k, d in zip(positional, kinds, defaults)]
    if drop_first:
        parameters = parameters[1:]
    if args.vararg:
        parameters.append(inspect.Parameter(args.vararg.arg, inspect.Parameter.VAR_POSITIONAL))
    for a, d in zip(args.kwonlyargs, args.kw_defaults):
        default = inspect.Parameter.empty if d is None else _default(module, d)
        parameters.append(inspect.Parameter(a.arg, inspect.Parameter.KEYWORD_ONLY, default=default))
    if args.kwarg:
        parameters.append(inspect.Parameter(args.kwarg.arg, inspect.Parameter.VAR_KEYWORD))
    return inspect.Signature(parameters)


# ---- the comparison ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference():
    return Reference()


def ours_public_names(dotted):
    """libembetter.X's __all__, else the functions and classes it defines or takes from its private modules."""
    module = importlib.import_module(dotted)
    if hasattr(module, "__all__"):
        return set(module.__all__)
    return {
        name for name, value in vars(module).items()
        if not name.startswith("_") and (inspect.isclass(value) or inspect.isfunction(value))
        and getattr(value, "__module__", "").startswith("libembetter")
    }


def shared_callables(reference):
    """[(embetter module, libembetter module, name)] for every function or class both export from the same module."""
    shared = []
    for dotted in reference.public_modules():
        ours_dotted = "lib" + dotted
        if importlib.util.find_spec(ours_dotted) is None:
            continue
        for name in sorted(reference.module(dotted).public_names() & ours_public_names(ours_dotted)):
            if reference.resolve(dotted, name) is not None:
                shared.append((dotted, ours_dotted, name))
    return shared


def same_default(theirs, ours):
    if theirs is ours:
        return True
    return type(theirs) is type(ours) and theirs == ours


def signature_differences(theirs, ours):
    """What stops `ours` from accepting every call `theirs` accepts, the same way; [] when nothing does."""
    problems = []
    theirs_params = list(theirs.parameters.values())
    ours_params = list(ours.parameters.values())
    var_keyword = [p for p in theirs_params if p.kind is inspect.Parameter.VAR_KEYWORD]
    theirs_fixed = [p for p in theirs_params if p.kind is not inspect.Parameter.VAR_KEYWORD]
    ours_fixed = [p for p in ours_params if p.kind is not inspect.Parameter.VAR_KEYWORD]
    for position, theirs_param in enumerate(theirs_fixed):
        if position >= len(ours_fixed):
            problems.append(f"parameter {position} {theirs_param.name!r} is missing")
            continue
        ours_param = ours_fixed[position]
        if ours_param.name != theirs_param.name:
            problems.append(f"parameter {position} is {ours_param.name!r}, embetter's is {theirs_param.name!r}")
        if ours_param.kind is not theirs_param.kind:
            problems.append(f"{theirs_param.name!r} is {ours_param.kind.description}, embetter's is "
                            f"{theirs_param.kind.description}")
        if not same_default(theirs_param.default, ours_param.default):
            problems.append(f"{theirs_param.name!r} defaults to {ours_param.default!r}, embetter's to "
                            f"{theirs_param.default!r}")
    for extra in ours_fixed[len(theirs_fixed):]:
        if extra.default is inspect.Parameter.empty or extra.kind not in (
            inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY
        ):
            problems.append(f"the added parameter {extra.name!r} must be a keyword parameter with a default")
    if var_keyword and not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in ours_params):
        problems.append(f"**{var_keyword[0].name} is missing")
    return problems


# The names whose parity this file was written for; a discovery that stops finding them is broken.
KNOWN_SHARED = {
    ("embetter.finetune", "FeedForwardTuner"),
    ("embetter.finetune", "ContrastiveTuner"),
    ("embetter.finetune", "ContrastiveLearner"),
    ("embetter.grab", "ColumnGrabber"),
    ("embetter.grab", "KeyGrabber"),
    ("embetter.utils", "cached"),
    ("embetter.utils", "batched"),
    ("embetter.utils", "calc_distances"),
    ("embetter.model", "DifferenceClassifier"),
    ("embetter.vision", "ImageLoader"),
    ("embetter.vision", "ColorHistogramEncoder"),
    ("embetter.text", "LiteTextEncoder"),
    ("embetter.text", "learn_lite_text_embeddings"),
    ("embetter.base", "EmbetterBase"),
}


def test_discovery_finds_the_shared_names(reference):
    found = {(dotted, name) for dotted, _, name in shared_callables(reference)}
    assert KNOWN_SHARED <= found, f"not found: {sorted(KNOWN_SHARED - found)}"
    # embetter.finetune (which imports torch) was read, not imported.
    assert "embetter.finetune" not in sys.modules


def test_the_reference_reads_real_signatures(reference):
    """The parsed signatures are the installed files' (spot checks against what 0.9.1's source says)."""
    forward = reference.signature("embetter.finetune", "FeedForwardTuner")
    assert str(forward) == "(hidden_dim=50, n_epochs=500, learning_rate=0.01, batch_size=32)"
    assert list(reference.signature("embetter.finetune", "ContrastiveTuner").parameters) == [
        "hidden_dim", "n_neg", "epochs", "learning_rate"]
    assert reference.signature("embetter.utils", "calc_distances").parameters["aggregate"].default is np.max
    assert reference.root.joinpath("finetune", "_forward.py").is_file()
    # Importable embetter modules give the same signatures through inspect itself.
    import embetter.grab
    import embetter.utils

    def without_annotations(signature):  # the comparison is about names, kinds and defaults, not type hints
        return signature.replace(
            parameters=[p.replace(annotation=inspect.Parameter.empty) for p in signature.parameters.values()],
            return_annotation=inspect.Signature.empty,
        )

    for module, name in ((embetter.grab, "ColumnGrabber"), (embetter.grab, "KeyGrabber"),
                         (embetter.utils, "calc_distances"), (embetter.utils, "batched"), (embetter.utils, "cached")):
        installed = without_annotations(inspect.signature(getattr(module, name)))
        assert reference.signature(module.__name__, name) == installed


def test_comparison_catches_differences():
    """signature_differences is the judge below, so it must be able to say no."""
    def reference_function(a, b=1, *, c="x", **kwargs):
        pass

    def renamed(a, bb=1, *, c="x", **kwargs):
        pass

    def other_default(a, b=2, *, c="x", **kwargs):
        pass

    def true_for_one(a, b=True, *, c="x", **kwargs):
        pass

    def extra_without_default(a, b=1, *, c="x", d, **kwargs):
        pass

    def no_kwargs(a, b=1, *, c="x"):
        pass

    def fine(a, b=1, *, c="x", d=None, **kwargs):
        pass

    theirs = inspect.signature(reference_function)
    for wrong in (renamed, other_default, true_for_one, extra_without_default, no_kwargs):
        assert signature_differences(theirs, inspect.signature(wrong)), wrong.__name__
    assert signature_differences(theirs, inspect.signature(fine)) == []


def pytest_generate_tests(metafunc):
    if "shared" in metafunc.fixturenames:
        found = shared_callables(Reference())
        metafunc.parametrize("shared", found, ids=[f"{dotted}.{name}" for dotted, _, name in found])


def test_same_signature_as_embetter(reference, shared):
    dotted, ours_dotted, name = shared
    ours = getattr(importlib.import_module(ours_dotted), name)
    theirs_signature = reference.signature(dotted, name)
    problems = signature_differences(theirs_signature, inspect.signature(ours))
    assert not problems, f"{ours_dotted}.{name}{inspect.signature(ours)} vs embetter {theirs_signature}: {problems}"


def method_signature(cls, name):
    """The signature as called on an instance (self left out), like the parsed ones."""
    raw = inspect.getattr_static(cls, name)
    signature = inspect.signature(getattr(cls, name))
    if isinstance(raw, (staticmethod, classmethod)):
        return signature
    return signature.replace(parameters=list(signature.parameters.values())[1:])


def test_same_method_signatures_as_embetter(reference, shared):
    dotted, ours_dotted, name = shared
    ours = getattr(importlib.import_module(ours_dotted), name)
    problems = {}
    for method, theirs_signature in reference.methods(dotted, name).items():
        if not hasattr(ours, method):
            continue  # a helper of 0.9's PyTorch code (generate_batch); the public scikit-learn API is below
        found = signature_differences(theirs_signature, method_signature(ours, method))
        if found:
            problems[method] = found
    assert not problems, f"{ours_dotted}.{name}: {problems}"


def test_sklearn_methods_of_the_tuners_are_all_there(reference):
    from libembetter.finetune import ContrastiveTuner, FeedForwardTuner

    for ours in (FeedForwardTuner, ContrastiveTuner):
        theirs = reference.methods("embetter.finetune", ours.__name__)
        assert {"fit", "partial_fit", "transform"} <= set(theirs)
        assert all(hasattr(ours, method) for method in ("fit", "partial_fit", "transform"))


# ---- DifferenceClassifier: the fitted head where 0.9's docs read it, and clone still works -------------------------


class LetterCounts:
    """A stateless encoder: how often each of a, b, c occurs."""

    def transform(self, X):
        return np.array([[text.count(letter) for letter in "abc"] for text in X], dtype=float)

    def get_params(self, deep=True):
        return {}

    def set_params(self, **params):
        return self


def similarity_data():
    rng = np.random.RandomState(0)
    words = ["aaa", "bbb", "ccc", "aab", "bbc", "cca"]
    left = [words[i] for i in rng.randint(0, 6, 200)]
    right = [words[i] for i in rng.randint(0, 6, 200)]
    return left, right, np.array([a == b for a, b in zip(left, right)])


@pytest.mark.parametrize("given_head", [None, LogisticRegression(C=0.5)], ids=["default head", "given head"])
def test_difference_classifier_clf_head_is_the_fitted_head(given_head):
    from libembetter.model import DifferenceClassifier

    left, right, similar = similarity_data()
    model = DifferenceClassifier(enc=LetterCounts(), clf_head=given_head)
    assert model.clf_head is given_head
    model.fit(X1=left, X2=right, y=similar)
    # 0.9's docstring: "The model can be accessed via: mod.clf_head".
    assert model.clf_head is model.clf_head_ and hasattr(model.clf_head, "coef_")
    assert isinstance(model.clf_head, LogisticRegression)
    expected = LogisticRegression(class_weight="balanced") if given_head is None else given_head
    assert model.clf_head.get_params() == expected.get_params()
    differences = np.abs(LetterCounts().transform(left) - LetterCounts().transform(right))
    assert np.array_equal(model.clf_head.predict(differences), model.predict(left, right))
    assert (model.predict(left, right) == similar).mean() > 0.95
    if given_head is not None:
        assert not hasattr(given_head, "coef_")  # trained on a clone: the object passed in stays as it was
    # The parameter is still the constructor's value, whatever clf_head reads.
    assert model.get_params(deep=False)["clf_head"] is given_head


@pytest.mark.parametrize("given_head", [None, LogisticRegression(C=0.5)], ids=["default head", "given head"])
def test_difference_classifier_clones_and_round_trips(given_head):
    from libembetter.model import DifferenceClassifier

    left, right, similar = similarity_data()
    unfitted = DifferenceClassifier(enc=LetterCounts(), clf_head=given_head)
    fitted = DifferenceClassifier(enc=LetterCounts(), clf_head=given_head).fit(left, right, similar)
    for original in (unfitted, fitted):
        copy = clone(original)
        assert not hasattr(copy, "clf_head_")
        params = copy.get_params(deep=False)
        if given_head is None:
            assert params["clf_head"] is None and copy.clf_head is None
        else:
            assert params["clf_head"] is not given_head and params["clf_head"].get_params() == given_head.get_params()
            assert not hasattr(params["clf_head"], "coef_")
        rebuilt = DifferenceClassifier(**original.get_params(deep=False))
        assert rebuilt.get_params(deep=False) == original.get_params(deep=False)
        assert repr(rebuilt) == repr(original)
        copy.fit(left, right, similar)
        assert np.array_equal(copy.predict(left, right), fitted.predict(left, right))
    deep = fitted.get_params(deep=True)
    if given_head is not None:
        assert deep["clf_head__C"] == 0.5
        fitted.set_params(clf_head__C=2.0)
        assert given_head.C == 2.0 and fitted.clf_head_.C == 0.5  # the parameter changed, the fitted head did not
        given_head.set_params(C=0.5)
    replacement = LogisticRegression(C=3.0)
    fitted.set_params(clf_head=replacement)
    assert fitted.get_params()["clf_head"] is replacement
    assert fitted.clf_head is fitted.clf_head_  # still the head predict uses, until the next fit
    fitted.fit(left, right, similar)
    assert fitted.clf_head.C == 3.0 and fitted.clf_head is not replacement
    restored = pickle.loads(pickle.dumps(fitted))
    assert np.array_equal(restored.predict(left, right), fitted.predict(left, right))
    assert restored.get_params(deep=False)["clf_head"].C == 3.0


def test_difference_classifier_failed_fit_keeps_the_fitted_head():
    from libembetter.model import DifferenceClassifier

    left, right, similar = similarity_data()
    model = DifferenceClassifier(enc=LetterCounts()).fit(left, right, similar)
    head = model.clf_head
    with pytest.raises(ValueError, match="same number of items"):
        model.fit(left, right[:-1], similar)
    assert model.clf_head is head and model.clf_head_ is head
