"""The five classifiers, registered by name; input (D, D, D, 1), channels last, any box size D.

Layer widths are not given in the seeds' text; those used here are stated in each builder.
"""

from __future__ import annotations

from typing import Callable

MODELS: dict[str, Callable] = {}


def register(name: str):
    def deco(fn):
        MODELS[name] = fn
        return fn
    return deco


def _layers():
    import keras

    return keras, keras.layers


def _head(keras, x, n_classes: int, dropout: float, name: str, inputs):
    L = keras.layers
    if dropout:
        x = L.Dropout(dropout, name="dropout_out")(x)
    x = L.Dense(n_classes, name="logits")(x)  # linear: the deep structural features
    out = L.Activation("softmax", name="probabilities")(x)
    return keras.Model(inputs, out, name=name)


@register("inception3d")
def inception3d(box: int = 40, n_classes: int = 23):
    """One inception module (1^3; 1^3 -> 3^3; 1^3 -> 5^3; 2^3 max-pool -> 1^3; 32 filters per path,
    16 in the reductions), 2^3 average pooling, 70% dropout, dense L with softmax (seed 000, 2.2.1)."""
    keras, L = _layers()
    inp = keras.Input((box, box, box, 1), name="subtomogram")
    a = L.Conv3D(32, 1, padding="same", activation="relu", name="inc_1x1")(inp)
    b = L.Conv3D(16, 1, padding="same", activation="relu", name="inc_3x3_reduce")(inp)
    b = L.Conv3D(32, 3, padding="same", activation="relu", name="inc_3x3")(b)
    c = L.Conv3D(16, 1, padding="same", activation="relu", name="inc_5x5_reduce")(inp)
    c = L.Conv3D(32, 5, padding="same", activation="relu", name="inc_5x5")(c)
    d = L.MaxPooling3D(2, strides=1, padding="same", name="inc_pool")(inp)
    d = L.Conv3D(32, 1, padding="same", activation="relu", name="inc_pool_proj")(d)
    x = L.Concatenate(name="inception")([a, b, c, d])
    x = L.AveragePooling3D(2, name="avg_pool")(x)
    x = L.Flatten(name="flatten")(x)
    return _head(keras, x, n_classes, 0.7, "inception3d", inp)


def _dsrf(box, n_classes, dropout, name):
    keras, L = _layers()
    inp = keras.Input((box, box, box, 1), name="subtomogram")
    x = L.Conv3D(32, 3, activation="relu", name="conv1")(inp)
    x = L.Conv3D(32, 3, activation="relu", name="conv2")(x)
    x = L.MaxPooling3D(2, name="pool1")(x)
    x = L.Conv3D(64, 3, activation="relu", name="conv3")(x)
    x = L.Conv3D(64, 3, activation="relu", name="conv4")(x)
    x = L.MaxPooling3D(2, name="pool2")(x)
    x = L.Flatten(name="flatten")(x)
    x = L.Dense(512, activation="relu", name="fc1")(x)
    if dropout:
        x = L.Dropout(dropout, name="dropout1")(x)
    x = L.Dense(512, activation="relu", name="fc2")(x)
    return _head(keras, x, n_classes, dropout, name, inp)


@register("dsrf3d")
def dsrf3d(box: int = 40, n_classes: int = 23):
    """Four 3^3 convolutions (32, 32, 64, 64), two 2^3 max-pools, FC-512, FC-512, dense L with softmax
    (seed 000, 2.2.2)."""
    return _dsrf(box, n_classes, 0.0, "dsrf3d")


@register("dsrf3d_v2")
def dsrf3d_v2(box: int = 40, n_classes: int = 23):
    """DSRF3D with 70% dropout after each fully connected layer (seed 002, 3.4.1)."""
    return _dsrf(box, n_classes, 0.7, "dsrf3d_v2")


@register("rb3d")
def rb3d(box: int = 40, n_classes: int = 23):
    """Four bottleneck residual blocks (1^3 reduce -> 3^3 -> 1^3 restore, plus a 3^3 shortcut; widths
    32, 64, 64, 128 with 2^3 max-pools between blocks), global average pooling, 50% dropout, dense L
    (seed 002, 3.4.1)."""
    keras, L = _layers()
    inp = keras.Input((box, box, box, 1), name="subtomogram")
    x = inp
    for i, width in enumerate((32, 64, 64, 128)):
        a = L.Conv3D(width // 4, 1, padding="same", activation="relu", name=f"rb{i}_reduce")(x)
        a = L.Conv3D(width // 4, 3, padding="same", activation="relu", name=f"rb{i}_3x3")(a)
        a = L.Conv3D(width, 1, padding="same", name=f"rb{i}_restore")(a)
        s = L.Conv3D(width, 3, padding="same", name=f"rb{i}_shortcut")(x)
        x = L.Activation("relu", name=f"rb{i}_out")(L.Add(name=f"rb{i}_add")([a, s]))
        if i < 3:
            x = L.MaxPooling3D(2, name=f"rb{i}_pool")(x)
    x = L.GlobalAveragePooling3D(name="gap")(x)
    return _head(keras, x, n_classes, 0.5, "rb3d", inp)


@register("cb3d")
def cb3d(box: int = 40, n_classes: int = 23):
    """C3D-like: convolutions 32 | 64 | 128, 128 | 256, 256 | 256, 256 with five 2^3 max-pools between
    the groups (the last on what is left), FC-1024, FC-1024, 50% dropout, dense L (seed 002, 3.4.1).
    He initialisation: with eight ReLU convolutions, Glorot's leaves the output flat and SGD stuck."""
    keras, L = _layers()
    inp = keras.Input((box, box, box, 1), name="subtomogram")
    x = inp
    groups = ((32,), (64,), (128, 128), (256, 256), (256, 256))
    for g, widths in enumerate(groups):
        for j, w in enumerate(widths):
            x = L.Conv3D(w, 3, padding="same", activation="relu", kernel_initializer="he_normal",
                         name=f"conv{g + 1}{'ab'[j]}")(x)
        x = L.MaxPooling3D(2, padding="same", name=f"pool{g + 1}")(x)
    x = L.Flatten(name="flatten")(x)
    x = L.Dense(1024, activation="relu", kernel_initializer="he_normal", name="fc6")(x)
    x = L.Dropout(0.5, name="dropout6")(x)
    x = L.Dense(1024, activation="relu", kernel_initializer="he_normal", name="fc7")(x)
    return _head(keras, x, n_classes, 0.5, "cb3d", inp)


def build_model(name: str, box: int = 40, n_classes: int = 23):
    """A registered model by name (``inception3d``, ``dsrf3d``, ``dsrf3d_v2``, ``rb3d``, ``cb3d``)."""
    key = name.lower().replace("-", "_")
    if key not in MODELS:
        raise KeyError(f"unknown model {name!r} (have: {', '.join(MODELS)})")
    if box < 16 or n_classes < 2:
        raise ValueError(f"box must be >= 16 and classes >= 2, got box {box}, {n_classes} classes")
    return MODELS[key](box, n_classes)


def feature_model(model, layer: str = "logits"):
    """A model mapping subtomograms to the output of ``layer``: by default the last layer's linear
    activation (softmax removed), the deep structural features of seed 000 (section 2.3)."""
    import keras

    return keras.Model(model.inputs, model.get_layer(layer).output, name=f"{model.name}_features")
