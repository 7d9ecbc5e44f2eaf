"""Every convolution kind a :class:`~cgcnn.nn.model.ModelConfig` may name, registered whatever was imported first.

The layers register themselves with :func:`cgcnn.nn.conv.register_conv` when their module is imported. Were the
table read from :mod:`cgcnn.nn.conv` itself, it would hold only ``gated`` until someone happened to import
:mod:`cgcnn.nn.attention` (a checkpoint check or a ``--conv`` option would then refuse ``attention``). This
module imports every built-in layer module before it hands out the table, so :data:`CONV_LAYERS` (also
``cgcnn.nn.CONV_LAYERS``) is complete on any import path. A new built-in layer module is imported here too.
"""

from __future__ import annotations

from cgcnn.nn import attention, conv

#: Convolution kinds by name (``ModelConfig.conv``): ``gated`` (:mod:`cgcnn.nn.conv`), ``attention`` and
#: ``attention-edge`` (:mod:`cgcnn.nn.attention`), and any kind registered later with ``register_conv``.
CONV_LAYERS = conv.REGISTERED_CONVS

#: The modules of the built-in kinds (imported above, for their registration).
BUILTIN_MODULES = (conv, attention)
