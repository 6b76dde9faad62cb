"""The early-classification model (ELECTS), its training, evaluation and artifacts."""
