"""Model-parallel sharding of the package's layers (`keras.distribution`).

`get_layout_map` returns the `keras.distribution.LayoutMap` that splits
every attention layer across the devices of a mesh by heads (Megatron
style: the query, key and value projections split their output heads, the
output projection its input heads) and every feed-forward network by its
hidden units, so that each device holds `1 / model_size` of each kernel.
"""

import keras
import numpy as np

# Variable paths of the package's layers, as regular expressions matched
# in full (`re.fullmatch`) against `variable.path`. Notation: d width,
# n heads, h head width, f feed-forward width.
_QKV_KERNEL = r"(.*/)?(qkv|query|key|value)/kernel"  # (d, n, h)
_QKV_BIAS = r"(.*/)?(qkv|query|key|value)/bias"  # (n, h)
_OUTPUT_KERNEL = r"(.*/)?attention_output/kernel"  # (n, h, d)
_FFN_IN_KERNEL = r"(.*/)?(ffn_intermediate|ffn_gate)/kernel"  # (d, f)
_FFN_IN_BIAS = r"(.*/)?(ffn_intermediate|ffn_gate)/bias"  # (f,)
_FFN_OUT_KERNEL = r"(.*/)?ffn_output/kernel"  # (f, d)


def get_layout_map(
    device_mesh,
    model_parallel_dim_name="model",
    data_parallel_dim_name="batch",
):
    """A `LayoutMap` that shards the package's layers over a device mesh.

    The heads of every `MultiHeadSelfAttention` and `MultiHeadAttention`
    (alone or inside `TransformerEncoderBlock` / `TransformerDecoderBlock`)
    are split over the mesh axis `model_parallel_dim_name`: the query, key
    and value kernels `(width, num_heads, head_dim)` and their biases on
    their heads axis, the output kernel `(num_heads, head_dim, width)` on
    its heads axis. The feed-forward network is split on its hidden units:
    `ffn_intermediate` (and the gate `ffn_gate`) by columns, `ffn_output`
    by rows. Everything else (layer norms, output biases, and layers that
    are not the package's, such as embeddings) stays replicated; add
    entries to the returned map for them. The batch of the inputs is split over
    `data_parallel_dim_name` by `keras.distribution.ModelParallel`.

    `num_heads` (`num_key_value_heads` for self-attention's fused
    projection when set) and `intermediate_dim` must be multiples of the
    size of the model axis of the mesh: the layers check this when they are
    built under the distribution, and raise a `ValueError` naming the
    argument.

    Args:
        device_mesh: `keras.distribution.DeviceMesh` with the two axes
            named below.
        model_parallel_dim_name: str. Mesh axis the weights are split
            over. Defaults to `"model"`.
        data_parallel_dim_name: str. Mesh axis the batch is split over.
            Defaults to `"batch"`.

    Returns:
        A `keras.distribution.LayoutMap` to pass to
        `keras.distribution.ModelParallel(layout_map=...)`.

    Example:

    ```python
    devices = keras.distribution.list_devices()
    mesh = keras.distribution.DeviceMesh(
        (2, len(devices) // 2), ("batch", "model"), devices
    )
    keras.distribution.set_distribution(
        keras.distribution.ModelParallel(
            layout_map=keras_mha.get_layout_map(mesh), batch_dim_name="batch"
        )
    )
    model = build_model()  # Variables are created sharded.
    ```
    """
    if not isinstance(device_mesh, keras.distribution.DeviceMesh):
        raise TypeError(
            "`device_mesh` expected a keras.distribution.DeviceMesh. "
            f"Received: device_mesh={device_mesh!r}"
        )
    for argument, name in (
        ("model_parallel_dim_name", model_parallel_dim_name),
        ("data_parallel_dim_name", data_parallel_dim_name),
    ):
        if name not in device_mesh.axis_names:
            raise ValueError(
                f"`{argument}` expected one of the mesh's axis names "
                f"{list(device_mesh.axis_names)}. Received: {argument}="
                f"{name!r}"
            )
    model = model_parallel_dim_name
    layout_map = keras.distribution.LayoutMap(device_mesh)
    layout_map[_QKV_KERNEL] = (None, model, None)
    layout_map[_QKV_BIAS] = (model, None)
    layout_map[_OUTPUT_KERNEL] = (model, None, None)
    layout_map[_FFN_IN_KERNEL] = (None, model)
    layout_map[_FFN_IN_BIAS] = (model,)
    layout_map[_FFN_OUT_KERNEL] = (model, None)
    return layout_map


def check_model_parallel(path, variables):
    """Checks, before they are made, that the current distribution can
    split the layer's variables over its mesh.

    Under `keras.distribution.ModelParallel`, each variable takes the
    layout its path has in the layout map; a mesh axis that does not divide
    the size it splits would fail only inside the backend (JAX's
    `IndivisibleError`), naming neither the layer nor the argument.

    Args:
        path: the path of the layer that makes the variables.
        variables: `{name: ((size, argument), ...)}`: each variable's path
            below `path` and, per axis of its shape, the size and the
            argument that sets it.
    """
    distribution = keras.distribution.distribution()
    if not isinstance(distribution, keras.distribution.ModelParallel):
        return
    mesh = distribution.device_mesh
    mesh_sizes = dict(zip(mesh.axis_names, mesh.shape))
    for name, axes in variables.items():
        variable_path = f"{path}/{name}"
        layout = distribution.get_tensor_layout(variable_path)
        if layout is None:
            continue
        for axis, ((size, argument), names) in enumerate(
            zip(axes, layout.axes)
        ):
            names = (names,) if isinstance(names, str) else names or ()
            parts = int(np.prod([mesh_sizes[n] for n in names]))
            if size % parts:
                raise ValueError(
                    f"`{argument}` expected a multiple of {parts}, the size "
                    f"of the mesh axis {'x'.join(names)!r} that the layout "
                    f"map splits axis {axis} of {variable_path} over. "
                    f"Received: {argument}={size} (mesh shape "
                    f"{dict(mesh_sizes)})"
                )


def check_split(layer, name, input_axes, output_axes):
    """`check_model_parallel` of the kernel and bias of sub-layer `name`.

    Axes are `(size, argument)` pairs: the kernel has the input then the
    output axes (as `EinsumDense` and `Dense` kernels), the bias the
    output axes.
    """
    check_model_parallel(
        layer.path,
        {
            f"{name}/kernel": (*input_axes, *output_axes),
            f"{name}/bias": tuple(output_axes),
        },
    )
