"""The report's own SVG writer: valid XML, data placed where it belongs."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from inverter_agent.conformance.svg import SVG_NS, Chart, nice_ticks, span

NS = {"s": SVG_NS}


def _parse(chart: Chart) -> ET.Element:
    return ET.fromstring(chart.to_svg())


def test_an_empty_chart_is_valid_svg_with_axes_and_title():
    c = Chart((0.0, 10.0), (-1.0, 1.0), "a <title> & more", "t (s)", "Q (%)")
    root = _parse(c)
    assert root.tag == f"{{{SVG_NS}}}svg"
    assert root.find("s:title", NS).text == "a <title> & more"
    labels = [t.text for t in root.iter(f"{{{SVG_NS}}}text")]
    assert "t (s)" in labels and "Q (%)" in labels
    assert "0" in labels and "10" in labels  # x ticks at both ends


def test_pixel_mapping_puts_the_range_corners_on_the_plot_box():
    c = Chart((0.9, 1.1), (-50.0, 50.0), width=600, height=300, margin=(20, 10, 30, 50))
    left, top, right, bottom = c.plot_box
    assert (left, top, right, bottom) == (50, 20, 590, 270)
    assert c.px(0.9) == pytest.approx(left) and c.px(1.1) == pytest.approx(right)
    assert c.py(-50.0) == pytest.approx(bottom) and c.py(50.0) == pytest.approx(top)
    assert c.px(1.0) == pytest.approx((left + right) / 2)
    assert c.py(0.0) == pytest.approx((top + bottom) / 2)


def test_points_land_at_their_data_coordinates_with_their_colours_and_titles():
    c = Chart((0.0, 2.0), (0.0, 100.0))
    pts = [(0.5, 25.0), (1.5, 75.0)]
    c.points(pts, ["#00ff00", "#ff0000"], titles=["first", "second"])
    circles = _parse(c).findall(".//s:circle", NS)
    assert len(circles) == 2
    for circle, (x, y), colour, title in zip(circles, pts, ["#00ff00", "#ff0000"],
                                             ["first", "second"], strict=True):
        assert float(circle.get("cx")) == pytest.approx(c.px(x), abs=0.06)
        assert float(circle.get("cy")) == pytest.approx(c.py(y), abs=0.06)
        assert circle.get("fill") == colour
        assert circle.find("s:title", NS).text == title
    # higher values are drawn higher up (smaller SVG y)
    assert float(circles[1].get("cy")) < float(circles[0].get("cy"))


def test_lines_bands_steps_and_markers():
    c = Chart((0.0, 4.0), (0.0, 1.0))
    c.line([(0.0, 0.0), (2.0, 1.0), (4.0, 1.0)], label="series")
    c.line([(0.0, 0.0), (1.0, 1.0)], steps=True)
    c.band([(0.0, 0.8), (4.0, 0.8)], [(0.0, 0.2), (4.0, 0.2)])
    c.vline(2.0, label="clearing 0.16 s")
    c.vline(9.0, label="outside the range")  # skipped, not drawn off the chart
    root = _parse(c)
    lines = root.findall(".//s:polyline", NS)
    first = [tuple(map(float, p.split(","))) for p in lines[0].get("points").split()]
    assert first[1] == pytest.approx((c.px(2.0), c.py(1.0)), abs=0.06)
    stepped = [tuple(map(float, p.split(","))) for p in lines[1].get("points").split()]
    assert len(stepped) == 3  # (0,0) -> (1,0) -> (1,1): held, then the step
    assert stepped[1] == pytest.approx((c.px(1.0), c.py(0.0)), abs=0.06)
    assert len(root.findall(".//s:polygon", NS)) == 1
    markers = [m for m in root.iter(f"{{{SVG_NS}}}line") if m.get("class") == "marker"]
    assert len(markers) == 1
    assert float(markers[0].get("x1")) == pytest.approx(c.px(2.0), abs=0.06)
    texts = [t.text for t in root.iter(f"{{{SVG_NS}}}text")]
    assert "clearing 0.16 s" in texts and "outside the range" not in texts
    assert "series" in texts  # legend


def test_clip_ids_are_unique_across_charts():
    a, b = Chart((0, 1), (0, 1)).to_svg(), Chart((0, 1), (0, 1)).to_svg()
    ida = ET.fromstring(a).find(".//s:clipPath", NS).get("id")
    idb = ET.fromstring(b).find(".//s:clipPath", NS).get("id")
    assert ida != idb


@pytest.mark.parametrize("lo,hi", [(0.0, 1.0), (-44.0, 44.0), (56.98, 62.02), (0.9, 1.1)])
def test_nice_ticks_cover_the_range_with_round_steps(lo, hi):
    ticks = nice_ticks(lo, hi)
    assert 2 <= len(ticks) <= 12
    assert ticks[0] >= lo - 1e-9 and ticks[-1] <= hi + 1e-9
    steps = {round(b - a, 9) for a, b in zip(ticks, ticks[1:], strict=False)}
    assert len(steps) == 1


def test_span_pads_and_survives_flat_or_missing_data():
    assert span([]) == (0.0, 1.0)
    lo, hi = span([5.0, 5.0], min_width=1.0)
    assert lo < 5.0 < hi and hi - lo >= 1.0
    lo, hi = span([0.0, 10.0], pad_frac=0.1)
    assert (lo, hi) == pytest.approx((-1.0, 11.0))
