"""Secrets are redacted by key and by value at any depth; connection strings are never echoed whole."""

import pytest

from mlsm_nb.redact import REDACTED, is_secret, redact_parameters, redact_text, redact_uri, safe_uri
from mlsm_nb.run.execution import Executor
from mlsm_nb.store import mongo

PASSWORD = "s3cr3t-PLANTED"


@pytest.mark.parametrize("password", ["Qx/Zy7", "Qx Zy7", "Qx@Zy7", "Qx@Zy7 w/Kv@Jm", PASSWORD])
def test_a_uri_password_with_unescaped_characters_is_hidden_whole(password):
    uri = f"mongodb://scorer:{password}@db.example:27017/leads?authSource=admin"
    for shown in (redact_text(f"MongoDB at {uri} is not reachable"), safe_uri(uri)):
        assert password not in shown
        for piece in password.replace("@", " ").replace("/", " ").split():
            assert piece not in shown, shown
        assert "db.example:27017" in shown
    assert safe_uri(uri) == "mongodb://scorer:***@db.example:27017"  # the user shown, never the password


@pytest.mark.parametrize("text", [
    f"connect with pwd={PASSWORD} now",
    f"PASSWORD: {PASSWORD}",
    f'{{"db_password": "{PASSWORD}", "x": 1}}',
    f"https://api.example/v1?user=a&api_key={PASSWORD}&page=2",
])
def test_key_value_secrets_in_text_are_hidden(text):
    shown = redact_text(text)
    assert PASSWORD not in shown and REDACTED in shown


def test_known_secret_values_are_hidden_wherever_they_appear():
    known = {"db": {"host": "h", "password": PASSWORD}}
    assert redact_text(f"KeyError: '{PASSWORD}'", known) == "KeyError: '***'"


def test_parameters_are_redacted_at_any_depth():
    parameters = {"db": {"host": "db.example", "password": PASSWORD, "opts": [{"pwd": PASSWORD}]},
                  "dsn": f"postgresql://u:{PASSWORD}@h/db", "threshold": 0.7, "names": ["a", "b"]}
    assert redact_parameters(parameters) == {
        "db": {"host": "db.example", "password": REDACTED, "opts": [{"pwd": REDACTED}]},
        "dsn": REDACTED, "threshold": 0.7, "names": ["a", "b"]}
    assert is_secret("db", parameters["db"]) and is_secret("dsn", parameters["dsn"])
    assert not is_secret("threshold", 0.7) and not is_secret("names", ["a", "b"])
    assert is_secret("pwd", "x") and is_secret("conf", {"a": [{"passwd": 1}]})


def test_the_executor_repr_holds_no_secret():
    executor = Executor(run_root="/tmp/r", engine="inprocess", timeout=1, sources={}, needs={},
                        secrets={"db": {"password": PASSWORD}})
    assert PASSWORD not in repr(executor)


@pytest.mark.parametrize("cut", range(-12, 3))
def test_a_failed_executions_error_is_redacted_before_it_is_cut_short(cut):
    executor = Executor(run_root="/tmp/r", engine="inprocess", timeout=1, sources={"m@1": "/nb/m.ipynb"}, needs={},
                        secrets={"db": {"password": PASSWORD}})
    prefix = "/nb/m.ipynb: batch 0: RuntimeError: "
    exc = RuntimeError("x" * (500 - len(prefix) + cut) + PASSWORD + " and more")  # the limit falls inside it
    exc.add_note("kernel log: executed/m@1/batch-00000.kernel.log")
    error = executor.describe(exc, "m@1", 0)
    assert PASSWORD[:5] not in error and error.endswith(" (kernel log: executed/m@1/batch-00000.kernel.log)")


def test_uri_redaction_is_in_one_place():
    uri = "mongodb://scorer:ab@cd/ef gh@db.example:27017/leads?authSource=admin"
    assert safe_uri(uri) == "mongodb://scorer:***@db.example:27017" and safe_uri("db.example:27017") == "<not a URI>"
    told = redact_uri("could not parse 'ab@cd' and 'ef gh' in mongodb://scorer:ab@cd/ef gh@db.example", uri)
    assert "ab@cd" not in told and "ef gh" not in told and "db.example" in told
    assert not hasattr(mongo, "safe_uri") or mongo.safe_uri is safe_uri
