"""The baselines' command-line tools (``tools/train_baseline.py`` runs ``train_baseline.main``)."""
