"""The data layer: named data sets (``shared/CONVENTIONS.md``), verified files, downloads.

It is its own top-level package because training, evaluation, notebooks and benchmarks all read
data, and none of them should import another to get it.
"""
import core  # noqa: F401  (first: core.progress imports tqdm.auto quietly, before Pyro does)
from data.dataset import Dataset, load_dataset
from data.files import data_dir
from data.specs import DATASETS, SPLITS, DatasetSpec

__all__ = ["DATASETS", "SPLITS", "Dataset", "DatasetSpec", "data_dir", "load_dataset"]
