"""What the examples check says when there is nothing to check."""

import pytest

from conftest import GOOD_CELLS, replace_cell
from mlsm_nb import load_notebook
from mlsm_nb.notebook.contract import lint_notebook
from mlsm_nb.validate.checks import check_examples


@pytest.mark.parametrize("examples, why", [(None, "the notebook has no examples cell"),
                                           ("examples = []", "its examples cell lists none")])
def test_no_examples_skips_the_check_saying_why(make_notebook, examples, why):
    path = make_notebook(cells=replace_cell(GOOD_CELLS, "examples", examples))
    result = check_examples(lint_notebook(path), load_notebook(path))
    assert (result.status, result.message) == ("skipped", why)
