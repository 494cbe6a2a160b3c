"""keras_hub text models converted to keras_mha's blocks."""

from keras_mha.hub.convert import from_keras_hub
from keras_mha.hub.families import FAMILIES
from keras_mha.hub.models import HubBackbone
from keras_mha.hub.models import HubCausalLM

__all__ = ["FAMILIES", "from_keras_hub", "HubBackbone", "HubCausalLM"]
