"""Every failure edgeloop reports, as one tree below :class:`EdgeloopError`.

::

    EdgeloopError                      1   anything edgeloop raises on purpose
    ├── InputError                     10  a value given by the user is wrong
    │   ├── FileError                  11  missing, unreadable or not the expected kind of file
    │   ├── DataError                  12  a dataset that is unknown, malformed or unlabelled
    │   ├── UnknownNameError           13  an unknown architecture, target, recipe, dataset ...
    │   └── MissingExtraError          14  a command needs a package the install left out
    ├── ModelError                     20  a model that cannot be loaded, exported or run
    │   ├── ModelFormatError           21  a file that is not a valid model
    │   ├── ModelInputError            22  inputs of the wrong name, dtype or shape
    │   ├── ParityError                23  outputs differ from the reference beyond tolerance
    │   └── ExportError                24  a PyTorch model that cannot be exported
    ├── OptimizeError                  30  an optimization pass failed
    │   ├── PassError                  31  one pass of a recipe could not be applied
    │   ├── BudgetError                32  no configuration met the accuracy budget
    │   └── GateError                  33  a trained candidate was not better than its base
    ├── SecurityError                  40  a bundle or key check failed (nothing was loaded)
    │   ├── KeyError_                  41  a key is missing, malformed or locked
    │   ├── BundleFormatError          42  a bundle or manifest that cannot be parsed
    │   ├── SignatureError             43  a signature is missing, wrong or by an untrusted key
    │   ├── IntegrityError             44  a hash or length does not match the manifest
    │   ├── DecryptionError            45  the bundle is not for this device or was tampered with
    │   ├── RollbackError              46  a version older than the installed one
    │   ├── SelfTestError              47  the model does not compute the manifest's outputs
    │   ├── UpdateError                48  the update channel (TUF) refused the metadata or target
    │   └── TrustError                 49  no provisioned trust, or an answer disagrees with it
    ├── RegistryError                  50  a registry lookup or write failed
    ├── FleetError                     60  the fleet server refused or failed a request
    │   └── AuthError                  61  unknown, revoked or unauthenticated device or admin
    ├── AgentError                     70  the device agent could not fetch, install or serve
    ├── RolloutError                   80  a rollout request that the state machine refuses
    └── MonitorError                   90  monitoring data that cannot be used
        ├── MonitorReferenceError      91  a monitoring reference that is malformed
        └── SketchError                92  a sketch that is malformed or not of its reference

The CLI maps each class to its ``exit_code`` and prints ``str(error)`` on one line; the
number ranges follow the stages of the loop, so a script can tell where a run failed.
A usage error (unknown command or option, missing or malformed argument) is refused by the
command-line parser before any stage runs: one line, exit code 2 (click's usage code).
Messages name the offending value and what was expected (python-tuf's habit:
"expected root version 3, got 5").
"""

from __future__ import annotations

__all__ = [
    "AgentError",
    "AuthError",
    "BudgetError",
    "BundleFormatError",
    "DataError",
    "DecryptionError",
    "EdgeloopError",
    "ExportError",
    "FileError",
    "FleetError",
    "GateError",
    "InputError",
    "IntegrityError",
    "KeyError_",
    "MonitorError",
    "MonitorReferenceError",
    "MissingExtraError",
    "ModelError",
    "ModelFormatError",
    "ModelInputError",
    "OptimizeError",
    "ParityError",
    "PassError",
    "RegistryError",
    "RollbackError",
    "RolloutError",
    "SecurityError",
    "SelfTestError",
    "SignatureError",
    "SketchError",
    "UnknownNameError",
    "TrustError",
    "UpdateError",
    "all_error_classes",
]


class EdgeloopError(Exception):
    """Root of every error edgeloop raises on purpose."""

    exit_code: int = 1
    help: str = "edgeloop failed; the message says what and why."


class InputError(EdgeloopError):
    exit_code = 10
    help = "A value given on the command line or to the API is not what was expected."


class FileError(InputError):
    exit_code = 11
    help = "A file is missing, unreadable, or not of the expected kind."


class DataError(InputError):
    exit_code = 12
    help = "A dataset is unknown, malformed, empty, or lacks the labels the task needs."


class UnknownNameError(InputError):
    exit_code = 13
    help = "A name (architecture, dataset, target, recipe, metric) is not one edgeloop knows."


