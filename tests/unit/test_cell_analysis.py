from checkpoint2svc.signature.cell_analysis import analyze_cell, to_python


def test_reads_assigns_and_imports_in_order() -> None:
    names = analyze_cell(
        "import re\nfrom collections import Counter\n"
        "words = re.findall(r'\\w+', text)\ncounts = Counter(words)\n_tmp = 1\n"
    )
    assert names.reads == ("text",)  # re, Counter, words are bound in the cell before use
    assert names.assigns == ("words", "counts", "_tmp")
    assert names.imports == ("re", "collections")


def test_augmented_assignment_reads_first() -> None:
    names = analyze_cell("count += step\ntotal = count")
    assert names.reads == ("count", "step")
    assert names.assigns == ("count", "total")


def test_nested_scopes_read_globals_but_not_their_locals() -> None:
    names = analyze_cell(
        "scaled = [x * factor for x in values]\n"
        "def helper(y):\n    z = y + offset\n    return z\n"
        "result = helper(1)\n"
    )
    assert set(names.reads) == {"factor", "values", "offset"}
    assert names.assigns == ("scaled", "result")
    assert "helper" in names.binds and "helper" not in names.assigns


def test_loop_and_with_targets_are_bound_not_assigned() -> None:
    names = analyze_cell("total = 0\nfor item in items:\n    total += item\n")
    assert names.assigns == ("total",)
    assert "item" in names.binds and names.reads == ("items",)


def test_walrus_and_tuple_targets() -> None:
    names = analyze_cell("a, (b, *c) = data\nif (n := len(a)) > 0:\n    pass\n")
    assert names.assigns == ("a", "b", "c", "n")


def test_ipython_syntax_becomes_python() -> None:
    assert "get_ipython()" in to_python("%time x = 1")
    assert to_python("y = 1") == "y = 1"
