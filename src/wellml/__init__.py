"""wellml: the whole machine-learning lifecycle on one lineage graph, reviewed against the
AWS Well-Architected Machine Learning Lens.

    import wellml
    ws = wellml.connect()            # the workspace around the current folder
    dv = ws.data.register("customers", "customers.csv")
    with ws.tracking.start_run("churn") as run:
        run.log_input(dv, "train")
        ...
"""

from wellml.errors import (
    AlreadyExists,
    BackendUnavailable,
    Conflict,
    IntegrityError,
    InvalidInput,
    NotFound,
    PermissionDenied,
    SchemaMismatch,
    Unauthenticated,
    UserCodeError,
    WellmlError,
)
from wellml.workspace import Workspace, connect

__version__ = "0.1.0"

__all__ = [
    "AlreadyExists",
    "BackendUnavailable",
    "Conflict",
    "IntegrityError",
    "InvalidInput",
    "NotFound",
    "PermissionDenied",
    "SchemaMismatch",
    "Unauthenticated",
    "UserCodeError",
    "WellmlError",
    "Workspace",
    "__version__",
    "connect",
]
