"""The churn handler, slowed down on purpose, to show TorchServe's queue and timeout settings.

`model-config.yaml` sets the delay in its own `handler:` section, which TorchServe hands to
the handler as `context.model_yaml_config`:

    handler:
      delay_s: 0.5

Archive it with churn_handler.py and batch_safe.py as --extra-files. Introduced in 03a_archiving_and_configuration.
"""

from __future__ import annotations

import time

import torch

from churn_handler import ChurnHandler


class SlowChurnHandler(ChurnHandler):
    """ChurnHandler that sleeps `handler.delay_s` seconds before each model call."""

    def initialize(self, context) -> None:
        super().initialize(context)
        self.delay_s = float(context.model_yaml_config.get("handler", {}).get("delay_s", 0))

    def inference(self, batch: torch.Tensor | None, *args, **kwargs) -> torch.Tensor | None:
        time.sleep(self.delay_s)
        return super().inference(batch, *args, **kwargs)
