"""mlsm_nb._imports: rfc3987_syntax is loaded on first use, not by every process that reads a notebook."""

import json
import subprocess
import sys
import textwrap

import pytest


def run_python(code: str) -> dict:
    """What a fresh interpreter prints as JSON after running `code` (this process has imported too much)."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_reading_a_notebook_does_not_load_rfc3987_syntax():
    seen = run_python("""
        import importlib.util, json, sys
        import mlsm_nb, nbformat, jsonschema
        print(json.dumps({"installed": importlib.util.find_spec("lark") is not None,
                          "stand_in": getattr(sys.modules["rfc3987_syntax"], "__file__", None) is None,
                          "parsers_loaded": "rfc3987_syntax.syntax_helpers" in sys.modules or "lark" in sys.modules}))
    """)
    assert seen["installed"], "rfc3987_syntax (via JupyterLab) is part of the dev install this test is about"
    assert seen["stand_in"] and not seen["parsers_loaded"]


def test_jsonschema_still_checks_iri_formats_through_the_stand_in():
    seen = run_python("""
        import json, sys
        import mlsm_nb, jsonschema
        checker = jsonschema.FormatChecker()
        print(json.dumps({"iri": checker.conforms("http://example.com/ä?q=1", "iri"),
                          "space": checker.conforms("http://exa mple.com", "iri"),
                          "reference": checker.conforms("../a", "iri-reference"),
                          "real_loaded": getattr(sys.modules["rfc3987_syntax"], "__file__", None) is not None}))
    """)
    assert seen == {"iri": True, "space": False, "reference": True, "real_loaded": True}


@pytest.mark.parametrize("use", ["rfc3987_syntax.RFC3987_SYNTAX_TERMS",
                                 "rfc3987_syntax.is_valid_syntax('iri', 'http://example.com')",
                                 "rfc3987_syntax.is_valid_syntax_ihost('example.com')"])
def test_any_use_loads_the_real_module(use):
    seen = run_python(f"""
        import json, sys
        import mlsm_nb, rfc3987_syntax
        before = getattr(sys.modules["rfc3987_syntax"], "__file__", None) is not None
        value = {use}
        import rfc3987_syntax as now
        real = getattr(now, "__file__", None) is not None
        print(json.dumps({{"before": before, "value": bool(value), "real": real}}))
    """)
    assert seen == {"before": False, "value": True, "real": True}


def test_a_module_loaded_before_mlsm_nb_is_left_alone():
    seen = run_python("""
        import json, sys
        import rfc3987_syntax
        real = sys.modules["rfc3987_syntax"]
        import mlsm_nb
        print(json.dumps({"same": sys.modules["rfc3987_syntax"] is real}))
    """)
    assert seen == {"same": True}
