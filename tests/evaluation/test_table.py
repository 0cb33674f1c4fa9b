import logging

import pytest

from detzoo.evaluation import format_metrics_table, log_metrics

RESULTS = {
    "bbox/AP": 0.5,
    "bbox/AP50": 0.75,
    "bbox/APs": float("nan"),
    "bbox/AP-person": 0.125,
    "bbox/AP-traffic-light": 0.25,
    "bbox/AP-dog": 1.0,
    "sem_seg/mIoU": 0.4,
}


def test_summary_and_per_category_tables():
    expected = "\n".join(
        [
            "bbox:",
            "",
            "| AP     | AP50   | APs |",
            "|:-------|:-------|:----|",
            "| 50.000 | 75.000 | nan |",
            "",
            "Per-category bbox AP:",
            "| category | AP      | category      | AP     |",
            "|:---------|:--------|:--------------|:-------|",
            "| person   | 12.500  | traffic-light | 25.000 |",
            "| dog      | 100.000 |               |        |",
            "",
            "sem_seg:",
            "",
            "| mIoU   |",
            "|:-------|",
            "| 40.000 |",
        ]
    )
    assert format_metrics_table(RESULTS, columns=2) == expected


def test_scale_and_bad_keys():
    assert "| 0.500 |" in format_metrics_table({"bbox/AP": 0.5}, scale=1.0)
    with pytest.raises(ValueError, match="<task>/<metric>"):
        format_metrics_table({"AP": 0.5})
    with pytest.raises(ValueError, match="columns"):
        format_metrics_table(RESULTS, columns=0)


def test_log_metrics(caplog):
    with caplog.at_level(logging.INFO, logger="detzoo.evaluation"):
        log_metrics({"segm/AP": 0.25})
    assert "| 25.000 |" in caplog.text
