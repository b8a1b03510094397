"""oomscope's sitecustomize: start the heap reporter, then run the sitecustomize this one hides.

oomscope puts this directory first on a launched Python worker's PYTHONPATH (core/heap/inject.py).
Python imports only the first ``sitecustomize`` it finds, so the next one on ``sys.path`` (a
virtualenv's, the distribution's, the user's) is loaded here, under its own name, exactly once.
"""


def _oomscope_start_reporter() -> None:
    try:
        import _oomscope_heap

        _oomscope_heap.start()
    except Exception:  # noqa: BLE001 - the worker must run as it would without oomscope
        pass


def _oomscope_chain() -> None:
    import importlib.machinery
    import importlib.util
    import os
    import sys

    here = os.path.realpath(os.path.dirname(os.path.abspath(__file__)))

    def is_here(entry: str) -> bool:
        try:
            return os.path.realpath(entry or os.getcwd()) == here
        except OSError:
            return False

    rest = [p for p in sys.path if isinstance(p, str) and not is_here(p)]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    # Later `import sitecustomize` must find the app's module, as it would without us.
    sys.modules["sitecustomize"] = module
    # Its errors propagate on purpose: site.py reports them just as it would have.
    spec.loader.exec_module(module)


_oomscope_start_reporter()
_oomscope_chain()
