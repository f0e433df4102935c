"""MODIFY training: typed configs, step cells, checkpoints, stage 1 and stage 2 loops."""
