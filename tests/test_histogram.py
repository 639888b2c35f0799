"""The score histogram: SVG that counts what numpy counts, with nothing a strict Content-Security-Policy blocks."""

import random
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from mlsm_nb.histogram import _bin, _labels, _ticks, score_histogram

SVG = "{http://www.w3.org/2000/svg}"


@pytest.mark.parametrize("scores", [[0.5] * 10, [0, 1], [random.Random(3).gauss(500, 300) for _ in range(999)]])
def test_bins_count_what_numpy_counts(scores):
    counts, lo, hi = _bin(scores, 30)
    expected, edges = np.histogram(scores, bins=30)
    assert counts == expected.tolist() and (lo, hi) == pytest.approx((edges[0], edges[-1]))


def test_ticks_are_round_and_cover_the_range():
    assert _ticks(0, 1) == pytest.approx([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert _ticks(0, 3712) == [0, 1000, 2000, 3000, 4000]
    assert _ticks(-0.3, 0.45) == pytest.approx([-0.4, -0.2, 0, 0.2, 0.4, 0.6])


def test_the_histogram_is_valid_svg_with_escaped_text_and_no_style_attributes():
    svg = score_histogram([0.1, 0.2, 0.2, 0.9], size=(560, 240), title='<m> "1" & co')
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg" and (root.get("width"), root.get("height")) == ("560", "240")
    assert root.get("aria-label") == '<m> "1" & co' and root.find(f"{SVG}title").text == '<m> "1" & co'
    assert not [e.tag for e in root.iter() if "style" in e.attrib]  # blocked without 'unsafe-inline'
    labels = [t.text for t in root.iter(f"{SVG}text")]
    assert {"score", "records", "0", "2", '<m> "1" & co'} <= set(labels)


def test_ticks_and_bins_hold_at_the_edges_of_float_precision():
    assert _bin([1e17] * 3, 5)[0] == [0, 0, 3, 0, 0]  # ± 0.5 is lost at 1e17
    labels = _labels(_ticks(0.5, 0.5 + 1e-15))
    assert len(set(labels)) == len(labels) > 2  # as many digits as it takes to tell them apart
    assert _labels(_ticks(0, 123456)) == ["0", "50k", "100k", "150k"]
