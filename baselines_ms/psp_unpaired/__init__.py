"""Unpaired pSp, MODIFY's data-driven baseline (paper section 3.1): config, trainer, stylizer."""
