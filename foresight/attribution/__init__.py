"""Circuit attribution: node and edge scores (eap, eap-ig, exact patching: the registry
`methods.METHODS`) and the faithfulness of circuits. The graph is `foresight.graph`, circuits are
`foresight.circuits`, and where the nodes live on a Hugging Face model is
`foresight.architectures`."""

from foresight.attribution.api import attribute
from foresight.attribution.faithfulness import faithfulness, faithfulness_curve, minimal_circuit
from foresight.attribution.scores import Scores
from foresight.attribution.task_metrics import METRICS

__all__ = ["METRICS", "Scores", "attribute", "faithfulness", "faithfulness_curve", "minimal_circuit"]
