"""Temporary: pipeline.stages.base under its old name, until the OCR stage moves into pipeline/stages/."""
from pipeline.stages.base import *  # noqa: F401,F403
from pipeline.stages.base import MemeInput, Stage, StageLoadError, Variant  # noqa: F401
