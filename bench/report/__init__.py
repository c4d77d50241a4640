"""Leaderboard reports built from run records (never from MLflow).

``tables`` (csv / markdown), ``figures`` (seaborn PNGs), ``html`` (one self-contained page),
``published`` (context rows from the papers) and ``compare`` (paired bootstrap of two subjects).
"""
