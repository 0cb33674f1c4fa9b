"""Package marker: gives these test modules unique names (``evaluation.test_coco``) beside tests/data."""
