"""medcnn: medical imaging pipelines from scan folders to per-patient reports."""

__version__ = "0.1.0"
