"""The churn handler for an AOTInductor package: a model compiled ahead of time, no Python class needed.

The package (`.pt2`) is written by `torch._inductor.aoti_compile_and_package(torch.export.export(...))`
and loaded with `torch._inductor.aoti_load_package`. TorchServe 0.12's BaseHandler knows only the older
`.so` route (`torch._export.aot_load`, deprecated in torch 2.13), so this handler loads the package
itself; validation and answers are ChurnHandler's.

Archive it with churn_handler.py, batch_safe.py and index_to_name.json as --extra-files.
Introduced in 03b_batching_and_model_management.
"""

from __future__ import annotations

import os

import torch
from ts.utils.util import load_label_mapping

from churn_handler import ChurnHandler


class AOTIChurnHandler(ChurnHandler):
    """ChurnHandler whose model is an AOTInductor package, compiled for this CPU before archiving."""

    def initialize(self, context) -> None:
        model_dir = context.system_properties["model_dir"]
        self.manifest = context.manifest
        self.device = torch.device("cpu")
        self.model = torch._inductor.aoti_load_package(os.path.join(model_dir, self.manifest["model"]["serializedFile"]))
        self.mapping = load_label_mapping(os.path.join(model_dir, "index_to_name.json"))
        self.initialized = True
