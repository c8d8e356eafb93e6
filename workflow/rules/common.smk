import os
import re

import pandas as pd

from mmlego.config_checks import check_config

check_config(config)

DATA_DIR = config["data"]["directory"].rstrip("/")
DATA_FILES = {entry["path"]: entry for entry in config["data"]["files"]}


def log_path(output_path):
    """Log file of a job, mirroring its main output path under logs/."""
    return f"logs/{output_path}.log"
