"""`pytest_test`: one py_test per test file, run by pytest (tests/bazel_pytest.py)."""

def pytest_test(src, deps, srcs = [], data = [], size = "medium", tags = []):
    """A py_test named after `src` (tests/a/b_test.py → :a_b_test).

    Args:
      src: the test file.
      deps: the libraries it imports (and :test_support).
      srcs: other test modules it imports (package __init__.py, conftest.py,
        helpers).
      data: files it reads or runs.
      size: the Bazel test size.
      tags: e.g. ["manual"] for tests that need the whole checkout.
    """
    native.py_test(
        name = src[len("tests/"):-len(".py")].replace("/", "_"),
        size = size,
        srcs = ["tests/bazel_pytest.py", src] + srcs,
        args = ["$(location %s)" % src],
        data = data,
        main = "tests/bazel_pytest.py",
        python_version = "PY3",
        tags = tags,
        deps = deps,
    )
