"""ERM: plain training on the training images."""

from __future__ import annotations

from ..data.splits import ExperimentData
from ..train.loop import TrainConfig
from .base import METHODS, Method, MethodContext, MethodOutput, train_erm


@METHODS.register("erm")
class ERM(Method):
    """Empirical risk minimisation: plain training on the training images."""

    name = "erm"
    needs = "no group labels"

    def run(self, data: ExperimentData, cfg: TrainConfig, ctx: MethodContext) -> MethodOutput:
        result = train_erm(data, cfg)
        ctx.offer_erm(cfg, result.model)  # DFR retrains this model's last layer
        return MethodOutput(result.model, result)
