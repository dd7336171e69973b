"""Pure fingerprint core (no Dagster): event logs, Markov and HMM next-step models, timing,
the per-workflow Fingerprint, its file format and the next-activity evaluation."""

from .evaluate import CITATION, evaluate_log
from .log import cases_from_frame, read_event_log
from .markov import MarkovModel
from .model import Fingerprint, NextStep, Prediction, history_hash
from .serialise import FingerprintFormatError
from .symbols import END, UNKNOWN, Vocabulary

__all__ = ["CITATION", "END", "UNKNOWN", "Fingerprint", "FingerprintFormatError", "MarkovModel",
           "NextStep", "Prediction", "Vocabulary", "cases_from_frame", "evaluate_log",
           "history_hash", "read_event_log"]
