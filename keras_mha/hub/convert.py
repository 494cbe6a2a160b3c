"""`from_keras_hub`: a keras_hub text model on keras_mha's blocks."""

import keras

from keras_mha.hub.families import family_of
from keras_mha.hub.models import HubBackbone
from keras_mha.hub.models import HubCausalLM
from keras_mha.hub.weights import map_weights


def from_keras_hub(model):
    """A keras_hub text backbone or causal LM rebuilt on keras_mha's blocks.

    The returned functional model has the keras_hub model's inputs (the
    same dict keys) and outputs, and a copy of its weights: attention,
    feed-forward networks and norms are keras_mha's
    (`TransformerEncoderBlock` / `TransformerDecoderBlock`), the embedding
    layers are clones of keras_hub's. Every head's attention map, LoRA on
    each projection, `quantize`, `.keras` files and `get_layout_map` then
    work on it as on any model of the package. A causal LM also decodes
    with a key/value cache through `keras_mha.generate`. The
    families and what each uses are in `keras_mha.hub.families`.

    Args:
        model: a keras_hub backbone (`keras_hub.models.Backbone`) or causal
            LM (`keras_hub.models.CausalLM`) of a family in the table.

    Returns:
        A `keras_mha.hub.HubBackbone`, or a `keras_mha.hub.HubCausalLM` for
        a causal LM.

    Raises:
        TypeError: for a model of no family in the table.
        ValueError: for one with a feature the blocks do not cover
            (mixture of experts, a vision tower, weights the table does not
            map), naming the class and the feature.

    Example:

    >>> import keras_hub
    >>> backbone = keras_hub.models.GPT2Backbone(
    ...     vocabulary_size=50, num_layers=1, num_heads=2, hidden_dim=8,
    ...     intermediate_dim=16, max_sequence_length=16,
    ... )
    >>> model = keras_mha.from_keras_hub(backbone)
    >>> inputs = {"token_ids": np.array([[5, 9, 2, 0]]),
    ...           "padding_mask": np.array([[1, 1, 1, 0]])}
    >>> tuple(model(inputs).shape)
    (1, 4, 8)

    A pretrained preset, on a machine that can download it:

    ```python
    backbone = keras_hub.models.Backbone.from_preset("bert_base_en")
    converted = keras_mha.from_keras_hub(backbone)
    ```
    """
    import keras_hub

    if isinstance(model, keras_hub.models.CausalLM):
        backbone = model.backbone
    elif isinstance(model, keras_hub.models.Backbone):
        backbone = model
    else:
        raise TypeError(
            "`model` expected a keras_hub Backbone or CausalLM. "
            f"Received: a {type(model).__name__}"
        )
    family = family_of(backbone)
    is_causal_lm = backbone is not model
    if is_causal_lm and type(model).__name__ not in family.causal_lms:
        raise TypeError(
            f"from_keras_hub converts the causal LMs {family.causal_lms} "
            f"of {family.backbone}. Received: a {type(model).__name__}"
        )
    embeddings = {
        role: keras.layers.serialize(getattr(backbone, attribute))
        for role, attribute in family.embeddings.items()
    }
    converted = HubBackbone(family.name, backbone.get_config(), embeddings)
    blocks = {block.name for block in converted.blocks}
    pairs = map_weights(
        converted,
        backbone,
        blocks,
        family.block_weights,
        type(model).__name__,
        family.weights,
    )
    for variable, value in pairs:
        variable.assign(value)
    return HubCausalLM(converted) if is_causal_lm else converted
