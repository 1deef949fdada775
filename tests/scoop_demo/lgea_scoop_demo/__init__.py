"""A tiny package for tests/test_scoop_launch.py: ``python -m scoop -n 2 -m lgea_scoop_demo.demo``.

Put ``tests/scoop_demo`` on PYTHONPATH to import it. ``demo.py`` checks a relative import
against the constant below.
"""
PACKAGE_MARK = "lgea_scoop_demo"
