import os
import re
import sys

import pandas as pd

# Jobs import the package from this checkout, so results always match the code beside
# the workflow, also in conda environments that do not install it.
SRC_DIR = os.path.abspath(os.path.join(workflow.basedir, "..", "src"))
sys.path.insert(0, SRC_DIR)
os.environ["PYTHONPATH"] = os.pathsep.join(
    [SRC_DIR] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
)


envvars:
    "PYTHONPATH",


from mmlego.config_checks import check_config

check_config(config)

ENV = "../envs/mmlego.yaml"
DATA_DIR = config["data"]["directory"].rstrip("/")
DATA_FILES = {entry["path"]: entry for entry in config["data"]["files"]}


def log_path(output_path):
    """Log file of a job, mirroring its main output path under logs/."""
    return f"logs/{output_path}.log"
