"""Sample records made from field specs: legal for every model that reads a field, and realistic."""

from mlsm_nb.core.fields import explain, parse_fields
from mlsm_nb.core.samples import sample_inputs, sample_records
from mlsm_nb.leads import LEAD_FIELDS

CHURN = {"tenure_months": {"type": "int", "min": 0, "max": 120}, "plan": {"type": "str", "allowed": ["basic", "pro"]},
         "monthly_fee": {"type": "float", "min": 0, "nullable": True}, "region": "str",
         "discount": {"type": "float", "min": 0, "max": 0.5, "required": False}, "churned_before": "bool"}


def test_every_value_passes_every_spec_that_reads_its_field():
    specs = parse_fields(LEAD_FIELDS) + parse_fields(CHURN) + parse_fields({"email_opens": {"type": "int", "min": 3,
                                                                                            "max": 5}})
    inputs = sample_inputs(specs, 300, seed=4)
    assert len(inputs) == 300
    for data in inputs:
        assert all(explain(spec, data) is None for spec in specs), data
    assert {d["email_opens"] for d in inputs} == {3, 4, 5}  # both models' bounds at once


def test_values_look_like_records():
    examples = [{"region": "EMEA", "tenure_months": 30}, {"region": "APAC"}]
    inputs = sample_inputs(parse_fields(CHURN), 200, seed=1, examples=examples)
    assert {d["region"] for d in inputs} == {"EMEA", "APAC"}  # free text comes from the examples
    assert {d["plan"] for d in inputs} == {"basic", "pro"}
    assert 0 < sum("discount" not in d for d in inputs) < 60  # optional fields left out now and then
    assert 0 < sum(d["monthly_fee"] is None for d in inputs) < 30
    assert all(isinstance(d["tenure_months"], int) and 0 <= d["tenure_months"] <= 120 for d in inputs)
    named = sample_inputs(parse_fields({"job_title": "str"}), 20, seed=2)
    assert all(d["job_title"].startswith("job title ") for d in named)  # no random characters


def test_the_same_seed_gives_the_same_records():
    specs = parse_fields(CHURN)
    assert sample_records(specs, 5, seed=9) == sample_records(specs, 5, seed=9) != sample_records(specs, 5, seed=8)
    assert [r["id"] for r in sample_records(specs, 2, seed=9)] == ["sample-9-0000000", "sample-9-0000001"]
