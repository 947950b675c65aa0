"""Pipelines: YAML files of stages checked against a schema and run on a Dask cluster."""

from .runner import run_pipeline
from .schema import Pipeline, Stage, load_pipeline, parse_pipeline
from .stages import STAGES

__all__ = ["STAGES", "Pipeline", "Stage", "load_pipeline", "parse_pipeline", "run_pipeline"]