class MissingExtraError(InputError):
    exit_code = 14
    help = (
        "A command needs a package this install left out (a device install has no torch, onnx "
        "or server packages): install the extra the message names."
    )


class ModelError(EdgeloopError):
    exit_code = 20
    help = "A model could not be loaded, exported or run."


class ModelFormatError(ModelError):
    exit_code = 21
    help = "The file is not a valid model of the expected format (ONNX or a PyTorch checkpoint)."


class ModelInputError(ModelError):
    exit_code = 22
    help = "The inputs given to a model have the wrong names, dtypes or shapes."


class ParityError(ModelError):
    exit_code = 23
    help = "Two models that should compute the same outputs differ beyond the tolerance."


class ExportError(ModelError):
    exit_code = 24
    help = "A PyTorch model could not be exported to ONNX."


class OptimizeError(EdgeloopError):
    exit_code = 30
    help = "An optimization failed."


class PassError(OptimizeError):
    exit_code = 31
    help = "One pass of a recipe could not be applied to this model."


class BudgetError(OptimizeError):
    exit_code = 32
    help = "No configuration met the accuracy budget; the best one found was written."


class GateError(OptimizeError):
    exit_code = 33
    help = ("A candidate from federated rounds or a schedule step did not beat its base on "
            "held-out labels; it was not registered.")


class SecurityError(EdgeloopError):
    exit_code = 40
    help = "A security check failed; nothing was loaded or installed."


class KeyError_(SecurityError):  # noqa: N801 - the builtin KeyError must stay reachable
    exit_code = 41
    help = "A key is missing, malformed, of the wrong type, or needs a passphrase."


class BundleFormatError(SecurityError):
    exit_code = 42
    help = "A bundle or its manifest cannot be parsed."


class SignatureError(SecurityError):
    exit_code = 43
    help = "A signature is missing, invalid, or made by a key that is not trusted."


class IntegrityError(SecurityError):
    exit_code = 44
    help = "A hash or length does not match what the signed manifest says."


class DecryptionError(SecurityError):
    exit_code = 45
    help = "The bundle could not be decrypted: not for this device's key, or tampered with."


class RollbackError(SecurityError):
    exit_code = 46
    help = "The version offered is older than the one installed and no signed rollback allows it."


class SelfTestError(SecurityError):
    exit_code = 47
    help = "The model's outputs on the bundle's self-test inputs differ from the signed ones."


class UpdateError(SecurityError):
    exit_code = 48
    help = "The update channel refused the metadata or the target (TUF)."


class TrustError(SecurityError):
    exit_code = 49
    help = (
        "The device has no provisioned trust, or a server answer disagrees with it "
        "(see `edgeloop fleet provision`)."
    )


class RegistryError(EdgeloopError):
    exit_code = 50
    help = "A model, version or alias could not be found in or written to the registry."


class FleetError(EdgeloopError):
    exit_code = 60
    help = "The fleet server refused or failed a request."


class AuthError(FleetError):
    exit_code = 61
    help = "The device or admin is unknown, revoked, or not authenticated."


class AgentError(EdgeloopError):
    exit_code = 70
    help = "The device agent could not fetch, install or serve a model."


class RolloutError(EdgeloopError):
    exit_code = 80
    help = "The rollout state machine refused the request."


class MonitorError(EdgeloopError):
    exit_code = 90
    help = "Monitoring data (a reference, a sketch, feedback) is malformed or cannot be used."


class MonitorReferenceError(MonitorError):
    exit_code = 91
    help = "A monitoring reference is malformed: a field of the wrong type, size or range."


class SketchError(MonitorError):
    exit_code = 92
    help = "A window sketch is malformed or does not match the reference it claims."


def all_error_classes() -> list[type[EdgeloopError]]:
    """Every class of the tree drawn above, root first (used by the CLI's help and a test).

    Modules may subclass these for their own internal use (the fleet server's HTTP refusals,
    say); those keep their parent's exit code and are not part of this public tree.
    """
    seen: list[type[EdgeloopError]] = []
    stack: list[type[EdgeloopError]] = [EdgeloopError]
    while stack:
        cls = stack.pop(0)
        if cls not in seen and cls.__module__ == __name__:
            seen.append(cls)
            stack.extend(cls.__subclasses__())
    return seen
